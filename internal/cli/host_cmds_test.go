package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/flags"

	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
	"github.com/dockbridge/dockbridge/internal/host"
)

// run builds the root command like `docker dockbridge ARGS` and returns stdout, stderr, err.
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	dcli, err := command.NewDockerCli(command.WithInputStream(io.NopCloser(strings.NewReader(stdin))), command.WithOutputStream(&out), command.WithErrorStream(&errb))
	if err != nil {
		t.Fatal(err)
	}
	if err := dcli.Initialize(flags.NewClientOptions()); err != nil {
		t.Fatal(err)
	}
	cmd := NewRootCommand(dcli)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errb.String(), err
}

// isolate points DOCKER_CONFIG and HOME (~/.ssh/config) at temp dirs and clears HCLOUD_*.
func isolate(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "docker"))
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv("HCLOUD_TOKEN", "")
	t.Setenv("HCLOUD_TOKEN_FILE", "")
	t.Setenv("HCLOUD_ENDPOINT", "")
	return dir
}

func TestBadFlagsAreRefusedWithTheFix(t *testing.T) {
	isolate(t)
	t.Setenv("HCLOUD_TOKEN", "x")
	t.Setenv("HCLOUD_ENDPOINT", "http://127.0.0.1:1/v1") // nothing listens: bad input must fail before any request
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"up", "--name", "Not_Valid"}, "--name: environment name"},
		{[]string{"up", "--allow-from", "1.2.3.4", "--no-volume-plugin"}, "want a CIDR"},
		{[]string{"up", "--volume-size", "5"}, "--volume-size 5: want between 10 and 10240"},
		{[]string{"up", "-o", "yaml"}, "use -o table or -o json"},
		{[]string{"up", "--plugin-dir", "/nonexistent"}, "has no config.json"},
		{[]string{"up", "extra-arg"}, "accepts no arguments"},
		{[]string{"status", "-o", "xml"}, "use -o table or -o json"},
		{[]string{"down", "--name", "-x"}, "environment name"},
		{[]string{"up", "--endpoint", "api.hetzner.cloud"}, "want a URL"},
		{[]string{"ssh", "docker", "info"}, "put the command after --"},
		{[]string{"settings", "set", "volume_size_gb", "huge"}, "whole number of GB"},
		{[]string{"settings", "set", "colour", "blue"}, "unknown setting"},
		{[]string{"settings", "set", "token", "secret-on-cmdline"}, "not taken on the command line"},
	}
	for _, c := range cases {
		_, _, err := run(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want an error containing %q, got %v", c.args, c.want, err)
		}
	}
}

func TestMissingTokenSaysHowToSetIt(t *testing.T) {
	isolate(t)
	for _, cmd := range []string{"up", "down", "status", "destroy"} {
		_, _, err := run(t, "", cmd)
		if err == nil || !strings.Contains(err.Error(), "export HCLOUD_TOKEN") || !strings.Contains(err.Error(), "settings set token") {
			t.Errorf("%s without a token: %v", cmd, err)
		}
	}
}

func TestRejectedTokenAgainstTheSimulator(t *testing.T) {
	isolate(t)
	sim := hcloudsimtest.Start(t)
	t.Setenv("HCLOUD_ENDPOINT", sim.Endpoint)
	t.Setenv("HCLOUD_TOKEN", "wrong-token-value")
	_, stderr, err := run(t, "", "status")
	if err == nil || !strings.Contains(err.Error(), "rejected the token (taken from HCLOUD_TOKEN)") {
		t.Fatalf("status with a rejected token: %v", err)
	}
	if strings.Contains(err.Error()+stderr, "wrong-token-value") {
		t.Fatal("the token was printed")
	}
}

func TestStatusAndDownWithoutAServer(t *testing.T) {
	isolate(t)
	sim := hcloudsimtest.Start(t)
	t.Setenv("HCLOUD_ENDPOINT", sim.Endpoint)
	t.Setenv("HCLOUD_TOKEN", sim.Token)

	out, _, err := run(t, "", "status", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st host.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json does not parse: %v\n%s", err, out)
	}
	if st.Env != "default" || st.Context != "dockbridge" || st.Server != nil {
		t.Fatalf("status: %+v", st)
	}
	out, _, err = run(t, "", "status", "--name", "staging")
	if err != nil || !strings.Contains(out, "dockbridge-staging") || !strings.Contains(out, "none (nothing billed for compute)") {
		t.Fatalf("status table: %v\n%s", err, out)
	}
	out, _, err = run(t, "", "down")
	if err != nil || !strings.Contains(out, "has no server: nothing is billed") {
		t.Fatalf("down without a server: %v\n%s", err, out)
	}
	// Nothing of the environment exists: down keeps nothing and says so (it listed an SSH key,
	// a firewall and a context that did not exist).
	if strings.Contains(out, "Kept") || strings.Contains(out, "firewall") || !strings.Contains(out, "nothing is kept") {
		t.Fatalf("down of an environment that never existed:\n%s", out)
	}
	_, stderr, err := run(t, "", "destroy")
	if err == nil || !strings.Contains(err.Error(), "pass --yes") || !strings.Contains(stderr, "This deletes") {
		t.Fatalf("destroy without a terminal and without --yes: %v\n%s", err, stderr)
	}
}

func TestSettingsFileIsPrivateAndTheTokenNeverShown(t *testing.T) {
	dir := isolate(t)
	if _, _, err := run(t, "s3cr3t-token\n", "settings", "set", "token"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "", "settings", "set", "location", "nbg1"); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "", "settings", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "s3cr3t") || !strings.Contains(out, "(set)") || !strings.Contains(out, "nbg1") {
		t.Fatalf("settings show:\n%s", out)
	}
	f := filepath.Join(dir, "docker", "dockbridge", "settings.json")
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	di, _ := os.Stat(filepath.Dir(f))
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("settings.json %04o in dir %04o, want 0600 in 0700", fi.Mode().Perm(), di.Mode().Perm())
	}
	// The stored token is used, and the environment overrides it.
	sim := hcloudsimtest.Start(t)
	t.Setenv("HCLOUD_ENDPOINT", sim.Endpoint)
	_, _, err = run(t, "", "status")
	if err == nil || !strings.Contains(err.Error(), "taken from settings") {
		t.Fatalf("status with the stored (wrong) token: %v", err)
	}
	t.Setenv("HCLOUD_TOKEN", sim.Token)
	if _, _, err := run(t, "", "status"); err != nil {
		t.Fatalf("HCLOUD_TOKEN should override the stored token: %v", err)
	}
}

func TestSSHWithoutUpExplains(t *testing.T) {
	isolate(t)
	_, _, err := run(t, "", "ssh", "--", "true")
	if err == nil || !strings.Contains(err.Error(), "run `docker dockbridge up` first") {
		t.Fatalf("ssh before up: %v", err)
	}
}
