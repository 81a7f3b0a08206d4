package backup

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract feeds arbitrary bytes to the extractor and to the verifier. Extract must never
// panic and never write outside the target, and `backup verify` (Walk) and `restore` (Extract)
// must agree on every archive: both accept it or both refuse it. A verify that passes an
// archive restore then refuses (or the reverse) is a backup the user cannot trust.
func FuzzExtract(f *testing.F) {
	var good bytes.Buffer
	src := f.TempDir()
	_ = os.WriteFile(filepath.Join(src, "a"), []byte("hello"), 0o644)
	_ = os.Symlink("a", filepath.Join(src, "l"))
	_ = os.Link(filepath.Join(src, "a"), filepath.Join(src, "h"))
	_ = os.Mkdir(filepath.Join(src, "d"), 0o755)
	_ = os.WriteFile(filepath.Join(src, "d", "b"), []byte("in a directory"), 0o600)
	if _, _, err := WriteTree(f.Context(), &good, src, testMeta(), WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(hostileTar(f, meta(2, 1, 4), symlink("data/up", "../outside"), reg("data/up/evil", "evil")))
	f.Add(hostileTar(f, meta(1, 0, 0), hardlink("data/p", "data/../../etc/passwd")))
	f.Add(hostileTar(f, meta(1, 1, 4), reg("data/../outside/evil", "evil")))
	f.Add(hostileTar(f, meta(3, 1, 4), dirE("data/d"), symlink("data/d/x", "/tmp"), reg("data/d/x/y", "evil")))
	// Archives Walk used to pass and Extract refused.
	f.Add(hostileTar(f, meta(2, 2, 8), reg("data/a", "good"), reg("data/a", "evil")))
	f.Add(hostileTar(f, meta(2, 2, 4), reg("data/f", "file"), reg("data/f/under", "")))
	f.Add(hostileTar(f, meta(2, 0, 0), symlink("data/l", "."), symlink("data/l", ".")))
	f.Add(hostileTar(f, meta(2, 0, 0), dirE("data/d"), hardlink("data/k", "data/d")))
	f.Add(hostileTar(f, meta(3, 1, 4), reg("data/a", "four"), hardlink("data/h", "data/a"), hardlink("data/h2", "data/h")))
	f.Add(hostileTar(f, meta(3, 1, 4), symlink("data/in", "d"), dirE("data/d"), reg("data/in/x", "four")))
	f.Add(hostileTar(f, meta(1, 1, 0), reg("data/"+strings.Repeat("n", 256), "")))
	f.Add(hostileTar(f, meta(1, 0, 0), hostileEntry{h: tar.Header{Typeflag: 'Z', Name: "data/odd"}}))
	// Archives both must accept: a directory listed after its contents, a fifo.
	f.Add(hostileTar(f, meta(2, 1, 4), reg("data/d/x", "four"), dirE("data/d")))
	f.Add(hostileTar(f, meta(1, 0, 0), hostileEntry{h: tar.Header{Typeflag: tar.TypeFifo, Name: "data/pipe"}}))
	f.Add([]byte{})
	const room = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		target := filepath.Join(root, "target")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		// Devices are a restore policy (--allow-devices), not a property of the archive: allow
		// them where this process may make them, so that the comparison is about the archive.
		opts := ExtractOptions{MaxBytes: room, AllowDevices: os.Geteuid() == 0}
		_, _, xerr := Extract(t.Context(), bytes.NewReader(data), target, opts)
		des, err := os.ReadDir(root)
		if err != nil || len(des) != 1 || des[0].Name() != "target" {
			t.Fatalf("extraction wrote next to the target: %v", des)
		}
		if errors.Is(xerr, ErrTooLarge) && strings.Contains(xerr.Error(), "room for") {
			return // refused for the target's size, before reading an entry: not a verdict on the archive
		}
		if !opts.AllowDevices && errors.Is(xerr, ErrDeviceFile) {
			return // this process may not make device nodes: restore refused by policy
		}
		_, _, werr := Walk(bytes.NewReader(data))
		if (werr == nil) != (xerr == nil) {
			t.Fatalf("verify and restore disagree on this archive:\n  verify (Walk): %v\n  restore (Extract): %v", werr, xerr)
		}
	})
}

// The tar reader's own limits hold for the metadata entry.
func TestMetadataEntryIsBounded(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: MetadataName, Size: maxMetadataSize + 1}))
	_, _ = tw.Write(make([]byte, maxMetadataSize+1))
	_ = tw.Close()
	if _, err := ReadMetadata(&buf); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("got %v", err)
	}
}
