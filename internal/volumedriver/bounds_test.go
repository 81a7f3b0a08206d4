package volumedriver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dockbridge/dockbridge"
)

// Docker gives up on a Create or a Mount after 2 minutes and on any other request after 1
// (moby's volume/drivers/proxy.go), without telling the plugin: the plugin's bounds are within
// those, the enable timeout does not cut them shorter, and REQUEST_TIMEOUT cannot lift them.
func TestRequestBoundsWithinDockers(t *testing.T) {
	if enable := time.Duration(dockbridge.PluginEnableTimeout) * time.Second; enable < dockerLongRequest {
		t.Errorf("docker plugin enable --timeout %s is shorter than Docker's own bound of a Create or Mount, %s", enable, dockerLongRequest)
	}
	s, err := SettingsFromEnv(env(nil))
	if err != nil || s.RequestTimeout != 110*time.Second {
		t.Fatalf("default REQUEST_TIMEOUT %s (%v), want 110s", s.RequestTimeout, err)
	}
	d := &Driver{s: s}
	bound := func(long bool) time.Duration {
		ctx, cancel := d.ctx(long)
		defer cancel()
		dl, _ := ctx.Deadline()
		return time.Until(dl).Round(time.Second)
	}
	if l, sh := bound(longRequest), bound(shortRequest); l != 110*time.Second || sh != 50*time.Second {
		t.Errorf("bounds: Create/Mount %s, others %s; want 110s and 50s (10 s before Docker's 2m and 1m)", l, sh)
	}
	if d.s, err = SettingsFromEnv(env(map[string]string{"REQUEST_TIMEOUT": "20s"})); err != nil {
		t.Fatal(err)
	}
	if l, sh := bound(longRequest), bound(shortRequest); l != 20*time.Second || sh != 20*time.Second {
		t.Errorf("REQUEST_TIMEOUT=20s: Create/Mount %s, others %s; want 20s both", l, sh)
	}
	for _, v := range []string{"111s", "2m", "5m"} {
		_, err := SettingsFromEnv(env(map[string]string{"REQUEST_TIMEOUT": v}))
		if err == nil || !strings.Contains(err.Error(), "at most 1m50s") || !strings.Contains(err.Error(), "Docker gives up") {
			t.Errorf("REQUEST_TIMEOUT=%s: %v, want it refused saying why", v, err)
		}
	}
}

// A request waiting for another operation on the same volume (a slow attach) gives up at its
// own bound, changes nothing, and says so: carrying on after Docker gave up would complete a
// Mount Docker reported as failed, counted for a container that never unmounts (Docker mounts
// it again with a new ID). Unmount is the exception (TestUnmountIsDonePastItsBound).
func TestRequestDoesNotWaitPastItsBound(t *testing.T) {
	h := newHarness(t)
	h.create("busy", nil)
	h.create("gone", nil)
	h.mount("busy", "running")
	h.d.s.RequestTimeout = 100 * time.Millisecond
	for _, tc := range []struct {
		op  string
		run func() error
	}{
		{"mount", func() error { _, err := h.d.Mount(&volume.MountRequest{Name: "busy", ID: "late"}); return err }},
		{"remove", func() error { return h.d.Remove(&volume.RemoveRequest{Name: "gone"}) }},
		{"create", func() error { return h.d.Create(&volume.CreateRequest{Name: "busy"}) }},
	} {
		t.Run(tc.op, func(t *testing.T) {
			name := "busy"
			if tc.op == "remove" {
				name = "gone"
			}
			unlock, err := h.d.volLock.lock(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			// The other operation ends in a while: a request that waits for it past its bound
			// then goes through, and this test says so instead of hanging.
			release := time.AfterFunc(10*h.d.s.RequestTimeout, unlock)
			before := h.d.get(name)
			calls := h.apiCalls(func() { err = tc.run() })
			if release.Stop() {
				unlock()
			}
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errVolumeBusy) ||
				!strings.Contains(err.Error(), "nothing was done, run the command again") {
				t.Fatalf("%s while another operation holds the volume: %v, want it to give up at its bound and say why", tc.op, err)
			}
			if strings.Contains(err.Error(), "Hetzner Cloud may still complete") {
				t.Errorf("%s asked nothing of the cloud, but its error says it may still complete: %v", tc.op, err)
			}
			if len(calls) != 0 {
				t.Errorf("%s made API calls %v after giving up", tc.op, calls)
			}
			if after := h.d.get(name); len(after.Refs) != len(before.Refs) || after.Mountpoint != before.Mountpoint {
				t.Errorf("%s changed the state: %+v, was %+v", tc.op, after, before)
			}
		})
	}
	// Free again, the same requests go through.
	h.mount("busy", "late")
	if v := h.d.get("busy"); len(v.Refs) != 2 {
		t.Fatalf("refs %v, want running and late", v.Refs)
	}
}

// An attach that does not end within the bound: the Mount answers at its bound with an error
// that says the attach may still complete and to run the command again; the next Mount uses
// the attachment without a second attach.
func TestMountOutOfTimeSaysWhatMayStillHappen(t *testing.T) {
	h := newHarness(t)
	h.create("slow", nil)
	v := h.volumeNamed("slow")
	if err := h.cloud.DetachVolume(context.Background(), v.ID); err != nil {
		t.Fatal(err)
	}
	attach := h.cloud.AttachVolumeFunc
	h.cloud.AttachVolumeFunc = func(ctx context.Context, volumeID, serverID int64, automount bool) error {
		// The action goes on in the cloud; the client stops waiting at ctx's end.
		if err := attach(context.Background(), volumeID, serverID, automount); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}
	h.d.s.RequestTimeout = 200 * time.Millisecond
	_, err := h.d.Mount(&volume.MountRequest{Name: "slow", ID: "c1"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "may still complete") || !strings.Contains(err.Error(), "run the command again") {
		t.Fatalf("mount whose attach outlasts the bound: %v", err)
	}
	if got := h.d.get("slow"); len(got.Refs) != 0 || got.Mountpoint != "" {
		t.Fatalf("a Mount that gave up counted a container: %+v", got)
	}
	h.cloud.AttachVolumeFunc = attach
	h.d.s.RequestTimeout = MaxRequestTimeout
	calls := h.apiCalls(func() { h.mount("slow", "c1") })
	for _, c := range calls {
		if c == "AttachVolume" {
			t.Errorf("the retried Mount attached again: %v", calls)
		}
	}
}

// An Unmount waits for its turn however long it takes and is done, even past its bound:
// Docker goes on as if it had been (the container is stopped) and does not send it again, so
// an Unmount that gave up would leave the volume counted for a container that is gone, mounted
// for good.
func TestUnmountIsDonePastItsBound(t *testing.T) {
	h := newHarness(t)
	h.create("busy", nil)
	h.mount("busy", "stopped")
	h.d.s.RequestTimeout = 100 * time.Millisecond
	unlock, err := h.d.volLock.lock(context.Background(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.d.Unmount(&volume.UnmountRequest{Name: "busy", ID: "stopped"}) }()
	select {
	case err := <-done:
		unlock()
		t.Fatalf("the Unmount answered (%v) while another operation still held the volume", err)
	case <-time.After(5 * h.d.s.RequestTimeout):
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatalf("the Unmount, once the volume was free: %v", err)
	}
	if v := h.d.get("busy"); len(v.Refs) != 0 || v.Mountpoint != "" || h.m.mounted(h.d.mountpoint("busy")) {
		t.Fatalf("after the late Unmount of its only container the volume is %+v (mounted: %v), want unmounted", v, h.m.mounted(h.d.mountpoint("busy")))
	}
}

// Requests waiting for the same volume are served in the order they came: a container's late
// Unmount (queued behind a slow operation) then `docker volume rm` once the container is gone:
// the remove must find the volume unused, not overtake the Unmount and refuse it as in use.
func TestWaitersServedInOrder(t *testing.T) {
	h := newHarness(t)
	h.create("busy", nil)
	h.mount("busy", "c1")
	unlock, err := h.d.volLock.lock(context.Background(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	unmounted, removed := make(chan error, 1), make(chan error, 1)
	go func() { unmounted <- h.d.Unmount(&volume.UnmountRequest{Name: "busy", ID: "c1"}) }()
	waitWaiters(t, &h.d.volLock, "busy", 2)
	go func() { removed <- h.d.Remove(&volume.RemoveRequest{Name: "busy"}) }()
	waitWaiters(t, &h.d.volLock, "busy", 3)
	unlock()
	if err := <-unmounted; err != nil {
		t.Fatal(err)
	}
	if err := <-removed; err != nil {
		t.Fatalf("the remove that came after the Unmount: %v", err)
	}
	if h.d.get("busy") != nil {
		t.Fatal("the volume is still there")
	}
}

// waitWaiters waits until n requests hold or wait for key.
func waitWaiters(t *testing.T, k *keyedMutex, key string, n int) {
	t.Helper()
	for range 500 {
		k.mu.Lock()
		e := k.locks[key]
		users := 0
		if e != nil {
			users = e.users
		}
		k.mu.Unlock()
		if users >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d requests never held or waited for %s", n, key)
}
