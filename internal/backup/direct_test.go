package backup

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestArchiveFileWritesWhatItGets writes random data in pieces of random sizes (a few bytes to
// several blocks) and reads the file back; both the O_DIRECT and the buffered way.
func TestArchiveFileWritesWhatItGets(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct", false: "buffered"}[direct], func(t *testing.T) {
			directWrites = direct
			defer func() { directWrites = true }()
			testArchiveFile(t, direct)
		})
	}
}

func testArchiveFile(t *testing.T, direct bool) {
	for _, size := range []int{0, 1, directAlign - 1, directAlign, directBlock, directBlock + 1, 3*directBlock + 5000, 9*directBlock + 77} {
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(rng.Uint32())
		}
		f, err := os.Create(filepath.Join(t.TempDir(), "a"))
		if err != nil {
			t.Fatal(err)
		}
		w := newArchiveFile(f)
		if _, isDirect := w.(*directFile); isDirect != direct && size == 0 {
			t.Logf("%s does not support O_DIRECT: buffered writes instead", filepath.Dir(f.Name()))
		}
		for p := want; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(directBlock*2))
			if n, err := w.Write(p[:k]); err != nil || n != k {
				t.Fatalf("size %d: Write = %d, %v", size, n, err)
			}
			p = p[k:]
		}
		if err := w.finish(); err != nil {
			t.Fatalf("size %d: finish: %v", size, err)
		}
		f.Close()
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("size %d: file has %d bytes, differs from the %d written", size, len(got), len(want))
		}
	}
}
