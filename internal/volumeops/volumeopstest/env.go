// Package volumeopstest connects tests to the real Docker engine: it builds the static helper
// binary, imports a busybox image for containers that use volumes, and cleans up after itself.
package volumeopstest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

var (
	buildOnce sync.Once
	helperBin string
	buildErr  error
)

// Client returns an engine client for DOCKER_HOST (or the default socket). A missing engine
// fails the test (CI has one), except under -short.
func Client(t testing.TB) *client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Docker engine (skipped with -short)")
	}
	c, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatalf("the Docker engine does not answer (%v): start dockerd (CI: bash .ci/run)", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// HelperBinary builds the static helper binary once per test process.
func HelperBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dockbridge-helper-bin-")
		if err != nil {
			buildErr = err
			return
		}
		helperBin = filepath.Join(dir, "dockbridge-helper")
		_, file, _, _ := runtime.Caller(0)
		pkg := filepath.Join(filepath.Dir(file), "..", "helper", "dockbridge-helper")
		// As `make build` builds it (see LIBZSTD in the Makefile): with the reference zstd
		// library linked statically when it is installed, else pure Go.
		cmd := exec.Command("go", "build", "-trimpath", "-o", helperBin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if lib, err := exec.Command("gcc", "-print-file-name=libzstd.a").Output(); err == nil && filepath.IsAbs(strings.TrimSpace(string(lib))) {
			cmd = exec.Command("go", "build", "-trimpath", "-tags", "libzstd,netgo,osusergo",
				"-ldflags", "-linkmode external -extldflags -static", "-o", helperBin, ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		cmd.Dir = pkg
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build helper: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return helperBin
}

// BusyboxImage is a tiny image made from the host's static busybox (apt-get install
// busybox-static): containers that use volumes in tests run it.
const BusyboxImage = "dockbridge-test-busybox:latest"

var busyboxOnce sync.Once

// Busybox imports BusyboxImage if the engine lacks it.
func Busybox(t testing.TB, c *client.Client) string {
	t.Helper()
	var err error
	busyboxOnce.Do(func() {
		ctx := context.Background()
		if _, ierr := c.ImageInspect(ctx, BusyboxImage); ierr == nil {
			return
		}
		bb, rerr := os.ReadFile("/bin/busybox")
		if rerr != nil {
			err = fmt.Errorf("read /bin/busybox (%v): apt-get install -y busybox-static", rerr)
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, d := range []string{"bin/", "tmp/", "data/", "proc/", "dev/", "etc/"} {
			_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755})
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))})
		_, _ = tw.Write(bb)
		for _, l := range []string{"sh", "sleep", "cat", "ls", "touch", "echo", "dd", "sync"} {
			_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + l, Linkname: "busybox"})
		}
		_ = tw.Close()
		rc, ierr := c.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, BusyboxImage, client.ImageImportOptions{})
		if ierr != nil {
			err = fmt.Errorf("import busybox: %v", ierr)
			return
		}
		out, _ := io.ReadAll(rc)
		rc.Close()
		if strings.Contains(string(out), "error") {
			err = fmt.Errorf("import busybox: %s", out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return BusyboxImage
}

// Volume creates a volume removed at the end of the test.
func Volume(t testing.TB, c *client.Client, name, driver string, opts, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	_, err := c.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Driver: driver, DriverOpts: opts, Labels: labels})
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	t.Cleanup(func() { RemoveVolume(c, name) })
	return name
}

// RemoveVolume removes a volume and any container still using it.
func RemoveVolume(c *client.Client, name string) {
	ctx := context.Background()
	res, _ := c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("volume", name)})
	for _, ct := range res.Items {
		_, _ = c.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true})
	}
	_, _ = c.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true})
}

// Container creates a busybox container that mounts vol at /data and runs `sleep`; started if
// start is true. Removed at the end of the test.
func Container(t testing.TB, c *client.Client, name, vol string, start bool) string {
	t.Helper()
	ctx := context.Background()
	img := Busybox(t, c)
	_, _ = c.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name,
		Config: &container.Config{Image: img, Cmd: []string{"/bin/sleep", "3600"}, StopSignal: "SIGKILL"},
		HostConfig: &container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}},
			NetworkMode: "none"}})
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	t.Cleanup(func() {
		_, _ = c.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	if start {
		if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
	}
	return res.ID
}

// Running reports whether a container runs.
func Running(t testing.TB, c *client.Client, id string) bool {
	t.Helper()
	r, err := c.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Container.State != nil && r.Container.State.Running
}
