//go:build unix

package backup

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// entry is one file found by the scan. The list costs about 100 bytes plus the path per file:
// memory grows with the number of files, never with their size.
type entry struct {
	rel   string // "." for the root
	mode  fs.FileMode
	uid   int
	gid   int
	size  int64
	mtime time.Time
	rdev  uint64
	dev   uint64
	ino   uint64
	nlink uint64
}

// scan lists root's tree in lexical order, directories before their contents.
func scan(ctx context.Context, root string, warn func(string)) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("stat %s: no unix stat", p)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			warn(fmt.Sprintf("skipped socket %s (tar cannot hold sockets; programs recreate them)", rel))
			return nil
		}
		out = append(out, entry{
			rel: rel, mode: fi.Mode(), uid: int(st.Uid), gid: int(st.Gid), size: fi.Size(),
			mtime: fi.ModTime(), rdev: statRdev(st), dev: statDev(st), ino: st.Ino, nlink: uint64(st.Nlink),
		})
		return nil
	})
	return out, err
}

// count returns what the tar will hold for entries (root excluded).
func count(entries []entry) Stats {
	var s Stats
	seen := map[[2]uint64]bool{}
	for _, e := range entries {
		if e.rel == "." {
			continue
		}
		s.Entries++
		if e.mode.IsRegular() {
			if e.nlink > 1 {
				k := [2]uint64{e.dev, e.ino}
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			s.Files++
			s.Bytes += e.size
		}
	}
	return s
}

// WriteTree writes the archive of root to w: the metadata entry (meta with its counts and times
// filled in), then data/. It scans first so the counts in the first entry are exact: a file that
// grows while it is read is cut at its scanned size, one that shrinks or vanishes is padded with
// zeros, and each such change is reported (an error when opts.Strict).
func WriteTree(ctx context.Context, w io.Writer, root string, meta Metadata, opts WriteOptions) (Metadata, Stats, error) {
	warn := opts.Warn
	if warn == nil {
		warn = func(string) {}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	meta.FormatVersion = FormatVersion
	meta.StartedAt = now().UTC()
	entries, err := scan(ctx, root, warn)
	if err != nil {
		return meta, Stats{}, fmt.Errorf("scan %s: %w", root, err)
	}
	meta.ScannedAt = now().UTC()
	c := count(entries)
	meta.Entries, meta.Files, meta.Bytes = c.Entries, c.Files, c.Bytes

	mj, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return meta, Stats{}, err
	}
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: MetadataName, Mode: 0o644,
		Size: int64(len(mj)), ModTime: meta.StartedAt, Format: tar.FormatPAX}); err != nil {
		return meta, Stats{}, err
	}
	if _, err := tw.Write(mj); err != nil {
		return meta, Stats{}, err
	}

	tr := &treeWriter{tw: tw, root: root, warn: warn, strict: opts.Strict,
		links: map[[2]uint64]string{}, buf: make([]byte, 1<<20)}
	for i := range entries {
		if err := ctx.Err(); err != nil {
			return meta, tr.stats, err
		}
		if err := tr.add(&entries[i]); err != nil {
			return meta, tr.stats, err
		}
	}
	if err := tw.Close(); err != nil {
		return meta, tr.stats, err
	}
	if err := tr.stats.matches(meta); err != nil {
		return meta, tr.stats, fmt.Errorf("internal error: %w", err)
	}
	return meta, tr.stats, nil
}

type treeWriter struct {
	tw     *tar.Writer
	root   string
	warn   func(string)
	strict bool
	links  map[[2]uint64]string
	stats  Stats
	buf    []byte
}

func archivePath(rel string, dir bool) string {
	if rel == "." {
		return DataDir + "/"
	}
	p := DataDir + "/" + filepath.ToSlash(rel)
	if dir {
		p += "/"
	}
	return p
}

func (t *treeWriter) changed(msg string) error {
	if t.strict {
		return fmt.Errorf("volume changed while it was read (%s): something still writes to it; stop it or use --keep-running", msg)
	}
	t.warn(msg)
	return nil
}

func (t *treeWriter) add(e *entry) error {
	full := filepath.Join(t.root, e.rel)
	h := &tar.Header{
		Name:    archivePath(e.rel, e.mode.IsDir()),
		Mode:    int64(e.mode.Perm()),
		Uid:     e.uid,
		Gid:     e.gid,
		ModTime: e.mtime,
		Format:  tar.FormatPAX,
	}
	if e.mode&fs.ModeSetuid != 0 {
		h.Mode |= 0o4000
	}
	if e.mode&fs.ModeSetgid != 0 {
		h.Mode |= 0o2000
	}
	if e.mode&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	var file *os.File
	switch {
	case e.mode.IsDir():
		h.Typeflag = tar.TypeDir
	case e.mode.IsRegular():
		if e.nlink > 1 {
			k := [2]uint64{e.dev, e.ino}
			if first, ok := t.links[k]; ok {
				h.Typeflag = tar.TypeLink
				h.Linkname = first
				break
			}
			t.links[k] = h.Name
		}
		h.Typeflag = tar.TypeReg
		h.Size = e.size
		f, err := os.Open(full)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := t.changed(fmt.Sprintf("%s vanished before it was read; archived as %d zero bytes", e.rel, e.size)); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("open %s: %w", full, err)
		default:
			file = f
			defer f.Close()
		}
	case e.mode&fs.ModeSymlink != 0:
		h.Typeflag = tar.TypeSymlink
		target, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("read link %s: %w", full, err)
		}
		h.Linkname = target
	case e.mode&fs.ModeNamedPipe != 0:
		h.Typeflag = tar.TypeFifo
	case e.mode&fs.ModeDevice != 0:
		h.Typeflag = tar.TypeBlock
		if e.mode&fs.ModeCharDevice != 0 {
			h.Typeflag = tar.TypeChar
		}
		h.Devmajor = int64(unix.Major(e.rdev))
		h.Devminor = int64(unix.Minor(e.rdev))
	default:
		return fmt.Errorf("%s: unsupported file type %s", full, e.mode.Type())
	}
	if h.Typeflag != tar.TypeLink {
		if err := readXattrs(full, h); err != nil {
			return err
		}
	}
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write header %s: %w", h.Name, err)
	}
	if e.rel != "." {
		t.stats.Entries++
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	t.stats.Files++
	var n int64
	if file != nil {
		var err error
		// Through t.buf: tar.Writer's own ReadFrom would read the file in 32 KiB pieces.
		n, err = io.CopyBuffer(struct{ io.Writer }{t.tw}, io.LimitReader(file, e.size), t.buf)
		if err != nil && !errors.Is(err, tar.ErrWriteTooLong) {
			return fmt.Errorf("read %s: %w", full, err)
		}
		if n == e.size {
			// Grown since the scan? The archive keeps the scanned size.
			var one [1]byte
			if k, _ := file.Read(one[:]); k > 0 {
				if err := t.changed(fmt.Sprintf("%s grew while it was read; archived its first %d bytes", e.rel, e.size)); err != nil {
					return err
				}
			}
		}
	}
	if n < e.size {
		if file != nil {
			if err := t.changed(fmt.Sprintf("%s shrank while it was read; padded %d bytes with zeros", e.rel, e.size-n)); err != nil {
				return err
			}
		}
		if _, err := io.CopyN(t.tw, zeroReader{}, e.size-n); err != nil {
			return err
		}
	}
	t.stats.Bytes += e.size
	return nil
}

// readXattrs puts the file's extended attributes into PAX records (SCHILY.xattr.*, as GNU tar
// --xattrs and bsdtar write them).
func readXattrs(p string, h *tar.Header) error {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil
		}
		return fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	if sz == 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	names := strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00")
	slices.Sort(names)
	for _, name := range names {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		val := make([]byte, vsz)
		if vsz > 0 {
			if vsz, err = unix.Lgetxattr(p, name, val); err != nil {
				return fmt.Errorf("read xattr %s of %s: %w", name, p, err)
			}
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = string(val[:vsz])
	}
	return nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// BufferedWriter returns a large buffered writer for pipes (the helper's stdout).
func BufferedWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 1<<20) }

func newTarWriter(w io.Writer) *tar.Writer { return tar.NewWriter(w) }
