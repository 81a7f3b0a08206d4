// Package fswatch tells when anything changes in a directory tree: inotify on Linux (a watch on
// every directory, added as directories appear), and on other systems a walk of the tree at an
// interval that keeps the walks under a tenth of one core (macOS' FSEvents needs cgo, which the
// release builds do not have). It says that something changed, not what: the synchronization
// that follows scans for itself.
package fswatch

import (
	"context"
	"hash/fnv"
	"io/fs"
	"path/filepath"
	"time"
)

// Options tune a watch.
type Options struct {
	// Debounce gathers the events of one save (default 30 ms).
	Debounce time.Duration
	// Poll forces the walking watch (tests; and the fallback when inotify cannot watch the tree).
	Poll bool
	// MinInterval is the walking watch's shortest interval (default 2 s).
	MinInterval time.Duration
}

// Watch calls changed after anything in root changed, at most once per Debounce, until ctx ends.
// It returns when ctx ends, or with an error when root cannot be watched at all.
func Watch(ctx context.Context, root string, o Options, changed func()) error {
	if o.Debounce <= 0 {
		o.Debounce = 30 * time.Millisecond
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 2 * time.Second
	}
	if !o.Poll {
		err := watchNative(ctx, root, o, changed)
		if err != errNoNative {
			return err
		}
	}
	return poll(ctx, root, o, changed)
}

// poll walks the tree, and calls changed when its fingerprint (every entry's path, size, mode,
// modification time) differs from the previous walk's.
func poll(ctx context.Context, root string, o Options, changed func()) error {
	prev, took, err := fingerprint(root)
	if err != nil {
		return err
	}
	for {
		wait := max(o.MinInterval, 10*took)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		var fp uint64
		fp, took, err = fingerprint(root)
		if err != nil {
			continue // a folder that went away in the middle of a walk
		}
		if fp != prev {
			prev = fp
			changed()
		}
	}
}

func fingerprint(root string) (uint64, time.Duration, error) {
	start := time.Now()
	h := fnv.New64a()
	var buf [8]byte
	put := func(v int64) {
		for i := range buf {
			buf[i] = byte(v >> (8 * i))
		}
		h.Write(buf[:])
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		h.Write([]byte(p))
		if fi, err := d.Info(); err == nil {
			put(fi.Size())
			put(int64(fi.Mode()))
			put(fi.ModTime().UnixNano())
		}
		return nil
	})
	return h.Sum64(), time.Since(start), err
}
