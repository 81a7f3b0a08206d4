package backup

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/dockbridge/dockbridge/internal/testenv"
)

// encoders are the frame encoders this build has: the pure-Go one always, libzstd when built
// with it (make test does when libzstd-dev is installed).
func encoders(t *testing.T) map[string]func(int) (frameEncoder, error) {
	encs := map[string]func(int) (frameEncoder, error){"go": newGoFrameEncoder}
	if zstdEncoderName != "go" {
		encs[zstdEncoderName] = newFrameEncoder
	}
	t.Logf("zstd encoders: %d (this build's default: %s)", len(encs), zstdEncoderName)
	return encs
}

func TestParallelZstd(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		testenv.Require(t, "reading the archives with the reference decoder needs", []string{"the zstd CLI (apt-get install zstd)"})
	}
	for name, newEnc := range encoders(t) {
		t.Run(name, func(t *testing.T) { testParallelZstd(t, newEnc) })
	}
}

func testParallelZstd(t *testing.T, newEnc func(int) (frameEncoder, error)) {
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
			enc, err := newEnc(2)
			must(t, err)
			p, err := newParallelZstd(&out, enc, 1<<20)
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
			archive := out.Bytes()
			got, err := io.ReadAll(d)
			must(t, err)
			if !bytes.Equal(got, tc.in) {
				t.Fatalf("round trip: %d bytes in, %d out", len(tc.in), len(got))
			}
			// The reference decoder reads the concatenated frames too (a person restoring
			// with plain tools).
			cmd := exec.Command("zstd", "-dc")
			cmd.Stdin = bytes.NewReader(archive)
			got, err = cmd.Output()
			if err != nil {
				t.Fatalf("zstd -dc: %v", err)
			}
			if !bytes.Equal(got, tc.in) {
				t.Fatalf("zstd -dc: %d bytes in, %d out", len(tc.in), len(got))
			}
		})
	}
	t.Run("writer error", func(t *testing.T) {
		enc, err := newEnc(2)
		must(t, err)
		p, err := newParallelZstd(failWriter{}, enc, 1<<20)
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
