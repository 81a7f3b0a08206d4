package helper

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestFramesRoundTrip(t *testing.T) {
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	for _, tc := range []struct {
		name    string
		check   error
		wrap    func(io.Reader) io.Reader // how the plugin reads the archive
		bufSize int                       // how big the plugin's copy buffer is
	}{
		{"right checksum, big reads", nil, func(r io.Reader) io.Reader { return r }, 1 << 20},
		{"right checksum, one byte reads", nil, iotest.OneByteReader, 3},
		{"right checksum, data with EOF", nil, iotest.DataErrReader, 64 << 10},
		{"wrong checksum", errors.New("checksum mismatch"), func(r io.Reader) io.Reader { return r }, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := NewFramedSource(tc.wrap(bytes.NewReader(data)), func() error { return tc.check })
			var wire bytes.Buffer
			if _, err := io.CopyBuffer(&wire, struct{ io.Reader }{src}, make([]byte, tc.bufSize)); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(src.CheckErr(), tc.check) {
				t.Fatalf("CheckErr %v", src.CheckErr())
			}
			fr := NewFrameReader(iotest.HalfReader(&wire))
			got, err := io.ReadAll(fr)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}
			if err := fr.Verdict(); (err == nil) != (tc.check == nil) || err != nil && !errors.Is(err, ErrVerdict) {
				t.Fatalf("verdict %v with check %v", err, tc.check)
			}
		})
	}
}

// A stream cut anywhere, even right before the verdict, is never confirmed.
func TestFramesCut(t *testing.T) {
	src := NewFramedSource(bytes.NewReader([]byte("archive bytes")), func() error { return nil })
	wire, _ := io.ReadAll(src)
	for cut := range len(wire) {
		fr := NewFrameReader(bytes.NewReader(wire[:cut]))
		_, err := io.ReadAll(fr)
		if err == nil && fr.Verdict() == nil {
			t.Fatalf("stream cut at %d/%d was accepted", cut, len(wire))
		}
	}
	fr := NewFrameReader(bytes.NewReader(wire))
	if _, err := io.ReadAll(fr); err != nil || fr.Verdict() != nil {
		t.Fatalf("whole stream: %v %v", err, fr.Verdict())
	}
}
