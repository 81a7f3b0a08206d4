package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A token typed at a terminal is not echoed (as `docker login` reads a password), and it is
// stored. A real pseudo-terminal, not a pipe: echo is the terminal's doing.
func TestTokenTypedAtATerminalIsNotEchoed(t *testing.T) {
	config, home := dockerWithPlugin(t)
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home}
	const token = "typed-s3cr3t-token-value"
	s := startOnTerminal(t, env, "docker", "dockbridge", "settings", "set", "token")
	s.waitFor("token")
	s.typeLine(token)
	code, shown := s.wait()
	if code != 0 {
		t.Fatalf("settings set token: exit %d\n%s", code, shown)
	}
	if strings.Contains(shown, token) || strings.Contains(shown, token[:6]) {
		t.Fatalf("the token was echoed on the terminal:\n%s", shown)
	}
	b, err := os.ReadFile(filepath.Join(config, "dockbridge", "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Token != token {
		t.Fatalf("stored token %q (%v), want what was typed", st.Token, err)
	}
}

// backup prune asks on a terminal, deletes only after a yes; without a terminal it wants
// -f/--force; --dry-run only shows.
func TestPruneAsksFirst(t *testing.T) {
	config, home := dockerWithPlugin(t)
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home, "DOCKBRIDGE_BACKUP_TO="}
	store := t.TempDir()
	s := dirStore(t, store)
	old := writeArchive(t, s, "db_data", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	writeArchive(t, s, "db_data", time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC))
	exists := func() bool { _, err := os.Stat(filepath.Join(store, old)); return err == nil }
	args := []string{"dockbridge", "backup", "prune", "--from", store, "--keep-last", "1"}

	out, _, code := runDocker(t, env, append(args, "--dry-run")...)
	if code != 0 || !strings.Contains(out, "would delete") || !exists() {
		t.Fatalf("--dry-run: exit %d, deleted: %v\n%s", code, !exists(), out)
	}
	_, stderr, code := runDocker(t, env, args...)
	if code == 0 || !strings.Contains(stderr, "pass -f/--force") || !exists() {
		t.Fatalf("without a terminal and without --force: exit %d, deleted: %v\n%s", code, !exists(), stderr)
	}
	term := startOnTerminal(t, env, "docker", args...)
	term.waitFor("Are you sure you want to continue? [y/N]")
	term.typeLine("n")
	if code, shown := term.wait(); code == 0 || !exists() || !strings.Contains(shown, old) {
		t.Fatalf("answered no: exit %d, deleted: %v\n%s", code, !exists(), shown)
	}
	term = startOnTerminal(t, env, "docker", args...)
	term.waitFor("[y/N]")
	term.typeLine("y")
	if code, shown := term.wait(); code != 0 || exists() {
		t.Fatalf("answered yes: exit %d, deleted: %v\n%s", code, !exists(), shown)
	}
	writeArchive(t, s, "db_data", time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC))
	if out, stderr, code := runDocker(t, env, append(args, "-f")...); code != 0 || !strings.Contains(out, "delete") {
		t.Fatalf("-f: exit %d\n%s%s", code, out, stderr)
	}
	if bs := lsNamesIn(t, store); len(bs) != 1 {
		t.Fatalf("after -f: %q left, want 1", bs)
	}
}

func lsNamesIn(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".tar.zst") {
			names = append(names, de.Name())
		}
	}
	return names
}
