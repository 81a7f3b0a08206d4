package hcloudsim_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
	"github.com/dockbridge/dockbridge/internal/mount"
	"github.com/dockbridge/dockbridge/internal/mount/loopdev"
	"github.com/dockbridge/dockbridge/internal/mount/loopdev/loopdevtest"
)

type localEnv struct {
	stateDir, byID string
}

func (e localEnv) start(t *testing.T) *hcloudsimtest.Sim {
	t.Helper()
	b, err := hcloudsim.NewLocalBackend(hcloudsim.LocalBackendConfig{ImageDir: filepath.Join(e.stateDir, "volumes"), ByIDDir: e.byID})
	if err != nil {
		t.Fatal(err)
	}
	return hcloudsimtest.Start(t, hcloudsimtest.WithStateDir(e.stateDir), hcloudsimtest.WithLocalServer("this-machine"), hcloudsimtest.WithBackend(b))
}

// deviceSize reads the size of the block device behind link from sysfs.
func deviceSize(t *testing.T, link string) int64 {
	t.Helper()
	dev, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatalf("device link %s: %v", link, err)
	}
	b, err := os.ReadFile("/sys/class/block/" + filepath.Base(dev) + "/size")
	if err != nil {
		t.Fatal(err)
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return sectors * 512
}

func TestLocalBackendRealDevices(t *testing.T) {
	loopdevtest.Require(t)
	ctx := t.Context()
	env := localEnv{stateDir: t.TempDir(), byID: t.TempDir()}
	sim := env.start(t)
	c := sim.Client()
	me, _, err := c.Server.GetByID(ctx, sim.LocalServerID())
	if err != nil || me == nil {
		t.Fatal(err)
	}
	m := mount.New()
	store, err := loopdev.New(filepath.Join(env.stateDir, "volumes"), env.byID)
	if err != nil {
		t.Fatal(err)
	}
	var volumes []int64
	t.Cleanup(func() {
		for _, id := range volumes {
			_ = store.Detach(t.Context(), id)
			_ = store.Delete(t.Context(), id)
		}
	})

	v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "data", Size: 10, Server: me, Format: hcloud.Ptr("ext4")})
	volumes = append(volumes, v.ID)
	link := loopdev.DevicePath(env.byID, v.ID)
	if filepath.Base(link) != filepath.Base(v.LinuxDevice) {
		t.Errorf("device %s does not match linux_device %s", link, v.LinuxDevice)
	}
	sig, err := m.Probe(ctx, link)
	if err != nil || sig.Type != "ext4" {
		t.Fatalf("probe %s = %v, %v; want ext4", link, sig, err)
	}
	if got := deviceSize(t, link); got != 10<<30 {
		t.Errorf("device size %d, want 10 GiB", got)
	}

	target := t.TempDir()
	if err := m.Mount(ctx, link, target, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "hello"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Detaching a mounted device fails the action and keeps the attachment.
	a, _, err := c.Volume.Detach(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	var ae hcloud.ActionError
	if err := c.Action.WaitFor(ctx, a); !errors.As(err, &ae) {
		t.Errorf("detach while mounted: %v, want an action error", err)
	}
	if err := m.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	waiter(t, c)(c.Volume.Detach(ctx, v))
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("device link still there after detach: %v", err)
	}
	if _, ok, _ := store.LoopDevice(ctx, v.ID); ok {
		t.Errorf("loop device still attached after detach")
	}

	waiter(t, c)(c.Volume.Attach(ctx, v, me))
	if err := m.Mount(ctx, link, target, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(target, "hello"))
	if err != nil || string(b) != "kept" {
		t.Errorf("after re-attach read %q, %v", b, err)
	}
	waiter(t, c)(c.Volume.Resize(ctx, v, 12))
	if got := deviceSize(t, link); got != 12<<30 {
		t.Errorf("device size after resize %d, want 12 GiB", got)
	}
	if err := m.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}

	// xfs volumes are formatted at create, whether attached or not.
	x := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "logs", Size: 10, Location: &hcloud.Location{Name: "fsn1"}, Format: hcloud.Ptr("xfs")})
	volumes = append(volumes, x.ID)
	if sig, err := m.Probe(ctx, store.ImagePath(x.ID)); err != nil || sig.Type != "xfs" {
		t.Errorf("xfs volume image: %v, %v", sig, err)
	}
	// Volumes attached to other (virtual) servers get no device here.
	other := mustServer(t, c, "elsewhere", "fsn1", nil)
	waiter(t, c)(c.Volume.Attach(ctx, x, other))
	if _, err := os.Lstat(loopdev.DevicePath(env.byID, x.ID)); !os.IsNotExist(err) {
		t.Errorf("volume attached to a virtual server has a local device")
	}
	waiter(t, c)(c.Volume.Detach(ctx, x))
	if _, err := c.Volume.Delete(ctx, x); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(store.ImagePath(x.ID)); !os.IsNotExist(err) {
		t.Errorf("image of deleted volume still there: %v", err)
	}

	// Restart after a "reboot" (the loop device is gone): the device comes back.
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store.Detach(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	sim2 := env.start(t)
	if sim2.LocalServerID() != me.ID {
		t.Fatalf("local server id changed: %d -> %d", me.ID, sim2.LocalServerID())
	}
	if _, err := os.Lstat(link); err != nil {
		t.Fatalf("device not restored after restart: %v", err)
	}
	if err := m.Mount(ctx, link, target, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(filepath.Join(target, "hello"))
	if err != nil || string(b) != "kept" {
		t.Errorf("after restart read %q, %v", b, err)
	}
	if err := m.Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	c2 := sim2.Client()
	waiter(t, c2)(c2.Volume.Detach(ctx, v))
	if _, err := c2.Volume.Delete(ctx, v); err != nil {
		t.Fatal(err)
	}
}
