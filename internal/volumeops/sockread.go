package volumeops

import (
	"bufio"
	"io"
	"net"
	"time"
)

// A helper's output is read from the engine's socket in pieces of about pacedTarget bytes: after
// a read that found less, the reader sleeps (up to pacedMaxPause) so that the socket gathers
// more. See newStreamSource.
const (
	pacedTarget   = 128 << 10
	pacedMaxPause = 2 * time.Millisecond
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

// pace is the reader's pause after a read of n bytes into a buffer of size room, given the
// previous pause: it doubles (from 100µs, up to pacedMaxPause) while reads find less than half
// of what they should, and halves when they find enough.
func pace(prev time.Duration, n, room int) time.Duration {
	want := min(room, pacedTarget)
	switch {
	case n >= want:
		return prev / 2
	case n < want/2:
		return min(pacedMaxPause, max(prev*2, 100*time.Microsecond))
	}
	return prev
}
