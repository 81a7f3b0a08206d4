package localagent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/link"
	"github.com/dockbridge/dockbridge/internal/linkserver"
	"github.com/dockbridge/dockbridge/internal/sshmux"
	"github.com/dockbridge/dockbridge/internal/sshmux/sshmuxtest"
	"github.com/dockbridge/dockbridge/internal/testproc"
)

// The agent against a real sshd on this machine, through a real ControlMaster, with the server
// end (internal/linkserver) run by sshd as this test binary (TestMain's helper mode), a fake
// Docker Engine API on a Unix socket, and shared folders synchronized for real. The laptop and
// the "server" are one machine here, so a published port is taken on the laptop: the forward
// takes the nearest free one. What needs a booted server (mounts at the laptop's path, the bind
// check in dockerd, the idle agent) is in internal/e2e.

func TestMain(m *testing.M) {
	if os.Getenv("LINKSERVER_HELPER") == "1" {
		os.Exit(helperServer())
	}
	if os.Getenv("AGENT_HELPER") == "1" && len(os.Args) == 5 && os.Args[1] == "agent" && os.Args[2] == "run" {
		// `docker-dockbridge agent run --name ENV`, as Ensure starts it.
		p, err := host.NewPaths(os.Getenv("DOCKER_CONFIG"))
		if err == nil {
			err = RunProcess(context.Background(), p, os.Args[4])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperServer is the server end, configured by the environment.
func helperServer() int {
	linkserver.DockerPIDFile = os.Getenv("HELPER_DOCKER_PID")
	_ = os.Setenv("MUTAGEN_DATA_DIRECTORY", filepath.Join(os.Getenv("HELPER_ROOT"), "mutagen"))
	goingDown := make(chan os.Signal, 1)
	signal.Notify(goingDown, linkserver.GoingDownSignal)
	s := &linkserver.Server{
		GoingDown:    goingDown,
		Shares:       &linkserver.Shares{Root: os.Getenv("HELPER_ROOT"), Mounter: shownAlready{}},
		DockerSocket: os.Getenv("HELPER_DOCKER_SOCKET"),
		IdleState:    os.Getenv("HELPER_IDLE"),
		Forwards:     os.Getenv("HELPER_FORWARDS"),
		Log:          log.New(os.Stderr, "helper: ", 0),
	}
	if err := s.Serve(context.Background(), stdio{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// shownAlready: the laptop's folder is on this very machine; nothing is mounted over it.
type shownAlready struct{}

func (shownAlready) Bind(context.Context, string, string) error { return nil }
func (shownAlready) Unbind(context.Context, string) error       { return nil }
func (shownAlready) IsMountPoint(string) (bool, error)          { return true, nil }

type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error                { os.Stdin.Close(); return os.Stdout.Close() }

// fakeEngine serves GET /containers/json and a streaming GET /events.
type fakeEngine struct {
	mu         sync.Mutex
	containers []map[string]any
	subs       []chan struct{}
}

func (e *fakeEngine) set(cs ...map[string]any) {
	e.mu.Lock()
	e.containers = cs
	subs := e.subs
	e.mu.Unlock()
	for _, s := range subs {
		select {
		case s <- struct{}{}:
		default:
		}
	}
}

func (e *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/containers/json":
		e.mu.Lock()
		cs := e.containers
		e.mu.Unlock()
		if cs == nil {
			cs = []map[string]any{}
		}
		_ = json.NewEncoder(w).Encode(cs)
	case "/events":
		ch := make(chan struct{}, 1)
		e.mu.Lock()
		e.subs = append(e.subs, ch)
		e.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-ch:
				fmt.Fprintln(w, `{"Type":"container","Action":"start"}`)
				w.(http.Flusher).Flush()
			}
		}
	default:
		http.NotFound(w, r)
	}
}

func publishing(name string, port int) map[string]any {
	return map[string]any{"Id": name, "Names": []string{"/" + name}, "Ports": []map[string]any{
		{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"},
		{"IP": "::", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"},
	}}
}

type rig struct {
	t        testing.TB
	paths    host.Paths
	env      string
	root     string // the server's shares root
	forwards string
	engine   *fakeEngine
	agent    *Agent
	cancel   context.CancelFunc
	done     chan error
	logBuf   *syncBuffer
	sshd     *sshmuxtest.Server
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRig(t testing.TB) *rig {
	return newRigVia(t, sshmuxtest.Start(t), 0)
}

// newRigVia is a rig whose agent reaches sshd on port (0: sshd's own; else a proxy's).
func newRigVia(t testing.TB, sshd *sshmuxtest.Server, port int) *rig {
	t.Helper()
	if port == 0 {
		port = sshd.Port
	}
	dir := t.TempDir()
	paths, err := host.NewPaths(filepath.Join(dir, "docker"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, paths: paths, env: "t", root: filepath.Join(dir, "server"), forwards: filepath.Join(dir, "forwards.json"),
		engine: &fakeEngine{}, logBuf: &syncBuffer{}, sshd: sshd}
	hostKey, err := os.ReadFile(filepath.Join(sshd.Dir, "host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(paths.EnvDir(r.env), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := host.WriteSSHConfig(paths, host.SSHHost{Env: r.env, Addr: "127.0.0.1", Port: port, User: "root",
		KeyFile: filepath.Join(sshd.Dir, "user"), HostKey: string(hostKey)}); err != nil {
		t.Fatal(err)
	}
	// After the agent's stop (registered later, so run before): any ssh master of its
	// ControlPath, and anything started with this rig's folder, is ended.
	testproc.Cleanup(t, dir+"/", r.controlPath())
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.engine}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	pidFile := filepath.Join(dir, "docker.pid")
	must(t, os.WriteFile(pidFile, []byte(fmt.Sprint(os.Getpid())), 0o644))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := fmt.Sprintf("exec env LINKSERVER_HELPER=1 HELPER_ROOT=%s HELPER_DOCKER_SOCKET=%s HELPER_DOCKER_PID=%s HELPER_IDLE=%s HELPER_FORWARDS=%s %s",
		r.root, sock, pidFile, filepath.Join(dir, "idle.json"), r.forwards, exe)
	r.agent = &Agent{Paths: paths, Env: r.env, Log: log.New(r.logBuf, "", log.Lmicroseconds), Command: cmd, Notify: func(string) {}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s\nsshd log:\n%s", r.logBuf.String(), sshd.Log())
		}
	})
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.agent.Run(ctx) }()
	r.t.Cleanup(r.stop)
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		r.t.Error("the agent did not end within 20 s")
	}
	r.cancel = nil
	_ = r.sshd.SSH("-F", os.DevNull, "-o", "ControlPath="+r.controlPath(), "-O", "exit", "x").Run()
}

func (r *rig) controlPath() string {
	_, cp, err := host.SSHOptions(r.paths, r.env)
	if err != nil {
		r.t.Fatal(err)
	}
	return cp
}

// eventually polls cond for up to d.
func (r *rig) eventually(d time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) status() Status { return r.agent.Status() }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// backend is a "container's" published port on the server: an HTTP server on 127.0.0.1.
func backend(t *testing.T, body string) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func get(addr string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestPortsFollowContainersThroughTheSharedConnection(t *testing.T) {
	r := newRig(t)
	r.start()
	r.eventually(20*time.Second, "attached", func() bool { return r.status().State == StateAttached })

	// A container publishes a port: the laptop has it (the same port is taken here: it is the
	// server's own listener on this one machine, so the nearest free one).
	port := backend(t, "hello from the server")
	r.engine.set(publishing("web", port))
	var ps PortStatus
	r.eventually(10*time.Second, "the port forwarded", func() bool {
		st := r.status().Ports
		if len(st) == 1 && st[0].Local != "" {
			ps = st[0]
			return true
		}
		return false
	})
	if ps.Port != port || ps.Local == fmt.Sprintf("localhost:%d", port) || !strings.Contains(ps.Note, "taken") || len(ps.Containers) != 1 || ps.Containers[0] != "web" {
		t.Fatalf("forward %+v: want server port %d on another local port, with a note, for web", ps, port)
	}
	local := strings.TrimPrefix(ps.Local, "localhost:")
	for i := range 3 {
		body, err := get("127.0.0.1:" + local)
		if err != nil || body != "hello from the server" {
			t.Fatalf("request %d through the forward: %q, %v", i, body, err)
		}
	}
	if body, err := get("[::1]:" + local); err == nil && body != "hello from the server" {
		t.Fatalf("through ::1: %q", body)
	}
	// What the forward carried reaches the server's record for its idle agent.
	r.eventually(5*time.Second, "the forwards' record", func() bool {
		b, err := os.ReadFile(r.forwards)
		var rec link.ForwardsRecord
		return err == nil && json.Unmarshal(b, &rec) == nil && rec.Connections >= 3 && rec.Bytes > 0
	})

	// The container stops: the port goes.
	r.engine.set()
	r.eventually(10*time.Second, "the forward closed", func() bool { return len(r.status().Ports) == 0 })
	if _, err := get("127.0.0.1:" + local); err == nil {
		t.Fatal("the port still answers after its container stopped")
	}

	// The shared connection is lost (ssh -O exit: what a sleep that outlasts the keepalives
	// does): the agent makes one again by itself, and the port comes back.
	r.engine.set(publishing("web", port))
	r.eventually(10*time.Second, "the forward back", func() bool { return len(r.status().Ports) == 1 })
	if out, err := r.sshd.SSH("-F", os.DevNull, "-o", "ControlPath="+r.controlPath(), "-O", "exit", "x").CombinedOutput(); err != nil {
		t.Fatalf("ssh -O exit: %v: %s", err, out)
	}
	r.eventually(5*time.Second, "the agent noticed", func() bool { return r.status().State != StateAttached || len(r.status().Ports) == 0 })
	r.eventually(30*time.Second, "attached again", func() bool { return r.status().State == StateAttached && len(r.status().Ports) == 1 })
	r.eventually(10*time.Second, "the port answers again", func() bool {
		st := r.status().Ports
		if len(st) != 1 || st[0].Local == "" {
			return false
		}
		body, err := get("127.0.0.1:" + strings.TrimPrefix(st[0].Local, "localhost:"))
		return err == nil && body == "hello from the server"
	})

	// A laptop that sleeps through its connection: the master hangs (SIGSTOP, as everything on
	// a sleeping laptop), then dies without cleaning up (SIGKILL: its socket stays behind, as
	// after a crash). The agent makes the connection again (its ssh, ControlMaster auto from the
	// environment's options, finds the socket stale and takes its place), and the port answers.
	mpid, err := (&sshmux.Master{Path: r.controlPath()}).Alive()
	must(t, err)
	must(t, syscall.Kill(mpid, syscall.SIGSTOP))
	time.Sleep(3 * time.Second)
	must(t, syscall.Kill(mpid, syscall.SIGKILL))
	if _, err := os.Stat(r.controlPath()); err != nil {
		t.Fatalf("the killed master's socket: %v (the test needs it left behind)", err)
	}
	r.eventually(30*time.Second, "attached again after the sleep, through a new master", func() bool {
		pid, err := (&sshmux.Master{Path: r.controlPath(), Timeout: time.Second}).Alive()
		return err == nil && pid != mpid && r.status().State == StateAttached && len(r.status().Ports) == 1
	})
	r.eventually(10*time.Second, "the port answers after the sleep", func() bool {
		st := r.status().Ports
		if len(st) != 1 || st[0].Local == "" {
			return false
		}
		body, err := get("127.0.0.1:" + strings.TrimPrefix(st[0].Local, "localhost:"))
		return err == nil && body == "hello from the server"
	})

	// down: the agent waits for another server and does not reconnect to this one, neither
	// through the connection it had nor by making one when that one ends with the server.
	r.agent.ServerDown()
	r.eventually(10*time.Second, "waiting", func() bool { return r.status().State == StateWaiting })
	if n := len(r.status().Ports); n != 0 {
		t.Fatalf("%d forwards while the server is down", n)
	}
	time.Sleep(1500 * time.Millisecond)
	if st := r.status(); st.State != StateWaiting {
		t.Fatalf("the agent left waiting by itself: %+v", st)
	}
	if out, err := r.sshd.SSH("-F", os.DevNull, "-o", "ControlPath="+r.controlPath(), "-O", "exit", "x").CombinedOutput(); err != nil {
		t.Fatalf("ssh -O exit: %v: %s", err, out)
	}
	time.Sleep(2500 * time.Millisecond)
	if st := r.status(); st.State != StateWaiting {
		t.Fatalf("the agent left waiting by itself: %+v", st)
	}
	// A docker command makes the shared connection again (after a wake): the agent attaches.
	if out, err := r.sshd.SSH("-F", os.DevNull, "-o", "ControlPath="+r.controlPath(), "-o", "ControlMaster=yes", "-o", "ControlPersist=10m",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-i", filepath.Join(r.sshd.Dir, "user"),
		"-p", fmt.Sprint(r.sshd.Port), "-f", "-N", "root@127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("a master as docker's ssh makes it: %v: %s", err, out)
	}
	r.eventually(10*time.Second, "attached after the wake", func() bool { return r.status().State == StateAttached && len(r.status().Ports) == 1 })
}

// The server's idle agent, about to close the laptop's connection and stop the server, tells
// the link session first (linkserver.GoingDownSignal): the agent drops its forwards and waits for
// the next server, neither through the connection it has nor by making one.
func TestServerGoingDownReachesTheAgent(t *testing.T) {
	r := newRig(t)
	r.start()
	r.eventually(20*time.Second, "attached", func() bool { return r.status().State == StateAttached })
	r.engine.set(publishing("web", backend(t, "hello")))
	r.eventually(10*time.Second, "the port forwarded", func() bool { return len(r.status().Ports) == 1 })
	sessions := testproc.Find("HELPER_ROOT=" + r.root + "\x00")
	if len(sessions) != 1 {
		t.Fatalf("the server end's link sessions: %+v, want one", sessions)
	}
	must(t, syscall.Kill(sessions[0].PID, linkserver.GoingDownSignal))
	r.eventually(10*time.Second, "waiting with no forwards", func() bool {
		st := r.status()
		return st.State == StateWaiting && len(st.Ports) == 0
	})
	time.Sleep(2500 * time.Millisecond)
	if st := r.status(); st.State != StateWaiting {
		t.Fatalf("the agent left waiting by itself: %+v", st)
	}
	if !strings.Contains(r.logBuf.String(), "the server is going down") {
		t.Fatalf("the agent did not log the server's going down:\n%s", r.logBuf.String())
	}
}

func TestSharedFolderBothWaysDeletesAndConflicts(t *testing.T) {
	r := newRig(t)
	laptop := filepath.Join(t.TempDir(), "project")
	for i := range 200 {
		p := filepath.Join(laptop, fmt.Sprintf("pkg%02d", i%20), fmt.Sprintf("f%03d.js", i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(strings.Repeat("x", i)), 0o644))
	}
	must(t, SaveConfig(FilesFor(r.paths, r.env), Config{Forward: true, Shares: []ShareConfig{{Path: laptop}}}))
	r.start()
	copyRoot := filepath.Join(r.root, "files", laptop)
	shareState := func() ShareStatus {
		for _, s := range r.status().Shares {
			if s.Path == laptop {
				return s
			}
		}
		return ShareStatus{}
	}
	r.eventually(60*time.Second, "the first synchronization", func() bool { return shareState().State == "ready" })
	if st := shareState(); st.Files != 200 {
		t.Fatalf("ready with %d files, want 200: %+v", st.Files, st)
	}
	b, err := os.ReadFile(filepath.Join(copyRoot, "pkg07", "f187.js"))
	if err != nil || len(b) != 187 {
		t.Fatalf("the server's copy: %d bytes, %v", len(b), err)
	}
	reg, err := (&linkserver.Shares{Root: r.root}).Load()
	if err != nil || len(reg.Shares) != 1 || reg.Shares[0].State != linkserver.StateReady {
		t.Fatalf("the server's registry: %+v, %v", reg, err)
	}

	seen := func(path, want string) func() bool {
		return func() bool {
			b, err := os.ReadFile(path)
			return err == nil && string(b) == want
		}
	}
	gone := func(path string) func() bool {
		return func() bool { _, err := os.Stat(path); return os.IsNotExist(err) }
	}
	// An edit on the laptop reaches the server; one on the server (a container) the laptop.
	must(t, os.WriteFile(filepath.Join(laptop, "pkg01", "f001.js"), []byte("edited on the laptop"), 0o644))
	r.eventually(10*time.Second, "the laptop's edit on the server", seen(filepath.Join(copyRoot, "pkg01", "f001.js"), "edited on the laptop"))
	must(t, os.MkdirAll(filepath.Join(copyRoot, "out"), 0o755))
	must(t, os.WriteFile(filepath.Join(copyRoot, "out", "built.txt"), []byte("written by a container"), 0o644))
	r.eventually(10*time.Second, "the server's file on the laptop", seen(filepath.Join(laptop, "out", "built.txt"), "written by a container"))
	// Deletes, both ways.
	must(t, os.Remove(filepath.Join(laptop, "pkg02", "f002.js")))
	r.eventually(10*time.Second, "the laptop's delete on the server", gone(filepath.Join(copyRoot, "pkg02", "f002.js")))
	must(t, os.Remove(filepath.Join(copyRoot, "pkg03", "f003.js")))
	r.eventually(10*time.Second, "the server's delete on the laptop", gone(filepath.Join(laptop, "pkg03", "f003.js")))

	// A conflict: while the agent is away (the laptop slept), both sides change one file.
	r.stop()
	must(t, os.WriteFile(filepath.Join(laptop, "pkg04", "f004.js"), []byte("the laptop's version"), 0o644))
	must(t, os.WriteFile(filepath.Join(copyRoot, "pkg04", "f004.js"), []byte("the server's version"), 0o644))
	// And a change on one side only, which must go through anyway.
	must(t, os.WriteFile(filepath.Join(laptop, "pkg05", "f005.js"), []byte("changed while away"), 0o644))
	r.start()
	r.eventually(30*time.Second, "the change made while away", seen(filepath.Join(copyRoot, "pkg05", "f005.js"), "changed while away"))
	r.eventually(30*time.Second, "the conflict reported", func() bool { return len(shareState().Conflicts) == 1 })
	if c := shareState().Conflicts[0]; c != "pkg04/f004.js" {
		t.Fatalf("conflict at %q, want pkg04/f004.js", c)
	}
	time.Sleep(time.Second)
	if b, _ := os.ReadFile(filepath.Join(laptop, "pkg04", "f004.js")); string(b) != "the laptop's version" {
		t.Fatalf("the laptop's version was replaced: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(copyRoot, "pkg04", "f004.js")); string(b) != "the server's version" {
		t.Fatalf("the server's version was replaced: %q", b)
	}
	// Resolving it on one side (the user keeps the laptop's version by saving it again as is
	// on the server side's content... here: the server's copy takes the laptop's content).
	must(t, os.WriteFile(filepath.Join(copyRoot, "pkg04", "f004.js"), []byte("the laptop's version"), 0o644))
	r.eventually(30*time.Second, "the conflict resolved", func() bool { return len(shareState().Conflicts) == 0 })
}

// A docker command makes the shared connection while the agent's ssh is connecting (right after
// a wake): the agent's ssh finds the socket taken and goes on without multiplexing, in the
// background. The agent ends that second connection and attaches through the other master.
func TestAgentEndsItsConnectionWhenAnotherMasterWins(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	proxy, agentSSH := filepath.Join(dir, "proxy.sh"), filepath.Join(dir, "agent-ssh.sh")
	sshArgs := fmt.Sprintf("-F /dev/null -o ControlPath=%s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -i %s -p %d",
		r.controlPath(), filepath.Join(r.sshd.Dir, "user"), r.sshd.Port)
	must(t, os.WriteFile(proxy, []byte(fmt.Sprintf(`#!/bin/sh
# A docker command's master takes the socket first; then this carries the agent's ssh to sshd.
ssh %[1]s -o ControlMaster=yes -o ControlPersist=10m -f -N root@127.0.0.1 || exit 1
exec ssh %[1]s -W 127.0.0.1:%[2]d root@127.0.0.1
`, sshArgs, r.sshd.Port)), 0o755))
	must(t, os.WriteFile(agentSSH, []byte("#!/bin/sh\nexec ssh -o ProxyCommand="+proxy+" \"$@\"\n"), 0o755))
	r.agent.SSH = agentSSH
	r.start()
	r.eventually(20*time.Second, "attached", func() bool { return r.status().State == StateAttached })
	if !strings.Contains(r.logBuf.String(), "another shared SSH connection came first") {
		t.Fatalf("the agent's ssh did not lose the race the test arranged:\n%s", r.logBuf.String())
	}
	r.eventually(5*time.Second, "no second connection left", func() bool {
		for _, p := range testproc.Find("ProxyCommand=" + proxy) {
			if !strings.HasPrefix(p.Command, "/bin/sh") {
				return false
			}
		}
		return true
	})
}
