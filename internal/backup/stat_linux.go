package backup

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// statDev and statRdev return the device a file lives on and the device a node stands for
// (dev_t is a uint64 on Linux, an int32 on macOS).
func statDev(st *syscall.Stat_t) uint64  { return st.Dev }
func statRdev(st *syscall.Stat_t) uint64 { return st.Rdev }

// mknodat makes a fifo or device node base in the directory dirfd.
func mknodat(dirfd int, base string, mode uint32, dev int) error {
	return unix.Mknodat(dirfd, base, mode, dev)
}
