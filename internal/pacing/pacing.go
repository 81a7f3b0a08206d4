// Package pacing reads a stream that arrives in small pieces in large reads: after a read that
// found little, the reader sleeps in the kernel for a moment, and the pipe's or socket's buffer
// gathers the next read. The engine moves a helper's stdin and stdout through the runtime
// shim, which copies 4 KiB at a time; a reader that takes every piece as it comes is woken
// for each of them, hundreds of thousands of times per gigabyte.
package pacing

import (
	"io"
	"time"
)

// Target is what a read should find; MaxPause bounds a pause. A pipe of 1 MiB or a socket's
// buffer (about 200 KiB on Linux) holds what arrives in MaxPause at a few hundred MB/s.
const (
	Target   = 128 << 10
	MaxPause = 2 * time.Millisecond
)

// Next is the pause after a read of n bytes into a buffer of size room, given the previous
// pause: it doubles (from 100µs, up to MaxPause) while reads find less than half of what they
// should, halves when they find enough, and stays otherwise.
func Next(prev time.Duration, n, room int) time.Duration {
	want := min(room, Target)
	switch {
	case n >= want:
		return prev / 2
	case n < want/2:
		return min(MaxPause, max(prev*2, 100*time.Microsecond))
	}
	return prev
}

// Reader paces the reads of R, which must block when there is nothing to read (a pipe, or a
// socket read outside Go's network poller).
type Reader struct {
	R     io.Reader
	pause time.Duration
}

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	if err != nil || n == 0 {
		return n, err
	}
	r.pause = Next(r.pause, n, len(p))
	if r.pause > 0 && n < min(len(p), Target) {
		Sleep(r.pause)
	}
	return n, nil
}
