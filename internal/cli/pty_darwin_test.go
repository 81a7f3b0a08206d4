package cli

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY returns a new pseudo-terminal: the side a user types into (ptmx) and the terminal
// a program runs on (its stdin, stdout and stderr). macOS: grantpt, unlockpt and ptsname are
// the TIOCPTYGRANT, TIOCPTYUNLK and TIOCPTYGNAME ioctls.
func openPTY(t *testing.T) (ptmx, tty *os.File) {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	fd := int(ptmx.Fd())
	for _, req := range []uint{unix.TIOCPTYGRANT, unix.TIOCPTYUNLK} {
		if err := unix.IoctlSetInt(fd, req, 0); err != nil {
			t.Fatalf("grant and unlock the pty: %v", err)
		}
	}
	var name [128]byte // TIOCPTYGNAME writes a NUL-terminated path of at most 128 bytes
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TIOCPTYGNAME), uintptr(unsafe.Pointer(&name[0]))); errno != 0 {
		t.Fatalf("pty name: %v", errno)
	}
	path := string(name[:bytes.IndexByte(name[:], 0)])
	tty, err = os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty %s: %v", path, err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	return ptmx, tty
}
