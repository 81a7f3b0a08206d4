//go:build !windows

package testproc

import "syscall"

// groups lists the process groups that processes in ps lead (other than this process's).
func groups(ps []Process) []int {
	own := syscall.Getpgrp()
	var gs []int
	for _, p := range ps {
		if pgid, err := syscall.Getpgid(p.PID); err == nil && pgid == p.PID && pgid != own {
			gs = append(gs, pgid)
		}
	}
	return gs
}

// signal sends SIGTERM (SIGKILL if kill) to the groups and to each process.
func signal(gs []int, ps []Process, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	for _, g := range gs {
		_ = syscall.Kill(-g, sig)
	}
	for _, p := range ps {
		_ = syscall.Kill(p.PID, sig)
	}
}

// groupLeft reports whether a process of group g is left.
func groupLeft(g int) bool { return syscall.Kill(-g, 0) == nil }
