package backup

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestParallelZstd(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 9<<20+123)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"small", []byte("hello")},
		{"exactly one chunk", bytes.Repeat([]byte("a"), 1<<20)},
		{"several chunks, odd end", random},
		{"random and text chunks", append(bytes.Repeat([]byte("text compresses well "), 300000), random...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			p, err := newParallelZstd(&out, zstd.SpeedFastest, 1<<20)
			must(t, err)
			// Odd write sizes across chunk boundaries.
			for in := tc.in; len(in) > 0; {
				k := min(len(in), 777777)
				if _, err := p.Write(in[:k]); err != nil {
					t.Fatal(err)
				}
				in = in[k:]
			}
			must(t, p.Close())
			d, err := zstd.NewReader(&out)
			must(t, err)
			defer d.Close()
			got, err := io.ReadAll(d)
			must(t, err)
			if !bytes.Equal(got, tc.in) {
				t.Fatalf("round trip: %d bytes in, %d out", len(tc.in), len(got))
			}
		})
	}
	t.Run("writer error", func(t *testing.T) {
		p, err := newParallelZstd(failWriter{}, zstd.SpeedFastest, 1<<20)
		must(t, err)
		var werr error
		for range 20 {
			if _, werr = p.Write(random[:1<<20]); werr != nil {
				break
			}
		}
		if cerr := p.Close(); !errors.Is(cerr, errDiskFull) && !errors.Is(werr, errDiskFull) {
			t.Fatalf("write %v close %v", werr, cerr)
		}
	})
}

var errDiskFull = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errDiskFull }
