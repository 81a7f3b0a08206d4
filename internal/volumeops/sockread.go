package volumeops

import (
	"bufio"
	"io"
	"net"
)

// streamSource is where a helper's output is read from.
type streamSource struct {
	io.Reader
	interrupt func() // makes a Read in progress return (the backup was cancelled)
	release   func() // after the last Read
}

// plainSource reads the attach connection as the client library gives it.
func plainSource(br *bufio.Reader, conn net.Conn) streamSource {
	return streamSource{Reader: br, interrupt: func() { conn.Close() }, release: func() {}}
}
