package backup

import (
	"io"
	"runtime"
	"sync"
)

// parallelZstd compresses independent zstd frames of chunkSize bytes on all cores and writes them
// in order. Concatenated frames are a valid zstd stream (`zstd -d` and every decoder read them);
// memory is bounded by the chunks in flight (2 per core).
type parallelZstd struct {
	w      io.Writer
	enc    frameEncoder
	chunk  int
	buf    []byte
	queue  chan chan []byte
	sem    chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	err    error
	pool   sync.Pool // input chunks
	outs   sync.Pool // compressed frames, sized for incompressible input
	closed bool
	frames int
}

func newParallelZstd(w io.Writer, enc frameEncoder, chunkSize int) (*parallelZstd, error) {
	n := runtime.GOMAXPROCS(0)
	if enc == nil {
		var err error
		if enc, err = newFrameEncoder(n); err != nil {
			return nil, err
		}
	}
	p := &parallelZstd{w: w, enc: enc, chunk: chunkSize, queue: make(chan chan []byte, 2*n),
		sem: make(chan struct{}, n), done: make(chan struct{})}
	p.pool.New = func() any { return make([]byte, 0, chunkSize) }
	p.outs.New = func() any { return make([]byte, 0, chunkSize+chunkSize/64+1024) }
	p.buf = p.pool.Get().([]byte)
	go p.emit()
	return p, nil
}

func (p *parallelZstd) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *parallelZstd) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *parallelZstd) emit() {
	defer close(p.done)
	for fut := range p.queue {
		out := <-fut
		if p.failed() != nil {
			continue
		}
		if _, err := p.w.Write(out); err != nil {
			p.fail(err)
		}
		p.outs.Put(out[:0]) //nolint:staticcheck // byte slices in a pool are fine here
	}
}

func (p *parallelZstd) submit() {
	p.frames++
	data := p.buf
	p.buf = p.pool.Get().([]byte)[:0]
	fut := make(chan []byte, 1)
	p.sem <- struct{}{}
	p.queue <- fut
	go func() {
		out, err := p.enc.encodeFrame(data, p.outs.Get().([]byte)[:0])
		p.pool.Put(data[:0]) //nolint:staticcheck // slices are fine in a pool here
		<-p.sem
		if err != nil {
			p.fail(err)
		}
		fut <- out
	}()
}

func (p *parallelZstd) Write(b []byte) (int, error) {
	if err := p.failed(); err != nil {
		return 0, err
	}
	n := len(b)
	for len(b) > 0 {
		k := min(len(b), p.chunk-len(p.buf))
		p.buf = append(p.buf, b[:k]...)
		b = b[k:]
		if len(p.buf) == p.chunk {
			p.submit()
		}
	}
	return n, nil
}

// Close compresses what is left and waits for every frame to be written; it does not close w.
func (p *parallelZstd) Close() error {
	if p.closed {
		return p.failed()
	}
	p.closed = true
	if len(p.buf) > 0 || p.frames == 0 {
		p.submit() // an empty input still makes one (empty) frame
	}
	close(p.queue)
	<-p.done
	p.enc.close()
	return p.failed()
}
