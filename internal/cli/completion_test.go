package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

// complete asks the docker CLI to complete `docker dockbridge ARGS... WORD`, as a shell does,
// and returns the candidates (descriptions cut off) and the directive line.
func complete(t *testing.T, env []string, words ...string) ([]string, string) {
	t.Helper()
	out, stderr, code := runDocker(t, env, append([]string{"__complete", "dockbridge"}, words...)...)
	if code != 0 {
		t.Fatalf("docker __complete dockbridge %q: exit %d\n%s%s", words, code, out, stderr)
	}
	var cands []string
	directive := ""
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(l, ":") {
			directive = l
			continue
		}
		name, _, _ := strings.Cut(l, "\t")
		cands = append(cands, name)
	}
	return cands, directive
}

// Shell completion goes through the docker CLI's own completion of plugin commands: commands,
// environment names, volume names, the backups `backup ls` would list, flag values.
func TestCompletionThroughTheDockerCLI(t *testing.T) {
	requirePluginCompletion(t)
	c := volumeopstest.Client(t)
	config, home := dockerWithPlugin(t)
	if err := os.MkdirAll(filepath.Join(config, "dockbridge", "envs", "staging"), 0o700); err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	vol := volumeopstest.Volume(t, c, "dbt-compl-"+suffix, "local", nil, nil)
	store := t.TempDir()
	archive := "db_data-20251017T143025Z.tar.zst"
	for _, f := range []string{archive, archive + ".sha256", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(store, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home, "DOCKBRIDGE_BACKUP_TO="}
	withStore := append(slices.Clone(env), "DOCKBRIDGE_BACKUP_TO="+store)

	cases := []struct {
		name  string
		env   []string
		words []string
		want  []string
		not   []string
	}{
		{"commands", env, []string{""}, []string{"up", "down", "status", "ssh", "destroy", "settings", "volume", "backup", "restore", "metrics"}, nil},
		{"subcommands", env, []string{"backup", "l"}, []string{"ls"}, []string{"prune"}},
		{"environment names", env, []string{"status", "--name", ""}, []string{"staging"}, nil},
		{"volume names", env, []string{"volume", "inspect", "dbt-compl-" + suffix[:2]}, []string{vol}, nil},
		{"volumes to back up, each once", env, []string{"backup", vol, "dbt-compl-" + suffix[:2]}, nil, []string{vol}},
		{"archives in --from", env, []string{"restore", "--from", store, ""}, []string{archive}, []string{"notes.txt", archive + ".sha256"}},
		{"archives in DOCKBRIDGE_BACKUP_TO", withStore, []string{"backup", "verify", "db_"}, []string{archive}, nil},
		{"restore --volume", env, []string{"restore", "--volume", "dbt-compl-" + suffix[:2]}, []string{vol}, nil},
		{"setting keys", env, []string{"settings", "set", "lo"}, []string{"location"}, []string{"token"}},
		{"output formats", env, []string{"metrics", "-o", ""}, []string{"prometheus", "json"}, nil},
	}
	for _, tc := range cases {
		got, directive := complete(t, tc.env, tc.words...)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s: completing %q offers %q (%s), not %q", tc.name, tc.words, got, directive, w)
			}
		}
		for _, w := range tc.not {
			if slices.Contains(got, w) {
				t.Errorf("%s: completing %q offers %q, which it should not", tc.name, tc.words, w)
			}
		}
	}
	// A path is completed by the shell as files.
	if _, directive := complete(t, env, "restore", "./"); directive != ":0" {
		t.Errorf("restore ./<TAB>: directive %s, want :0 (files)", directive)
	}
}
