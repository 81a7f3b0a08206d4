//go:build !linux

package mount

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// The package mounts and formats Linux block devices; these let it compile elsewhere (go vet,
// go build ./... on a Mac), where its tools are missing anyway.

// blockSize is the unit of statfs's block counts: f_bsize outside Linux.
func blockSize(st *syscall.Statfs_t) uint64 { return uint64(st.Bsize) }

// devNumber splits a device node's st_rdev into major and minor.
func devNumber(st *syscall.Stat_t) (major, minor uint32) {
	rdev := uint64(uint32(st.Rdev))
	return unix.Major(rdev), unix.Minor(rdev)
}
