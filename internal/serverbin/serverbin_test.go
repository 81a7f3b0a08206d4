package serverbin

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/klauspost/compress/zstd"
)

func TestGoArch(t *testing.T) {
	for in, want := range map[string]string{
		"x86": "amd64", "x86_64": "amd64", "amd64": "amd64", "X86_64": "amd64",
		"arm": "arm64", "aarch64": "arm64", "arm64": "arm64",
	} {
		if got, err := GoArch(in); err != nil || got != want {
			t.Errorf("GoArch(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "riscv64", "s390x", "armv7l", "i386"} {
		if got, err := GoArch(in); err == nil {
			t.Errorf("GoArch(%q) = %q, want an error", in, got)
		}
	}
}

// tinyBinary builds a static Linux program for goarch (a stand-in for the server binary).
func tinyBinary(t *testing.T, goarch string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-o", out, "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GO111MODULE=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build linux/%s: %v: %s", goarch, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compress(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withPayload makes files the embedded payload for one test.
func withPayload(t *testing.T, files map[string][]byte) {
	t.Helper()
	saved := payload
	m := fstest.MapFS{}
	for name, b := range files {
		m["payload/"+name] = &fstest.MapFile{Data: b}
	}
	payload = m
	mu.Lock()
	loaded = map[string]*Binary{}
	mu.Unlock()
	t.Cleanup(func() {
		payload = saved
		mu.Lock()
		loaded = map[string]*Binary{}
		mu.Unlock()
	})
}

func TestLoadPicksTheArchitecture(t *testing.T) {
	amd, arm := tinyBinary(t, "amd64"), tinyBinary(t, "arm64")
	withPayload(t, map[string][]byte{FileName("amd64"): compress(t, amd), FileName("arm64"): compress(t, arm)})
	if got := Embedded(); strings.Join(got, ",") != "amd64,arm64" {
		t.Fatalf("Embedded() = %v", got)
	}
	for arch, want := range map[string][]byte{"x86": amd, "x86_64": amd, "arm": arm, "aarch64": arm} {
		b, err := Load(arch)
		if err != nil {
			t.Fatalf("Load(%q): %v", arch, err)
		}
		if !bytes.Equal(b.Data, want) {
			t.Errorf("Load(%q) returned the other binary (%s)", arch, b.Arch)
		}
		if len(b.SHA256) != 64 {
			t.Errorf("Load(%q).SHA256 = %q", arch, b.SHA256)
		}
	}
}

func TestLoadRefusesWhatIsNotThere(t *testing.T) {
	amd := tinyBinary(t, "amd64")
	withPayload(t, map[string][]byte{
		FileName("amd64"): compress(t, amd),
		// A payload of the wrong architecture under arm64's name must not reach an arm server.
		FileName("arm64"): compress(t, amd),
	})
	if _, err := Load("aarch64"); err == nil || !strings.Contains(err.Error(), "not for linux/arm64") {
		t.Errorf("Load(aarch64) with an x86 payload: %v, want 'not for linux/arm64'", err)
	}
	withPayload(t, map[string][]byte{FileName("amd64"): []byte("not zstd at all")})
	if _, err := Load("amd64"); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("Load of a damaged payload: %v, want 'damaged'", err)
	}
	withPayload(t, nil)
	if _, err := Load("amd64"); !errors.Is(err, ErrNotEmbedded) {
		t.Errorf("Load without a payload: %v, want ErrNotEmbedded", err)
	}
	if _, err := Load("riscv64"); err == nil || errors.Is(err, ErrNotEmbedded) {
		t.Errorf("Load(riscv64): %v, want an unknown-architecture error", err)
	}
}

func TestCheckELF(t *testing.T) {
	arm := tinyBinary(t, "arm64")
	if err := CheckELF(arm, "arm64"); err != nil {
		t.Errorf("static arm64 binary: %v", err)
	}
	if err := CheckELF(arm, "amd64"); err == nil {
		t.Error("arm64 binary accepted as amd64")
	}
	if err := CheckELF([]byte("#!/bin/sh\necho hi\n"), "amd64"); err == nil {
		t.Error("a shell script accepted")
	}
	// A dynamically linked executable: /bin/sh on this machine.
	if sh, err := os.ReadFile("/bin/sh"); err == nil && runtime.GOOS == "linux" {
		if err := CheckELF(sh, runtime.GOARCH); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("/bin/sh: %v, want 'dynamically linked'", err)
		}
	}
}
