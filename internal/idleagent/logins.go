package idleagent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Logins watches sshd's log for logins: a whole SSH connection that begins and ends between two
// looks (a docker command from a laptop without connection sharing, such as Windows' OpenSSH)
// leaves nothing in /proc to see, but sshd logs "Accepted publickey for root from IP port P".
// A login is activity one look after it was logged, unless a probe (`dockbridge-server idle
// status`) has marked that IP and port as its own connection by then (or SSHD, which sees the
// probe's process before the probe has written its mark, has marked it for the probe).
type Logins struct {
	// Lines returns sshd's log lines as they come (default: journalctl -f, sshd's messages as
	// JSON); tests give sshd's own stderr.
	Lines func(ctx context.Context) (io.ReadCloser, error)
	// ProbeDir is where probes record their connection (default DefaultProbeDir).
	ProbeDir string
	// Log is told once when the log cannot be read.
	Log interface{ Printf(string, ...any) }

	mu      sync.Mutex
	started bool
	failed  error
	fresh   []login // logged since the previous look
	pending []login // logged before it: judged at this look
}

type login struct{ user, client string } // client "IP port"

var acceptedRe = regexp.MustCompile(`Accepted \S+ for (\S+) from (\S+) port (\d+)`)

func (l *Logins) Name() string { return "sshd's log" }

func (l *Logins) start(ctx context.Context) {
	l.started = true
	lines := l.Lines
	if lines == nil {
		lines = journal
	}
	rc, err := lines(context.WithoutCancel(ctx))
	if err != nil {
		l.failed = err
		if l.Log != nil {
			l.Log.Printf("cannot follow sshd's log (%v): SSH connections shorter than a look are not seen", err)
		}
		return
	}
	go func() {
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			text := sc.Text()
			if strings.HasPrefix(text, "{") {
				var m struct {
					Message string `json:"MESSAGE"`
				}
				if json.Unmarshal([]byte(text), &m) == nil {
					text = m.Message
				}
			}
			if g := acceptedRe.FindStringSubmatch(text); g != nil {
				l.mu.Lock()
				l.fresh = append(l.fresh, login{user: g[1], client: g[2] + " " + g[3]})
				l.mu.Unlock()
			}
		}
	}()
}

// journal follows sshd's messages in the journal, from now on.
func journal(ctx context.Context) (io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, "journalctl", "--follow", "--lines=0", "--output=json",
		"SYSLOG_IDENTIFIER=sshd", "+", "SYSLOG_IDENTIFIER=sshd-session")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait() }()
	return out, nil
}

func (l *Logins) Look(ctx context.Context, _ time.Time) (Look, error) {
	var look Look
	if !l.started {
		l.start(ctx)
	}
	if l.failed != nil {
		// The journal is only needed for connections shorter than a look: the rest of the
		// watch goes on without it (this is said once, in the agent's log, at start).
		return look, nil
	}
	l.mu.Lock()
	judge := l.pending
	l.pending, l.fresh = l.fresh, nil
	l.mu.Unlock()
	if len(judge) == 0 {
		return look, nil
	}
	probes := probeClients(l.ProbeDir)
	maps.Copy(probes, probeClients(DefaultLinkDir)) // the laptop agent's own reconnections
	for _, in := range judge {
		if !probes[in.client] {
			look.Happened = append(look.Happened, "an SSH login from "+strings.Fields(in.client)[0])
		}
	}
	return look, nil
}

// probeClients are the client addresses ("IP port") the probes' marks name.
func probeClients(dir string) map[string]bool {
	if dir == "" {
		dir = DefaultProbeDir
	}
	out := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if f := strings.Fields(string(b)); err == nil && len(f) >= 2 {
			out[f[0]+" "+f[1]] = true
		}
	}
	return out
}
