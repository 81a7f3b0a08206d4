// Package loopdevtest gives tests a real block device: a sparse file in t.TempDir() on a fresh
// loop device, detached (and unmounted, if a failed test left it mounted) in t.Cleanup.
//
// Tests that use it need root and loop device support. Without them the test FAILS, unless
// `go test -short` is used, where it is skipped.
package loopdevtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/mount/internal/cmdrun"
	"github.com/dockbridge/dockbridge/internal/mount/internal/mountinfo"
	"github.com/dockbridge/dockbridge/internal/testenv"
)

// Require fails the test (skips it under -short) unless it runs as root with loop devices and
// losetup available.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run the tests as root, e.g. sudo go test)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		missing = append(missing, "/dev/loop-control (modprobe loop)")
	}
	if _, err := cmdrun.LookPath("losetup"); err != nil {
		missing = append(missing, "losetup (apt-get install util-linux)")
	}
	testenv.Require(t, "this test needs real loop devices; missing", missing)
}

// New returns a fresh loop device (/dev/loopN) backed by a sparse file of sizeBytes in
// t.TempDir(). It is detached when the test ends.
func New(t testing.TB, sizeBytes int64) (device string) {
	t.Helper()
	dev, _ := NewWithImage(t, sizeBytes)
	return dev
}

// NewWithImage is New that also returns the backing image file (to grow it, for example).
func NewWithImage(t testing.TB, sizeBytes int64) (device, image string) {
	t.Helper()
	Require(t)
	image = filepath.Join(t.TempDir(), "disk.img")
	f, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("loopdevtest: create image: %v", err)
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		t.Fatalf("loopdevtest: size image to %d bytes: %v", sizeBytes, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("loopdevtest: close image: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := cmdrun.Run(ctx, "losetup", "--find", "--show", image)
	if err != nil {
		t.Fatalf("loopdevtest: %v", err)
	}
	device = strings.TrimSpace(string(out))
	t.Cleanup(func() { release(t, device) })
	return device, image
}

// release unmounts whatever a failed test left mounted from device, then detaches it.
func release(t testing.TB, device string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, target := range mountpointsOf(t, device) {
		if _, err := cmdrun.Run(ctx, "umount", target); err != nil {
			t.Errorf("loopdevtest cleanup: %v", err)
		}
	}
	if _, err := cmdrun.Run(ctx, "losetup", "--detach", device); err != nil {
		t.Errorf("loopdevtest cleanup: %v", err)
	}
}

// mountpointsOf lists the mount points whose source is device, last mounted first, so they can
// be unmounted in that order.
func mountpointsOf(t testing.TB, device string) []string {
	entries, err := mountinfo.Read()
	if err != nil {
		t.Errorf("loopdevtest cleanup: %v", err)
		return nil
	}
	var targets []string
	for _, e := range entries {
		if e.Source == device {
			targets = append([]string{e.MountPoint}, targets...)
		}
	}
	return targets
}
