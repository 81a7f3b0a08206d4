package volumeops

import "io"

// Blocks of a read-ahead: readAheadBuffers of readAheadSize in flight.
const (
	readAheadSize    = 512 << 10
	readAheadBuffers = 4
)

// readAhead reads r in a goroutine of its own, a block at a time as data arrives, so that the
// engine can go on sending while the plugin hashes and writes what came before. The helper sends
// its output in bursts (see helper.burstSize); a reader that takes each burst as fast as the
// engine delivers it keeps the engine from blocking on a full socket mid-burst, which would
// cost a wakeup per 16 KiB frame again.
type readAhead struct {
	full chan []byte // read blocks, in order
	free chan []byte
	err  error // the goroutine's end (io.EOF or an error), once full is closed
	cur  []byte
	buf  []byte // cur's buffer, returned to free when consumed
}

// newReadAhead starts reading r; Close must be called after the last Read, and r must be
// closed (or end) for Close to return.
func newReadAhead(r io.Reader) *readAhead {
	a := &readAhead{full: make(chan []byte, readAheadBuffers), free: make(chan []byte, readAheadBuffers)}
	for range readAheadBuffers {
		a.free <- make([]byte, readAheadSize)
	}
	go func() {
		defer close(a.full)
		for b := range a.free {
			n, err := r.Read(b)
			if n > 0 {
				a.full <- b[:n] // never blocks: full holds every buffer there is
			}
			if err != nil {
				a.err = err
				return
			}
		}
	}()
	return a
}

func (a *readAhead) Read(p []byte) (int, error) {
	if len(a.cur) == 0 {
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)]
			a.buf = nil
		}
		b, ok := <-a.full
		if !ok {
			return 0, a.err
		}
		a.cur, a.buf = b, b
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close waits for the reading goroutine to end; the caller closes the stream first unless it
// has ended.
func (a *readAhead) Close() {
	close(a.free)
	for range a.full { //nolint:revive // drain until the goroutine ends
	}
}
