package backup

import (
	"encoding/binary"
	"io"
	"runtime"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// parallelZstd compresses independent zstd frames of chunkSize bytes on all cores and writes them
// in order. Concatenated frames are a valid zstd stream (`zstd -d` and every decoder read them);
// memory is bounded by the chunks in flight (2 per core).
type parallelZstd struct {
	w      io.Writer
	enc    *zstd.Encoder
	chunk  int
	buf    []byte
	queue  chan chan []byte
	sem    chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	err    error
	pool   sync.Pool
	closed bool
	frames int
}

func newParallelZstd(w io.Writer, level zstd.EncoderLevel, chunkSize int) (*parallelZstd, error) {
	n := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(n),
		zstd.WithWindowSize(8<<20))
	if err != nil {
		return nil, err
	}
	p := &parallelZstd{w: w, enc: enc, chunk: chunkSize, queue: make(chan chan []byte, 2*n),
		sem: make(chan struct{}, n), done: make(chan struct{})}
	p.pool.New = func() any { return make([]byte, 0, chunkSize) }
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
		var out []byte
		if p.incompressible(data) {
			out = storedFrame(data)
		} else {
			out = p.enc.EncodeAll(data, make([]byte, 0, len(data)/2+1024))
		}
		p.pool.Put(data[:0]) //nolint:staticcheck // slices are fine in a pool here
		<-p.sem
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
	if err := p.failed(); err != nil {
		return err
	}
	return p.enc.Close()
}

// incompressible samples a chunk: when three 64 KiB samples do not shrink by 3 %, compressing
// the chunk would only burn CPU (random or already compressed data).
func (p *parallelZstd) incompressible(data []byte) bool {
	const sample = 64 << 10
	if len(data) < 4*sample {
		return false
	}
	var buf []byte
	for _, off := range []int{0, len(data)/2 - sample/2, len(data) - sample} {
		buf = p.enc.EncodeAll(data[off:off+sample], buf[:0])
		if len(buf) < sample*97/100 {
			return false
		}
	}
	return true
}

// storedFrame wraps data in a zstd frame of raw blocks (RFC 8878 3.1.1) with a content
// checksum: every zstd decoder reads it, at memcpy speed.
func storedFrame(data []byte) []byte {
	const maxBlock = 128 << 10
	out := make([]byte, 0, len(data)+len(data)/maxBlock*3+16)
	out = binary.LittleEndian.AppendUint32(out, 0xFD2FB528)
	// Frame header descriptor: content checksum; no single segment, no content size, no dict.
	// Window descriptor: exponent 7 -> 2^17 = 128 KiB, the largest raw block.
	out = append(out, 0x04, 7<<3)
	if len(data) == 0 {
		out = append(out, 1, 0, 0) // last block, raw, size 0
	}
	for off := 0; off < len(data); off += maxBlock {
		n := min(maxBlock, len(data)-off)
		hdr := uint32(n) << 3 // raw block type is 0
		if off+n == len(data) {
			hdr |= 1
		}
		out = append(out, byte(hdr), byte(hdr>>8), byte(hdr>>16))
		out = append(out, data[off:off+n]...)
	}
	return binary.LittleEndian.AppendUint32(out, uint32(xxhash.Sum64(data)))
}
