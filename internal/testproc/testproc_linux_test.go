package testproc

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A detached process group whose leader carries the mark is ended whole, a member without the
// mark included; a process without the mark is left alone.
func TestEndsADetachedGroup(t *testing.T) {
	mark := t.TempDir() + "/"
	leader := exec.Command("sh", "-c", "env -u TESTPROC_MARK sleep 300 & wait")
	leader.Env = append(os.Environ(), "TESTPROC_MARK="+mark)
	leader.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	other := exec.Command("sleep", "300")
	for _, c := range []*exec.Cmd{leader, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	done := make(chan error, 1)
	go func() { done <- leader.Wait() }()

	// Until the shell's child has become the unmarked sleep.
	group := func() string {
		out, _ := exec.Command("pgrep", "-g", strconv.Itoa(leader.Process.Pid)).Output()
		return strings.TrimSpace(string(out))
	}
	var found []Process
	for range 100 {
		if found = Find(mark); len(found) == 1 && len(strings.Fields(group())) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(found) != 1 || found[0].PID != leader.Process.Pid || !strings.HasPrefix(found[0].Command, "sh -c") {
		t.Fatalf("Find: %+v, want only the leader (pid %d)", found, leader.Process.Pid)
	}
	if ended := End(mark); len(ended) != 1 {
		t.Fatalf("End: %+v", ended)
	}
	if err := <-done; err == nil {
		t.Fatal("the leader ended by itself")
	}
	// The unmarked sleep in its group went with it.
	if g := group(); g != "" {
		t.Fatalf("left in the group: %s", g)
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("a process without the mark was ended: %v", err)
	}
}
