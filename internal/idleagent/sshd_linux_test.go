package idleagent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/link"
	"github.com/dockbridge/dockbridge/internal/testenv"
)

// TestMain plays the probe when the test binary runs as `dockbridge-server idle status
// [--own-connection] DIR DURATION` over SSH (TestSSHDSource links itself under that name): as
// the real one (probe), it marks its connection in DIR only with the flag. It plays the laptop
// agent's link session as `dockbridge-server local session` (TestLaptopAgentLink).
func TestMain(m *testing.M) {
	// A probe slow to start (a loaded machine), with a last argument mark-after=DURATION,
	// sleeps that long before it goes on (and marks its connection).
	if n := len(os.Args); n >= 4 && isProbe(os.Args) && strings.HasPrefix(os.Args[n-1], "mark-after=") {
		d, _ := time.ParseDuration(strings.TrimPrefix(os.Args[n-1], "mark-after="))
		time.Sleep(d)
		os.Args = os.Args[:n-1]
	}
	if link.IsSession(os.Args) {
		// The laptop agent's link session: marks its login, then echoes (traffic both ways);
		// told the server goes down (linkGoingDown), says so and ends.
		mark, err := MarkLink("")
		goingDown := make(chan os.Signal, 1)
		signal.Notify(goingDown, linkGoingDown)
		go func() {
			<-goingDown
			_, _ = os.Stdout.WriteString("going-down\n")
			if err == nil {
				os.Remove(mark)
			}
			os.Exit(0)
		}()
		_, _ = io.Copy(os.Stdout, os.Stdin)
		if err == nil {
			os.Remove(mark)
		}
		return
	}
	if len(os.Args) >= 5 && isProbe(os.Args) {
		args := os.Args[3:]
		own := args[0] == OwnConnectionFlag
		if own {
			args = args[1:]
			if err := MarkProbe("", args[0]); err != nil {
				fmt.Fprintln(os.Stderr, "probe:", err)
				os.Exit(1)
			}
		}
		d, _ := time.ParseDuration(args[1])
		time.Sleep(d)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sshdRig is a real sshd started by the test, a client key, and the ssh client's options.
type sshdRig struct {
	t    *testing.T
	dir  string
	port int
	pid  int
	key  string
	cm   string
	logs *io.PipeReader // sshd's log lines (-e), for Logins
}

func startSSHD(t *testing.T) *sshdRig {
	t.Helper()
	var missing []string
	if os.Getuid() != 0 {
		missing = append(missing, "root (sshd runs as root)")
	}
	for _, tool := range []string{"/usr/sbin/sshd", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install openssh-server openssh-client)")
		}
	}
	testenv.Require(t, "watching a real sshd needs", missing)
	dir := t.TempDir()
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "user.pub"))
	must(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
	must(t, os.MkdirAll("/run/sshd", 0o755))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile none
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxSessions 50
`, port, filepath.Join(dir, "host"), filepath.Join(dir, "authorized_keys"))
	must(t, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600))
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var log strings.Builder
	pr, pw := io.Pipe()
	out := io.MultiWriter(&log, pw)
	cmd.Stdout, cmd.Stderr = out, out
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		pw.Close()
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &sshdRig{t: t, dir: dir, port: port, pid: cmd.Process.Pid, key: filepath.Join(dir, "user"), cm: filepath.Join(dir, "cm"), logs: pr}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ssh is an ssh command to the rig; shared uses the control master.
func (r *sshdRig) ssh(shared bool, args ...string) *exec.Cmd {
	a := []string{"-F", "/dev/null", "-i", r.key, "-p", fmt.Sprint(r.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}
	if shared {
		a = append(a, "-o", "ControlPath="+r.cm)
	} else {
		a = append(a, "-o", "ControlMaster=no", "-o", "ControlPath=none")
	}
	return exec.Command("ssh", append(append(a, "root@127.0.0.1"), args...)...)
}

func (r *sshdRig) run(shared bool, args ...string) {
	r.t.Helper()
	if out, err := r.ssh(shared, args...).CombinedOutput(); err != nil {
		r.t.Fatalf("ssh %v: %v %s", args, err, out)
	}
}

// watch is what the agent watches sshd with: /proc and the log.
type watch struct {
	s *SSHD
	l *Logins
}

// look is one look of both, merged, failing the test on error.
func look(t *testing.T, w watch) Look {
	t.Helper()
	a, err := w.s.Look(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.l.Look(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.Happened = append(a.Happened, b.Happened...)
	return a
}

func quiet(l Look) bool { return len(l.Ongoing)+len(l.Happened) == 0 }

func happened(l Look, what string) bool {
	return slices.ContainsFunc(l.Happened, func(h string) bool { return strings.Contains(h, what) })
}

func reasons(l Look) string {
	var out []string
	for _, r := range l.Ongoing {
		out = append(out, r)
	}
	return strings.Join(out, " | ")
}

// TestSSHDSource runs the sessions, forwards and connections the agent must tell apart against
// a real sshd and checks each look.
func TestSSHDSource(t *testing.T) {
	r := startSSHD(t)
	probes := filepath.Join(r.dir, "probes")
	s := watch{&SSHD{Listener: r.pid, ProbeDir: probes}, &Logins{ProbeDir: probes, Lines: func(context.Context) (io.ReadCloser, error) { return r.logs, nil }}}
	if l := look(t, s); !quiet(l) {
		t.Fatalf("nothing connected yet: %+v", l)
	}

	// A shared connection (ControlPersist), with keepalives every second: new once, then idle.
	master := r.ssh(true, "-M", "-N", "-o", "ServerAliveInterval=1")
	must(t, master.Start())
	t.Cleanup(func() { _ = master.Process.Kill(); _ = master.Wait() })
	waitFor(t, "the control socket", func() bool { _, err := os.Stat(r.cm); return err == nil })
	time.Sleep(300 * time.Millisecond) // authenticated
	if l := look(t, s); !quiet(l) {
		t.Fatalf("a new connection is pending for one look (it may be a probe): %+v", l)
	}
	if l := look(t, s); len(l.Ongoing) != 0 || !happened(l, "a new SSH connection from 127.0.0.1") || !happened(l, "an SSH login from 127.0.0.1") {
		t.Fatalf("the new master after one look: %+v", l)
	}
	for range 3 {
		time.Sleep(1100 * time.Millisecond)
		if l := look(t, s); !quiet(l) {
			t.Fatalf("an idle shared connection with keepalives is no activity: %+v", l)
		}
	}

	// A command in flight through the shared connection, then its end. It runs until the test
	// ends it (a fixed sleep could end before a look on a loaded machine).
	gate := filepath.Join(r.dir, "end-the-command")
	held := "until [ -e " + gate + " ]; do sleep 0.1; done"
	sleep := r.ssh(true, held)
	must(t, sleep.Start())
	t.Cleanup(func() { _ = os.WriteFile(gate, nil, 0o600) }) // ends it when the test fails first
	waitFor(t, "the session", func() bool { return len(look(t, s).Ongoing) > 0 })
	if l := look(t, s); !strings.Contains(reasons(l), `SSH command "until [ -e `) || !strings.Contains(reasons(l), "from 127.0.0.1") {
		t.Fatalf("command in flight: %+v", l)
	}
	must(t, os.WriteFile(gate, nil, 0o600))
	must(t, sleep.Wait())
	if l := look(t, s); len(l.Ongoing) != 0 {
		t.Fatalf("after the command: %+v", l)
	}

	// A command that starts and ends between two looks.
	r.run(true, "true")
	if l := look(t, s); len(l.Happened) != 1 || !strings.Contains(l.Happened[0], "ended") {
		t.Fatalf("a command between two looks: %+v", l)
	}
	if l := look(t, s); !quiet(l) {
		t.Fatalf("once: %+v", l)
	}

	// docker's helper is described as a docker command.
	docker := r.ssh(true, "exec -a 'docker system dial-stdio' sleep 2")
	must(t, docker.Start())
	waitFor(t, "docker's session", func() bool { return strings.Contains(reasons(look(t, s)), "docker command through the context") })
	must(t, docker.Wait())
	look(t, s)

	// The probe, in its own connection: no activity, then or after.
	self, err := os.Executable()
	must(t, err)
	probeBin := filepath.Join(r.dir, ServerBinaryName)
	must(t, os.Symlink(self, probeBin))
	probe := r.ssh(false, probeBin, "idle", "status", OwnConnectionFlag, probes, "1500ms")
	must(t, probe.Start())
	for range 4 {
		time.Sleep(400 * time.Millisecond)
		if l := look(t, s); !quiet(l) {
			t.Fatalf("the probe is no activity: %+v", l)
		}
	}
	must(t, probe.Wait())
	for range 2 {
		if l := look(t, s); !quiet(l) {
			t.Fatalf("after the probe: %+v", l)
		}
	}
	// A short probe, between two looks, is no activity either.
	r.run(false, probeBin, "idle", "status", OwnConnectionFlag, probes, "0s")
	for range 2 {
		time.Sleep(200 * time.Millisecond)
		if l := look(t, s); !quiet(l) {
			t.Fatalf("a short probe: %+v", l)
		}
	}

	// A probe slow to mark its connection (on a loaded machine its binary can take longer than
	// a look to start) is no activity either: its login is judged a look after it was logged,
	// before the probe's own mark exists.
	slow := r.ssh(false, probeBin, "idle", "status", OwnConnectionFlag, probes, "0s", "mark-after=1200ms")
	must(t, slow.Start())
	for range 4 {
		time.Sleep(400 * time.Millisecond)
		if l := look(t, s); !quiet(l) {
			t.Fatalf("a probe slow to mark its connection is no activity: %+v", l)
		}
	}
	must(t, slow.Wait())
	for range 2 {
		if l := look(t, s); !quiet(l) {
			t.Fatalf("after the slow probe: %+v", l)
		}
	}

	// A whole connection between two looks (no shared connection).
	r.run(false, "true")
	time.Sleep(200 * time.Millisecond) // sshd has logged the login
	l1, l2 := look(t, s), look(t, s)
	if !quiet(l1) || len(l2.Ongoing) != 0 || !happened(l2, "an SSH login from 127.0.0.1") {
		t.Fatalf("a short connection (seen in the log only, a look later): %+v then %+v", l1, l2)
	}

	// A connection that never authenticates (a port scan) is nothing.
	scan, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
	must(t, err)
	defer scan.Close()
	for range 2 {
		time.Sleep(200 * time.Millisecond)
		if l := look(t, s); !quiet(l) {
			t.Fatalf("an unauthenticated connection: %+v", l)
		}
	}

	// A TCP port forward in use through the shared connection.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { b := make([]byte, 1); _, _ = c.Read(b); c.Close() }()
		}
	}()
	local, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	localAddr := local.Addr().String()
	local.Close()
	r.run(true, "-O", "forward", "-L", localAddr+":"+target.Addr().String())
	look(t, s) // the -O forward command's own session
	if l := look(t, s); !quiet(l) {
		t.Fatalf("a forward set up but not used: %+v", l)
	}
	fc, err := net.Dial("tcp", localAddr)
	must(t, err)
	waitFor(t, "the forward", func() bool {
		return strings.Contains(reasons(look(t, s)), "port forward to "+target.Addr().String()+" (tcp)")
	})
	fc.Close()
	waitFor(t, "the forward's end", func() bool { return len(look(t, s).Ongoing) == 0 })

	// A Unix-socket forward in use (how /var/run/docker.sock is forwarded).
	sock := filepath.Join(r.dir, "app.sock")
	ul, err := net.Listen("unix", sock)
	must(t, err)
	defer ul.Close()
	go func() {
		for {
			c, err := ul.Accept()
			if err != nil {
				return
			}
			go func() { b := make([]byte, 1); _, _ = c.Read(b); c.Close() }()
		}
	}()
	localSock := filepath.Join(r.dir, "local.sock")
	r.run(true, "-O", "forward", "-L", localSock+":"+sock)
	uc, err := net.Dial("unix", localSock)
	must(t, err)
	waitFor(t, "the Unix forward", func() bool { return strings.Contains(reasons(look(t, s)), "port forward to "+sock+" (unix)") })
	uc.Close()
	waitFor(t, "the Unix forward's end", func() bool { return len(look(t, s).Ongoing) == 0 })

	// Before the delete, the idle master is closed: the client's master exits.
	if n := s.s.CloseIdle(); n != 1 {
		t.Fatalf("CloseIdle closed %d connections, want the master", n)
	}
	done := make(chan error, 1)
	go func() { done <- master.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the client's master still runs after CloseIdle")
	}
}

// TestPlainProbeLeavesTheConnectionCounted runs the probe without OwnConnectionFlag over the
// shared connection (a user's `docker dockbridge ssh -- dockbridge-server idle status`): the
// probe itself is no activity, but the docker commands on that connection, during and after
// it, still are; it marks nothing.
func TestPlainProbeLeavesTheConnectionCounted(t *testing.T) {
	r := startSSHD(t)
	probes := filepath.Join(r.dir, "probes")
	s := watch{&SSHD{Listener: r.pid, ProbeDir: probes}, &Logins{ProbeDir: probes, Lines: func(context.Context) (io.ReadCloser, error) { return r.logs, nil }}}
	master := r.ssh(true, "-M", "-N")
	must(t, master.Start())
	t.Cleanup(func() { _ = master.Process.Kill(); _ = master.Wait() })
	waitFor(t, "the control socket", func() bool { _, err := os.Stat(r.cm); return err == nil })
	time.Sleep(300 * time.Millisecond) // authenticated
	look(t, s)
	look(t, s) // the new connection, counted once (the checks below look at what is ongoing)
	if l := look(t, s); len(l.Ongoing) != 0 {
		t.Fatalf("the idle master: %+v", l)
	}

	self, err := os.Executable()
	must(t, err)
	probeBin := filepath.Join(r.dir, ServerBinaryName)
	must(t, os.Symlink(self, probeBin))
	probe := r.ssh(true, probeBin, "idle", "status", probes, "1500ms")
	must(t, probe.Start())
	time.Sleep(400 * time.Millisecond)
	if l := look(t, s); len(l.Ongoing) != 0 {
		t.Fatalf("the plain probe's own session is no activity: %+v", l)
	}
	docker := r.ssh(true, "exec -a 'docker system dial-stdio' sleep 2")
	must(t, docker.Start())
	waitFor(t, "the docker command beside the probe", func() bool {
		return strings.Contains(reasons(look(t, s)), "docker command through the context")
	})
	must(t, probe.Wait())
	must(t, docker.Wait())
	if ents, _ := os.ReadDir(probes); len(ents) != 0 {
		t.Fatalf("a plain probe marked its connection: %v", ents)
	}

	// After the probe, on the same connection: a docker build, `logs -f`...
	docker = r.ssh(true, "exec -a 'docker system dial-stdio' sleep 2")
	must(t, docker.Start())
	waitFor(t, "the docker command after the probe", func() bool {
		return strings.Contains(reasons(look(t, s)), "docker command through the context")
	})
	must(t, docker.Wait())
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
