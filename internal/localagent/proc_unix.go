//go:build !windows

package localagent

import (
	"os/exec"
	"syscall"
)

// detach starts the agent in its own session: it outlives the command that started it, and the
// terminal's Ctrl-C does not reach it.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }
