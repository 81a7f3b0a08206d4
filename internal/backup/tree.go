package backup

import (
	"archive/tar"
	"fmt"
	"path"
	"strings"
)

// The kernel's limits that a restore would otherwise hit half-way: a name component longer
// than NAME_MAX, a symlink target of PATH_MAX or more, an xattr name longer than XATTR_NAME_MAX
// or a value larger than XATTR_SIZE_MAX.
const (
	maxNameLen       = 255
	maxSymlinkTarget = 4095
	maxXattrName     = 255
	maxXattrValue    = 64 << 10
)

type entryKind uint8

const (
	kindImplicitDir entryKind = iota + 1 // made as the parent of a later entry
	kindDir                              // had its own entry
	kindFile                             // a regular file: the only thing a hard link may point at
	kindHardLink
	kindSymlink
	kindSpecial // FIFO or device
)

// entryTree is the tree an archive builds in an empty target, in memory: one map entry per
// archive entry. Verify (Walk) and restore (Extract) both read an archive through it, so they
// accept and refuse the same archives: an archive that verifies restores, entry for entry.
type entryTree map[string]entryKind

// add checks that the entry can be created where the archive's earlier entries left the tree,
// and records it. It refuses an entry whose name is taken (a directory listed after its
// contents is fine, once), an entry under a file or a symlink, a hard link to anything but a
// regular file made earlier, a type restore does not make, and names beyond the kernel's limits.
func (t entryTree) add(h *tar.Header, rel string) error {
	unsafe := func(format string, args ...any) error {
		return fmt.Errorf("%w: %q "+format, append([]any{ErrUnsafeEntry, h.Name}, args...)...)
	}
	var kind entryKind
	switch {
	case h.Typeflag == tar.TypeDir:
		kind = kindDir
	case isRegular(h):
		kind = kindFile
	case h.Typeflag == tar.TypeLink:
		kind = kindHardLink
	case h.Typeflag == tar.TypeSymlink:
		kind = kindSymlink
	case h.Typeflag == tar.TypeFifo, h.Typeflag == tar.TypeChar, h.Typeflag == tar.TypeBlock:
		kind = kindSpecial
	default:
		return unsafe("has unsupported type %q", h.Typeflag)
	}
	for _, el := range strings.Split(rel, "/") {
		if len(el) > maxNameLen {
			return unsafe("has a name longer than %d bytes", maxNameLen)
		}
	}
	if kind == kindSymlink && (len(h.Linkname) > maxSymlinkTarget || h.Linkname == "" || strings.ContainsRune(h.Linkname, 0)) {
		return unsafe("is a symlink to an empty, too long (more than %d bytes) or NUL-holding target", maxSymlinkTarget)
	}
	if kind == kindDir || kind == kindFile {
		if err := checkXattrs(h); err != nil {
			return unsafe("%v", err)
		}
	}
	// Every parent is a directory: one the archive listed, or one made for an earlier entry.
	for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
		switch t[dir] {
		case 0:
			t[dir] = kindImplicitDir
		case kindImplicitDir, kindDir:
		case kindSymlink:
			return unsafe("lies under %q, a symlink: nothing is created through a symlink", dir)
		default:
			return unsafe("lies under %q, which is not a directory", dir)
		}
	}
	if have := t[rel]; have != 0 {
		if have == kindImplicitDir && kind == kindDir {
			t[rel] = kindDir
			return nil
		}
		return unsafe("appears twice")
	}
	if kind == kindHardLink {
		target, _ := relName(h.Linkname) // checked by the reader
		if t[target] != kindFile {
			return unsafe("is a hard link to %q, which this archive did not create before as a regular file", h.Linkname)
		}
	}
	t[rel] = kind
	return nil
}

// checkXattrs refuses extended attribute records no filesystem can store.
func checkXattrs(h *tar.Header) error {
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if name == "" || len(name) > maxXattrName || strings.ContainsRune(name, 0) {
			return fmt.Errorf("has an extended attribute name that is empty, longer than %d bytes or holds NUL", maxXattrName)
		}
		if len(v) > maxXattrValue {
			return fmt.Errorf("has extended attribute %s of %d bytes, more than the %d any filesystem stores", name, len(v), maxXattrValue)
		}
	}
	return nil
}
