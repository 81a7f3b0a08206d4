package localagent

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/testproc"
)

// Ensure starts the agent detached (its own session, so it outlives the command) and holding
// none of the descriptors that command inherited: a lock its caller held (flock(1) without -o)
// stayed held as long as the agent ran.
func TestEnsureStartsADetachedAgentThatKeepsNothingInherited(t *testing.T) {
	dir := t.TempDir()
	testproc.Cleanup(t, dir+"/")
	paths, err := host.NewPaths(dir)
	must(t, err)
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("AGENT_HELPER", "1")
	lock := filepath.Join(dir, "engine.lock")
	must(t, os.WriteFile(lock, nil, 0o600))
	fd, err := syscall.Open(lock, syscall.O_RDONLY, 0) // no O_CLOEXEC, as a descriptor inherited from flock(1)
	must(t, err)
	defer syscall.Close(fd)
	must(t, syscall.Flock(fd, syscall.LOCK_EX))
	exe, err := os.Executable()
	must(t, err)
	if started, err := Ensure(t.Context(), paths, "t", exe); err != nil || !started {
		t.Fatalf("Ensure: started %v, %v", started, err)
	}
	st, err := Query(paths, "t")
	must(t, err)
	// Stop returns once the agent's process has ended, not only its control socket.
	t.Cleanup(func() {
		must(t, Stop(paths, "t"))
		if processAlive(st.PID) {
			t.Errorf("the agent (pid %d) still runs after Stop returned", st.PID)
		}
	})
	if sid, err := unix.Getsid(st.PID); err != nil || sid != st.PID {
		t.Errorf("the agent (pid %d) is in session %d, %v: want its own", st.PID, sid, err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", st.PID))
	must(t, err)
	for _, e := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", st.PID, e.Name())); target == lock {
			t.Fatalf("the agent holds descriptor %s on %s, which the command that started it inherited", e.Name(), lock)
		}
	}
	// And so the lock is free once this process lets it go.
	syscall.Close(fd)
	fd2, err := syscall.Open(lock, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	must(t, err)
	defer syscall.Close(fd2)
	if err := syscall.Flock(fd2, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("the lock is still held while the agent runs: %v", err)
	}
}
