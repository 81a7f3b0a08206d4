//go:build !linux

package volumeops

import (
	"bufio"
	"net"
)

// newStreamSource reads the attach connection as it is (see sockread_linux.go).
func newStreamSource(br *bufio.Reader, conn net.Conn) streamSource { return plainSource(br, conn) }
