//go:build !windows

package sshmux

import (
	"net"
	"os"
	"syscall"
)

// sendFD passes f's descriptor to the master with one byte of data, as OpenSSH's mm_send_fd does.
func sendFD(c *net.UnixConn, f *os.File) error {
	_, _, err := c.WriteMsgUnix([]byte{0}, syscall.UnixRights(int(f.Fd())), nil)
	return err
}
