package idleagent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockbridge/dockbridge/internal/link"
)

// SSHD watches sshd's authenticated connections, from /proc: everything a docker context, `docker
// dockbridge ssh` and port forwards do on the server goes through one of them.
//
// OpenSSH runs, per connection, a monitor process (a child of the listening sshd) and under it
// the process that speaks the protocol ("sshd: root@notty", or "sshd-session" since 9.8). Every
// session channel (a shell, a command, `docker system dial-stdio` for each docker command
// through the context, sftp) is a child process of that one; every port forward in use is a
// socket it holds. So, for each connection that has authenticated:
//
//   - a session is a child process of its sshd processes: ongoing, described by its command
//     (docker's `system dial-stdio`, a shell on a terminal, any other command);
//   - a port forward in use is a TCP connection of its sshd processes on any port but sshd's
//     own (-L/direct-tcpip connects out; -R accepts on the forwarded port), or a Unix stream
//     socket whose peer is no sshd process (forwards of Unix sockets such as
//     /var/run/docker.sock, through sock_diag);
//   - a session that started and ended between two looks shows in the sshd process's counters:
//     the kernel adds a finished child's page faults to its parent's cminflt (a process cannot
//     run without faulting in pages), so the counter grows once per finished session;
//   - a forward that opened and closed between two looks shows in the bytes the connection
//     moved (rchar + wchar): more than TrafficThreshold between two looks is activity, which a
//     ControlPersist master's keepalives (a few hundred bytes per ServerAliveInterval) are not;
//   - a connection that appeared since the previous look is activity once it has lived one look
//     without being marked as a probe.
//
// Not activity: a connection that has not authenticated (port scans), an idle shared connection
// (ControlPersist: no session, no forward, no traffic) and the connections of dockbridge's own
// probes (`status`, the wake): the probe run with OwnConnectionFlag (`dockbridge-server idle
// status --own-connection`, MarkProbe) records its connection in ProbeDir, and nothing on that
// connection counts, the probe itself before its mark is written included: a look that sees
// such a probe's process on a connection not yet marked writes the mark itself, which Logins
// reads to leave the probe's login out. A probe without the flag (a user's, maybe over the
// shared connection) is no activity itself and marks nothing.
type SSHD struct {
	// Proc is the proc filesystem (default /proc).
	Proc string
	// ProbeDir is where probes record their connection (default DefaultProbeDir).
	ProbeDir string
	// Listener, when not 0, limits the watch to the connections of that sshd (tests run their
	// own sshd on a machine with others).
	Listener int
	// TrafficThreshold is the bytes a connection must move between two looks to count
	// (default 4 KiB).
	TrafficThreshold uint64

	seen map[string]connSeen // by connection key, from the previous look
	// counters of sshd processes by "pid/start", from the previous look
	counters map[string]procCounters
	first    bool
}

type connSeen struct {
	client  string
	pending bool // new at the previous look, not yet known to be a probe or not
	link    bool // it carried the laptop agent's link session
}

type procCounters struct{ cminflt, bytes uint64 }

func (s *SSHD) Name() string { return "sshd" }

func (s *SSHD) defaults() {
	if s.Proc == "" {
		s.Proc = "/proc"
	}
	if s.ProbeDir == "" {
		s.ProbeDir = DefaultProbeDir
	}
	if s.TrafficThreshold == 0 {
		s.TrafficThreshold = 4 << 10
	}
	if s.seen == nil {
		s.seen, s.counters, s.first = map[string]connSeen{}, map[string]procCounters{}, true
	}
}

// proc is one process as /proc/<pid>/stat tells it.
type proc struct {
	pid, ppid int
	comm      string
	start     uint64 // clock ticks after boot
	cminflt   uint64
}

func (p proc) key() string { return fmt.Sprintf("%d/%d", p.pid, p.start) }

func isSSHD(comm string) bool { return comm == "sshd" || comm == "sshd-session" || comm == "sshd-auth" }

// readProcs reads every process's stat line.
func readProcs(root string) (map[int]proc, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	out := make(map[int]proc, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readStat(root, pid); err == nil {
			out[pid] = p
		}
	}
	return out, nil
}

// readStat parses /proc/<pid>/stat: "pid (comm) state ppid ... minflt cminflt ... starttime ...".
func readStat(root string, pid int) (proc, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return proc{}, err
	}
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return proc{}, fmt.Errorf("stat of %d: no (comm)", pid)
	}
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 20 {
		return proc{}, fmt.Errorf("stat of %d: %d fields", pid, len(f))
	}
	p := proc{pid: pid, comm: string(b[open+1 : close])}
	p.ppid, _ = strconv.Atoi(f[1])
	p.cminflt, _ = strconv.ParseUint(f[8], 10, 64)
	p.start, _ = strconv.ParseUint(f[19], 10, 64)
	return p, nil
}

func readCmdline(root string, pid int) []string {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// envVar reads one variable of a process's initial environment.
func envVar(root string, pid int, name string) string {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "environ"))
	if err != nil {
		return ""
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && string(k) == name {
			return string(v)
		}
	}
	return ""
}

func readIOBytes(root string, pid int) uint64 {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "io"))
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "rchar" || k == "wchar") {
			x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

// socketInodes lists the socket inodes a process holds, by fd (fds 0-2, its inherited standard
// streams, left out: they are never a forward).
func socketInodes(root string, pid int) []uint64 {
	dir := filepath.Join(root, strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, e := range ents {
		if fd, _ := strconv.Atoi(e.Name()); fd <= 2 {
			continue
		}
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 64); err == nil {
			out = append(out, ino)
		}
	}
	return out
}

// connection is one sshd connection: the monitor under the listener and its sshd descendants.
type connection struct {
	root     proc
	sshd     []proc // the root and every sshd process under it
	sessions []proc // non-sshd children of those
	authed   bool
	client   string // the client's address, from a session's SSH_CLIENT or the TCP socket
	probe    bool
	// link: it carries the laptop agent's link session (internal/link): that session and its
	// traffic are no activity (what the agent's port forwards carry is: Forwards reads the
	// agent's reports), nor is the connection's opening when the agent made it.
	link bool
}

func (s *SSHD) Look(ctx context.Context, now time.Time) (Look, error) {
	s.defaults()
	var look Look
	procs, err := readProcs(s.Proc)
	if err != nil {
		return look, fmt.Errorf("read %s: %w", s.Proc, err)
	}
	children := map[int][]proc{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
	}
	var listeners []proc
	for _, p := range procs {
		if isSSHD(p.comm) && !isSSHD(procs[p.ppid].comm) && (s.Listener == 0 || s.Listener == p.pid) {
			listeners = append(listeners, p)
		}
	}
	probes := s.probeMarks()
	var conns []*connection
	for _, l := range listeners {
		for _, c := range children[l.pid] {
			if !isSSHD(c.comm) {
				continue
			}
			conn := &connection{root: c}
			var walk func(p proc)
			walk = func(p proc) {
				conn.sshd = append(conn.sshd, p)
				for _, ch := range children[p.pid] {
					if isSSHD(ch.comm) {
						walk(ch)
					} else {
						conn.sessions = append(conn.sessions, ch)
					}
				}
			}
			walk(c)
			for _, p := range conn.sshd {
				if t := readCmdline(s.Proc, p.pid); len(t) > 0 && authedTitle(t[0]) {
					conn.authed = true
				}
			}
			conn.authed = conn.authed || len(conn.sessions) > 0
			conn.probe = probes[c.key()]
			if conn.authed {
				conns = append(conns, conn)
			}
		}
	}

	// Sockets: the listeners' ports, and what each connection holds.
	tcp := readTCP(s.Proc)
	sshdPorts := map[uint16]bool{}
	for _, l := range listeners {
		for _, ino := range socketInodes(s.Proc, l.pid) {
			if e, ok := tcp[ino]; ok && e.listen {
				sshdPorts[e.localPort] = true
			}
		}
	}
	if len(sshdPorts) == 0 {
		sshdPorts[22] = true
	}
	var unixPeers map[uint64]unixSock // read once, when a connection holds a Unix socket
	sshdInodes := map[uint64]bool{}
	connInodes := map[string][]uint64{}
	for _, c := range conns {
		for _, p := range c.sshd {
			for _, ino := range socketInodes(s.Proc, p.pid) {
				connInodes[c.root.key()] = append(connInodes[c.root.key()], ino)
				sshdInodes[ino] = true
			}
		}
	}
	for _, l := range listeners {
		for _, ino := range socketInodes(s.Proc, l.pid) {
			sshdInodes[ino] = true
		}
	}

	nowSeen := map[string]connSeen{}
	nowCounters := map[string]procCounters{}
	for _, c := range conns {
		key := c.root.key()
		// Sessions, the probe's own first.
		var sessions []proc
		for _, sp := range c.sessions {
			argv := readCmdline(s.Proc, sp.pid)
			if isProbe(argv) {
				// Only a probe on a connection of its own speaks for the whole connection.
				c.probe = c.probe || isOwnConnectionProbe(argv)
				continue
			}
			if link.IsSession(argv) {
				c.link = true
				continue
			}
			if c.client == "" {
				if f := strings.Fields(envVar(s.Proc, sp.pid, "SSH_CLIENT")); len(f) > 0 {
					c.client = f[0]
				}
			}
			sessions = append(sessions, sp)
		}
		if c.probe && !probes[key] {
			// The probe has not marked its connection yet (it is still starting: on a loaded
			// machine that can take longer than a look): mark it for it, so that Logins, which
			// knows the probe's login by the mark only, does not count it at its next look.
			for _, sp := range c.sessions {
				if isOwnConnectionProbe(readCmdline(s.Proc, sp.pid)) && writeMark(s.ProbeDir, key, envVar(s.Proc, sp.pid, "SSH_CLIENT")) == nil {
					probes[key] = true
					break
				}
			}
		}
		// Forwards.
		var forwards []string
		for _, ino := range connInodes[key] {
			if e, ok := tcp[ino]; ok {
				if e.listen || !e.established {
					continue
				}
				if sshdPorts[e.localPort] {
					if c.client == "" {
						c.client = e.remoteAddr
					}
					continue // the connection itself
				}
				forwards = append(forwards, fmt.Sprintf("tcp:%d:%s", ino, e.remoteHostPort))
				continue
			}
			if unixPeers == nil {
				unixPeers = readUnixSockets()
			}
			u, ok := unixPeers[ino]
			if !ok || u.typ != sockStream || u.peer == 0 || sshdInodes[u.peer] {
				continue
			}
			name := unixPeers[u.peer].name
			if strings.HasPrefix(name, "/run/systemd/") {
				continue // journald's stream of a process's output
			}
			if name == "" {
				name = "a Unix socket"
			}
			forwards = append(forwards, fmt.Sprintf("unix:%d:%s", ino, name))
		}
		from := ""
		if c.client != "" {
			from = " from " + c.client
		}
		if c.probe {
			// A probe's connection is dockbridge's own (status's, the wake's): nothing on it is
			// activity, neither the probe nor what status asks after it (the backups' state).
			nowSeen[key] = connSeen{client: c.client}
			continue
		}
		for _, sp := range sessions {
			look.ongoing(fmt.Sprintf("session:%s", sp.key()), describeSession(s.Proc, sp, c, from))
		}
		for _, f := range forwards {
			kind, rest, _ := strings.Cut(f, ":")
			_, target, _ := strings.Cut(rest, ":")
			look.ongoing("forward:"+key+":"+f, fmt.Sprintf("port forward to %s (%s)%s", target, kind, from))
		}
		prev, known := s.seen[key]
		// Counters: a session that ended, traffic since the previous look.
		var ended, moved bool
		for _, p := range c.sshd {
			pc := procCounters{cminflt: p.cminflt, bytes: readIOBytes(s.Proc, p.pid)}
			nowCounters[p.key()] = pc
			if before, ok := s.counters[p.key()]; ok {
				ended = ended || pc.cminflt > before.cminflt
				moved = moved || pc.bytes > before.bytes+s.TrafficThreshold
			}
		}
		// The link session ending (the laptop agent reconnects) grows the counter too, and what
		// it moved before it ended is in the bytes: that look cannot tell, and leaves both out.
		linkEnded := known && prev.link && !c.link
		if ended && !linkEnded {
			look.Happened = append(look.Happened, "an SSH session (a docker command, a command) ended"+from)
		} else if moved && len(sessions) == 0 && len(forwards) == 0 && !c.link && !linkEnded {
			look.Happened = append(look.Happened, "traffic on an SSH connection (a port forward)"+from)
		}
		switch {
		case !known && !s.first:
			nowSeen[key] = connSeen{client: c.client, pending: true, link: c.link}
		case known && prev.pending:
			if !c.link {
				look.Happened = append(look.Happened, "a new SSH connection"+from)
			}
			nowSeen[key] = connSeen{client: c.client, link: c.link}
		default:
			nowSeen[key] = connSeen{client: c.client, link: c.link}
		}
	}
	// A new connection that is gone already, without having said it was a probe.
	for key, prev := range s.seen {
		if _, still := nowSeen[key]; !still && prev.pending && !probes[key] {
			from := ""
			if prev.client != "" {
				from = " from " + prev.client
			}
			look.Happened = append(look.Happened, "a short SSH connection"+from)
		}
	}
	s.seen, s.counters, s.first = nowSeen, nowCounters, false
	s.cleanProbeMarks(probes, nowSeen)
	slices.Sort(look.Happened)
	look.Happened = slices.Compact(look.Happened)
	return look, nil
}

// authedTitle reports whether an sshd process title belongs to a logged-in connection: OpenSSH
// sets "sshd: USER@TTY" (or "@notty") while a session runs and "sshd: USER" between sessions
// (root's connection has no unprivileged child), and marks every process before the login with
// a bracket: "sshd: [accepted]", "sshd: USER [priv]", "[net]", "[preauth]".
func authedTitle(t string) bool {
	_, rest, ok := strings.Cut(t, ": ")
	rest = strings.TrimSpace(rest)
	return ok && rest != "" && !strings.Contains(rest, "[")
}

func describeSession(root string, p proc, c *connection, from string) string {
	argv := unwrapShell(readCmdline(root, p.pid))
	cmd := strings.Join(argv, " ")
	tty := ""
	for _, sp := range c.sshd {
		if t := readCmdline(root, sp.pid); len(t) > 0 {
			if _, after, ok := strings.Cut(t[0], "@"); ok && strings.HasPrefix(after, "pts/") {
				tty = strings.Fields(after)[0]
			}
		}
	}
	switch {
	case strings.Contains(cmd, "system dial-stdio"):
		return "docker command through the context (docker system dial-stdio, pid " + strconv.Itoa(p.pid) + ")" + from
	case tty != "" && (len(argv) == 1 || strings.HasPrefix(p.comm, "-") || (len(argv) > 0 && strings.HasPrefix(argv[0], "-"))):
		return "SSH shell on " + tty + " (pid " + strconv.Itoa(p.pid) + ")" + from
	}
	if len(cmd) > 60 {
		cmd = cmd[:57] + "..."
	}
	return fmt.Sprintf("SSH command %q (pid %d)%s", cmd, p.pid, from)
}

// unwrapShell turns the user's shell running a command line (sshd runs `$SHELL -c LINE`,
// which execs LINE's program soon after, or not at all for a compound line) into LINE's words.
func unwrapShell(argv []string) []string {
	if len(argv) >= 3 && argv[1] == "-c" && strings.HasSuffix(strings.TrimPrefix(filepath.Base(argv[0]), "-"), "sh") {
		return strings.Fields(strings.Join(argv[2:], " "))
	}
	return argv
}

// isProbe recognises the probe's process: .../dockbridge-server idle status.
func isProbe(argv []string) bool {
	argv = unwrapShell(argv)
	return len(argv) >= 3 && filepath.Base(argv[0]) == ServerBinaryName && argv[1] == "idle" && argv[2] == "status"
}

// isOwnConnectionProbe recognises the probe of dockbridge's own connections (status's, the
// wake's): `dockbridge-server idle status --own-connection`.
func isOwnConnectionProbe(argv []string) bool {
	return isProbe(argv) && slices.Contains(unwrapShell(argv)[3:], OwnConnectionFlag)
}

func (s *SSHD) probeMarks() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(s.ProbeDir)
	for _, e := range ents {
		out[strings.ReplaceAll(e.Name(), "-", "/")] = true
	}
	return out
}

// cleanProbeMarks removes the marks of connections that are gone, a minute after they were
// made (Logins reads them a look after the login).
func (s *SSHD) cleanProbeMarks(marks map[string]bool, live map[string]connSeen) {
	for key := range marks {
		if _, ok := live[key]; ok {
			continue
		}
		path := filepath.Join(s.ProbeDir, strings.ReplaceAll(key, "/", "-"))
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) > time.Minute {
			_ = os.Remove(path)
		}
	}
}

// MarkProbe records, from a probe command running in an SSH session, that its connection is
// dockbridge's own probe and no activity. It finds the connection by walking up from this
// process to the listening sshd.
func MarkProbe(procRoot, probeDir string) error {
	if probeDir == "" {
		probeDir = DefaultProbeDir
	}
	_, err := markConnection(procRoot, probeDir)
	return err
}

// MarkLink records, from the laptop agent's link session, its connection's login, which Logins
// then does not count (the agent reconnecting after a sleep is no activity); it returns the
// mark's file, which the session removes when it ends.
func MarkLink(procRoot string) (string, error) { return markConnection(procRoot, DefaultLinkDir) }

func markConnection(procRoot, probeDir string) (string, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	pid := os.Getpid()
	var below proc
	for range 64 {
		p, err := readStat(procRoot, pid)
		if err != nil {
			return "", err
		}
		parent, err := readStat(procRoot, p.ppid)
		if isSSHD(p.comm) && (err != nil || !isSSHD(parent.comm)) {
			if below.pid == 0 {
				return "", fmt.Errorf("not inside an SSH connection")
			}
			mark := filepath.Join(probeDir, strings.ReplaceAll(below.key(), "/", "-"))
			return mark, writeMark(probeDir, below.key(), os.Getenv("SSH_CLIENT"))
		}
		if err != nil || p.ppid <= 1 {
			return "", fmt.Errorf("not inside an SSH connection")
		}
		below, pid = p, p.ppid
	}
	return "", fmt.Errorf("not inside an SSH connection")
}

// writeMark records in dir that the connection whose sshd process has key ("pid/start") is a
// probe's (or a link's). The mark holds the client's address and port (SSH_CLIENT), by which
// Logins knows the login in sshd's log is this connection's.
func writeMark(dir, key, sshClient string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, strings.ReplaceAll(key, "/", "-")), []byte(sshClient+"\n"), 0o600)
}

// linkGoingDown is the signal a link session takes as "the server goes down"
// (internal/linkserver's GoingDownSignal: that package imports this one).
const linkGoingDown = syscall.SIGUSR1

// tellLinks tells the laptop agents' link sessions on a connection about to be closed that the
// server goes down (they pass it on to the laptop, whose agent then waits for the next server
// rather than making the connection again), and waits up to 2 s for them to end.
func tellLinks(pids []int) {
	if len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, linkGoingDown)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		alive := false
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				alive = true
			}
		}
		if !alive {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // sshd sends what the session wrote last
}

// CloseIdle ends every authenticated connection that has no session (idle ControlPersist
// masters, an idle `ssh -N`), with SIGTERM to its monitor process: the client sees the
// connection close at once. A connection with only the laptop agent's link is idle too: its link
// session is told first (tellLinks), so the laptop learns the server goes. It returns how many it
// ended.
func (s *SSHD) CloseIdle() int {
	s.defaults()
	procs, err := readProcs(s.Proc)
	if err != nil {
		return 0
	}
	children := map[int][]proc{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
	}
	n := 0
	for _, l := range procs {
		if !isSSHD(l.comm) || isSSHD(procs[l.ppid].comm) || (s.Listener != 0 && s.Listener != l.pid) {
			continue
		}
		for _, c := range children[l.pid] {
			if !isSSHD(c.comm) {
				continue
			}
			authed, busy := false, false
			var links []int
			var walk func(p proc)
			walk = func(p proc) {
				if t := readCmdline(s.Proc, p.pid); len(t) > 0 && authedTitle(t[0]) {
					authed = true
				}
				for _, ch := range children[p.pid] {
					if isSSHD(ch.comm) {
						walk(ch)
					} else if argv := readCmdline(s.Proc, ch.pid); link.IsSession(argv) {
						links = append(links, ch.pid) // the laptop agent's link alone is an idle connection
					} else if !isProbe(argv) {
						busy = true
					}
				}
			}
			walk(c)
			if authed && !busy {
				tellLinks(links)
				if syscall.Kill(c.pid, syscall.SIGTERM) == nil {
					n++
				}
			}
		}
	}
	return n
}
