package mount

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

// openUncached opens device for reading past the page cache (O_DIRECT), so what it reads is
// what is on the device now, not what an earlier read left in the cache. Where O_DIRECT is
// refused (tmpfs), it opens normally.
func openUncached(device string) (*os.File, error) {
	f, err := os.OpenFile(device, os.O_RDONLY|syscall.O_DIRECT, 0)
	if errors.Is(err, syscall.EINVAL) {
		return os.Open(device)
	}
	return f, err
}

// alignedBuffer returns n bytes aligned to 4096, as O_DIRECT reads need.
func alignedBuffer(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	return b[off : off+n]
}

// openExclusive opens device with O_EXCL: while it is open the kernel refuses to mount the
// device (EBUSY), and no other exclusive opener (mkfs, a repairing fsck) gets it either.
func openExclusive(device string) (*os.File, error) {
	return os.OpenFile(device, os.O_RDONLY|syscall.O_EXCL, 0)
}
