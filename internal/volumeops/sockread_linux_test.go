package volumeops

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unixPair returns the two ends of a real unix stream connection, like the engine's socket.
func unixPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestStreamSourceReadsTheSocketWholeAndInOrder(t *testing.T) {
	client, server := unixPair(t)
	rng := rand.New(rand.NewPCG(3, 4))
	want := make([]byte, 3<<20+17)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	go func() {
		// Pieces from 1 byte to 64 KiB, now and then a pause: what the engine sends.
		for rest := want; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(64<<10))
			if _, err := server.Write(rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
			if rng.IntN(50) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		server.Close()
	}()
	// The client library has read the start of the stream into its buffer already.
	br := bufio.NewReaderSize(client, 4096)
	if _, err := br.Peek(1); err != nil {
		t.Fatal(err)
	}
	src := newStreamSource(br, client)
	defer src.release()
	if _, ok := src.Reader.(*socketReader); !ok {
		t.Fatalf("a unix socket was read as %T, not directly", src.Reader)
	}
	got, err := io.ReadAll(newReadAhead(src))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want the %d written, in order", len(got), len(want))
	}
}

func TestStreamSourceInterruptEndsABlockedRead(t *testing.T) {
	client, _ := unixPair(t)
	src := newStreamSource(bufio.NewReader(client), client)
	defer src.release()
	done := make(chan error, 1)
	go func() {
		_, err := src.Read(make([]byte, 1024))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block (the test holds either way)
	src.interrupt()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a read of an interrupted stream returned no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("interrupt did not end the blocked read")
	}
}

func TestStreamSourceInterruptAfterReleaseLeavesOtherFilesAlone(t *testing.T) {
	client, _ := unixPair(t)
	src := newStreamSource(bufio.NewReader(client), client)
	num := src.Reader.(*socketReader).fd
	src.release()
	// Another socket gets the released descriptor's number, as a later open would.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[1])
	if pair[0] != num {
		if err := unix.Dup2(pair[0], num); err != nil {
			t.Fatal(err)
		}
		unix.Close(pair[0])
	}
	defer unix.Close(num)
	src.interrupt() // a cancellation that came late
	if _, err := unix.Write(num, []byte("still open")); err != nil {
		t.Fatalf("the socket now at descriptor %d was shut down: %v", num, err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Read(pair[1], buf); err != nil || string(buf[:n]) != "still open" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
}

func TestStreamSourceReadsOtherConnectionsAsTheyAre(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	br := bufio.NewReader(a)
	src := newStreamSource(br, a)
	if src.Reader != br {
		t.Fatalf("a connection without a descriptor was read as %T", src.Reader)
	}
	src.interrupt()
	if _, err := b.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("interrupt did not close the connection: write gave %v", err)
	}
}
