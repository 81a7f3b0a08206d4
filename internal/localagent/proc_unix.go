//go:build !windows

package localagent

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// detach starts the agent in its own session: it outlives the command that started it, and the
// terminal's Ctrl-C does not reach it. It keeps none of the descriptors this command inherited
// beyond stdin, stdout and stderr (a child inherits every one not marked close-on-exec): a lock
// the caller held (flock(1) without -o, a script's `exec 9>lock`) or a pipe the caller reads
// until its end would otherwise be held as long as the agent runs.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	entries, _ := os.ReadDir("/dev/fd")
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// terminate asks process pid to end (SIGTERM).
func terminate(pid int) { _ = syscall.Kill(pid, syscall.SIGTERM) }

// processAlive says whether process pid still runs (a zombie has ended).
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		if _, after, ok := strings.Cut(string(b), ") "); ok && strings.HasPrefix(after, "Z") {
			return false
		}
	}
	return true
}
