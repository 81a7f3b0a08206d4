package backup

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract feeds arbitrary bytes to the extractor: it must never panic and never write
// outside the target.
func FuzzExtract(f *testing.F) {
	var good bytes.Buffer
	src := f.TempDir()
	_ = os.WriteFile(filepath.Join(src, "a"), []byte("hello"), 0o644)
	_ = os.Symlink("a", filepath.Join(src, "l"))
	_ = os.Link(filepath.Join(src, "a"), filepath.Join(src, "h"))
	if _, _, err := WriteTree(f.Context(), &good, src, testMeta(), WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(hostileTar(f, meta(2, 1, 4), symlink("data/up", "../outside"), reg("data/up/evil", "evil")))
	f.Add(hostileTar(f, meta(1, 0, 0), hardlink("data/p", "data/../../etc/passwd")))
	f.Add(hostileTar(f, meta(1, 1, 4), reg("data/../outside/evil", "evil")))
	f.Add(hostileTar(f, meta(3, 1, 4), dirE("data/d"), symlink("data/d/x", "/tmp"), reg("data/d/x/y", "evil")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		target := filepath.Join(root, "target")
		_ = os.Mkdir(target, 0o755)
		_, _, _ = Extract(t.Context(), bytes.NewReader(data), target, ExtractOptions{MaxBytes: 1 << 20})
		des, err := os.ReadDir(root)
		if err != nil || len(des) != 1 || des[0].Name() != "target" {
			t.Fatalf("extraction wrote next to the target: %v", des)
		}
		// Walk must agree with Extract on what is acceptable (no panic either).
		_, _, _ = Walk(bytes.NewReader(data))
		// And a symlink inside the target may point anywhere, but nothing was created through one.
		_ = filepath.WalkDir(target, func(p string, d os.DirEntry, err error) error {
			if err == nil && !strings.HasPrefix(p, target) {
				t.Fatalf("walked out to %s", p)
			}
			return nil
		})
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
