package volumefs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/mount"
	"github.com/dockbridge/dockbridge/internal/mount/loopdev/loopdevtest"
)

const mib = 1 << 20

var filesystems = []string{"ext4", "xfs"}

// Grow of a mounted filesystem grows it online (xfs here; ext4 where root has
// CAP_SYS_RESOURCE, else it says the growth is deferred to the next mount), and one that is
// not mounted is left for its next mount.
func TestLocalGrow(t *testing.T) {
	for _, fstype := range filesystems {
		t.Run(fstype, func(t *testing.T) {
			ctx := t.Context()
			m := mount.New()
			dev, img := loopdevtest.NewWithImage(t, 512*mib)
			if _, err := m.Format(ctx, dev, fstype, mount.FormatOptions{}); err != nil {
				t.Fatal(err)
			}
			s := Local()
			grow(t, img, dev, 768*mib)
			res, err := s.Grow(ctx, GrowRequest{Device: dev})
			if err != nil || res.Mounted || res.Grown || res.DeviceBytes != 768*mib {
				t.Fatalf("Grow of an unmounted device = %+v, %v; want not mounted, nothing done", res, err)
			}
			target := mountDir(t)
			if err := m.Mount(ctx, dev, target, fstype, nil); err != nil {
				t.Fatal(err)
			}
			grow(t, img, dev, 1024*mib)
			res, err = s.Grow(ctx, GrowRequest{Device: dev, Mountpoint: target})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if !res.Mounted || res.Mountpoint != target || res.FSType != fstype {
				t.Fatalf("Grow of a mounted device = %+v; want mounted at %s, %s", res, target, fstype)
			}
			if fstype == "ext4" && !capSysResource(t) {
				if res.Grown || !strings.Contains(res.Deferred, "CAP_SYS_RESOURCE") {
					t.Fatalf("online ext4 Grow without CAP_SYS_RESOURCE = %+v; want it deferred, naming the capability", res)
				}
				return
			}
			if !res.Grown || res.FilesystemBytesAfter < res.FilesystemBytesBefore+400*mib || res.Deferred != "" {
				t.Fatalf("Grow = %+v; want grown by about 512 MiB", res)
			}
		})
	}
}

// Fsck unmounts the volume, checks it and mounts it again; a clean volume's bytes do not change
// (checked with the volume unmounted before and after, since a mount itself writes).
func TestLocalFsck(t *testing.T) {
	for _, fstype := range filesystems {
		t.Run(fstype, func(t *testing.T) {
			ctx := t.Context()
			m := mount.New()
			dev, img := loopdevtest.NewWithImage(t, 512*mib)
			if _, err := m.Format(ctx, dev, fstype, mount.FormatOptions{}); err != nil {
				t.Fatal(err)
			}
			s := Local()
			before := deviceHash(t, dev)
			res, err := s.Fsck(ctx, FsckRequest{Device: dev})
			if err != nil || !res.Clean || len(res.Findings) != 0 || len(res.Unmounted) != 0 || res.Remounted || res.FSType != fstype {
				t.Fatalf("Fsck of an unmounted clean device = %+v, %v", res, err)
			}
			if after := deviceHash(t, dev); after != before {
				t.Errorf("Fsck of a clean filesystem changed the device: %s -> %s", before, after)
			}

			target := mountDir(t)
			if err := m.Mount(ctx, dev, target, fstype, nil); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(target, "keep"), []byte("kept"), 0o644); err != nil {
				t.Fatal(err)
			}
			res, err = s.Fsck(ctx, FsckRequest{Device: dev})
			if err != nil || !res.Clean || !slices.Equal(res.Unmounted, []string{target}) || !res.Remounted {
				t.Fatalf("Fsck of a mounted clean device = %+v, %v; want unmounted from %s, clean, mounted again", res, err, target)
			}
			if got, err := os.ReadFile(filepath.Join(target, "keep")); err != nil || string(got) != "kept" {
				t.Errorf("after Fsck the mount shows %q, %v", got, err)
			}
			if res.Grown {
				t.Errorf("Fsck grew a filesystem that fills its device: %+v", res)
			}

			// A resize not yet grown into: its next mount is the one after the check.
			small, err := m.Usage(target)
			if err != nil {
				t.Fatal(err)
			}
			grow(t, img, dev, 1024*mib)
			res, err = s.Fsck(ctx, FsckRequest{Device: dev})
			if err != nil || !res.Clean || !res.Remounted || !res.Grown {
				t.Fatalf("Fsck of a mounted volume whose device grew = %+v, %v; want it grown", res, err)
			}
			if big, err := m.Usage(target); err != nil || big.SizeBytes < small.SizeBytes+400*mib {
				t.Errorf("after Fsck the filesystem is %d bytes (was %d), %v; want about 512 MiB more", big.SizeBytes, small.SizeBytes, err)
			}
			if got, err := os.ReadFile(filepath.Join(target, "keep")); err != nil || string(got) != "kept" {
				t.Errorf("after Fsck and the growth the mount shows %q, %v", got, err)
			}

			// Something holding the device (here: a second mount in another namespace, as a
			// container's bind mount would) makes the check refuse, and the mount comes back.
			hold := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sleep", "30")
			if err := hold.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = hold.Process.Kill(); _ = hold.Wait() })
			waitNamespace(t, hold.Process.Pid, target)
			res, err = s.Fsck(ctx, FsckRequest{Device: dev})
			if err == nil || !strings.Contains(err.Error(), "in use") || !res.Remounted {
				t.Errorf("Fsck of a device another namespace holds = %+v, %v; want refused as in use, mounted again", res, err)
			}
		})
	}
}

// The data volume: Docker is stopped before and started after, the tree under the data root is
// unmounted deepest first and the volume mounted again; a failed remount leaves Docker stopped.
func TestLocalFsckData(t *testing.T) {
	ctx := t.Context()
	m := mount.New()
	dev := loopdevtest.New(t, 512*mib)
	if _, err := m.Format(ctx, dev, "ext4", mount.FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	root := mountDir(t)
	if err := m.Mount(ctx, dev, root, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "plugins", "x", "propagated-mount")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", sub).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	var calls []string
	s := &local{m: m, dataRoot: root, systemctl: func(_ context.Context, args ...string) error {
		calls = append(calls, strings.Join(args, " "))
		return nil
	}}
	res, err := s.Fsck(ctx, FsckRequest{Device: dev, Data: true})
	if err != nil || !res.Clean || !res.Remounted || !res.DockerStopped || !res.DockerStarted {
		t.Fatalf("Fsck(data) = %+v, %v", res, err)
	}
	if want := []string{"stop docker.socket docker.service", "start docker.service"}; !slices.Equal(calls, want) {
		t.Errorf("systemctl calls %q, want %q", calls, want)
	}
	if !slices.Equal(res.Unmounted, []string{root, sub}) {
		t.Errorf("unmounted %q, want the data root and the mount below it", res.Unmounted)
	}
	if got, mounted, _ := m.MountedDevice(root); !mounted || got != dev {
		t.Errorf("after Fsck(data) %s holds %q (mounted %v), want %s", root, got, mounted, dev)
	}
}

// Main is what runs over SSH: arguments in, one JSON object out, the report kept on the server.
func TestMainReply(t *testing.T) {
	reportPath = filepath.Join(t.TempDir(), "report.json")
	dev := loopdevtest.New(t, 512*mib)
	if _, err := mount.New().Format(t.Context(), dev, "xfs", mount.FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	req := FsckRequest{Device: dev, Repair: true}
	if code := Main(req.Args(), &out); code != 0 {
		t.Fatalf("Main(%q) = %d: %s", req.Args(), code, out.String())
	}
	_, res, err := ParseReply(out.Bytes())
	if err != nil || res == nil || !res.Clean || res.FSType != "xfs" {
		t.Fatalf("reply %s: %+v, %v", out.String(), res, err)
	}
	if kept, err := os.ReadFile(reportPath); err != nil || !bytes.Equal(kept, out.Bytes()) {
		t.Errorf("report kept on the server: %q, %v", kept, err)
	}
	out.Reset()
	if code := Main([]string{"fsck", "--device", filepath.Join(t.TempDir(), "nope")}, &out); code != 1 {
		t.Errorf("Main on a missing device = %d, want 1", code)
	}
	var rep reply
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Error == "" {
		t.Errorf("failure reply %q: %v", out.String(), err)
	}
	for _, bad := range [][]string{nil, {"shrink", "--device", dev}, {"grow"}, {"grow", "--device", dev, "extra"}} {
		out.Reset()
		if code := Main(bad, &out); code != 1 || !strings.Contains(out.String(), `"error"`) {
			t.Errorf("Main(%q) = %d, %s; want an error reply", bad, code, out.String())
		}
	}
}

// --- helpers ---

func grow(t *testing.T, img, dev string, size int64) {
	t.Helper()
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "--set-capacity", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup --set-capacity: %v: %s", err, out)
	}
}

func capSysResource(t *testing.T) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var n uint64
			for _, c := range strings.TrimSpace(v) {
				n = n*16 + uint64(strings.IndexRune("0123456789abcdef", c))
			}
			return n&(1<<24) != 0
		}
	}
	return false
}

// waitNamespace waits until process pid's mount namespace has target mounted (unshare copies
// the mounts when it starts).
func waitNamespace(t *testing.T, pid int, target string) {
	t.Helper()
	for range 100 {
		data, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "mountinfo"))
		if bytes.Contains(data, []byte(" "+target+" ")) {
			if ns, _ := os.Readlink("/proc/" + itoa(pid) + "/ns/mnt"); ns != "" {
				if self, _ := os.Readlink("/proc/self/ns/mnt"); self != ns {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d never had its own mount namespace with %s", pid, target)
}

func itoa(n int) string { return strconv.Itoa(n) }

func mountDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := mount.New().UnmountTree(ctx, dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

func deviceHash(t *testing.T, dev string) string {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
