package sshmux_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/sshmux"
	"github.com/dockbridge/dockbridge/internal/sshmux/sshmuxtest"
)

func TestNoMaster(t *testing.T) {
	m := sshmux.Master{Path: filepath.Join(t.TempDir(), "none")}
	if _, err := m.Alive(); !errors.Is(err, sshmux.ErrNoMaster) {
		t.Fatalf("Alive without a master: %v, want ErrNoMaster", err)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if _, err := m.Forward("127.0.0.1", 80, r, w); !errors.Is(err, sshmux.ErrNoMaster) {
		t.Fatalf("Forward without a master: %v, want ErrNoMaster", err)
	}
}

func TestThroughARealMaster(t *testing.T) {
	s := sshmuxtest.Start(t)
	s.StartMaster(t)
	m := sshmux.Master{Path: s.ControlPath}
	pid, err := m.Alive()
	if err != nil || pid <= 0 {
		t.Fatalf("Alive: pid %d, %v", pid, err)
	}

	t.Run("session", func(t *testing.T) {
		inR, inW, _ := os.Pipe()
		outR, outW, _ := os.Pipe()
		errR, errW, _ := os.Pipe()
		ch, err := m.Session(`read line; echo "got $line"; echo oops >&2; exit 3`, inR, outW, errW)
		if err != nil {
			t.Fatal(err)
		}
		inR.Close()
		outW.Close()
		errW.Close()
		io.WriteString(inW, "hello\n")
		inW.Close()
		out, _ := io.ReadAll(outR)
		serr, _ := io.ReadAll(errR)
		code, err := ch.Wait()
		if err != nil || code != 3 {
			t.Fatalf("exit %d, %v; want 3", code, err)
		}
		if string(out) != "got hello\n" || string(serr) != "oops\n" {
			t.Fatalf("stdout %q stderr %q", out, serr)
		}
	})

	t.Run("forward", func(t *testing.T) {
		// A server that answers one line and closes its side: the close must reach us as EOF.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					b := make([]byte, 64)
					n, _ := c.Read(b)
					c.Write(bytes.ToUpper(b[:n]))
				}()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		for i := range 3 {
			inR, inW, _ := os.Pipe()
			outR, outW, _ := os.Pipe()
			ch, err := m.Forward("127.0.0.1", port, inR, outW)
			if err != nil {
				t.Fatal(err)
			}
			inR.Close()
			outW.Close()
			io.WriteString(inW, "ping "+strconv.Itoa(i))
			done := make(chan []byte)
			go func() { b, _ := io.ReadAll(outR); done <- b }()
			select {
			case b := <-done:
				if string(b) != "PING "+strconv.Itoa(i) {
					t.Fatalf("forward answered %q", b)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no EOF after the server closed its side")
			}
			inW.Close()
			if _, err := ch.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		inR, inW, _ := os.Pipe()
		outR, outW, _ := os.Pipe()
		defer inW.Close()
		ch, err := m.Forward("127.0.0.1", port, inR, outW)
		inR.Close()
		outW.Close()
		if err == nil {
			// OpenSSH opens the mux session before the server answers the channel open: a refused
			// connect shows as an immediate end.
			b, _ := io.ReadAll(outR)
			if len(b) != 0 {
				t.Fatalf("read %q from a refused forward", b)
			}
			ch.Wait()
		} else if !strings.Contains(err.Error(), "refused") {
			t.Fatal(err)
		}
	})
}
