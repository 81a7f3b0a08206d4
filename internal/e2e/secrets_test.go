package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/dockbridge/dockbridge/internal/boottest"
)

// What the server keeps from whoever should not have it, checked on servers `up` made: the
// host key of the user-data is worthless, containers can't read the user-data, and the
// volume plugin's token is not in its settings.

// onServer runs a shell command on env's server through `docker dockbridge ssh`.
func (w *world) onServer(t testing.TB, env, cmd string) string {
	t.Helper()
	return w.must(t, "dockbridge", "ssh", "--name", env, "--", cmd).stdout
}

// envFile is a file of env in dockbridge's directory.
func (w *world) envFile(env, name string) string {
	return filepath.Join(w.config, "dockbridge", "envs", env, name)
}

// userDataHostKeyIsWorthless: the key the metadata service still serves in the user-data no
// longer authenticates the server; the key the client pinned (known_hosts of the context) does;
// no key file on the server holds the old key.
func userDataHostKeyIsWorthless(t *testing.T, w *world, env string, serverID int64) {
	t.Helper()
	// The host itself may read the user-data (only containers on bridges may not).
	var doc struct {
		SSHKeys map[string]string `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal([]byte(w.onServer(t, env, "curl -sf --max-time 10 http://169.254.169.254/hetzner/v1/userdata")), &doc); err != nil {
		t.Fatal(err)
	}
	old, _, _, _, err := ssh.ParseAuthorizedKey([]byte(doc.SSHKeys["ed25519_public"]))
	if err != nil {
		t.Fatalf("the user-data's host key: %v (%v)", err, doc.SSHKeys)
	}
	known, err := os.ReadFile(w.envFile(env, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(known))
	if len(f) != 3 {
		t.Fatalf("known_hosts: %q", known)
	}
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(f[1] + " " + f[2]))
	if err != nil {
		t.Fatal(err)
	}
	if string(pinned.Marshal()) == string(old.Marshal()) {
		t.Fatalf("the client still pins the user-data's host key %s", ssh.FingerprintSHA256(old))
	}

	keyPEM, err := os.ReadFile(w.envFile(env, "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := w.api.Server.GetByID(t.Context(), serverID)
	if err != nil || s == nil {
		t.Fatalf("server %d: %v", serverID, err)
	}
	addr := s.PublicNet.IPv4.IP.String() + ":22"
	if c, err := boottest.DialSSH(t.Context(), addr, boottest.Keys{HostPublic: old, Client: client}); !errors.Is(err, boottest.ErrHostKeyMismatch) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("pinned to the user-data's host key, the connection to %s gave %v, want a host key mismatch", addr, err)
	}
	c, err := boottest.DialSSH(t.Context(), addr, boottest.Keys{HostPublic: pinned, Client: client})
	if err != nil {
		t.Fatalf("pinned to the key in known_hosts: %v", err)
	}
	c.Close()

	oldB64 := strings.Fields(string(ssh.MarshalAuthorizedKey(old)))[1]
	keys := w.onServer(t, env, `for f in /etc/ssh/*key /etc/ssh/*.dockbridge-next; do [ -f "$f" ] && ssh-keygen -y -f "$f"; done; sshd -T | grep -i '^hostkey '`)
	if strings.Contains(keys, oldB64) {
		t.Fatalf("a key file on the server still holds the user-data's key:\n%s", keys)
	}
}

// metadataRefusedToContainers: containers on the default bridge and on a user-defined network
// can't reach the metadata service; one on that network still uses the hetzner volume vol.
func metadataRefusedToContainers(t *testing.T, w *world, env, image, vol string) {
	t.Helper()
	if r := w.run(t.Context(), nil, nil, "--context", contextName(env), "network", "inspect", "e2e-fenced"); r.err != nil {
		w.on(t, env, "network", "create", "e2e-fenced")
	}
	ask := `printf "GET /hetzner/v1/userdata HTTP/1.0\r\n\r\n" | busybox nc -w 10 169.254.169.254 80`
	for _, network := range []string{"bridge", "e2e-fenced"} {
		r := w.run(t.Context(), nil, nil, "--context", contextName(env), "run", "--rm", "--network", network, image, "sh", "-c", ask)
		if r.err == nil || strings.Contains(r.stdout, "ssh_keys") || !strings.Contains(r.stderr, "Connection refused") {
			t.Fatalf("a container on network %s asked for the user-data: %s", network, r)
		}
	}
	if got := w.on(t, env, "run", "--rm", "--network", "e2e-fenced", "-v", vol+":/v", image, "busybox", "ls", "/v").stdout; !strings.Contains(got, "blob") {
		t.Fatalf("a container on e2e-fenced with the hetzner volume %s sees %q", vol, got)
	}
}

// tokenNotInPluginSettings: `docker plugin inspect` on the server shows the token file's path,
// not the token; the file holds the token, 0600 in a 0700 directory, both root's, on the
// data volume.
func tokenNotInPluginSettings(t *testing.T, w *world, env string) {
	t.Helper()
	inspect := w.onServer(t, env, "docker plugin inspect hetzner:latest")
	if strings.Contains(inspect, w.sim.Token) {
		t.Fatalf("docker plugin inspect shows the token:\n%s", inspect)
	}
	if !strings.Contains(inspect, `"HCLOUD_TOKEN_FILE=/etc/dockbridge/secrets/hcloud-token"`) || !strings.Contains(inspect, `"HCLOUD_TOKEN="`) {
		t.Fatalf("docker plugin inspect does not name the token file (and an empty HCLOUD_TOKEN):\n%s", inspect)
	}
	sum := sha256.Sum256([]byte(w.sim.Token))
	got := strings.TrimSpace(w.onServer(t, env, `stat -L -c '%a %U:%G' /etc/dockbridge/secrets /etc/dockbridge/secrets/hcloud-token; readlink /etc/dockbridge/secrets; sha256sum < /etc/dockbridge/secrets/hcloud-token | cut -d' ' -f1`))
	want := "700 root:root\n600 root:root\n/var/lib/docker/dockbridge-secrets\n" + hex.EncodeToString(sum[:])
	if got != want {
		t.Fatalf("the token file on the server:\n%s\nwant:\n%s", got, want)
	}
}

// healthCheckReenablesPlugin: with the plugin disabled (as Docker leaves one that died right
// after a restart), the health check reports CRITICAL, enables it once and says so.
func healthCheckReenablesPlugin(t *testing.T, w *world, env string) {
	t.Helper()
	w.onServer(t, env, "docker plugin disable -f hetzner:latest")
	out := w.onServer(t, env, "docker-volume-health-check; echo rc=$?; docker plugin inspect -f 'enabled={{.Enabled}}' hetzner:latest; tail -n 1 /var/log/docker-volume-health.log")
	for _, want := range []string{"level=CRITICAL", "volume plugin hetzner:latest was disabled: re-enabled it", "rc=2", "enabled=true"} {
		if !strings.Contains(out, want) {
			t.Fatalf("health check with the plugin disabled:\n%s\nwant %q", out, want)
		}
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); !strings.Contains(lines[len(lines)-1], "re-enabled it") {
		t.Fatalf("the health log's line does not say so: %q", lines[len(lines)-1])
	}
	if out := w.onServer(t, env, "docker-volume-health-check"); !strings.Contains(out, "level=OK") {
		t.Fatalf("the next health check: %s", out)
	}
}
