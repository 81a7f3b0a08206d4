// Package backuptest builds file trees that exercise everything an archive must keep, and
// describes trees so two can be compared bit for bit.
package backuptest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TreeOptions chooses the tree's size.
type TreeOptions struct {
	// BigFile is the size of data/big.bin (0: none). It is written with real data (not a hole)
	// in 1 MiB blocks of pseudo-random bytes alternating with runs of text.
	BigFile int64
}

// MakeTree fills dir (which must exist) with nested directories, odd permissions, foreign
// owners, old and sub-second mtimes, symlinks (relative, absolute, dangling), hard links,
// user xattrs, empty files and a FIFO.
func MakeTree(t testing.TB, dir string, o TreeOptions) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	w := func(rel, content string, perm fs.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(content), perm))
		must(os.Chmod(p, perm))
	}
	w("README", "hello\n", 0o644)
	w("empty", "", 0o600)
	w("a/b/c/deep.txt", strings.Repeat("deep ", 1000), 0o640)
	w("a/b/empty-in-dir", "", 0o400)
	w("exec.sh", "#!/bin/sh\necho hi\n", 0o755)
	w("setgid-file", "g", fs.ModeSetgid|0o755)
	must(os.MkdirAll(filepath.Join(dir, "private"), 0o700))
	w("private/secret", "s3cr3t", 0o600)
	must(os.MkdirAll(filepath.Join(dir, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sticky"), fs.ModeSticky|0o777))
	must(os.MkdirAll(filepath.Join(dir, "emptydir"), 0o751))
	w("names/with space", "x", 0o644)
	w("names/ünïcödé", "u", 0o644)
	w("names/-dash", "d", 0o644)
	// Many small files.
	for i := range 200 {
		w(fmt.Sprintf("many/f%03d", i), strings.Repeat(fmt.Sprint(i), i), 0o644)
	}
	// Hard links: three names, one inode.
	w("hard/one", "linked content", 0o644)
	must(os.Link(filepath.Join(dir, "hard/one"), filepath.Join(dir, "hard/two")))
	must(os.Link(filepath.Join(dir, "hard/one"), filepath.Join(dir, "a/three")))
	// Symlinks.
	must(os.Symlink("b/c/deep.txt", filepath.Join(dir, "a/rel-link")))
	must(os.Symlink("/data/README", filepath.Join(dir, "abs-link")))
	must(os.Symlink("does/not/exist", filepath.Join(dir, "dangling")))
	must(os.Symlink("a", filepath.Join(dir, "dir-link")))
	// FIFO.
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	// xattrs.
	must(unix.Setxattr(filepath.Join(dir, "README"), "user.origin", []byte("dockbridge test"), 0))
	must(unix.Setxattr(filepath.Join(dir, "a"), "user.dir", []byte{0, 1, 2, 255}, 0))
	must(unix.Setxattr(filepath.Join(dir, "empty"), "user.empty", nil, 0))
	if o.BigFile > 0 {
		writeBig(t, filepath.Join(dir, "big.bin"), o.BigFile)
	}
	// Owners (as root) and times, deepest first so directory times stick.
	var paths []string
	must(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	base := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for i, p := range paths {
		if os.Geteuid() == 0 {
			must(os.Lchown(p, 1000+i%3, 2000+i%5))
		}
		mt := base.Add(time.Duration(i)*time.Hour + time.Duration(i*12345)*time.Microsecond)
		ts := []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	// chown clears setgid: set it again (changes ctime only).
	must(os.Chmod(filepath.Join(dir, "setgid-file"), fs.ModeSetgid|0o755))
}

func writeBig(t testing.TB, p string, size int64) {
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	block := make([]byte, 1<<20)
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy volume 0123456789\n", (1<<20)/58+1))[:1<<20]
	for off, i := int64(0), 0; off < size; i++ {
		n := min(int64(len(block)), size-off)
		src := text
		if i%2 == 0 {
			_, _ = rng.Read(block)
			src = block
		}
		if _, err := f.Write(src[:n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Snapshot describes every entry of dir: type, mode, owner, mtime (ns), size, content hash, link
// target, hard link group and xattrs. Two trees are equal bit for bit when their snapshots are.
// The root's own mtime is left out (the engine touches a volume's root).
func Snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %o uid=%d gid=%d", fi.Mode().Type(), uint32(st.Mode)&0o7777, st.Uid, st.Gid)
		if rel != "." {
			fmt.Fprintf(&b, " mtime=%d", fi.ModTime().UnixNano()) // Lstat's ModTime is st_mtim to the ns
		}
		switch {
		case fi.Mode().IsRegular():
			if first, ok := inodes[st.Ino]; ok && st.Nlink > 1 {
				fmt.Fprintf(&b, " hardlink-of=%s", first)
			} else {
				inodes[st.Ino] = rel
				fmt.Fprintf(&b, " size=%d sha256=%s nlink=%d", fi.Size(), hashFile(t, p), st.Nlink)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", target)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			fmt.Fprintf(&b, " xattrs=%s", xattrs(t, p))
		}
		out[rel] = b.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Diff lists the differences between two snapshots (empty: equal).
func Diff(want, got map[string]string) []string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			d = append(d, "missing "+k)
		} else if g != v {
			d = append(d, fmt.Sprintf("%s:\n  want %s\n  got  %s", k, v, g))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, "extra "+k)
		}
	}
	sort.Strings(d)
	return d
}

func hashFile(t testing.TB, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func xattrs(t testing.TB, p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "err:" + err.Error()
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var parts []string
	for _, name := range names {
		if name == "" || strings.HasPrefix(name, "security.") {
			continue
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		parts = append(parts, fmt.Sprintf("%s=%x", name, v[:m]))
	}
	return "[" + strings.Join(parts, ",") + "]"
}
