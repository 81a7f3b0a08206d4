//go:build unix

package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tryLock takes the wake's lock if it is free. The lock belongs to the open file: the detached
// process inherits it and keeps it when the caller is killed.
func tryLock(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

// waitLock waits for the wake's lock.
func waitLock(ctx context.Context, f *os.File) error {
	for !tryLock(f) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// detach starts the wake's process in a session of its own: no signal of the caller's
// terminal or process group (docker killing its ssh) reaches it.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// sshCaller is the process that runs the ssh this wake runs under (docker, compose, buildx),
// from /proc (Linux); 0 when there is none.
func sshCaller() int {
	pid := os.Getppid()
	for range 8 {
		if pid <= 1 {
			return 0
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0
		}
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open {
			return 0
		}
		f := strings.Fields(string(b[close+1:]))
		if len(f) < 2 {
			return 0
		}
		ppid, _ := strconv.Atoi(f[1])
		if string(b[open+1:close]) == "ssh" {
			return ppid
		}
		pid = ppid
	}
	return 0
}
