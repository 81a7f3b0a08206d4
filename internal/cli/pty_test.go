package cli

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// terminalSession runs a command on a terminal, as a user at a shell does.
type terminalSession struct {
	t    *testing.T
	ptmx *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen bytes.Buffer // everything the terminal showed
	done chan error
}

func startOnTerminal(t *testing.T, env []string, name string, args ...string) *terminalSession {
	t.Helper()
	ptmx, tty := openPTY(t)
	s := &terminalSession{t: t, ptmx: ptmx, done: make(chan error, 1)}
	s.cmd = exec.Command(name, args...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdin, s.cmd.Stdout, s.cmd.Stderr = tty, tty, tty
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			s.mu.Lock()
			s.seen.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { s.done <- s.cmd.Wait() }()
	return s
}

func (s *terminalSession) shown() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen.String()
}

// waitFor waits until the terminal shows text.
func (s *terminalSession) waitFor(text string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.shown(), text) {
		if time.Now().After(deadline) {
			s.t.Fatalf("the terminal never showed %q; it showed:\n%s", text, s.shown())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *terminalSession) typeLine(line string) {
	s.t.Helper()
	if _, err := s.ptmx.Write([]byte(line + "\n")); err != nil {
		s.t.Fatal(err)
	}
}

// wait returns the exit code and what the terminal showed.
func (s *terminalSession) wait() (int, string) {
	s.t.Helper()
	select {
	case err := <-s.done:
		time.Sleep(50 * time.Millisecond) // the last output
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), s.shown()
		} else if err != nil {
			s.t.Fatal(err)
		}
		return 0, s.shown()
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		s.t.Fatalf("%v did not end; the terminal showed:\n%s", s.cmd.Args, s.shown())
	}
	return -1, ""
}
