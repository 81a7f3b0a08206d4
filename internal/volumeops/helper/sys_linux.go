package helper

import (
	"os"

	"golang.org/x/sys/unix"
)

// setPipeSize asks for a larger pipe buffer on f (best effort).
func setPipeSize(f *os.File, n int) { _, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, n) }

// syncfs flushes the whole filesystem f is on (best effort).
func syncfs(f *os.File) { _ = unix.Syncfs(int(f.Fd())) }
