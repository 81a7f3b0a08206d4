// Package serverbin carries the static Linux binary that runs on the servers, the hetzner volume
// plugin that is also the backup helper, for each server architecture, compressed into the CLI
// at build time (`make build`, `make release`), so that a CLI built for any OS can set up any
// server.
//
// A build without the serverbin tag (plain `go build`, `go vet`, `go test`) carries none: Load
// then returns ErrNotEmbedded, and callers fall back to what a developer has (build/plugin, the
// CLI's own binary on Linux).
package serverbin

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Arches are the server architectures a release carries, in Go's names.
var Arches = []string{"amd64", "arm64"}

// ErrNotEmbedded means this build of the CLI carries no server binary for an architecture.
var ErrNotEmbedded = errors.New("this docker-dockbridge carries no Linux server binaries (it was built with plain `go build`; `make build` and the release archives carry them)")

// payload holds payload/<FileName(arch)>; set by embed.go in a build with the serverbin tag.
var payload fs.FS

// FileName is the compressed binary's name in payload/ (the Makefile writes it there).
func FileName(arch string) string { return "hetzner-volume-plugin-linux-" + arch + ".zst" }

// GoArch maps an architecture as Hetzner (x86, arm), the kernel and Docker (x86_64, aarch64)
// or Go (amd64, arm64) name it to Go's name.
func GoArch(name string) (string, error) {
	switch strings.ToLower(name) {
	case "x86", "x86_64", "amd64", "x86-64":
		return "amd64", nil
	case "arm", "arm64", "aarch64":
		return "arm64", nil
	}
	return "", fmt.Errorf("architecture %q is not one dockbridge has server binaries for (x86_64/amd64, aarch64/arm64)", name)
}

// ELFMachine is the ELF machine of a Go architecture.
func ELFMachine(goarch string) elf.Machine {
	switch goarch {
	case "amd64":
		return elf.EM_X86_64
	case "arm64":
		return elf.EM_AARCH64
	}
	return elf.EM_NONE
}

// Binary is one server binary, decompressed.
type Binary struct {
	Arch   string // Go's name: amd64, arm64
	Data   []byte
	SHA256 string // hex
}

// Embedded lists the architectures this build carries, in Go's names.
func Embedded() []string {
	var out []string
	for _, a := range Arches {
		if payload == nil {
			break
		}
		if _, err := fs.Stat(payload, "payload/"+FileName(a)); err == nil {
			out = append(out, a)
		}
	}
	return out
}

var (
	mu     sync.Mutex
	loaded = map[string]*Binary{}
)

// Load returns the server binary for arch (any name GoArch takes), decompressed once per
// process. It fails with ErrNotEmbedded when this build carries none for arch.
func Load(arch string) (*Binary, error) {
	goarch, err := GoArch(arch)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if b := loaded[goarch]; b != nil {
		return b, nil
	}
	if !slices.Contains(Embedded(), goarch) {
		return nil, fmt.Errorf("linux/%s: %w", goarch, ErrNotEmbedded)
	}
	f, err := payload.Open("payload/" + FileName(goarch))
	if err != nil {
		return nil, fmt.Errorf("embedded server binary linux/%s: %w", goarch, err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("embedded server binary linux/%s: %w", goarch, err)
	}
	defer dec.Close()
	data, err := io.ReadAll(dec)
	if err != nil {
		return nil, fmt.Errorf("embedded server binary linux/%s is damaged: %w", goarch, err)
	}
	if err := CheckELF(data, goarch); err != nil {
		return nil, fmt.Errorf("embedded server binary: %w", err)
	}
	sum := sha256.Sum256(data)
	b := &Binary{Arch: goarch, Data: data, SHA256: hex.EncodeToString(sum[:])}
	loaded[goarch] = b
	return b, nil
}

// CheckELF makes sure data is a static Linux executable for goarch (any architecture when
// goarch is empty).
func CheckELF(data []byte, goarch string) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a Linux executable: %v", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("not an executable (ELF type %s)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: the servers need a static binary (`make build` builds one)")
		}
	}
	if want := ELFMachine(goarch); goarch != "" && f.Machine != want {
		return fmt.Errorf("built for %s, not for linux/%s", f.Machine, goarch)
	}
	return nil
}
