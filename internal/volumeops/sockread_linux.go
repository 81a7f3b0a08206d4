package volumeops

import (
	"errors"
	"io"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// sockReadSize is how much one read of the attach stream waits for; sockBuffers of them are
// in flight.
const (
	sockReadSize = 512 << 10
	sockBuffers  = 4
)

// socketReader reads the attach stream of a local engine (a Unix socket) with blocking reads that
// wait until sockReadSize bytes are there (MSG_WAITALL), on a duplicate of the socket's
// descriptor. The engine writes the helper's output in frames of 16 KiB; read through Go's
// network poller, every frame woke the plugin (epoll, futex, read: about 4 system calls per
// 16 KiB, a third of the plugin's CPU time in a backup). Here the kernel gathers the frames and
// the plugin wakes once per 512 KiB. A goroutine of its own keeps reading while the plugin
// hashes and writes what came before, so the engine never waits for a full socket. It is used
// only for a stream the plugin does not write to.
type socketReader struct {
	mu     sync.Mutex // guards fd against shutdown after Close
	closed bool
	fd     int
	full   chan []byte // read blocks, in order
	free   chan []byte
	err    error // the reader goroutine's end (io.EOF or an error), once full is closed
	cur    []byte
	buf    []byte // cur's buffer, returned to free when consumed
}

// newSocketReader returns nil when c is not a Unix socket (a remote engine over SSH, TCP).
func newSocketReader(c net.Conn) *socketReader {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd, err = unix.Dup(int(f)) }); err != nil || fd < 0 {
		return nil
	}
	// Blocking mode is a property of the shared open file: the original connection is only
	// closed after this, never read or written.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil
	}
	s := &socketReader{fd: fd, full: make(chan []byte, sockBuffers), free: make(chan []byte, sockBuffers)}
	for range sockBuffers {
		s.free <- make([]byte, sockReadSize)
	}
	go s.loop()
	return s
}

func (s *socketReader) loop() {
	defer close(s.full)
	for b := range s.free {
		n, err := recvAll(s.fd, b)
		if n > 0 {
			s.full <- b[:n]
		}
		if err != nil {
			s.err = err
			return
		}
	}
}

// recvAll fills b unless the stream ends (io.EOF) or fails first.
func recvAll(fd int, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		n, _, err := unix.Recvfrom(fd, b[got:], unix.MSG_WAITALL)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return got, err
		case n == 0:
			return got, io.EOF
		}
		got += n
	}
	return got, nil
}

func (s *socketReader) Read(p []byte) (int, error) {
	if len(s.cur) == 0 {
		if s.buf != nil {
			s.free <- s.buf[:cap(s.buf)]
			s.buf = nil
		}
		b, ok := <-s.full
		if !ok {
			return 0, s.err
		}
		s.cur, s.buf = b, b
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

// shutdown wakes a blocked read (the stream then ends); Close releases the descriptor once the
// reader goroutine is done.
func (s *socketReader) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		_ = unix.Shutdown(s.fd, unix.SHUT_RDWR)
	}
}

// Close is called once, after the last Read.
func (s *socketReader) Close() error {
	s.shutdown()
	close(s.free)
	for range s.full { //nolint:revive // drain until the reader goroutine ends
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return unix.Close(s.fd)
}
