package hcloudsim_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

// A "hold" fault keeps a matching action running until the test releases it: the test knows
// its client waits on that action, does what it must at that moment, then lets it go on or
// fail.
func TestHeldActions(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	ctx := t.Context()
	c := sim.Client()
	srv := mustServer(t, c, "h1", "fsn1", nil)

	t.Run("held until released, then it goes on", func(t *testing.T) {
		v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "held1"})
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "attach_volume", Count: 1}}})
		before := sim.Stats().FaultsInjected
		a, _, err := c.Volume.Attach(ctx, v, srv)
		if err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- c.Action.WaitFor(ctx, a) }()
		held := sim.AwaitHeld(t, "attach_*")
		if held.ID != a.ID || held.Command != "attach_volume" || len(held.Resources) != 2 {
			t.Fatalf("held %+v, want the attach action %d of volume %d and server %d", held, a.ID, v.ID, srv.ID)
		}
		if n := sim.Stats().FaultsInjected - before; n != 1 {
			t.Errorf("faults_injected grew by %d, want 1", n)
		}
		time.Sleep(100 * time.Millisecond) // three times the attach's duration in the fast profile
		got, _, err := c.Action.GetByID(ctx, a.ID)
		if err != nil || got.Status != hcloud.ActionStatusRunning || got.Progress != 0 {
			t.Fatalf("held action: %+v %v, want running at progress 0", got, err)
		}
		select {
		case err := <-waited:
			t.Fatalf("the client's wait ended while the action was held: %v", err)
		default:
		}
		// The resources stay locked while it is held.
		_, _, err = c.Volume.Update(ctx, v, hcloud.VolumeUpdateOpts{Labels: map[string]string{"x": "y"}})
		if err == nil {
			_, _, err = c.Volume.Resize(ctx, v, 20)
		}
		wantAPIError(t, err, hcloud.ErrorCodeLocked)

		if rel := sim.Release(hcloudsim.ReleaseRequest{IDs: []int64{held.ID}}); len(rel) != 1 || rel[0].ID != a.ID {
			t.Fatalf("released %+v", rel)
		}
		if err := <-waited; err != nil {
			t.Fatalf("attach after the release: %v", err)
		}
		v, _, _ = c.Volume.GetByID(ctx, v.ID)
		if v.Server == nil || v.Server.ID != srv.ID {
			t.Fatalf("volume not attached after the release: %+v", v.Server)
		}
		if h := sim.HeldActions(); len(h) != 0 {
			t.Errorf("still held: %+v", h)
		}
	})

	t.Run("released with an error, it fails", func(t *testing.T) {
		v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "held2"})
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "attach_volume", Count: 1}}})
		a, _, err := c.Volume.Attach(ctx, v, srv)
		if err != nil {
			t.Fatal(err)
		}
		sim.AwaitHeld(t, "attach_volume")
		sim.Release(hcloudsim.ReleaseRequest{Error: "the storage host is gone"})
		var ae hcloud.ActionError
		if err := c.Action.WaitFor(ctx, a); !errors.As(err, &ae) || ae.Message != "the storage host is gone" {
			t.Fatalf("WaitFor = %v, want the release's error", err)
		}
		v, _, _ = c.Volume.GetByID(ctx, v.ID)
		if v.Server != nil {
			t.Errorf("attached after a failed attach: %d", v.Server.ID)
		}
	})

	t.Run("only the matching resource is held", func(t *testing.T) {
		v1 := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "held3"})
		v2 := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "free3"})
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "attach_volume", Resource: fmt.Sprintf("volume:%d", v1.ID)}}})
		a2, _, err := c.Volume.Attach(ctx, v2, srv)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Action.WaitFor(ctx, a2); err != nil {
			t.Fatalf("the other volume's attach: %v", err)
		}
		a1, _, err := c.Volume.Attach(ctx, v1, srv)
		if err != nil {
			t.Fatal(err)
		}
		// Through the control endpoints, as a test in another process would.
		var list hcloudsim.HeldList
		if err := sim.GetControl(ctx, "/_sim/held?command=attach_volume&wait=30s", &list); err != nil || len(list.Held) != 1 || list.Held[0].ID != a1.ID {
			t.Fatalf("GET /_sim/held: %+v %v, want action %d", list, err, a1.ID)
		}
		if err := sim.PostControl(ctx, "/_sim/release", hcloudsim.ReleaseRequest{}, &list); err != nil || len(list.Held) != 1 {
			t.Fatalf("POST /_sim/release: %+v %v", list, err)
		}
		if err := c.Action.WaitFor(ctx, a1); err != nil {
			t.Fatalf("attach after the release: %v", err)
		}
		if err := sim.GetControl(ctx, "/_sim/held", &list); err != nil || len(list.Held) != 0 {
			t.Fatalf("GET /_sim/held after the release: %+v %v", list, err)
		}
	})

	t.Run("a reset lets held actions end", func(t *testing.T) {
		v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "held4"})
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "resize_volume"}}})
		if _, _, err := c.Volume.Resize(ctx, v, 30); err != nil {
			t.Fatal(err)
		}
		sim.AwaitHeld(t, "resize_volume")
		if err := sim.Reset(); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := sim.Wait(wctx); err != nil {
			t.Fatalf("actions still running after a reset: %v", err)
		}
	})
}

// Closing the simulator does not wait for a held action's release.
func TestCloseWithAHeldAction(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "held5"})
	sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1}}})
	if _, _, err := c.Volume.Resize(t.Context(), v, 30); err != nil {
		t.Fatal(err)
	}
	sim.AwaitHeld(t, "")
	done := make(chan error, 1)
	go func() { done <- sim.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for the held action")
	}
}
