package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Remote runs commands on the server.
type Remote interface {
	// Run runs a shell command line; stdin may be nil. It returns stdout; on failure the
	// error carries the exit status and stderr.
	Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)
	Close() error
}

// Target is how to reach a server over SSH with a pinned host key.
type Target struct {
	Addr    string // host:port
	User    string
	Signer  ssh.Signer    // the user's key
	HostKey ssh.PublicKey // the pinned host key
	// NextHostKey, when set, is accepted too: a key the server made to replace HostKey, until
	// a connection has shown that the server uses it.
	NextHostKey ssh.PublicKey
}

// Dialer opens a Remote; DialSSH is the real one.
type Dialer func(ctx context.Context, t Target) (Remote, error)

// ErrHostKeyMismatch means the server presented a host key other than the pinned one.
var ErrHostKeyMismatch = errors.New("host key mismatch")

// PinnedHostKey accepts only want (nil entries are ignored). It never trusts on first use.
func PinnedHostKey(want ...ssh.PublicKey) ssh.HostKeyCallback {
	var pinned []ssh.PublicKey
	var fps []string
	for _, w := range want {
		if w != nil {
			pinned = append(pinned, w)
			fps = append(fps, ssh.FingerprintSHA256(w))
		}
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if len(pinned) == 0 {
			return fmt.Errorf("%w: no pinned host key for %s", ErrHostKeyMismatch, hostname)
		}
		for _, w := range pinned {
			if key.Type() == w.Type() && bytes.Equal(key.Marshal(), w.Marshal()) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s (%s) presented %s %s, pinned is %s: this is not the server dockbridge created (an IP address reused by Hetzner, or an attack); refusing to connect",
			ErrHostKeyMismatch, hostname, remote, key.Type(), ssh.FingerprintSHA256(key), strings.Join(fps, " or "))
	}
}

// DialSSH connects with golang.org/x/crypto/ssh, accepting only the pinned host key.
func DialSSH(ctx context.Context, t Target) (Remote, error) {
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(t.Signer)},
		HostKeyCallback:   PinnedHostKey(t.HostKey, t.NextHostKey),
		HostKeyAlgorithms: []string{t.HostKey.Type()},
		Timeout:           15 * time.Second,
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s@%s: %w", t.User, t.Addr, err)
	}
	// The handshake has no ctx: bound it with a deadline and close on cancel.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	c, chans, reqs, err := ssh.NewClientConn(conn, t.Addr, cfg)
	stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ssh %s@%s: %w", t.User, t.Addr, ctx.Err())
		}
		return nil, fmt.Errorf("ssh %s@%s: %w", t.User, t.Addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	return &sshRemote{c: client, addr: t.Addr}, nil
}

type sshRemote struct {
	c    *ssh.Client
	addr string
}

// RemoteError is a remote command that failed.
type RemoteError struct {
	Cmd      string
	Addr     string
	ExitCode int // -1 when the command did not exit (connection lost, signal)
	Stderr   string
	Err      error
}

func (e *RemoteError) Error() string {
	out := strings.TrimSpace(e.Stderr)
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	msg := fmt.Sprintf("on %s, %q", e.Addr, firstLine(e.Cmd))
	if e.ExitCode >= 0 {
		msg += fmt.Sprintf(" exited with status %d", e.ExitCode)
	} else {
		msg += fmt.Sprintf(" failed: %v", e.Err)
	}
	if out != "" {
		msg += ": " + out
	}
	return msg
}

func (e *RemoteError) Unwrap() error { return e.Err }

func (r *sshRemote) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	s, err := r.c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("ssh %s: new session: %w", r.addr, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if stdin != nil {
		s.Stdin = stdin
	}
	done := make(chan error, 1)
	if err := s.Start(cmd); err != nil {
		return nil, fmt.Errorf("ssh %s: start %q: %w", r.addr, firstLine(cmd), err)
	}
	go func() { done <- s.Wait() }()
	select {
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGTERM)
		s.Close()
		return stdout.Bytes(), fmt.Errorf("ssh %s: %q: %w", r.addr, firstLine(cmd), ctx.Err())
	case err = <-done:
	}
	if err != nil {
		re := &RemoteError{Cmd: cmd, Addr: r.addr, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var exit *ssh.ExitError
		if errors.As(err, &exit) {
			re.ExitCode = exit.ExitStatus()
		}
		return stdout.Bytes(), re
	}
	return stdout.Bytes(), nil
}

func (r *sshRemote) Close() error { return r.c.Close() }

// WaitForSSH dials until the server answers with the pinned host key or ctx ends. A host
// key mismatch stops at once: retrying cannot make a wrong key right.
func WaitForSSH(ctx context.Context, dial Dialer, t Target, poll time.Duration) (Remote, error) {
	var last error
	for {
		r, err := dial(ctx, t)
		if err == nil {
			return r, nil
		}
		if errors.Is(err, ErrHostKeyMismatch) {
			return nil, err
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for SSH on %s: %w (last error: %v)", t.Addr, ctx.Err(), last)
		case <-time.After(poll):
		}
	}
}

// firstLine shortens a multi-line script for an error message.
func firstLine(cmd string) string {
	if i := strings.IndexByte(cmd, '\n'); i >= 0 && i < len(cmd)-1 {
		return cmd[:i] + " …"
	}
	return strings.TrimSuffix(cmd, "\n")
}
