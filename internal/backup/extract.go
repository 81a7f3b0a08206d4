//go:build unix

package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Extract reads a decompressed archive from r into dir, which should be empty. Nothing is ever
// written outside dir: every path is resolved inside it (os.Root refuses .., absolute paths and
// symlinks that leave it), and the reader refuses, before anything is made for it, an entry
// Walk refuses too (a name taken twice, an entry under a symlink or a file, a hard link to
// anything but a regular file this archive already created). The content is bounded by the
// metadata, and at the end the counts must match it.
func Extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Metadata, Stats, error) {
	ar, err := newArchiveReader(r)
	if err != nil {
		return Metadata{}, Stats{}, err
	}
	m := ar.meta
	if opts.MaxBytes > 0 && m.Bytes > opts.MaxBytes {
		return m, Stats{}, fmt.Errorf("%w: the backup holds %d bytes but the target has room for %d: grow the volume or free space", ErrTooLarge, m.Bytes, opts.MaxBytes)
	}
	if opts.Before != nil {
		if err := opts.Before(m); err != nil {
			return m, Stats{}, err
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return m, Stats{}, fmt.Errorf("open target %s: %w", dir, err)
	}
	defer root.Close()
	x := &extractor{root: root, ar: ar, opts: opts, buf: make([]byte, 1<<20)}
	if x.opts.Warn == nil {
		x.opts.Warn = func(string) {}
	}
	for {
		if err := ctx.Err(); err != nil {
			return m, ar.stats, err
		}
		h, rel, err := ar.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, ar.stats, err
		}
		if err := x.entry(h, rel); err != nil {
			return m, ar.stats, err
		}
	}
	if err := ar.finish(r); err != nil {
		return m, ar.stats, err
	}
	// Directory times last, deepest first, since creating their contents changed them.
	slices.SortFunc(x.dirs, func(a, b dirTime) int { return strings.Compare(b.rel, a.rel) })
	for _, d := range x.dirs {
		if err := root.Chtimes(d.rel, d.mtime, d.mtime); err != nil {
			return m, ar.stats, fmt.Errorf("set times of %s: %w", d.rel, err)
		}
	}
	return m, ar.stats, nil
}

type dirTime struct {
	rel   string
	mtime time.Time
}

type extractor struct {
	root   *os.Root
	ar     *archiveReader
	opts   ExtractOptions
	dirs   []dirTime
	buf    []byte
	warned map[string]bool
}

// implicitDir accepts a directory entry for a directory made earlier as the parent of another
// entry (archives from other tools may list a directory after its contents); the reader's
// tree lets that happen once per directory.
func (x *extractor) implicitDir(rel string, err error) bool {
	if !errors.Is(err, fs.ErrExist) {
		return false
	}
	fi, lerr := x.root.Lstat(rel)
	return lerr == nil && fi.IsDir()
}

func (x *extractor) warnOnce(key, msg string) {
	if x.warned == nil {
		x.warned = map[string]bool{}
	}
	if !x.warned[key] {
		x.warned[key] = true
		x.opts.Warn(msg)
	}
}

func (x *extractor) entry(h *tar.Header, rel string) error {
	mode := h.FileInfo().Mode()
	if rel != "." {
		if dir := path.Dir(rel); dir != "." {
			if err := x.root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("%w: create parent of %q: %v", ErrUnsafeEntry, h.Name, err)
			}
		}
	}
	switch {
	case h.Typeflag == tar.TypeDir:
		if rel != "." {
			if err := x.root.Mkdir(rel, 0o700); err != nil && !x.implicitDir(rel, err) {
				return fmt.Errorf("%w: create directory %q: %v", ErrUnsafeEntry, h.Name, err)
			}
		}
		x.dirs = append(x.dirs, dirTime{rel, h.ModTime})
	case isRegular(h):
		f, err := x.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("%w: create %q: %v", ErrUnsafeEntry, h.Name, err)
		}
		wb := writebackWriter{f: f}
		err = x.ar.copyContent(&wb, h, x.buf)
		wb.flush()
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", h.Name, cerr)
		}
		if err != nil {
			return err
		}
	case h.Typeflag == tar.TypeSymlink:
		if err := x.root.Symlink(h.Linkname, rel); err != nil {
			return fmt.Errorf("%w: create symlink %q: %v", ErrUnsafeEntry, h.Name, err)
		}
	case h.Typeflag == tar.TypeLink:
		target, _ := relName(h.Linkname) // a regular file this archive made (the reader's tree)
		if err := x.root.Link(target, rel); err != nil {
			return fmt.Errorf("%w: create hard link %q: %v", ErrUnsafeEntry, h.Name, err)
		}
		return nil // the link shares the target's inode: owner, mode and times are already set
	case h.Typeflag == tar.TypeFifo, h.Typeflag == tar.TypeChar, h.Typeflag == tar.TypeBlock:
		var kind uint32 = unix.S_IFIFO
		if h.Typeflag != tar.TypeFifo {
			if !x.opts.AllowDevices {
				return fmt.Errorf("%w: %q is a device file; restore with --allow-devices if you trust this backup", ErrDeviceFile, h.Name)
			}
			kind = unix.S_IFCHR
			if h.Typeflag == tar.TypeBlock {
				kind = unix.S_IFBLK
			}
		}
		if err := x.atParent(rel, func(dirfd int, base string) error {
			return mknodat(dirfd, base, kind|0o600, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
		}); err != nil {
			return fmt.Errorf("create %q: %w", h.Name, err)
		}
	default:
		return fmt.Errorf("%w: %q has unsupported type %q", ErrUnsafeEntry, h.Name, h.Typeflag)
	}
	return x.attributes(h, rel, mode)
}

// atParent runs fn with a descriptor of rel's directory, opened inside the root, and rel's base
// name: the *at system calls then cannot be redirected by a symlink.
func (x *extractor) atParent(rel string, fn func(dirfd int, base string) error) error {
	d, err := x.root.Open(path.Dir(rel))
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), path.Base(rel))
}

func (x *extractor) attributes(h *tar.Header, rel string, mode fs.FileMode) error {
	symlink := h.Typeflag == tar.TypeSymlink
	if x.opts.Chown {
		if err := x.root.Lchown(rel, h.Uid, h.Gid); err != nil {
			if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("set owner of %s: %w", h.Name, err)
			}
			x.warnOnce("chown", fmt.Sprintf("owners not restored (%v): the engine's user namespace does not map uid %d", err, h.Uid))
		}
	}
	if h.Typeflag == tar.TypeDir || isRegular(h) {
		if err := x.xattrs(h, rel); err != nil {
			return err
		}
	}
	if !symlink {
		if err := x.root.Chmod(rel, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return fmt.Errorf("set mode of %s: %w", h.Name, err)
		}
	}
	if h.Typeflag == tar.TypeDir {
		return nil // after the contents
	}
	ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if !h.AccessTime.IsZero() {
		ts[0] = unix.NsecToTimespec(h.AccessTime.UnixNano())
	}
	if err := x.atParent(rel, func(dirfd int, base string) error {
		return unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}); err != nil {
		return fmt.Errorf("set times of %s: %w", h.Name, err)
	}
	return nil
}

func (x *extractor) xattrs(h *tar.Header, rel string) error {
	var names []string
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	f, err := x.root.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open %s for xattrs: %w", h.Name, err)
	}
	defer f.Close()
	for _, k := range names {
		name := strings.TrimPrefix(k, "SCHILY.xattr.")
		if err := unix.Fsetxattr(int(f.Fd()), name, []byte(h.PAXRecords[k]), 0); err != nil {
			// The target does not take it: no such namespace here, not allowed, or a value
			// this filesystem rejects (a malformed ACL or capability, too large for its inode).
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) ||
				errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ERANGE) {
				x.warnOnce("xattr:"+name, fmt.Sprintf("extended attribute %s not restored: %v", name, err))
				continue
			}
			return fmt.Errorf("set xattr %s on %s: %w", name, h.Name, err)
		}
	}
	return nil
}
