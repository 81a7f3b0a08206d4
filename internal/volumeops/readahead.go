package volumeops

import (
	"io"
	"sync"
)

// Blocks of a read-ahead, and how much of the stream wakes a waiting consumer.
const (
	readAheadSize    = 1 << 20
	readAheadBuffers = 4
	readAheadWake    = 256 << 10
)

// readAhead reads r in a goroutine of its own, as data arrives, so that the engine can go on
// sending while the plugin hashes and writes what came before. The helper sends its output in
// bursts (see helper.burstSize), and r takes them in reads of about 128 KiB (see
// newStreamSource). A consumer that waits is woken when readAheadWake bytes (or the end) are
// there, not for every read.
type readAhead struct {
	mu      sync.Mutex
	cond    sync.Cond
	blocks  [][]byte // in stream order; the goroutine fills the last one beyond filled
	off     int      // where the consumer reads in blocks[0]
	filled  int      // bytes of the last block already read from the stream
	avail   int      // bytes read from the stream and not yet consumed
	free    [][]byte
	waiting bool  // the consumer waits for data
	err     error // the stream's end (io.EOF or an error), once done
	done    bool
	quit    bool
	exited  chan struct{}
}

// newReadAhead starts reading r; Close must be called after the last Read, and r must be
// closed (or end) for Close to return.
func newReadAhead(r io.Reader) *readAhead {
	a := &readAhead{exited: make(chan struct{})}
	a.cond.L = &a.mu
	for range readAheadBuffers - 1 {
		a.free = append(a.free, make([]byte, readAheadSize))
	}
	a.blocks = [][]byte{make([]byte, readAheadSize)}
	go a.loop(r)
	return a
}

func (a *readAhead) loop(r io.Reader) {
	defer close(a.exited)
	a.mu.Lock()
	defer a.mu.Unlock()
	for !a.quit {
		if last := a.blocks[len(a.blocks)-1]; a.filled < len(last) {
			a.mu.Unlock()
			n, err := r.Read(last[a.filled:]) // the consumer reads only below filled
			a.mu.Lock()
			a.filled += n
			a.avail += n
			if err != nil {
				a.err, a.done = err, true
			}
			if a.waiting && (a.done || a.avail >= readAheadWake) {
				a.cond.Broadcast()
			}
			if a.done {
				return
			}
			continue
		}
		// The last block is full: go on in a free one, when the consumer has freed one.
		if len(a.free) == 0 {
			a.cond.Wait()
			continue
		}
		a.blocks = append(a.blocks, a.free[len(a.free)-1])
		a.free = a.free[:len(a.free)-1]
		a.filled = 0
	}
}

func (a *readAhead) Read(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.avail == 0 {
		if a.done {
			return 0, a.err
		}
		a.waiting = true
		a.cond.Wait()
		a.waiting = false
	}
	if a.off == len(a.blocks[0]) { // consumed, and a later block has data: free it
		a.free = append(a.free, a.blocks[0])
		a.blocks, a.off = a.blocks[1:], 0
		a.cond.Broadcast()
	}
	end := len(a.blocks[0])
	if len(a.blocks) == 1 {
		end = a.filled
	}
	n := copy(p, a.blocks[0][a.off:end])
	a.off += n
	a.avail -= n
	return n, nil
}

// Close waits for the reading goroutine to end; the caller closes the stream first unless it
// has ended.
func (a *readAhead) Close() {
	a.mu.Lock()
	a.quit = true
	a.cond.Broadcast()
	a.mu.Unlock()
	<-a.exited
}
