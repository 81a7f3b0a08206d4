package backup

import "os"

// writebackChunk is how much a writebackWriter lets accumulate before it starts the writeback.
const writebackChunk = 8 << 20

// writebackWriter writes to a file and starts the writeback of every writebackChunk written, so
// that a large archive or restored file is mostly on disk already when it is synced: that wait at
// the end (a second or more per GB) overlaps with the work instead of following it.
type writebackWriter struct {
	f           *os.File
	off, kicked int64
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.kicked >= writebackChunk {
		startWriteback(w.f, w.kicked, w.off-w.kicked)
		w.kicked = w.off
	}
	return n, err
}

// flush starts the writeback of the rest when it is worth a system call.
func (w *writebackWriter) flush() {
	if w.off-w.kicked >= 1<<20 {
		startWriteback(w.f, w.kicked, w.off-w.kicked)
		w.kicked = w.off
	}
}
