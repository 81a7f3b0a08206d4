package host

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlPathFitsTheSocketLimit: the shared connection's socket path, with the suffix ssh
// adds while it sets the master up, fits macOS's 104-byte sun_path for any DOCKER_CONFIG.
func TestControlPathFitsTheSocketLimit(t *testing.T) {
	h := SSHHost{Env: "default", Addr: "203.0.113.7", Port: 22, User: "root", HostKey: "ssh-ed25519 AAAA"}
	long := "/Users/" + strings.Repeat("a-long-user-name", 4) + "/Library/Application Support/docker"
	cases := []struct {
		name, goos, root string
		under            string // the directory the socket must be in; "" for none
	}{
		{"linux, short config dir", "linux", "/root/.docker/dockbridge", "/root/.docker/dockbridge/cm"},
		{"macOS, short config dir", "darwin", "/Users/jo/.docker/dockbridge", "/Users/jo/.docker/dockbridge/cm"},
		{"macOS, long config dir", "darwin", long + "/dockbridge", "/tmp/"},
		{"linux, long config dir", "linux", long + "/dockbridge", "/tmp/"},
		{"windows: no ControlMaster", "windows", `C:\Users\jo\.docker\dockbridge`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := Paths{Root: c.root, OS: c.goos}.ControlPath(h)
			if c.under == "" {
				if cp != "" {
					t.Fatalf("ControlPath = %q, want none", cp)
				}
				return
			}
			if !strings.HasPrefix(cp, c.under) {
				t.Errorf("ControlPath = %q, want it under %s", cp, c.under)
			}
			if n := len(cp) + len(".XXXXXXXXXXXXXXXX"); n > 104 {
				t.Errorf("ControlPath %q is %d bytes with ssh's suffix: over macOS's 104", cp, n)
			}
		})
	}
	// Another server (a new host key on a reused address) never shares a connection.
	p := Paths{Root: "/r", OS: "linux"}
	other := h
	other.HostKey = "ssh-ed25519 BBBB"
	if p.ControlPath(h) == p.ControlPath(other) {
		t.Error("two host keys share one control socket")
	}
}

// TestSSHConfigPerOS: what the environment's ssh_config says on each OS.
func TestSSHConfigPerOS(t *testing.T) {
	h := SSHHost{Env: "web", Addr: "203.0.113.7", Port: 22, User: "root", HostKey: "ssh-ed25519 AAAA"}

	unix := Paths{Root: "/home/jo/.docker/dockbridge", OS: "darwin"}
	h.KeyFile = unix.UserKeyFile("web")
	got := string(unix.renderSSHConfig(h))
	for _, want := range []string{
		"Host dockbridge-web\n",
		"  IdentityFile /home/jo/.docker/dockbridge/envs/web/id_ed25519\n",
		"  UserKnownHostsFile /home/jo/.docker/dockbridge/envs/web/known_hosts\n",
		"  StrictHostKeyChecking yes\n",
		"  ControlMaster auto\n",
		"  ControlPersist 10m\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("macOS ssh_config lacks %q:\n%s", want, got)
		}
	}
	// The server's part (the wake may rewrite it) holds the address and the connection's path.
	if got := string(unix.renderSSHServer(h)); !strings.Contains(got, "  ControlPath "+unix.ControlPath(h)+"\n") || !strings.Contains(got, "  HostName 203.0.113.7\n") {
		t.Errorf("macOS ssh_server.conf:\n%s", got)
	}

	win := Paths{Root: `C:\Users\Jo Doe\.docker\dockbridge`, OS: "windows"}
	h.KeyFile = win.UserKeyFile("web")
	got = string(win.renderSSHConfig(h))
	for _, want := range []string{
		`  IdentityFile "C:/Users/Jo Doe/.docker/dockbridge/envs/web/id_ed25519"` + "\n",
		`  UserKnownHostsFile "C:/Users/Jo Doe/.docker/dockbridge/envs/web/known_hosts"` + "\n",
		"  StrictHostKeyChecking yes\n",
		"  ControlMaster no\n",
		"  ControlPath none\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Windows ssh_config lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, `\`) || strings.Contains(got, "ControlPersist") {
		t.Errorf("Windows ssh_config has a backslash or ControlPersist:\n%s", got)
	}
	if line := win.IncludeLine(); line != `Include "C:/Users/Jo Doe/.docker/dockbridge/envs/*/ssh_config"` {
		t.Errorf("Windows Include line = %s", line)
	}

	// The measurement baseline turns sharing off on any OS.
	h.NoControlMaster = true
	h.KeyFile = filepath.Join(unix.Root, "k")
	if got := string(unix.renderSSHConfig(h)); !strings.Contains(got, "ControlMaster no\n") || strings.Contains(got, "ControlPersist") {
		t.Errorf("NoControlMaster:\n%s", got)
	}
}

func TestKeyModeCheckPerOS(t *testing.T) {
	cases := []struct {
		goos string
		mode fs.FileMode
		ok   bool
	}{
		{"linux", 0o600, true},
		{"linux", 0o400, true},
		{"linux", 0o640, false},
		{"darwin", 0o644, false},
		{"darwin", 0o600, true},
		// Go reports 0666 for every writable file on Windows: ACLs decide there.
		{"windows", 0o666, true},
	}
	for _, c := range cases {
		err := checkKeyMode(c.goos, "/k", c.mode)
		if (err == nil) != c.ok {
			t.Errorf("%s mode %04o: %v, want ok=%v", c.goos, c.mode, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "chmod 600 /k") {
			t.Errorf("%s mode %04o: %v, want the fix named", c.goos, c.mode, err)
		}
	}
}
