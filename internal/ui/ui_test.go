package ui

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestProgressPlainLines(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, false)
	clock := time.Unix(0, 0)
	p.now = func() time.Time { return clock }
	s := p.Start("Waiting for server")
	clock = clock.Add(1500 * time.Millisecond)
	s.Note("created 42")
	s.Done()
	s2 := p.Start("Volume plugin")
	err := errors.New("boom")
	s2.End(&err)
	want := "Waiting for server ... done (created 42, 1.5s)\nVolume plugin ... failed (0s)\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	steps := p.Steps()
	if len(steps) != 2 || steps[0].Seconds != 1.5 || !steps[1].Failed {
		t.Fatalf("steps %+v", steps)
	}
}

func TestProgressSpinnerEndsWithAFinalLine(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, true)
	s := p.Start("Booting")
	time.Sleep(150 * time.Millisecond)
	s.Done()
	out := b.String()
	last := out[strings.LastIndex(out, "\r\033[K"):]
	if !strings.HasPrefix(last, "\r\033[K✓ Booting ... done (") || !strings.HasSuffix(last, ")\n") || !strings.Contains(out, "⠋ Booting") {
		t.Fatalf("tty output %q", b.String())
	}
}

func TestTableAndFormats(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, []string{"step", "time"}, [][]string{{"server", "1s"}, {"total", "12s"}}); err != nil {
		t.Fatal(err)
	}
	if b.String() != "STEP    TIME\nserver  1s\ntotal   12s\n" {
		t.Fatalf("table %q", b.String())
	}
	for in, want := range map[string]Format{"": FormatTable, "JSON": FormatJSON, "table": FormatTable} {
		if f, err := ParseFormat(in); err != nil || f != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, f, err)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("yaml accepted")
	}
}
