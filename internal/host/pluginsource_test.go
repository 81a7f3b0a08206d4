package host

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/internal/serverbin"
)

// fakeServerBinaries stands for the binaries a release carries: "amd64 binary", "arm64 binary".
func fakeServerBinaries(loaded *[]string) func(string) (*serverbin.Binary, error) {
	return func(arch string) (*serverbin.Binary, error) {
		goarch, err := serverbin.GoArch(arch)
		if err != nil {
			return nil, err
		}
		*loaded = append(*loaded, goarch)
		data := []byte(goarch + " binary")
		sum := sha256.Sum256(data)
		return &serverbin.Binary{Arch: goarch, Data: data, SHA256: hex.EncodeToString(sum[:])}, nil
	}
}

// untarGz reads a gzip-compressed tar into name -> content.
func untarGz(t *testing.T, b string) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(b))
	if err != nil {
		t.Fatalf("the plugin upload is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, tr)
		out[h.Name] = buf.String()
	}
}

// TestUpAssemblesThePluginOnTheServer: without --plugin-dir, up uploads the binary this CLI
// carries for the server's architecture (uname -m there) with config.json, and the server
// assembles the plugin from its own disk tools; no folder, engine or mkfs here.
func TestUpAssemblesThePluginOnTheServer(t *testing.T) {
	for _, c := range []struct{ uname, want string }{{"x86_64", "amd64"}, {"aarch64", "arm64"}} {
		t.Run(c.uname, func(t *testing.T) {
			e := newSimEnv(t)
			e.disk.arch = c.uname
			var loaded []string
			e.deps.ServerBinary = fakeServerBinaries(&loaded)
			res, err := Up(t.Context(), e.deps, UpOptions{Env: "default"})
			must(t, err)
			if strings.Join(loaded, ",") != c.want {
				t.Errorf("loaded server binaries %v, want only %s", loaded, c.want)
			}
			files := untarGz(t, e.disk.pluginUpload)
			if files["rootfs/hetzner-volume-plugin"] != c.want+" binary" || files["config.json"] != string(dockbridge.PluginConfig) {
				t.Errorf("uploaded %v, want config.json and the %s binary", keys(files), c.want)
			}
			var script string
			for _, cmd := range e.disk.cmds {
				if strings.Contains(cmd, "docker plugin create") {
					script = cmd
				}
			}
			for _, want := range []string{"mkfs.ext4", "mkfs.xfs", "ldd", "chroot", "docker plugin create hetzner:latest"} {
				if !strings.Contains(script, want) {
					t.Errorf("the assembly script lacks %q", want)
				}
			}
			if !strings.Contains(stepNote(res, "Installing the hetzner volume plugin"), "installed") {
				t.Errorf("plugin step: %+v", res.Steps)
			}

			// Up again: the same binary and the same tools on the server: nothing is uploaded.
			e.disk.pluginUpload = ""
			res, err = Up(t.Context(), e.deps, UpOptions{Env: "default"})
			must(t, err)
			if e.disk.pluginUpload != "" || stepNote(res, "Installing the hetzner volume plugin") != "already installed" {
				t.Errorf("second up uploaded the plugin again: %q", stepNote(res, "Installing the hetzner volume plugin"))
			}
		})
	}
}

// TestUpRefusesAFolderOfTheOtherArchitecture: a developer's build/plugin (this machine's
// programs) is not put on an Arm server.
func TestUpRefusesAFolderOfTheOtherArchitecture(t *testing.T) {
	e := newSimEnv(t)
	e.disk.arch = "aarch64"
	dir := t.TempDir()
	writeFolderWithBinary(t, dir, tinyELF(t, "amd64"))
	_, err := Up(t.Context(), e.deps, UpOptions{Env: "default", PluginDir: dir})
	if err == nil || !strings.Contains(err.Error(), "server is aarch64") || !strings.Contains(err.Error(), "leave out --plugin-dir") {
		t.Fatalf("an x86 plugin folder for an arm server: %v", err)
	}
	if e.disk.pluginUpload != "" {
		t.Error("the folder was uploaded anyway")
	}
}

// TestUpWithoutCarriedBinariesFailsBeforeCreating: a plain `go build` CLI without --plugin-dir
// says what to do before it makes anything.
func TestUpWithoutCarriedBinariesFailsBeforeCreating(t *testing.T) {
	if len(serverbin.Embedded()) > 0 {
		t.Skip("this test binary carries server binaries (-tags serverbin)")
	}
	e := newSimEnv(t)
	before := e.total()
	_, err := Up(t.Context(), e.deps, UpOptions{Env: "default"})
	if err == nil || !strings.Contains(err.Error(), "make build") || !strings.Contains(err.Error(), "--plugin-dir") {
		t.Fatalf("up without carried binaries: %v", err)
	}
	if e.total() != before {
		t.Error("it reached the API")
	}
}

func TestImageFits(t *testing.T) {
	for _, c := range []struct {
		image, typ, typeArch string
		imageArchs           []string
		wantErr              []string
	}{
		{"docker-ce", "cax11", "arm", []string{"x86", "arm"}, nil},
		{"docker-ce", "cx23", "x86", []string{"x86", "arm"}, nil},
		{"rocky-9", "cax11", "arm", []string{"x86"}, []string{`image "rocky-9" exists only for x86 (amd64)`, "cax11 is Arm", "choose an x86 type", "nothing was created"}},
		{"my-arm-snapshot", "cx23", "x86", []string{"arm"}, []string{"exists only for Arm (arm64, Ampere)", "cx23 is x86", "choose an Arm type such as cax11"}},
		{"no-such-image", "cx23", "x86", nil, []string{`image "no-such-image" does not exist`}},
	} {
		err := imageFits(c.image, c.imageArchs, c.typ, c.typeArch)
		if c.wantErr == nil {
			if err != nil {
				t.Errorf("%s on %s: %v", c.image, c.typ, err)
			}
			continue
		}
		for _, w := range c.wantErr {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s on %s: %v, want %q", c.image, c.typ, err, w)
			}
		}
	}
}

// TestUpRefusesAnImageOfTheOtherArchitecture: rocky-9 exists only for x86 in the catalog; on
// an Arm type up stops before it creates anything.
func TestUpRefusesAnImageOfTheOtherArchitecture(t *testing.T) {
	e := newSimEnv(t)
	e.deps.Config.ServerType, e.deps.Config.Image = "cax11", "rocky-9"
	var n int64
	var by map[string]int64
	var err error
	// (Without the plugin and the idle agent, this CLI of a plain go build needs no server binary.)
	n, by = e.requests(func() {
		_, err = Up(t.Context(), e.deps, UpOptions{Env: "default", NoVolumePlugin: true, IdleTimeout: "off"})
	})
	if err == nil || !strings.Contains(err.Error(), "exists only for x86") {
		t.Fatalf("rocky-9 on cax11: %v", err)
	}
	for k := range by {
		if !strings.HasPrefix(k, "GET ") {
			t.Errorf("%s was sent (%d requests in all): nothing may be created", k, n)
		}
	}
	// The same image on an x86 type goes ahead.
	e.deps.Config.ServerType = "cx23"
	if _, err := Up(t.Context(), e.deps, UpOptions{Env: "default", NoVolumePlugin: true, IdleTimeout: "off"}); err != nil {
		t.Fatalf("rocky-9 on cx23: %v", err)
	}
}

func stepNote(res *UpResult, title string) string {
	if res == nil {
		return ""
	}
	note := "" // the last one: the progress of several ups in one Deps keeps every step
	for _, s := range res.Steps {
		if s.Title == title {
			note = s.Note
		}
	}
	return note
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// tinyELF builds a tiny static Linux program for goarch.
func tinyELF(t *testing.T, goarch string) []byte {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644))
	cmd := exec.Command("go", "build", "-o", "bin", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GO111MODULE=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build linux/%s: %v: %s", goarch, err, b)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bin"))
	must(t, err)
	return b
}

// writeFolderWithBinary makes a `docker plugin create` folder as make plugin does.
func writeFolderWithBinary(t *testing.T, dir string, bin []byte) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), dockbridge.PluginConfig, 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "rootfs", "hetzner-volume-plugin"), bin, 0o755))
}
