package volumeops

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// chunky returns its data in reads of random sizes, then err.
type chunky struct {
	data []byte
	rng  *rand.Rand
	err  error
}

func (c *chunky) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(3*readAheadSize/2))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestReadAheadDeliversTheStreamInOrder(t *testing.T) {
	want := make([]byte, 5*readAheadBuffers*readAheadSize+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	for _, end := range []error{io.EOF, errors.New("connection reset")} {
		ra := newReadAhead(&chunky{data: want, rng: rng, err: end})
		var got bytes.Buffer
		_, err := io.CopyBuffer(&got, struct{ io.Reader }{ra}, make([]byte, 7777))
		ra.Close()
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("read %d bytes, differ from the %d sent", got.Len(), len(want))
		}
		if end == io.EOF && err != nil || end != io.EOF && !errors.Is(err, end) {
			t.Fatalf("stream ending with %v: copy error %v", end, err)
		}
	}
}

// TestReadAheadCloseEndsABlockedRead: Close returns once the stream its goroutine waits on is
// closed, whatever the consumer has read.
func TestReadAheadCloseEndsABlockedRead(t *testing.T) {
	pr, pw := io.Pipe()
	go pw.Write(make([]byte, 100)) //nolint:errcheck // some data, less than wakes the consumer
	ra := newReadAhead(pr)
	done := make(chan struct{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		pr.CloseWithError(errors.New("closed"))
		ra.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the stream was closed")
	}
}

// TestReadAheadWakesTheConsumerAtTheEnd: less than readAheadWake, then the end of the stream:
// the consumer gets the bytes and then the end.
func TestReadAheadWakesTheConsumerAtTheEnd(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("hello")) //nolint:errcheck // read below
		time.Sleep(50 * time.Millisecond)
		pw.Close()
	}()
	ra := newReadAhead(pr)
	defer ra.Close()
	got, err := io.ReadAll(ra)
	if string(got) != "hello" || err != nil {
		t.Fatalf("read %q, %v; want hello", got, err)
	}
}
