package pacing

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		prev      time.Duration
		n, room   int
		want      time.Duration
		situation string
	}{
		{0, 4 << 10, 1 << 20, 100 * time.Microsecond, "a small read starts pausing"},
		{400 * time.Microsecond, 4 << 10, 1 << 20, 800 * time.Microsecond, "small reads double the pause"},
		{MaxPause, 1, 1 << 20, MaxPause, "up to the most"},
		{800 * time.Microsecond, 200 << 10, 1 << 20, 400 * time.Microsecond, "a full read halves it"},
		{800 * time.Microsecond, 100 << 10, 1 << 20, 800 * time.Microsecond, "a fair read keeps it"},
		{800 * time.Microsecond, 10 << 10, 10 << 10, 400 * time.Microsecond, "a read that filled a small buffer is a full one"},
	} {
		if got := Next(tc.prev, tc.n, tc.room); got != tc.want {
			t.Errorf("%s: Next(%v, %d, %d) = %v, want %v", tc.situation, tc.prev, tc.n, tc.room, got, tc.want)
		}
	}
}

func TestReaderPassesTheStreamThrough(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 50000)
	// One byte per read: the worst pacing case, and still every byte in order.
	got, err := io.ReadAll(&Reader{R: iotest.OneByteReader(bytes.NewReader(want[:300]))})
	if err != nil || !bytes.Equal(got, want[:300]) {
		t.Fatalf("one byte at a time: %d bytes, %v", len(got), err)
	}
	got, err = io.ReadAll(&Reader{R: iotest.HalfReader(bytes.NewReader(want))})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("half reads: %d of %d bytes, %v", len(got), len(want), err)
	}
	r := &Reader{R: iotest.ErrReader(io.ErrUnexpectedEOF)}
	if _, err := r.Read(make([]byte, 10)); err != io.ErrUnexpectedEOF {
		t.Fatalf("error not passed on: %v", err)
	}
}
