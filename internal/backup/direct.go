package backup

import (
	"io"
	"os"
	"unsafe"
)

// An archive is written once and not read again soon, so a local one is written around the page
// cache (O_DIRECT) where the filesystem allows it: it does not push the running containers' data
// out of memory, the kernel copies nothing, and no flusher thread has to write it back later.
// Blocks of directBlock bytes go to the disk from a goroutine of their own while the next one
// fills (directBuffers in all); filesystems without O_DIRECT (tmpfs, some network and FUSE
// filesystems) get buffered writes that are written back as they grow.
const (
	directBlock   = 2 << 20
	directBuffers = 3
	directAlign   = 4096 // file offsets, lengths and buffer addresses of O_DIRECT writes
)

// archiveFile is the sink of an archive being written to f.
type archiveFile interface {
	io.Writer
	// finish writes what is buffered; f must still be synced.
	finish() error
	// abort stops the writes; the file is then thrown away.
	abort()
}

// directWrites can be turned off by tests, to test the buffered way on any filesystem.
var directWrites = true

func newArchiveFile(f *os.File) archiveFile {
	if !directWrites || setDirect(f, true) != nil {
		return &bufferedFile{writebackWriter{f: f}}
	}
	d := &directFile{f: f, jobs: make(chan []byte, directBuffers), free: make(chan []byte, directBuffers),
		done: make(chan error, 1)}
	for range directBuffers {
		d.free <- alignedBuffer(directBlock)[:0]
	}
	d.cur = <-d.free
	go d.loop()
	return d
}

type bufferedFile struct{ writebackWriter }

func (b *bufferedFile) finish() error { b.flush(); return nil }
func (b *bufferedFile) abort()        {}

type directFile struct {
	f    *os.File
	cur  []byte
	jobs chan []byte // full blocks, in order
	free chan []byte
	done chan error // the writer goroutine's first error (or nil), once jobs is closed
	err  error      // the writer's error, once seen
	shut bool
}

func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	return b[off : off+n : off+n]
}

func (d *directFile) loop() {
	var err error
	for b := range d.jobs {
		if err == nil {
			_, err = d.f.Write(b)
		}
		d.free <- b[:0]
	}
	d.done <- err
}

func (d *directFile) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n := len(p)
	for len(p) > 0 {
		k := copy(d.cur[len(d.cur):cap(d.cur)], p)
		d.cur, p = d.cur[:len(d.cur)+k], p[k:]
		if len(d.cur) == cap(d.cur) {
			d.jobs <- d.cur
			select {
			case d.cur = <-d.free:
			case err := <-d.done: // only after a failed write: the goroutine drains, then ends
				d.err = err
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// stop ends the writer goroutine and returns its error.
func (d *directFile) stop() error {
	if !d.shut {
		d.shut = true
		close(d.jobs)
		if err := <-d.done; d.err == nil {
			d.err = err
		}
	}
	return d.err
}

func (d *directFile) finish() error {
	if err := d.stop(); err != nil {
		return err
	}
	// The aligned part of the last block goes the same way; the tail, which O_DIRECT cannot
	// write, goes through the page cache.
	whole := len(d.cur) &^ (directAlign - 1)
	if whole > 0 {
		if _, err := d.f.Write(d.cur[:whole]); err != nil {
			return err
		}
	}
	if whole < len(d.cur) {
		if err := setDirect(d.f, false); err != nil {
			return err
		}
		if _, err := d.f.Write(d.cur[whole:]); err != nil {
			return err
		}
	}
	d.cur = d.cur[:0]
	return nil
}

func (d *directFile) abort() { _ = d.stop() }
