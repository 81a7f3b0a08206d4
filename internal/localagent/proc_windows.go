package localagent

import (
	"os"
	"os/exec"
	"syscall"
)

// detach: a new process group, so that the console's Ctrl-C does not reach the agent.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// terminate ends process pid.
func terminate(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

// processAlive: the agent does not run on Windows (no OpenSSH connection sharing there), so
// Stop has only its control socket to wait for.
func processAlive(int) bool { return false }
