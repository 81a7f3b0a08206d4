package localagent

import (
	"os/exec"
	"syscall"
)

// detach: a new process group, so that the console's Ctrl-C does not reach the agent.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}
