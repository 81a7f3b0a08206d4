package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/mount"
)

// The fence on fakes: the rule (mayTakeOver) checked again on the volume as it is just before
// the detach, never satisfied by an unreachable server, releases that cannot detach, taking
// back what this server released, and two servers sharing one project. The same on booted
// servers with Docker Swarm: internal/swarmtest.

// sharedVolume puts volume 500 "shared" (ext4 u1 recorded) attached to server 2 with labels.
func (h *harness) sharedVolume(labels map[string]string) {
	l := map[string]string{labelManagedBy: managedByValue, labelName: "shared", labelUUID: "u1", labelFSType: "ext4"}
	for k, v := range labels {
		l[k] = v
	}
	h.p.vols[500] = &hetzner.Volume{ID: 500, Name: "shared", SizeGB: 10, Location: "fsn1", ServerID: 2, Labels: l}
	h.disks[500] = mount.Signature{Type: "ext4", Usage: "filesystem", UUID: "u1", Found: []mount.Found{{Type: "ext4"}}}
}

func TestFenceNeverBecauseTheHolderIsUnreachable(t *testing.T) {
	h := newHarness(t)
	h.sharedVolume(map[string]string{labelHolder: "2"})
	h.cloud.ServerFunc = func(context.Context, int64) (*hetzner.Server, error) {
		return nil, fmt.Errorf("get server 2: %w", hetzner.ErrUnavailable)
	}
	_, err := h.d.Mount(&volume.MountRequest{Name: "shared", ID: "c1"})
	if !errors.Is(err, ErrAttachedElsewhere) || !strings.Contains(err.Error(), "asking the API whether that server still uses it failed") {
		t.Fatalf("mount with the holder's status unknown: %v, want ErrAttachedElsewhere saying the check failed", err)
	}
	if h.p.vols[500].ServerID != 2 || strings.Contains(strings.Join(h.cloud.Calls(), ","), "Detach") {
		t.Fatalf("detached from a server whose state is unknown (calls %v)", h.cloud.Calls())
	}
}

// TestFenceCheckedAgainJustBeforeTheDetach: the rule allowed the takeover on the volume as read
// first, but just before the detach the world changed (the holder's plugin took its release back,
// or the off holder was powered on): nothing is detached.
func TestFenceCheckedAgainJustBeforeTheDetach(t *testing.T) {
	for _, c := range []struct {
		name   string
		labels map[string]string
		status string
		change func(h *harness)
	}{
		{"release taken back", map[string]string{labelReleased: "2"}, "running", func(h *harness) {
			h.p.vols[500].Labels[labelHolder] = "2"
			delete(h.p.vols[500].Labels, labelReleased)
		}},
		{"off holder powered on", map[string]string{labelHolder: "2"}, "off", func(h *harness) { h.p.servers[2].Status = "starting" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.sharedVolume(c.labels)
			h.p.servers[2].Status = c.status
			h.p.beforeDetachFrom = func(int64, int64) {
				h.p.mu.Lock()
				defer h.p.mu.Unlock()
				c.change(h)
			}
			_, err := h.d.Mount(&volume.MountRequest{Name: "shared", ID: "c1"})
			if !errors.Is(err, ErrAttachedElsewhere) {
				t.Fatalf("mount: %v, want ErrAttachedElsewhere", err)
			}
			if h.p.vols[500].ServerID != 2 {
				t.Fatal("detached although the rule no longer allowed it")
			}
		})
	}
}

// TestReleaseThatCannotDetachRecordsTheRelease: the last unmount's detach keeps failing (the API
// answers 503): the volume stays attached here, marked released, so another server may take it.
func TestReleaseThatCannotDetachRecordsTheRelease(t *testing.T) {
	h := newHarness(t)
	h.setting.DetachOnUnmount = true
	h.d = h.newDriver()
	h.create("moving", nil)
	h.mount("moving", "c1")
	h.p.detachErr = fmt.Errorf("detach: %w", hetzner.ErrUnavailable)
	err := h.d.Unmount(&volume.UnmountRequest{Name: "moving", ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "marked released") {
		t.Fatalf("unmount with a failing detach: %v, want an error saying it is marked released", err)
	}
	if n := strings.Count(strings.Join(h.cloud.Calls(), ","), "DetachVolumeFrom"); n != 3 {
		t.Errorf("%d detach attempts, want 3", n)
	}
	v := h.volumeNamed("moving")
	if v.ServerID != 1 || v.Labels[labelReleased] != "1" || v.Labels[labelHolder] != "" {
		t.Fatalf("after the failed release: server %d labels %v, want attached here, released=1, no holder", v.ServerID, v.Labels)
	}
	if h.m.mounted(h.d.mountpoint("moving")) {
		t.Fatal("still mounted")
	}
	if err := mayTakeOver(t.Context(), h.cloud, v); err != nil {
		t.Fatalf("another server may not take the released volume: %v", err)
	}
	// Back here: taken back by a detach and a new attach, like another server would.
	h.p.detachErr = nil
	calls := h.apiCalls(func() { h.mount("moving", "c2") })
	if strings.Join(calls, ",") != "Volume,DetachVolumeFrom,AttachVolume,SetVolumeLabels" {
		t.Fatalf("taking back a released volume made calls %v, want Volume,DetachVolumeFrom,AttachVolume,SetVolumeLabels", calls)
	}
	if v := h.volumeNamed("moving"); v.ServerID != 1 || v.Labels[labelHolder] != "1" || v.Labels[labelReleased] != "" {
		t.Fatalf("taken back: server %d labels %v", v.ServerID, v.Labels)
	}
}

// TestUnmountAfterARefusedMountChangesNothing: Docker may send an Unmount for a container whose
// Mount the fence refused; it must not touch the volume another server holds.
func TestUnmountAfterARefusedMountChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.setting.DetachOnUnmount = true
	h.d = h.newDriver()
	h.sharedVolume(map[string]string{labelHolder: "2"})
	if _, err := h.d.Mount(&volume.MountRequest{Name: "shared", ID: "c1"}); !errors.Is(err, ErrAttachedElsewhere) {
		t.Fatalf("mount: %v", err)
	}
	before := copyVol(h.p.vols[500])
	calls := h.apiCalls(func() {
		if err := h.d.Unmount(&volume.UnmountRequest{Name: "shared", ID: "c1"}); err != nil {
			t.Fatalf("unmount: %v", err)
		}
	})
	after := h.p.vols[500]
	if len(calls) != 0 || after.ServerID != 2 || fmt.Sprint(after.Labels) != fmt.Sprint(before.Labels) {
		t.Fatalf("unmount of a refused mount: calls %v, volume on %d with %v (was %v)", calls, after.ServerID, after.Labels, before.Labels)
	}
}

// node is a second server's plugin on the same project (harness is server 1).
type node struct {
	id int64
	m  *fakeMounter
	d  *Driver
}

// twoNodes gives the harness a second server (2) with its own mounter and state; devices
// appear on the server a volume is attached to, with what the volume holds.
func twoNodes(t *testing.T) (*harness, *node) {
	h := newHarness(t)
	h.setting.DetachOnUnmount = true
	h.d = h.newDriver()
	n2 := &node{id: 2, m: newFakeMounter()}
	mounters := map[int64]*fakeMounter{1: h.m, 2: n2.m}
	var mu sync.Mutex
	h.p.onAttach = func(id, server int64) {
		mu.Lock()
		defer mu.Unlock()
		if m := mounters[server]; m != nil {
			m.setDevice(h.dev(id), h.disks[id])
		}
	}
	h.p.onDetach = func(id int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range mounters {
			if sig, err := m.Probe(context.Background(), h.dev(id)); err == nil {
				h.disks[id] = sig
				m.removeDevice(h.dev(id))
			}
		}
	}
	s := h.setting
	s.MountRoot, s.StateDir = t.TempDir()+"/mnt", t.TempDir()+"/state"
	store, err := NewStateStore(s.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	n2.d, err = New(Config{Settings: s, Cloud: h.cloud, Mounter: n2.m, Store: store, Log: log, DeviceExists: n2.m.exists,
		Instance: func(context.Context) (hetzner.Instance, error) {
			return hetzner.Instance{ID: 2, Hostname: "other-server", AvailabilityZone: "fsn1-dc14"}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return h, n2
}

// TestPlannedMoveBetweenTwoServers: what Swarm does when a task moves, on fakes. Create is
// called on both servers (the second adopts, nothing is formatted); the second server's Mount
// is refused while the first holds the volume (naming it), and succeeds once the first
// unmounted it, with the data (the filesystem recorded at the first format) intact.
func TestPlannedMoveBetweenTwoServers(t *testing.T) {
	h, n2 := twoNodes(t)
	h.create("db", nil)
	if err := n2.d.Create(&volume.CreateRequest{Name: "db"}); err != nil {
		t.Fatalf("create on the second server: %v", err)
	}
	if len(h.p.vols) != 1 || n2.m.formats != 0 {
		t.Fatalf("create on two servers: %d volumes, %d formats on the second; want 1 and 0", len(h.p.vols), n2.m.formats)
	}
	h.mount("db", "task1")
	uuid := h.volumeNamed("db").Labels[labelUUID]
	_, err := n2.d.Mount(&volume.MountRequest{Name: "db", ID: "task2"})
	if !errors.Is(err, ErrAttachedElsewhere) || !strings.Contains(err.Error(), `"this-server" (id 1, running)`) {
		t.Fatalf("second server's mount while the first holds it: %v, want ErrAttachedElsewhere naming server 1", err)
	}
	h.unmount("db", "task1")
	r, err := n2.d.Mount(&volume.MountRequest{Name: "db", ID: "task2"})
	if err != nil {
		t.Fatalf("second server's mount after the first released it: %v", err)
	}
	if dev, ok, _ := n2.m.MountedDevice(r.Mountpoint); !ok || dev != h.dev(h.volumeNamed("db").ID) {
		t.Fatalf("not mounted on the second server: %q %v", dev, ok)
	}
	if sig, _ := n2.m.Probe(t.Context(), h.dev(h.volumeNamed("db").ID)); sig.UUID != uuid {
		t.Fatalf("the second server mounted filesystem %q, want the one made on the first (%q)", sig.UUID, uuid)
	}
	if h.m.formats+n2.m.formats != 1 {
		t.Fatalf("%d formats in all, want 1", h.m.formats+n2.m.formats)
	}
}

// TestRacingMountsOneWinner: two servers mount a detached volume at the same moment: the attach
// decides, exactly one mounts it, the other is refused naming the winner.
func TestRacingMountsOneWinner(t *testing.T) {
	for i := range 20 {
		h, n2 := twoNodes(t)
		h.create("db", nil)
		if err := n2.d.Create(&volume.CreateRequest{Name: "db"}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, d := range []*Driver{h.d, n2.d} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[j] = d.Mount(&volume.MountRequest{Name: "db", ID: "task"})
			}()
		}
		wg.Wait()
		mounted := 0
		for j, m := range []*fakeMounter{h.m, n2.m} {
			if len(m.mounts) > 0 {
				mounted++
			}
			if errs[j] != nil && !errors.Is(errs[j], ErrAttachedElsewhere) {
				t.Fatalf("round %d: server %d: %v, want success or ErrAttachedElsewhere", i, j+1, errs[j])
			}
		}
		if mounted != 1 || (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: mounted on %d servers (errors %v, %v), want exactly one", i, mounted, errs[0], errs[1])
		}
	}
}
