package e2e_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/boottest"
	"github.com/dockbridge/dockbridge/internal/simhost"
	"github.com/dockbridge/dockbridge/internal/testimage"
)

// The release as `make release` builds it, once per test binary, into a temporary folder:
// the servers' binaries for amd64 and arm64 (internal/serverbin/build.sh), then the archive
// of this machine's OS and architecture (scripts/release.sh).
var (
	releaseOnce sync.Once
	releaseErr  error
	releaseDir  string
)

const releaseVersion = "e2e-release"

func buildRelease(t testing.TB) (archive, serverBins string) {
	t.Helper()
	root := repoRoot(t)
	releaseOnce.Do(func() {
		if releaseDir, releaseErr = os.MkdirTemp("", "dockbridge-e2e-release-"); releaseErr != nil {
			return
		}
		env := append(os.Environ(), "OUT="+filepath.Join(releaseDir, "serverbin"), "DIST="+filepath.Join(releaseDir, "dist"),
			"LDFLAGS=-s -w -X github.com/dockbridge/dockbridge/internal/version.Version="+releaseVersion)
		for _, args := range [][]string{
			{"internal/serverbin/build.sh", "amd64", "arm64"},
			{"scripts/release.sh", runtime.GOOS + "/" + runtime.GOARCH},
		} {
			cmd := exec.Command("bash", args...)
			cmd.Dir, cmd.Env = root, env
			if out, err := cmd.CombinedOutput(); err != nil {
				releaseErr = fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
				return
			}
		}
	})
	if releaseErr != nil {
		t.Fatal(releaseErr)
	}
	return filepath.Join(releaseDir, "dist", "docker-dockbridge-"+runtime.GOOS+"-"+runtime.GOARCH+".tar.gz"), filepath.Join(releaseDir, "serverbin")
}

// newReleaseWorld is a user's machine: the release archive unpacked into a fresh
// DOCKER_CONFIG's cli-plugins, nothing else from the build tree (no plugin folder, no helper
// binary, no build/ in reach).
func newReleaseWorld(t *testing.T, opts ...boottest.Option) *world {
	t.Helper()
	boottest.Require(t)
	requireTools(t)
	archive, _ := buildRelease(t)
	w := newWorldWith(t, func(plugins string) {
		names := untarInto(t, archive, plugins)
		if !slices.Equal(names, []string{"README.md", "docker-dockbridge"}) {
			t.Fatalf("the release archive holds %v, want docker-dockbridge and README.md", names)
		}
		_ = os.Remove(filepath.Join(plugins, "README.md"))
	}, "", opts...)
	for _, kv := range w.environ {
		if strings.HasPrefix(kv, "DOCKBRIDGE_PLUGIN_DIR=") || strings.HasPrefix(kv, "DOCKBRIDGE_HELPER_BINARY=") {
			t.Fatalf("the user's environment has %s", kv)
		}
	}
	if _, err := os.Stat(filepath.Join(w.root, "build")); err == nil {
		t.Fatal("a build/ folder is in the user's working directory")
	}
	return w
}

// untarInto unpacks a .tar.gz into dir and returns the names it held, sorted.
func untarInto(t *testing.T, archive, dir string) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		out, err := os.OpenFile(filepath.Join(dir, filepath.Base(h.Name)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	slices.Sort(names)
	return names
}

func fileSHA256(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// pluginAssembledOnServer checks that the server's hetzner plugin is the carried binary of
// the server's architecture (serverBin) in a root filesystem made from the server's own disk
// tools, those that grow a resized volume at its next mount among them.
func pluginAssembledOnServer(t *testing.T, w *world, env, serverBin string) {
	t.Helper()
	script := `set -e; id=$(docker plugin inspect -f '{{.ID}}' hetzner:latest); r=/var/lib/docker/plugins/$id/rootfs
echo "enabled=$(docker plugin inspect -f '{{.Enabled}}' hetzner:latest)"
echo "plugin=$(sha256sum $r/hetzner-volume-plugin | cut -d' ' -f1)"
for t in mkfs.ext4 mkfs.xfs blkid mount resize2fs e2fsck xfs_growfs; do echo "$t=$(sha256sum $r/usr/sbin/$t | cut -d' ' -f1) $(sha256sum $(command -v $t) | cut -d' ' -f1)"; done`
	r := w.must(t, "dockbridge", "ssh", "--name", env, "--", "sh", "-c", script)
	kv := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	if kv["enabled"] != "true" {
		t.Errorf("the plugin is not enabled:\n%s", r.stdout)
	}
	if want := fileSHA256(t, serverBin); kv["plugin"] != want {
		t.Errorf("the plugin's binary on the server is %s, want the carried %s (%s)", kv["plugin"], filepath.Base(serverBin), want)
	}
	for _, tool := range []string{"mkfs.ext4", "mkfs.xfs", "blkid", "mount", "resize2fs", "e2fsck", "xfs_growfs"} {
		in, own, _ := strings.Cut(kv[tool], " ")
		if in == "" || in != own {
			t.Errorf("%s in the plugin is %q, the server's own is %q: the root filesystem is not the server's tools", tool, in, own)
		}
	}
}

// TestReleaseArchiveOnBootedServers installs the CLI as a user does (the linux release
// archive into a fresh DOCKER_CONFIG, nothing else from the build tree) and runs up on a
// booted simulated server: the plugin is assembled on the server from the binary the CLI
// carries, and a backup and a restore of a hetzner volume run through the helper it carries.
func TestReleaseArchiveOnBootedServers(t *testing.T) {
	w := newReleaseWorld(t)
	_, serverBins := buildRelease(t)
	const env = "rel"
	ctx := "dockbridge-" + env

	if r := w.must(t, "dockbridge", "version"); !strings.Contains(r.stdout, releaseVersion) || !strings.Contains(r.stdout, "linux/amd64, linux/arm64") {
		t.Errorf("docker dockbridge version: %q, want %s carrying linux/amd64, linux/arm64", r.stdout, releaseVersion)
	}
	res, _ := w.up(t, env)
	logUp(t, "up from the release archive", res, nil)
	for _, s := range res.Steps {
		if strings.HasPrefix(s.Title, "Installing the hetzner volume plugin") && s.Note != "installed" {
			t.Errorf("plugin step %q, want installed", s.Note)
		}
	}
	bin := filepath.Join(serverBins, "hetzner-volume-plugin-linux-"+runtime.GOARCH)
	pluginAssembledOnServer(t, w, env, bin)

	// A hetzner volume with data, backed up and restored through the carried helper.
	w.must(t, "--context", ctx, "volume", "create", "-d", "hetzner", "-o", "size=10", "reldata")
	if r := w.run(t.Context(), testimage.BusyboxRootfs(t), nil, "--context", ctx, "import", "-", "relbox:1"); r.err != nil {
		t.Fatalf("import busybox: %s", r)
	}
	w.must(t, "--context", ctx, "run", "--rm", "-v", "reldata:/data", "relbox:1", "/bin/busybox", "sh", "-c",
		"echo release-e2e > /data/hello && /bin/busybox dd if=/dev/urandom of=/data/blob bs=64k count=32 2>/dev/null && /bin/busybox sha256sum /data/blob > /data/blob.sum")
	backups := filepath.Join(w.root, "backups")
	w.must(t, "--context", ctx, "dockbridge", "backup", "reldata", "--to", backups)
	wantHelper := "dockbridge-helper:" + fileSHA256(t, bin)[:16]
	if r := w.must(t, "--context", ctx, "images", "dockbridge-helper", "--format", "{{.Repository}}:{{.Tag}}"); strings.TrimSpace(r.stdout) != wantHelper {
		t.Errorf("helper images on the server: %q, want %s (the carried linux/%s binary)", r.stdout, wantHelper, runtime.GOARCH)
	}
	archives, _ := filepath.Glob(filepath.Join(backups, "reldata-*.tar.zst"))
	if len(archives) != 1 {
		t.Fatalf("backups: %v", archives)
	}
	w.must(t, "--context", ctx, "dockbridge", "restore", archives[0], "--volume", "relcopy")
	if r := w.must(t, "--context", ctx, "volume", "inspect", "-f", "{{.Driver}}", "relcopy"); !strings.HasPrefix(strings.TrimSpace(r.stdout), "hetzner") {
		t.Errorf("restored volume's driver %q, want hetzner", r.stdout)
	}
	r := w.must(t, "--context", ctx, "run", "--rm", "-v", "relcopy:/data", "relbox:1", "/bin/busybox", "sh", "-c",
		"cat /data/hello && cd / && /bin/busybox sha256sum -c /data/blob.sum")
	if !strings.Contains(r.stdout, "release-e2e") || !strings.Contains(r.stdout, "/data/blob: OK") {
		t.Errorf("restored data: %q", r.stdout)
	}
	w.must(t, "dockbridge", "destroy", "--name", env, "--volumes", "--yes")
}

// TestUpOnArmServer (make test-arm64; DOCKBRIDGE_TEST_ARM64=1): up --server-type cax11 boots
// an Arm server (the arm64 simulated-server image, under qemu-user) and takes it all the way:
// docker info says aarch64, the plugin assembled there from the carried arm64 binary is
// enabled, a hetzner volume mounts in a container, and a backup runs through the arm64 helper.
func TestUpOnArmServer(t *testing.T) {
	if os.Getenv("DOCKBRIDGE_TEST_ARM64") != "1" {
		t.Skip("arm64 servers under emulation take minutes: make test-arm64 (DOCKBRIDGE_TEST_ARM64=1)")
	}
	boottest.Require(t)
	start := time.Now()
	if err := simhost.EnsureImages(t.Context(), simhost.ArchARM64); err != nil {
		t.Fatal(err)
	}
	t.Logf("arm64 simulated-server images ready after %v", time.Since(start).Round(time.Second))
	w := newReleaseWorld(t)
	_, serverBins := buildRelease(t)
	const env = "arm"
	ctx := "dockbridge-" + env

	start = time.Now()
	res, _ := w.up(t, env, "--server-type", "cax11")
	upTook := time.Since(start)
	logUp(t, "up --server-type cax11 (arm64 under qemu-user)", res, nil)
	if r := w.must(t, "--context", ctx, "info", "--format", "{{.Architecture}}"); strings.TrimSpace(r.stdout) != "aarch64" {
		t.Fatalf("docker info on the cax11 server: architecture %q, want aarch64", r.stdout)
	}
	pluginAssembledOnServer(t, w, env, filepath.Join(serverBins, "hetzner-volume-plugin-linux-arm64"))

	// An arm64 program in a container on a hetzner volume.
	w.must(t, "--context", ctx, "volume", "create", "-d", "hetzner", "-o", "size=10", "armdata")
	if r := w.run(t.Context(), armImage(t), nil, "--context", ctx, "import", "-", "armtool:1"); r.err != nil {
		t.Fatalf("import the arm64 image: %s", r)
	}
	r := w.must(t, "--context", ctx, "run", "--rm", "-v", "armdata:/data", "armtool:1", "/armtool")
	if !strings.Contains(r.stdout, "arm64 wrote /data/hello") {
		t.Fatalf("the arm64 container on the hetzner volume: %q", r.stdout)
	}
	backups := filepath.Join(w.root, "backups")
	w.must(t, "--context", ctx, "dockbridge", "backup", "armdata", "--to", backups)
	wantHelper := "dockbridge-helper:" + fileSHA256(t, filepath.Join(serverBins, "hetzner-volume-plugin-linux-arm64"))[:16]
	if r := w.must(t, "--context", ctx, "images", "dockbridge-helper", "--format", "{{.Repository}}:{{.Tag}}"); strings.TrimSpace(r.stdout) != wantHelper {
		t.Errorf("helper images on the arm server: %q, want %s", r.stdout, wantHelper)
	}
	// The archive holds what the arm64 program wrote on the hetzner volume.
	archives, _ := filepath.Glob(filepath.Join(backups, "armdata-*.tar.zst"))
	if len(archives) != 1 {
		t.Fatalf("backups: %v", archives)
	}
	list, err := exec.Command("sh", "-c", "zstd -dc "+archives[0]+" | tar -xO data/hello").CombinedOutput()
	if err != nil || string(list) != "hello from arm64\n" {
		t.Errorf("data/hello in the backup of the arm server's volume: %q, %v", list, err)
	}
	w.must(t, "dockbridge", "destroy", "--name", env, "--volumes", "--yes")
	t.Logf("arm64: up %v, whole test %v", upTook.Round(time.Second), time.Since(start).Round(time.Second))
}

// armImage is a root filesystem with one static arm64 program that writes /data/hello.
func armImage(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	src := `package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	if err := os.WriteFile("/data/hello", []byte("hello from arm64\n"), 0o644); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	b, _ := os.ReadFile("/data/hello")
	fmt.Printf("%s wrote /data/hello: %s", runtime.GOARCH, b)
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "armtool", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64", "GO111MODULE=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build linux/arm64: %v: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "armtool"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"data/", "tmp/", "proc/", "dev/"} {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755})
	}
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "armtool", Mode: 0o755, Size: int64(len(bin))})
	_, _ = tw.Write(bin)
	_ = tw.Close()
	return buf.Bytes()
}
