package idleagent

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/link"
)

// TestLaptopAgentLink: the laptop agent's link session (internal/link) on its shared connection
// is no activity, neither its opening, nor its traffic, nor its end; what else goes through the
// same connection still is; CloseIdle closes a connection that carries only the link; what the
// agent reports of its port forwards (link.ForwardsFile) is activity.
func TestLaptopAgentLink(t *testing.T) {
	r := startSSHD(t)
	probes := filepath.Join(r.dir, "probes")
	s := watch{&SSHD{Listener: r.pid, ProbeDir: probes}, &Logins{ProbeDir: probes, Lines: func(context.Context) (io.ReadCloser, error) { return r.logs, nil }}}
	if l := look(t, s); !quiet(l) {
		t.Fatalf("nothing connected yet: %+v", l)
	}
	self, err := os.Executable()
	must(t, err)
	bin := filepath.Join(r.dir, ServerBinaryName)
	must(t, os.Symlink(self, bin))

	// The agent makes the shared connection and opens its link at once.
	master := r.ssh(true, "-M", "-N", "-o", "ServerAliveInterval=1")
	must(t, master.Start())
	t.Cleanup(func() { _ = master.Process.Kill(); _ = master.Wait() })
	waitFor(t, "the control socket", func() bool { _, err := os.Stat(r.cm); return err == nil })
	sess := r.ssh(true, "exec "+bin+" local session")
	in, err := sess.StdinPipe()
	must(t, err)
	out, err := sess.StdoutPipe()
	must(t, err)
	must(t, sess.Start())
	echo := make([]byte, 64<<10)
	_, _ = in.Write([]byte("hello\n"))
	_, _ = io.ReadFull(out, echo[:6])
	for i := range 4 {
		time.Sleep(400 * time.Millisecond)
		if l := look(t, s); !quiet(l) {
			t.Fatalf("look %d: the agent's connection and link are no activity: %+v", i, l)
		}
	}
	// Traffic on the link (a folder synchronizing): no activity.
	for range 3 {
		_, _ = in.Write(make([]byte, 64<<10))
		_, _ = io.ReadFull(out, echo)
		if l := look(t, s); !quiet(l) {
			t.Fatalf("the link's traffic is no activity: %+v", l)
		}
	}
	// A docker command through the same connection is.
	docker := r.ssh(true, "exec -a 'docker system dial-stdio' sleep 1.5")
	must(t, docker.Start())
	waitFor(t, "docker's session", func() bool { return strings.Contains(reasons(look(t, s)), "docker command through the context") })
	must(t, docker.Wait())
	look(t, s)
	r.run(true, "true")
	if l := look(t, s); !happened(l, "ended") {
		t.Fatalf("a command between two looks on the agent's connection: %+v", l)
	}
	look(t, s)

	// The link ends (the agent reconnects): no activity.
	in.Close()
	must(t, sess.Wait())
	for range 2 {
		if l := look(t, s); !quiet(l) {
			t.Fatalf("the link's end: %+v", l)
		}
	}

	// A connection with only the link is idle: CloseIdle closes it.
	sess = r.ssh(true, "exec "+bin+" local session")
	in, err = sess.StdinPipe()
	must(t, err)
	out, err = sess.StdoutPipe()
	must(t, err)
	must(t, sess.Start())
	defer in.Close()
	waitFor(t, "the link again", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(sess.Process.Pid) + "/cmdline")
		return len(b) > 0 && look(t, s).Ongoing == nil
	})
	time.Sleep(300 * time.Millisecond)
	if n := s.s.CloseIdle(); n != 1 {
		t.Fatalf("CloseIdle closed %d connections, want the one with the link only", n)
	}
	// Its link session was told first, and the laptop got what it said before the end.
	if said, _ := io.ReadAll(out); string(said) != "going-down\n" {
		t.Fatalf("the link session said %q before its connection closed, want going-down", said)
	}

	// The forwards' reports.
	fw := &Forwards{File: filepath.Join(r.dir, "forwards.json")}
	lookF := func() Look {
		l, err := fw.Look(t.Context(), time.Now())
		must(t, err)
		return l
	}
	if l := lookF(); !quiet(l) {
		t.Fatalf("no report yet: %+v", l)
	}
	write := func(rec link.ForwardsRecord) {
		b, _ := json.Marshal(rec)
		must(t, os.WriteFile(fw.File, b, 0o644))
	}
	write(link.ForwardsRecord{Connections: 3, Bytes: 900})
	if l := lookF(); len(l.Happened) != 1 || !strings.Contains(l.Happened[0], "3 connection(s)") {
		t.Fatalf("3 forwarded connections: %+v", l)
	}
	if l := lookF(); !quiet(l) {
		t.Fatalf("no new report: %+v", l)
	}
	write(link.ForwardsRecord{Connections: 3, Bytes: 900, Open: 1})
	if l := lookF(); len(l.Ongoing) != 1 {
		t.Fatalf("an open forwarded connection: %+v", l)
	}
	write(link.ForwardsRecord{Connections: 3, Bytes: 900})
	if l := lookF(); !quiet(l) {
		t.Fatalf("a dead forward is no activity: %+v", l)
	}
}
