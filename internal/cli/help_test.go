package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
	"github.com/dockbridge/dockbridge/internal/host"
)

// helpOf is what `docker dockbridge ARGS --help` prints.
func helpOf(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := run(t, "", append(args, "--help")...)
	if err != nil {
		t.Fatalf("%v --help: %v", args, err)
	}
	return out
}

// The endpoint comes from --endpoint, then $HCLOUD_ENDPOINT, then the settings, as the help
// says (it said the settings came before the environment).
func TestEndpointPrecedenceIsWhatTheHelpSays(t *testing.T) {
	isolate(t)
	sim := hcloudsimtest.Start(t)
	if _, _, err := run(t, "", "settings", "set", "endpoint", "http://127.0.0.1:1/v1"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HCLOUD_TOKEN", sim.Token)
	t.Setenv("HCLOUD_ENDPOINT", sim.Endpoint)
	if _, _, err := run(t, "", "status"); err != nil {
		t.Fatalf("status with HCLOUD_ENDPOINT set and another endpoint in the settings: %v", err)
	}
	t.Setenv("HCLOUD_ENDPOINT", "http://127.0.0.1:1/v1")
	if _, _, err := run(t, "", "status", "--endpoint", sim.Endpoint); err != nil {
		t.Fatalf("status --endpoint: %v", err)
	}
	if h := helpOf(t, "status"); !strings.Contains(h, "(default: $HCLOUD_ENDPOINT, then the settings, then https://api.hetzner.cloud/v1)") {
		t.Errorf("status --help does not give the endpoint's order:\n%s", h)
	}
}

// Every token source is named where the token is explained, and HCLOUD_TOKEN_FILE is used.
func TestTokenSourcesAreAllNamed(t *testing.T) {
	dir := isolate(t)
	sim := hcloudsimtest.Start(t)
	t.Setenv("HCLOUD_ENDPOINT", sim.Endpoint)
	f := filepath.Join(dir, "token")
	if err := os.WriteFile(f, []byte(sim.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HCLOUD_TOKEN_FILE", f)
	if _, _, err := run(t, "", "status"); err != nil {
		t.Fatalf("status with HCLOUD_TOKEN_FILE: %v", err)
	}
	if h := helpOf(t, "up"); !strings.Contains(h, "$HCLOUD_TOKEN, then the file $HCLOUD_TOKEN_FILE names, then the settings") {
		t.Errorf("--token-file help does not name HCLOUD_TOKEN_FILE:\n%s", h)
	}
	h := helpOf(t, "settings")
	for _, w := range []string{"--token-file, then $HCLOUD_TOKEN, then the file $HCLOUD_TOKEN_FILE names", "$DOCKBRIDGE_PLUGIN_ENDPOINT", "--endpoint, then $HCLOUD_ENDPOINT"} {
		if !strings.Contains(h, w) {
			t.Errorf("settings --help lacks %q:\n%s", w, h)
		}
	}
	// The hint for a missing token names every way, and the simulator as the README starts it.
	t.Setenv("HCLOUD_TOKEN_FILE", "")
	_, _, err := run(t, "", "status")
	for _, w := range []string{"HCLOUD_TOKEN_FILE", "--token-file", "bin/hcloud-sim --token secret", "HCLOUD_TOKEN=secret"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("the missing-token hint lacks %q: %v", w, err)
		}
	}
	readme, _ := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if !strings.Contains(string(readme), "--token secret") {
		t.Error("the README no longer starts the simulator with --token secret: change the hint with it")
	}
}

// `up` says exactly what it added to ~/.ssh/config: every line.
func TestIncludeAddedSaysEveryLine(t *testing.T) {
	dir := t.TempDir()
	p := host.Paths{Root: filepath.Join(dir, "docker", "dockbridge"), UserSSHConfig: filepath.Join(dir, "ssh", "config")}
	if err := os.MkdirAll(filepath.Dir(p.UserSSHConfig), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.UserSSHConfig, []byte("Host x\n  User y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := host.EnsureInclude(p); err != nil || !changed {
		t.Fatalf("EnsureInclude: %v %v", changed, err)
	}
	b, _ := os.ReadFile(p.UserSSHConfig)
	added := strings.TrimSuffix(string(b), "Host x\n  User y\n")
	msg := includeAdded(p, "default")
	lines := strings.Split(strings.TrimSuffix(added, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("EnsureInclude added %q", added)
	}
	for _, l := range lines {
		if !strings.Contains(msg, "  | "+l+"\n") {
			t.Errorf("the message does not show the added line %q:\n%s", l, msg)
		}
	}
}

// --s3-part-size is only where an archive is uploaded, and only checked for s3:// locations.
func TestS3PartSizeOnlyWhereItMatters(t *testing.T) {
	isolate(t)
	for _, args := range [][]string{{"backup", "ls"}, {"backup", "prune"}, {"backup", "verify", "x"}, {"metrics"}} {
		if _, _, err := run(t, "", append(args, "--s3-part-size", "64MiB")...); err == nil || !strings.Contains(err.Error(), "unknown flag: --s3-part-size") {
			t.Errorf("%v --s3-part-size: %v", args, err)
		}
	}
	for _, args := range [][]string{{"backup"}, {"restore"}} {
		if h := helpOf(t, args...); !strings.Contains(h, "--s3-part-size") {
			t.Errorf("%v --help lacks --s3-part-size", args)
		}
	}
	_, _, err := run(t, "", "restore", filepath.Join(t.TempDir(), "none", "x-20250101T000000Z.tar.zst"), "--s3-part-size", "1")
	if err == nil || strings.Contains(err.Error(), "--s3-part-size") {
		t.Errorf("a local restore checked --s3-part-size: %v", err)
	}
	_, _, err = run(t, "", "restore", "s3://bucket/x-20250101T000000Z.tar.zst", "--s3-part-size", "1")
	if err == nil || !strings.Contains(err.Error(), "--s3-part-size \"1\"") {
		t.Errorf("an S3 restore did not check --s3-part-size: %v", err)
	}
}

// restore --force stops the containers, then takes the safety backup (a consistent copy): the
// help and the READMEs say it in that order (they said the safety backup came first).
func TestRestoreForceTextMatchesTheOrder(t *testing.T) {
	isolate(t)
	read := func(f string) string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct{ name, text, says string }{
		{"restore --help", helpOf(t, "restore"), "the containers using the volume are stopped, a safety backup of its content is taken while they are stopped"},
		{"README.md", read("../../README.md"), "which stops the containers using it, then takes a safety backup while they are stopped"},
		{"internal/backup/README.md", read("../backup/README.md"), "stops the containers using the volume, takes a safety backup while they are stopped"},
	} {
		text := strings.Join(strings.Fields(c.text), " ")
		if !strings.Contains(text, c.says) {
			t.Errorf("%s does not say %q", c.name, c.says)
		}
		for _, wrong := range []string{"a safety backup of its content is taken (the restore stops if that fails), the containers using it are stopped",
			"(which takes a safety backup first)", "takes a safety backup first (next to the archive, or `--safety-to`), aborts if that fails, stops the containers"} {
			if strings.Contains(text, wrong) {
				t.Errorf("%s still says %q", c.name, wrong)
			}
		}
	}
}
