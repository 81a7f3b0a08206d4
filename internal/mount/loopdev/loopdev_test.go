package loopdev_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/mount/loopdev"
	"github.com/dockbridge/dockbridge/internal/mount/loopdev/loopdevtest"
)

const mib = 1 << 20

func TestDevicePath(t *testing.T) {
	tests := []struct {
		name   string
		byID   string
		id     int64
		expect string
	}{
		{"hetzner default", loopdev.DefaultByIDDir, 12345, "/dev/disk/by-id/scsi-0HC_Volume_12345"},
		{"test dir", "/tmp/x/by-id", 7, "/tmp/x/by-id/scsi-0HC_Volume_7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loopdev.DevicePath(tt.byID, tt.id); got != tt.expect {
				t.Errorf("DevicePath(%q, %d) = %q, want %q", tt.byID, tt.id, got, tt.expect)
			}
		})
	}
}

// newStore returns a Store in temp dirs whose loop devices are all detached when the test ends,
// whatever state the test left them in.
func newStore(t *testing.T) *loopdev.Store {
	t.Helper()
	loopdevtest.Require(t)
	s, err := loopdev.New(filepath.Join(t.TempDir(), "images"), filepath.Join(t.TempDir(), "by-id"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { detachAll(t, s) })
	return s
}

func detachAll(t *testing.T, s *loopdev.Store) {
	t.Helper()
	imgs, _ := filepath.Glob(filepath.Join(s.Dir, "volume-*.img"))
	for _, img := range imgs {
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(img), "volume-"), ".img"), 10, 64)
		if err != nil {
			t.Errorf("cleanup: image name %s: %v", img, err)
			continue
		}
		if err := s.Detach(context.Background(), id); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func TestNewCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "images")
	s, err := loopdev.New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("image dir mode %v, want 0700", fi.Mode().Perm())
	}
	if s.ByIDDir != loopdev.DefaultByIDDir {
		t.Errorf("ByIDDir = %q, want default %q", s.ByIDDir, loopdev.DefaultByIDDir)
	}
	if got, want := s.ImagePath(42), filepath.Join(dir, "volume-42.img"); got != want {
		t.Errorf("ImagePath = %q, want %q", got, want)
	}
}

func TestLifecycle(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	const id = 101

	// Create: a sparse file of the requested size, refused a second time.
	if err := s.Create(ctx, id, 64*mib); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, id, 64*mib); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create: got %v, want an error wrapping fs.ErrExist", err)
	}
	fi, err := os.Stat(s.ImagePath(id))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 64*mib {
		t.Errorf("image size %d, want %d", fi.Size(), 64*mib)
	}

	// Not attached yet.
	if dev, ok, err := s.LoopDevice(ctx, id); err != nil || ok {
		t.Fatalf("LoopDevice before Attach = %q, %v, %v; want not attached", dev, ok, err)
	}

	// Attach: a loop device, linked at Hetzner's path.
	link, dev, err := s.Attach(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if link != loopdev.DevicePath(s.ByIDDir, id) {
		t.Errorf("link %q, want %q", link, loopdev.DevicePath(s.ByIDDir, id))
	}
	assertLink(t, link, dev)
	if got := deviceSize(t, link); got != 64*mib {
		t.Errorf("device size %d, want %d", got, 64*mib)
	}

	// Attach is idempotent.
	link2, dev2, err := s.Attach(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if link2 != link || dev2 != dev {
		t.Errorf("second Attach = %q -> %q, want the same %q -> %q", link2, dev2, link, dev)
	}
	if got, ok, err := s.LoopDevice(ctx, id); err != nil || !ok || got != dev {
		t.Errorf("LoopDevice = %q, %v, %v; want %q", got, ok, err, dev)
	}

	// Resize grows the attached device; shrinking is refused.
	if err := s.Resize(ctx, id, 96*mib); err != nil {
		t.Fatal(err)
	}
	if got := deviceSize(t, link); got != 96*mib {
		t.Errorf("device size after Resize %d, want %d", got, 96*mib)
	}
	if err := s.Resize(ctx, id, 32*mib); err == nil || !strings.Contains(err.Error(), "only grow") {
		t.Errorf("shrinking Resize: got %v, want an error saying volumes only grow", err)
	}

	// Detach removes link and loop device; twice is fine.
	if err := s.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link after Detach: %v, want it gone", err)
	}
	if got, ok, err := s.LoopDevice(ctx, id); err != nil || ok {
		t.Errorf("LoopDevice after Detach = %q, %v, %v; want not attached", got, ok, err)
	}
	if err := s.Detach(ctx, id); err != nil {
		t.Errorf("second Detach: %v", err)
	}

	// Delete removes the image, even when attached, and is idempotent.
	if _, _, err := s.Attach(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.ImagePath(id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("image after Delete: %v, want it gone", err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link after Delete: %v, want it gone", err)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestDataSurvivesDetachAndAttach(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	const id = 102
	if err := s.Create(ctx, id, 8*mib); err != nil {
		t.Fatal(err)
	}
	link, _, err := s.Attach(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, link, 4*mib, "dockbridge was here")
	if err := s.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	link, _, err = s.Attach(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAt(t, link, 4*mib, len("dockbridge was here")); got != "dockbridge was here" {
		t.Errorf("read back %q after re-attach", got)
	}
}

// A restarted process makes a new Store on the same directories: it must find the loop device
// the old one attached (not attach a second one) and repair a lost or wrong symlink.
func TestRestartFindsExistingLoopDevice(t *testing.T) {
	ctx := t.Context()
	before := newStore(t)
	const id = 103
	if err := before.Create(ctx, id, 8*mib); err != nil {
		t.Fatal(err)
	}
	link, dev, err := before.Attach(ctx, id)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		break_ func(t *testing.T)
	}{
		{"link intact", func(t *testing.T) {}},
		{"link removed", func(t *testing.T) {
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
		}},
		{"link dangling", func(t *testing.T) {
			relink(t, link, "/dev/loop-does-not-exist")
		}},
		{"link to another device", func(t *testing.T) {
			relink(t, link, "/dev/null")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.break_(t)
			after, err := loopdev.New(before.Dir, before.ByIDDir)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok, err := after.LoopDevice(ctx, id); err != nil || !ok || got != dev {
				t.Errorf("LoopDevice after restart = %q, %v, %v; want %q", got, ok, err, dev)
			}
			link2, dev2, err := after.Attach(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if dev2 != dev || link2 != link {
				t.Errorf("Attach after restart = %q -> %q, want the existing %q -> %q", link2, dev2, link, dev)
			}
			assertLink(t, link, dev)
		})
	}
}

// Detaching a device that is still open (mounted, in real life) must not pretend success.
func TestDetachBusyDevice(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	const id = 104
	if err := s.Create(ctx, id, 8*mib); err != nil {
		t.Fatal(err)
	}
	link, dev, err := s.Attach(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Detach(ctx, id)
	if !errors.Is(err, loopdev.ErrBusy) {
		t.Errorf("Detach of an open device: got %v, want ErrBusy", err)
	}
	assertLink(t, link, dev)
	holder.Close()

	// The kernel frees the device once closed (autoclear); Detach then succeeds.
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := s.Detach(waitCtx, id)
		if err == nil {
			break
		}
		if !errors.Is(err, loopdev.ErrBusy) {
			t.Fatal(err)
		}
		select {
		case <-waitCtx.Done():
			t.Fatalf("device still busy after close: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link after Detach: %v, want it gone", err)
	}
}

func TestErrors(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	tests := []struct {
		name    string
		run     func() error
		wantErr string
		wantIs  error
	}{
		{"attach missing image", func() error { _, _, err := s.Attach(ctx, 200); return err }, "attach volume 200", fs.ErrNotExist},
		{"resize missing image", func() error { return s.Resize(ctx, 201, mib) }, "resize volume 201", fs.ErrNotExist},
		{"zero size", func() error { return s.Create(ctx, 202, 0) }, "must be positive", nil},
		{"negative id", func() error { return s.Create(ctx, -1, mib) }, "must be a positive number", nil},
		{"link path is a regular file", func() error {
			if err := s.Create(ctx, 203, mib); err != nil {
				return err
			}
			if err := os.MkdirAll(s.ByIDDir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(loopdev.DevicePath(s.ByIDDir, 203), nil, 0o600); err != nil {
				return err
			}
			_, _, err := s.Attach(ctx, 203)
			os.Remove(loopdev.DevicePath(s.ByIDDir, 203))
			return err
		}, "not a symlink", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}

func TestLoopdevtestNew(t *testing.T) {
	var dev string
	t.Run("inner", func(t *testing.T) {
		dev = loopdevtest.New(t, 4*mib)
		if got := deviceSize(t, dev); got != 4*mib {
			t.Errorf("size %d, want %d", got, 4*mib)
		}
	})
	// The inner test's cleanup detached it: /sys/block/loopN/loop exists only while bound.
	if _, err := os.Stat(filepath.Join("/sys/block", filepath.Base(dev), "loop")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still bound after the test that made it ended (%v)", dev, err)
	}
}

func assertLink(t *testing.T, link, dev string) {
	t.Helper()
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatalf("read link: %v", err)
	}
	if target != dev {
		t.Errorf("%s -> %s, want -> %s", link, target, dev)
	}
	fi, err := os.Stat(link)
	if err != nil {
		t.Fatalf("stat %s: %v", link, err)
	}
	if fi.Mode()&os.ModeDevice == 0 {
		t.Errorf("%s resolves to %v, want a block device", link, fi.Mode())
	}
}

func relink(t *testing.T, link, target string) {
	t.Helper()
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func deviceSize(t *testing.T, dev string) int64 {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeAt(t *testing.T, dev string, off int64, s string) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, dev string, off int64, n int) string {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

// Two processes (here: two Stores on one directory) attaching one volume at once must end up
// sharing a single loop device.
func TestConcurrentAttachSharesOneDevice(t *testing.T) {
	ctx := t.Context()
	a := newStore(t)
	b, err := loopdev.New(a.Dir, a.ByIDDir)
	if err != nil {
		t.Fatal(err)
	}
	const id = 105
	if err := a.Create(ctx, id, 8*mib); err != nil {
		t.Fatal(err)
	}
	devs := make(chan string, 8)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		go func() {
			_, dev, err := s.Attach(ctx, id)
			devs <- dev
			errs <- err
		}()
	}
	seen := map[string]bool{}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		seen[<-devs] = true
	}
	if len(seen) != 1 {
		t.Errorf("concurrent Attach made %d loop devices (%v), want 1", len(seen), seen)
	}
}
