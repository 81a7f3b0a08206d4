package volumeops

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/serverbin"
)

// staticBinary builds a tiny static Linux program for goarch.
func staticBinary(t *testing.T, goarch string) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bin-"+goarch)
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
	return out, b
}

// fakeCarried makes the CLI carry these server binaries (by Go architecture) for one test.
func fakeCarried(t *testing.T, bins map[string][]byte) {
	t.Helper()
	saved := loadServerBinary
	loadServerBinary = func(arch string) (*serverbin.Binary, error) {
		goarch, err := serverbin.GoArch(arch)
		if err != nil {
			return nil, err
		}
		if b, ok := bins[goarch]; ok {
			return &serverbin.Binary{Arch: goarch, Data: b}, nil
		}
		return nil, serverbin.ErrNotEmbedded
	}
	t.Cleanup(func() { loadServerBinary = saved })
}

// TestHelperSourceIsTheCarriedBinaryOfTheEnginesArchitecture: a CLI on any OS (a Mac user's
// never sets DOCKBRIDGE_HELPER_BINARY) imports the helper for the engine's architecture.
func TestHelperSourceIsTheCarriedBinaryOfTheEnginesArchitecture(t *testing.T) {
	t.Setenv("DOCKBRIDGE_HELPER_BINARY", "")
	_, amd := staticBinary(t, "amd64")
	_, arm := staticBinary(t, "arm64")
	fakeCarried(t, map[string][]byte{"amd64": amd, "arm64": arm})
	e := &Engine{}
	for engineArch, want := range map[string][]byte{"x86_64": amd, "aarch64": arm} {
		src, err := e.helperSourceFor(engineArch)
		if err != nil {
			t.Fatalf("engine on %s: %v", engineArch, err)
		}
		if string(src.data) != string(want) || !strings.Contains(src.name, "carries") {
			t.Errorf("engine on %s: got %q (%d bytes), want the carried binary of its architecture", engineArch, src.name, len(src.data))
		}
	}
	if _, err := e.helperSourceFor("s390x"); err == nil || !strings.Contains(err.Error(), "s390x") {
		t.Errorf("engine on s390x: %v, want an error naming the architecture", err)
	}
}

func TestHelperSourceExplicitBinaryMustFitTheEngine(t *testing.T) {
	armPath, arm := staticBinary(t, "arm64")
	fakeCarried(t, nil)
	t.Setenv("DOCKBRIDGE_HELPER_BINARY", armPath)
	e := &Engine{}
	src, err := e.helperSourceFor("aarch64")
	if err != nil || string(src.data) != string(arm) || src.name != armPath {
		t.Fatalf("DOCKBRIDGE_HELPER_BINARY for an arm64 engine: %q, %v", src.name, err)
	}
	_, err = e.helperSourceFor("x86_64")
	if err == nil || !strings.Contains(err.Error(), "not for linux/amd64") {
		t.Errorf("an arm64 helper for an x86_64 engine: %v, want a refusal", err)
	}
	// HelperBinary (set by code) wins over the environment.
	amdPath, _ := staticBinary(t, "amd64")
	e.HelperBinary = amdPath
	if src, err := e.helperSourceFor("x86_64"); err != nil || src.name != amdPath {
		t.Errorf("HelperBinary: %q, %v", src.name, err)
	}
}

// TestHelperSourceWithoutCarriedBinaries: a developer's plain `go build` falls back to its own
// executable where that fits the engine, and otherwise says what to do.
func TestHelperSourceWithoutCarriedBinaries(t *testing.T) {
	t.Setenv("DOCKBRIDGE_HELPER_BINARY", "")
	fakeCarried(t, nil)
	e := &Engine{}
	// An engine of the other architecture than this test binary's: nothing fits it.
	other := "aarch64"
	if runtime.GOARCH == "arm64" {
		other = "x86_64"
	}
	_, err := e.helperSourceFor(other)
	if !errors.Is(err, serverbin.ErrNotEmbedded) || !strings.Contains(err.Error(), "DOCKBRIDGE_HELPER_BINARY") || !strings.Contains(err.Error(), "make build") {
		t.Errorf("no carried binary, no fitting executable: %v", err)
	}
}
