package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOfficialHcloudCLI drives the official hcloud CLI (Debian's hcloud-cli) against the
// simulator, unmodified, through HCLOUD_ENDPOINT: what a person trying dockbridge does.
func TestOfficialHcloudCLI(t *testing.T) {
	bin, err := exec.LookPath("hcloud")
	if err != nil {
		if testing.Short() {
			t.Skip("hcloud CLI not installed")
		}
		t.Fatal("the official hcloud CLI is missing: apt-get install hcloud-cli (bash .ci/run installs it)")
	}
	addr, _, _ := startRun(t, "--token", "cli-token")

	dir := t.TempDir()
	keyPath := filepath.Join(dir, "id.pub")
	if err := os.WriteFile(keyPath, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGB5xLdCxfKSo0pYm4YK3kqW0c5kG6ek1bUu0pFEaXzo cli-test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hcloud := func(token string, args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = append(os.Environ(), "HCLOUD_ENDPOINT=http://"+addr+"/v1", "HCLOUD_TOKEN="+token,
			"HCLOUD_CONFIG="+filepath.Join(dir, "cli.toml"), "HCLOUD_POLL_INTERVAL=50ms")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"location", "list"}, "fsn1"},
		{[]string{"server-type", "list"}, "cx23"},
		{[]string{"server-type", "list", "-o", "columns=name,cores,memory"}, "cax11"},
		{[]string{"server-type", "describe", "cpx22"}, "cpx22"},
		{[]string{"server-type", "describe", "cpx11"}, "ash"},
		{[]string{"ssh-key", "create", "--name", "me", "--public-key-from-file", keyPath}, "SSH key"},
		{[]string{"volume", "create", "--name", "data", "--size", "10", "--location", "fsn1", "--label", "managed-by=dockbridge"}, "Volume"},
		{[]string{"server", "create", "--name", "web", "--type", "cx23", "--image", "docker-ce", "--location", "fsn1", "--ssh-key", "me", "--volume", "data"}, "Server"},
		{[]string{"server", "list", "-o", "columns=name,status"}, "running"},
		{[]string{"network", "create", "--name", "swarm", "--ip-range", "10.0.0.0/16"}, "Network"},
		{[]string{"network", "add-subnet", "swarm", "--type", "cloud", "--network-zone", "eu-central", "--ip-range", "10.0.1.0/24"}, "Subnet added"},
		{[]string{"server", "attach-to-network", "web", "--network", "swarm", "--ip", "10.0.1.5"}, "attached to network"},
		{[]string{"server", "describe", "web"}, "10.0.1.5"},
		{[]string{"network", "describe", "swarm"}, "10.0.1.0/24"},
		{[]string{"server", "create", "--name", "db", "--type", "cx23", "--image", "debian-12", "--location", "fsn1", "--ssh-key", "me", "--network", "swarm"}, "Server"},
		{[]string{"server", "describe", "db", "-o", "format={{range .PrivateNet}}{{.IP}}{{end}}"}, "10.0.1.1"},
		{[]string{"server", "detach-from-network", "web", "--network", "swarm"}, "detached from network"},
		{[]string{"server", "delete", "db"}, "deleted"},
		{[]string{"network", "delete", "swarm"}, "deleted"},
		{[]string{"volume", "list", "-l", "managed-by=dockbridge", "-o", "columns=name,server"}, "web"},
		{[]string{"server", "poweroff", "web"}, "stopped"},
		{[]string{"volume", "detach", "data"}, "detached"},
		{[]string{"volume", "resize", "data", "--size", "20"}, "resized"},
		{[]string{"server", "delete", "web"}, "deleted"},
		{[]string{"volume", "delete", "data"}, "deleted"},
	}
	for _, s := range steps {
		got, err := hcloud("cli-token", s.args...)
		if err != nil {
			t.Fatalf("hcloud %s: %v\n%s", strings.Join(s.args, " "), err, got)
		}
		if !strings.Contains(got, s.want) {
			t.Fatalf("hcloud %s printed %q; want it to contain %q", strings.Join(s.args, " "), got, s.want)
		}
	}
	// The API's own errors reach the person through the CLI.
	for _, c := range []struct {
		token string
		args  []string
		want  string
	}{
		{"wrong", []string{"server", "list"}, "unauthorized"},
		{"cli-token", []string{"volume", "create", "--name", "tiny", "--size", "5", "--location", "fsn1"}, "invalid_input"},
		{"cli-token", []string{"server", "describe", "424242"}, "not found"},
		{"cli-token", []string{"network", "create", "--name", "public", "--ip-range", "8.8.0.0/16"}, "invalid_input"},
		// The 2026 catalog: a type past its deprecation date, and one that is not sold there.
		{"cli-token", []string{"server", "create", "--name", "old", "--type", "cpx11", "--image", "debian-12", "--location", "fsn1"}, "unsupported location for server type"},
		{"cli-token", []string{"server", "create", "--name", "us", "--type", "cx23", "--image", "debian-12", "--location", "ash"}, "unsupported location for server type"},
	} {
		got, err := hcloud(c.token, c.args...)
		if err == nil || !strings.Contains(strings.ToLower(got), c.want) {
			t.Errorf("hcloud %s: err %v, output %q; want a failure mentioning %q", strings.Join(c.args, " "), err, got, c.want)
		}
	}
}
