package mount

import "syscall"

// blockSize is the unit of statfs's block counts: f_frsize, or f_bsize where that is 0.
func blockSize(st *syscall.Statfs_t) uint64 {
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return bs
}

// devNumber splits a device node's st_rdev into major and minor (glibc's gnu_dev_major/minor).
func devNumber(st *syscall.Stat_t) (major, minor uint32) {
	return uint32((st.Rdev>>8)&0xfff | (st.Rdev>>32)&^0xfff), uint32(st.Rdev&0xff | (st.Rdev>>12)&^0xff)
}
