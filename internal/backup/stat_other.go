//go:build unix && !linux

package backup

import (
	"errors"
	"syscall"
)

// statDev and statRdev return the device a file lives on and the device a node stands for
// (dev_t is a uint64 on Linux, an int32 on macOS).
func statDev(st *syscall.Stat_t) uint64  { return uint64(uint32(st.Dev)) }
func statRdev(st *syscall.Stat_t) uint64 { return uint64(uint32(st.Rdev)) }

// mknodat is Linux only: restores that hold fifos or device nodes run in the (Linux) helper.
func mknodat(int, string, uint32, int) error { return errors.ErrUnsupported }
