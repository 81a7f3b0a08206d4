// Package localagent is the laptop's side of making a dockbridge server feel local: one
// background process per environment (`docker-dockbridge agent run --name ENV`) that puts every
// port the server's containers publish on this laptop's loopback, and synchronizes the shared
// folders, both through one background session (internal/link) on the environment's shared SSH
// connection (its ControlMaster, the one docker commands use).
//
// Lifecycle. `up` starts it (unless forwarding is off and nothing is shared) and `share add`
// too; it keeps running while the environment exists, and ends with `destroy` or `agent stop`.
// While the server is up it is attached: its session is open, forwards listen, folders
// synchronize. When the connection is lost (the laptop slept, the network changed) it reconnects
// by itself, straight to the server's address with the pinned key, never through the wake: so it
// never brings a server up. When the server is going (`down`, or the idle agent says it goes
// down) or cannot be reached for 10 minutes, it waits: forwards closed, synchronization paused,
// until a new server appears (a wake or `up` rewrites the environment's SSH configuration) or a
// docker command has made the shared connection again. Then it attaches again: the same ports
// come back, the folders resume where they were.
//
// Its session and its traffic are no activity for the server's idle agent; the connections its
// forwards carry are (reported to the server once a second while there are any).
package localagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mutagen-io/mutagen/pkg/multiplexing"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/link"
	"github.com/dockbridge/dockbridge/internal/sshmux"
)

// States of the agent.
const (
	StateConnecting = "connecting" // reaching the server
	StateAttached   = "attached"   // the session is up
	StateWaiting    = "waiting"    // no server now: waiting for a wake or up
)

// Agent is one environment's laptop agent.
type Agent struct {
	Paths host.Paths
	Env   string
	Log   *log.Logger
	// SSH is the ssh binary (default "ssh").
	SSH string
	// Command is the link session's command on the server (default link.Command).
	Command string
	// GiveUpAfter is how long the agent tries to reach a server it lost before it waits for a
	// wake instead (default 10 min).
	GiveUpAfter time.Duration
	// Notify tells the user something (a forward on another port); nil: the desktop's
	// notifications where there are any.
	Notify func(msg string)

	files Files
	fwd   *Forwarder
	sync  *Syncer

	mu        sync.Mutex
	cfg       Config
	state     string
	since     time.Time
	lastErr   string
	server    string
	master    *sshmux.Master
	link      *linkSession
	engine    string
	ports     []link.Port // the server's last word on its ports
	goingDown bool
	masterPID int
	poke      chan struct{}
}

// linkSession is the open link.
type linkSession struct {
	mux   *multiplexing.Multiplexer
	conn  *link.Conn
	calls link.Calls
}

func (ls *linkSession) call(ctx context.Context, m link.Message) (link.Message, error) {
	return ls.calls.Call(ctx, ls.conn, m)
}

// Status is what `ports` and `share ls` show.
type Status struct {
	Env     string        `json:"env"`
	State   string        `json:"state"`
	Since   time.Time     `json:"since"`
	Server  string        `json:"server,omitempty"`
	Engine  string        `json:"engine,omitempty"`
	Error   string        `json:"error,omitempty"`
	Forward bool          `json:"forward"`
	Address string        `json:"address"`
	Ports   []PortStatus  `json:"ports"`
	Shares  []ShareStatus `json:"shares"`
	PID     int           `json:"pid"`
}

func (a *Agent) setState(s, errText string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != s {
		a.Log.Printf("state: %s", s)
		a.since = time.Now()
	}
	a.state, a.lastErr = s, errText
}

// Status is the agent's state now.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := Status{Env: a.Env, State: a.state, Since: a.since, Server: a.server, Engine: a.engine, Error: a.lastErr,
		Forward: a.cfg.Forward, Address: a.cfg.Address, PID: os.Getpid()}
	attached := a.link != nil && a.engine == "running"
	fwd, syn := a.fwd, a.sync
	a.mu.Unlock()
	if st.Address == "" {
		st.Address = "localhost"
	}
	st.Ports, st.Shares = []PortStatus{}, []ShareStatus{}
	if fwd != nil {
		st.Ports = fwd.Status()
	}
	if syn != nil {
		st.Shares = syn.Status(attached)
	}
	return st
}

func (a *Agent) alias() string { return host.SSHAlias(a.Env) }

func (a *Agent) currentLink() *linkSession {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.link
}

func (a *Agent) currentMaster() *sshmux.Master {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.master
}

// openStream opens a stream for a folder's synchronization on the current link.
func (a *Agent) openStream(ctx context.Context) (net.Conn, error) {
	ls := a.currentLink()
	if ls == nil {
		return nil, errors.New("not connected to the server")
	}
	return ls.mux.OpenStream(ctx)
}

// Poke makes the main loop look again at once (the configuration or the server changed).
func (a *Agent) Poke() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// Reload reads the configuration again and applies it.
func (a *Agent) Reload() error {
	cfg, err := LoadConfig(a.files)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.cfg
	a.cfg = cfg
	ls, engine, ports := a.link, a.engine, a.ports
	a.mu.Unlock()
	if old.Forward != cfg.Forward || old.Address != cfg.Address {
		a.fwd.Update(nil)
		a.fwd.Address = cfg.Address
		if cfg.Forward && ls != nil && engine == "running" {
			a.fwd.Update(ports)
		}
	}
	a.sync.Configure(cfg.Shares)
	if ls != nil && engine == "running" {
		go a.sync.Attached(context.Background(), ls)
	}
	return nil
}

// ServerDown is `down` telling the agent the server goes: wait for the next one.
func (a *Agent) ServerDown() {
	a.mu.Lock()
	a.goingDown = true
	ls := a.link
	a.mu.Unlock()
	if ls != nil {
		ls.mux.Close()
	}
	a.Poke()
}

// Run is the agent's life, until ctx ends or the environment is destroyed.
func (a *Agent) Run(ctx context.Context) error {
	if a.SSH == "" {
		a.SSH = "ssh"
	}
	if a.Command == "" {
		a.Command = link.Command
	}
	if a.GiveUpAfter == 0 {
		a.GiveUpAfter = 10 * time.Minute
	}
	a.files = FilesFor(a.Paths, a.Env)
	a.poke = make(chan struct{}, 1)
	cfg, err := LoadConfig(a.files)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	notify := a.Notify
	if notify == nil {
		notify = desktopNotify
	}
	fwd := &Forwarder{Address: cfg.Address, Master: a.currentMaster, Log: a.Log, Notify: notify}
	syn, err := newSyncer(ctx, a, a.files.SyncDir(), a.Log)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.fwd, a.sync = fwd, syn
	a.mu.Unlock()
	defer a.sync.Shutdown()
	a.sync.Configure(cfg.Shares)
	a.setState(StateConnecting, "")

	var failingSince time.Time
	// waiting is the server that went (its SSH configuration) and the shared connection the
	// agent had to it: until the configuration changes (a new server) or another connection
	// appears (a docker command made it, after a wake), the agent waits.
	var waiting struct {
		key string
		pid int
	}
	backoff := time.Second
	for ctx.Err() == nil {
		if _, err := os.Stat(a.Paths.EnvDir(a.Env)); err != nil {
			a.Log.Printf("the environment %q is gone (destroy): the agent ends", a.Env)
			return nil
		}
		opts, controlPath, err := host.SSHOptions(a.Paths, a.Env)
		if err != nil {
			a.setState(StateWaiting, "no server: `docker dockbridge up` makes one")
			a.wait(ctx, "", "", 0)
			continue
		}
		key := strings.Join(opts, "\x00")
		m := &sshmux.Master{Path: controlPath}
		a.mu.Lock()
		if a.goingDown {
			waiting.key, waiting.pid, a.goingDown = key, a.masterPID, false
		}
		a.mu.Unlock()
		pid, aliveErr := m.Alive()
		if waiting.key == key && (aliveErr != nil || pid == waiting.pid) {
			a.setState(StateWaiting, "the server went down: the next docker command wakes it (or `docker dockbridge up`)")
			a.wait(ctx, key, controlPath, waiting.pid)
			continue
		}
		if aliveErr != nil {
			a.setState(StateConnecting, a.lastErrText())
			if err := a.startMaster(ctx, opts); err != nil {
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				a.setState(StateConnecting, err.Error())
				if time.Since(failingSince) > a.GiveUpAfter {
					a.Log.Printf("the server has not answered for %s: waiting for a wake or up", a.GiveUpAfter)
					waiting.key, waiting.pid = key, 0
					continue
				}
				a.sleep(ctx, backoff)
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
			if pid, err = m.Alive(); err != nil {
				// ssh ran but no master answers (it gave up multiplexing): not in a tight loop.
				a.setState(StateConnecting, err.Error())
				a.sleep(ctx, backoff)
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
		}
		failingSince, waiting.key, backoff = time.Time{}, "", time.Second
		a.mu.Lock()
		a.masterPID = pid
		a.mu.Unlock()
		if err := a.attach(ctx, m); err != nil {
			a.setState(StateConnecting, err.Error())
			a.Log.Printf("link: %v", err)
			a.sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
		}
	}
	return nil
}

func (a *Agent) lastErrText() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}

func (a *Agent) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-a.poke:
	case <-time.After(d):
	}
}

// wait returns when something may have changed: the SSH configuration differs from key (a new
// server), a shared connection other than oldPID's answers at controlPath (a docker command
// made it), a poke, or ctx ends. It looks once a second: a stat and a Unix socket's answer.
func (a *Agent) wait(ctx context.Context, key, controlPath string, oldPID int) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.poke:
			return
		case <-time.After(time.Second):
		}
		if _, err := os.Stat(a.Paths.EnvDir(a.Env)); err != nil {
			return
		}
		opts, cp, err := host.SSHOptions(a.Paths, a.Env)
		if err == nil && strings.Join(opts, "\x00") != key {
			return
		}
		if controlPath != "" && cp == controlPath {
			if pid, err := (&sshmux.Master{Path: cp, Timeout: time.Second}).Alive(); err == nil && pid != oldPID {
				return
			}
		}
	}
}

// startMaster makes the shared connection: ssh with the environment's own options only (not
// ~/.ssh/config, whose Match line would run the wake), in the background (-f) once the server
// has authenticated, with ControlPersist as docker's own masters have.
func (a *Agent) startMaster(ctx context.Context, opts []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := append([]string{"-F", os.DevNull}, opts...)
	args = append(args, "-o", "ControlMaster=yes", "-o", "ConnectTimeout=10", "-f", "-N", a.alias())
	cmd := exec.CommandContext(ctx, a.SSH, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdin = nil
	// ssh -f keeps our stdout open in the background master: give it nothing to hold.
	cmd.Stdout = nil
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("cannot reach the server: %s", msg)
	}
	if strings.Contains(stderr.String(), "disabling multiplexing") {
		// Another master took the socket while this ssh connected (a docker command's, right
		// after a wake): this one went on in the background without multiplexing, a second
		// connection that nothing would use or end. End it; the other master serves.
		a.Log.Print("another shared SSH connection came first: this one's goes")
		for _, pid := range findProcesses(strings.Join(args, " ")) {
			terminate(pid)
			a.Log.Printf("ended the second connection (ssh pid %d)", pid)
		}
		return nil
	}
	a.Log.Print("made the shared SSH connection")
	return nil
}

// findProcesses lists the processes whose command line ends with tail (ps, as on macOS).
func findProcesses(tail string) []int {
	out, err := exec.Command("ps", "-axo", "pid=,command=").Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, line := range strings.Split(string(out), "\n") {
		pidText, command, ok := strings.Cut(strings.TrimSpace(line), " ")
		pid, err := strconv.Atoi(pidText)
		if ok && err == nil && pid != os.Getpid() && strings.HasSuffix(strings.TrimSpace(command), tail) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// attach opens the link session on the master and runs it until it ends.
func (a *Agent) attach(ctx context.Context, m *sshmux.Master) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	ch, err := m.Session(a.Command, inR, outW, errW)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return err
	}
	defer ch.Close()
	var stderrTail tail
	go func() {
		defer errR.Close()
		buf := make([]byte, 4096)
		for {
			n, err := errR.Read(buf)
			if n > 0 {
				stderrTail.add(buf[:n])
				for _, l := range strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n") {
					a.Log.Printf("server: %s", l)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	mux := link.Mux(pipeRW{outR, inW}, false)
	defer mux.Close()
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	ctl, err := mux.OpenStream(hctx)
	cancel()
	if err != nil {
		return a.sessionError(ch, &stderrTail, err)
	}
	ls := &linkSession{mux: mux, conn: link.NewConn(ctl)}
	if err := ls.conn.Send(link.Message{ID: 1, Type: link.TypeHello, Version: link.Version}); err != nil {
		return a.sessionError(ch, &stderrTail, err)
	}
	helloC := make(chan link.Message, 1)
	go func() {
		m, err := ls.conn.Recv()
		if err == nil {
			helloC <- m
		}
		close(helloC)
	}()
	var hello link.Message
	select {
	case h, ok := <-helloC:
		if !ok {
			return a.sessionError(ch, &stderrTail, errors.New("the server closed the link"))
		}
		hello = h
	case <-time.After(20 * time.Second):
		return a.sessionError(ch, &stderrTail, errors.New("the server did not answer the link's hello"))
	case <-ctx.Done():
		return nil
	}

	a.mu.Lock()
	a.master, a.link, a.server, a.engine = m, ls, hello.Server, ""
	a.mu.Unlock()
	a.setState(StateAttached, "")
	a.Log.Printf("attached to %s", hello.Server)
	defer func() {
		a.mu.Lock()
		a.link, a.master, a.engine = nil, nil, ""
		a.mu.Unlock()
		ls.calls.FailAll(errors.New("the link to the server ended"))
		a.fwd.Update(nil)
		a.sync.Detached()
	}()

	done := make(chan struct{})
	go a.report(done, ls)
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-ch.Done():
		case <-done:
			return
		}
		mux.Close()
	}()
	for {
		msg, err := ls.conn.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case <-ch.Done():
				code, _ := ch.Wait()
				return fmt.Errorf("the link session ended (exit status %d)%s", code, stderrTail.suffix())
			default:
			}
			return fmt.Errorf("the link ended: %v", err)
		}
		switch msg.Type {
		case link.TypeReply:
			ls.calls.Reply(msg)
		case link.TypePorts:
			a.mu.Lock()
			fwd := a.cfg.Forward
			a.ports = msg.Ports
			a.mu.Unlock()
			if fwd {
				a.fwd.Update(msg.Ports)
			}
		case link.TypeEngine:
			a.mu.Lock()
			a.engine = msg.Engine
			a.mu.Unlock()
			a.Log.Printf("the server's Docker is %s", msg.Engine)
			if msg.Engine == "running" {
				go a.sync.Attached(ctx, ls)
			} else {
				a.fwd.Update(nil)
				a.sync.Detached()
			}
		case link.TypeChanged:
			for _, p := range msg.Paths {
				a.sync.Kick(p)
			}
		case link.TypeGoingDown:
			a.Log.Print("the server is going down (its idle agent, or down)")
			a.mu.Lock()
			a.goingDown = true
			a.mu.Unlock()
			a.fwd.Update(nil)
			a.sync.Detached()
		}
	}
}

func (a *Agent) sessionError(ch *sshmux.Channel, t *tail, err error) error {
	select {
	case <-ch.Done():
	case <-time.After(2 * time.Second):
	}
	select {
	case <-ch.Done():
		code, _ := ch.Wait()
		if code == 127 {
			return fmt.Errorf("the server has no %s: run `docker dockbridge up%s` to install it", link.ServerBinary, nameFlag(a.Env))
		}
		return fmt.Errorf("the link session ended at once (exit status %d)%s", code, t.suffix())
	default:
	}
	return err
}

// report tells the server, once a second while there is any, what the forwards carried.
func (a *Agent) report(done <-chan struct{}, ls *linkSession) {
	lastOpen := 0
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		conns, n, open := a.fwd.Take()
		if conns == 0 && n == 0 && open == lastOpen {
			continue
		}
		lastOpen = open
		if err := ls.conn.Send(link.Message{Type: link.TypeForwarded, Connections: conns, Bytes: n, Open: open}); err != nil {
			return
		}
	}
}

// pipeRW is the session's stdout (read) and stdin (write).
type pipeRW struct {
	r *os.File
	w *os.File
}

func (p pipeRW) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p pipeRW) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeRW) Close() error {
	p.w.Close()
	return p.r.Close()
}

// tail keeps the last 2 KiB of the session's stderr for error messages.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) add(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
}

func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return ""
	}
	return ": " + s
}

func nameFlag(env string) string {
	if env == host.DefaultEnv {
		return ""
	}
	return " --name " + env
}

var _ io.ReadWriteCloser = pipeRW{}
