// Package sshmuxtest runs a real OpenSSH server and a ControlMaster connected to it, for tests of
// what goes through a shared connection (needs root, openssh-server and openssh-client).
package sshmuxtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/testenv"
	"github.com/dockbridge/dockbridge/internal/testproc"
)

// Server is an sshd on 127.0.0.1 that lets root in with a key made for the test, and a client
// configuration (ssh -F Config Alias) with connection sharing at ControlPath.
type Server struct {
	Port        int
	Dir         string
	Config      string // ssh_config
	Alias       string
	ControlPath string
	PID         int
}

// Start runs sshd -D for the test's life. Extra lines are appended to sshd_config.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	var missing []string
	for _, tool := range []string{"/usr/sbin/sshd", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	testenv.Require(t, "the shared-connection tests need openssh-server and openssh-client", missing)
	if os.Getuid() != 0 {
		if testing.Short() {
			t.Skip("not root (-short)")
		}
		t.Fatal("the shared-connection tests run sshd as root: run them as root (CI does)")
	}
	dir, err := os.MkdirTemp("", "sshmux-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Masters (their title names their ControlPath, in dir) and anything else started with
	// dir, left after the other cleanups, are ended before it is removed.
	testproc.Cleanup(t, dir+"/")
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "user.pub"))
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
	must(t, os.MkdirAll("/run/sshd", 0o755))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/host
PidFile %[2]s/sshd.pid
AuthorizedKeysFile %[2]s/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AcceptEnv DOCKBRIDGE_*
%s
`, port, dir, strings.Join(extra, "\n"))
	must(t, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600))
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	sshd.Stdout, sshd.Stderr = logf, logf
	if err := sshd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sshd.Process.Kill()
		_ = sshd.Wait()
		logf.Close()
	})
	s := &Server{Port: port, Dir: dir, Config: filepath.Join(dir, "ssh_config"), Alias: "sshmux-test", ControlPath: filepath.Join(dir, "cm"), PID: sshd.Process.Pid}
	client := fmt.Sprintf(`Host %s
  HostName 127.0.0.1
  Port %d
  User root
  IdentityFile %s/user
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  BatchMode yes
  LogLevel ERROR
  ControlMaster auto
  ControlPath %s
  ControlPersist 10m
`, s.Alias, port, dir, s.ControlPath)
	must(t, os.WriteFile(s.Config, []byte(client), 0o600))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Fatalf("sshd did not listen: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Log is sshd's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sshd.log"))
	return string(b)
}

// SSH returns `ssh -F Config ARGS...`.
func (s *Server) SSH(args ...string) *exec.Cmd {
	return exec.Command("ssh", append([]string{"-F", s.Config}, args...)...)
}

// StartMaster starts a ControlMaster (ssh -f -N, ControlPersist) and stops it at the end.
func (s *Server) StartMaster(t testing.TB) {
	t.Helper()
	if out, err := s.SSH("-f", "-N", s.Alias).CombinedOutput(); err != nil {
		t.Fatalf("start the ControlMaster: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = s.SSH("-O", "exit", s.Alias).Run() })
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Delay is a TCP proxy to 127.0.0.1:target that holds every chunk for oneWay in each direction
// (a round trip of 2×oneWay, as to a server far away; this machine's kernel has no netem) and
// paces each direction at mbit Mbit/s (0: no limit). It returns the proxy's port.
func Delay(t testing.TB, target int, oneWay time.Duration, mbit float64) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rate := mbit * 1e6 / 8
	pipe := func(dst, src net.Conn) {
		type chunk struct {
			at time.Time
			b  []byte
		}
		q := make(chan chunk, 1<<16)
		go func() {
			defer close(q)
			for {
				buf := make([]byte, 32<<10)
				n, err := src.Read(buf)
				if n > 0 {
					q <- chunk{time.Now().Add(oneWay), buf[:n]}
				}
				if err != nil {
					return
				}
			}
		}()
		var next time.Time
		for c := range q {
			if d := time.Until(c.at); d > 0 {
				time.Sleep(d)
			}
			if rate > 0 {
				if now := time.Now(); next.Before(now) {
					next = now
				}
				next = next.Add(time.Duration(float64(len(c.b)) / rate * float64(time.Second)))
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
			}
			if _, err := dst.Write(c.b); err != nil {
				break
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				s, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", target))
				if err != nil {
					c.Close()
					return
				}
				done := make(chan struct{})
				go func() { pipe(s, c); close(done) }()
				pipe(c, s)
				<-done
				c.Close()
				s.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
