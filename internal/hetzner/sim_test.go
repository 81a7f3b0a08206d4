package hetzner_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// newClient returns a client for the simulator with short waits, so tests stay quick.
func newClient(t *testing.T, sim *hcloudsimtest.Sim, mutate ...func(*hetzner.Config)) *hetzner.Client {
	t.Helper()
	cfg := hetzner.Config{
		Endpoint: sim.Endpoint, Token: sim.Token,
		PollBase: 10 * time.Millisecond, PollMax: 50 * time.Millisecond,
		RetryBase: 10 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := hetzner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVolumeLifecycleOnTheSimulator(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithLocalServer("node1"))
	c := newClient(t, sim)
	ctx := t.Context()

	inst, err := hetzner.CurrentInstance(ctx, sim.MetadataEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Hostname != "node1" || inst.Location() != "fsn1" || inst.ID == 0 {
		t.Fatalf("metadata says %+v; want node1 in fsn1", inst)
	}

	labels := map[string]string{"managed-by": "dockbridge", "docker-volume": "node1_data"}
	v, err := c.CreateVolume(ctx, hetzner.VolumeSpec{Name: "node1-data", SizeGB: 10, Location: "fsn1", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != "available" || v.SizeGB != 10 || v.ServerID != 0 || v.LinuxDevice == "" {
		t.Fatalf("created %+v", v)
	}
	if _, err := c.CreateVolume(ctx, hetzner.VolumeSpec{Name: "node1-data", SizeGB: 10, Location: "fsn1"}); !errors.Is(err, hetzner.ErrAlreadyExists) {
		t.Fatalf("second create with the same name: %v, want ErrAlreadyExists", err)
	}

	if err := c.AttachVolume(ctx, v.ID, inst.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := c.AttachVolume(ctx, v.ID, inst.ID, false); !errors.Is(err, hetzner.ErrAlreadyAttached) {
		t.Fatalf("attach twice: %v, want ErrAlreadyAttached", err)
	}
	if err := c.ResizeVolume(ctx, v.ID, 20); err != nil {
		t.Fatal(err)
	}
	if err := c.ResizeVolume(ctx, v.ID, 15); !errors.Is(err, hetzner.ErrInvalidInput) {
		t.Fatalf("shrink: %v, want ErrInvalidInput", err)
	}
	if err := c.SetVolumeProtection(ctx, v.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := c.DetachVolume(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, v.ID); !errors.Is(err, hetzner.ErrProtected) {
		t.Fatalf("delete protected: %v, want ErrProtected", err)
	}
	if err := c.SetVolumeProtection(ctx, v.ID, false); err != nil {
		t.Fatal(err)
	}
	got, err := c.Volume(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.SizeGB != 20 || got.ServerID != 0 || got.Protected || got.Labels["docker-volume"] != "node1_data" {
		t.Fatalf("after resize/detach: %+v", got)
	}
	if err := c.DeleteVolume(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Volume(ctx, v.ID); !errors.Is(err, hetzner.ErrNotFound) {
		t.Fatalf("get deleted: %v, want ErrNotFound", err)
	}
}

func TestListWalksPagesAndSelectsByLabel(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := newClient(t, sim)
	ctx := t.Context()
	for i := range 60 {
		owner := "dockbridge"
		if i%3 == 0 {
			owner = "someone-else"
		}
		if _, err := c.CreateVolume(ctx, hetzner.VolumeSpec{Name: fmt.Sprintf("v%02d", i), SizeGB: 10, Location: "nbg1", Labels: map[string]string{"managed-by": owner}}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.Volumes(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := c.Volumes(ctx, "managed-by=dockbridge")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 60 || len(ours) != 40 {
		t.Fatalf("listed %d volumes (%d ours); want 60 (40)", len(all), len(ours))
	}
	if _, err := c.Volumes(ctx, "managed-by in (a,"); !errors.Is(err, hetzner.ErrInvalidInput) {
		t.Fatalf("bad selector: %v, want ErrInvalidInput", err)
	}
}

func TestLockedAttachIsRetriedUntilTheResizeFinishes(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithLocalServer("node1"), hcloudsimtest.WithConfig(func(c *hcloudsim.Config) {
		c.ActionDurations = map[string]time.Duration{"resize_volume": 1500 * time.Millisecond}
	}))
	c := newClient(t, sim)
	ctx := t.Context()
	inst, err := hetzner.CurrentInstance(ctx, sim.MetadataEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.CreateVolume(ctx, hetzner.VolumeSpec{Name: "busy", SizeGB: 10, Location: "fsn1"})
	if err != nil {
		t.Fatal(err)
	}
	resized := make(chan error, 1)
	go func() { resized <- c.ResizeVolume(ctx, v.ID, 11) }()
	time.Sleep(300 * time.Millisecond) // the resize action is running now
	if err := c.AttachVolume(ctx, v.ID, inst.ID, false); err != nil {
		t.Fatalf("attach while resizing: %v (want it retried until the lock is gone)", err)
	}
	if err := <-resized; err != nil {
		t.Fatal(err)
	}
	stats := sim.Stats()
	if n := stats.ByStatus["423"]; n < 1 {
		t.Fatalf("the simulator answered locked %d times; the test did not exercise the lock (%+v)", n, stats.ByStatus)
	}
}

func TestFaultsBecomeClearErrorsOrRetries(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := newClient(t, sim)
	ctx := t.Context()

	// Two 503s on a GET are retried away.
	v, err := c.CreateVolume(ctx, hetzner.VolumeSpec{Name: "f", SizeGB: 10, Location: "fsn1"})
	if err != nil {
		t.Fatal(err)
	}
	sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "503", Rate: 1, Method: "GET", Path: "/v1/volumes/{id}", Count: 2}}})
	if _, err := c.Volume(ctx, v.ID); err != nil {
		t.Fatalf("GET after two injected 503s: %v", err)
	}

	// A failed action is ErrActionFailed with the action's own message.
	sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "action_error", Rate: 1, Command: "resize_volume"}}})
	err = c.ResizeVolume(ctx, v.ID, 12)
	if !errors.Is(err, hetzner.ErrActionFailed) {
		t.Fatalf("resize with a failing action: %v, want ErrActionFailed", err)
	}
	t.Logf("failed action reads: %v", err)

	// A mutation answered 503 is not retried blindly: the caller sees ErrUnavailable.
	sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "503", Rate: 1, Method: "DELETE"}}})
	if err := c.DeleteVolume(ctx, v.ID); !errors.Is(err, hetzner.ErrUnavailable) {
		t.Fatalf("delete answered 503: %v, want ErrUnavailable", err)
	}
}

func TestRateLimitIsWaitedForAndReported(t *testing.T) {
	clock := hcloudsimtest.NewFakeClock(time.Now())
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithRateLimit(5), hcloudsimtest.WithClock(clock))
	c := newClient(t, sim, func(cfg *hetzner.Config) { cfg.MaxRateLimitWait = time.Second })
	ctx := t.Context()
	for range 5 {
		if _, err := c.Volumes(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	if b := c.Budget(); !b.Seen || b.Limit != 5 || b.Remaining != 0 {
		t.Fatalf("budget after 5 of 5: %+v", b)
	}
	// The bucket refills one request per 720 s (5 per hour): more than the 1 s we accept to wait.
	_, err := c.Volumes(ctx, "")
	if !errors.Is(err, hetzner.ErrRateLimited) {
		t.Fatalf("6th request: %v, want ErrRateLimited", err)
	}
	clock.Advance(720 * time.Second)
	if _, err := c.Volumes(ctx, ""); err != nil {
		t.Fatalf("after the refill: %v", err)
	}
}

func TestRejectedTokenSaysHowToFixIt(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := newClient(t, sim, func(cfg *hetzner.Config) { cfg.Token = "wrong-token" })
	_, err := c.Volumes(t.Context(), "")
	if !errors.Is(err, hetzner.ErrUnauthorized) {
		t.Fatalf("wrong token: %v, want ErrUnauthorized", err)
	}
	for _, want := range []string{"HCLOUD_TOKEN", "token"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if contains(err.Error(), "wrong-token") {
		t.Errorf("error shows the token: %q", err)
	}
}

func TestServerLifecycle(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := newClient(t, sim)
	ctx := t.Context()
	key, err := c.CreateSSHKey(ctx, "dockbridge-default", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGB5xLdCxfKSo0pYm4YK3kqW0c5kG6ek1bUu0pFEaXzo test", map[string]string{"managed-by": "dockbridge"})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := c.SSHKeyByFingerprint(ctx, key.Fingerprint); err != nil || k.ID != key.ID {
		t.Fatalf("find key by fingerprint %s: %v %+v", key.Fingerprint, err, k)
	}
	fw, err := c.CreateFirewall(ctx, "dockbridge-default", []hetzner.FirewallRule{{Port: 22, Sources: []string{"0.0.0.0/0", "::/0"}}}, map[string]string{"managed-by": "dockbridge"})
	if err != nil {
		t.Fatal(err)
	}
	vol, err := c.CreateVolume(ctx, hetzner.VolumeSpec{Name: "dockbridge-default-data", SizeGB: 10, Location: "fsn1", Format: "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := c.CreateServer(ctx, hetzner.ServerSpec{
		Name: "dockbridge-default", ServerType: "cx23", Image: "docker-ce", Location: "fsn1",
		SSHKeyIDs: []int64{key.ID}, VolumeIDs: []int64{vol.ID}, FirewallIDs: []int64{fw.ID},
		UserData: "#cloud-config\n", Labels: map[string]string{"managed-by": "dockbridge"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Status != "running" || srv.IPv4 == "" || len(srv.VolumeIDs) != 1 {
		t.Fatalf("server after create: %+v", srv)
	}
	prices, err := c.Prices(ctx, "cx23", "fsn1")
	if err != nil {
		t.Fatal(err)
	}
	if prices.ServerHourly <= 0 || prices.VolumePerGBMonth <= 0 {
		t.Fatalf("prices %+v", prices)
	}
	if err := c.PowerOff(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Server(ctx, srv.ID); err != nil || !s.Off() {
		t.Fatalf("after power off: %+v %v", s, err)
	}
	if err := c.DeleteServer(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Server(ctx, srv.ID); !errors.Is(err, hetzner.ErrNotFound) {
		t.Fatalf("deleted server: %v", err)
	}
	if v, err := c.Volume(ctx, vol.ID); err != nil || v.ServerID != 0 {
		t.Fatalf("volume after its server was deleted: %+v %v (want kept and detached)", v, err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestServerTypesAndPlacement: the catalog as dockbridge sees it (architecture, memory,
// per-location availability, deprecation and price), the deprecation of a server's own type,
// and an order of a type out of stock, which is a clear ErrNotAvailable.
func TestServerTypesAndPlacement(t *testing.T) {
	until := time.Date(2099, 1, 31, 0, 0, 0, 0, time.UTC)
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithConfig(func(c *hcloudsim.Config) {
		c.Catalog = []hcloudsim.CatalogChange{{ServerType: "cx33", Location: "nbg1", State: "unavailable"}}
	}))
	c := newClient(t, sim)
	ctx := t.Context()
	types, err := c.ServerTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*hetzner.ServerType{}
	for _, st := range types {
		by[st.Name] = st
	}
	if len(types) < 20 || by["cx23"] == nil || by["cax11"] == nil || by["cx22"] != nil {
		t.Fatalf("%d types, cx23 %v, cax11 %v, cx22 %v", len(types), by["cx23"], by["cax11"], by["cx22"])
	}
	if st := by["cax11"]; st.Architecture != "arm" || st.MemoryGB != 4 || st.Cores != 2 {
		t.Errorf("cax11 = %+v", st)
	}
	if l, ok := by["cx23"].In("fsn1"); !ok || !l.Available || l.Deprecated() || l.HourlyGross < 0.0104 || l.HourlyGross > 0.0106 {
		t.Errorf("cx23 in fsn1 = %+v, %v; want available, not deprecated, 0.0088 net = 0.0105 gross per hour", l, ok)
	}
	if _, ok := by["cx23"].In("ash"); ok {
		t.Error("cx23 is offered in ash")
	}
	if l, _ := by["cpx11"].In("fsn1"); !l.Deprecated() || !l.UnavailableAfter.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("cpx11 in fsn1 = %+v, want deprecated, unavailable after 2026-01-01", l)
	}
	if l, _ := by["cx33"].In("nbg1"); l.Available {
		t.Error("cx33 in nbg1 is available; the catalog change made it out of stock")
	}

	_, err = c.CreateServer(ctx, hetzner.ServerSpec{Name: "s1", ServerType: "cx33", Image: "debian-12", Location: "nbg1"})
	if !errors.Is(err, hetzner.ErrNotAvailable) || !strings.Contains(err.Error(), "error during placement") || !strings.Contains(err.Error(), "Nothing was created") {
		t.Errorf("order of a type out of stock: %v", err)
	}
	srv, err := c.CreateServer(ctx, hetzner.ServerSpec{Name: "s2", ServerType: "cx23", Image: "debian-12", Location: "fsn1"})
	if err != nil {
		t.Fatal(err)
	}
	if !srv.TypeUnavailableAfter.IsZero() {
		t.Errorf("a current type shows a deprecation: %v", srv.TypeUnavailableAfter)
	}
	if err := sim.ChangeCatalog(hcloudsim.CatalogChange{ServerType: "cx23", Location: "fsn1", State: "deprecated", UnavailableAfter: until}); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Server(ctx, srv.ID); err != nil || !s.TypeUnavailableAfter.Equal(until) {
		t.Errorf("server of a deprecated type: %+v, %v; want unavailable after %v", s, err, until)
	}
}

// TestDetachVolumeFromNeverLandsOnANewerAttachment: a conditional detach from server A that
// meets a running action (locked) reads the volume again before trying again; when the volume
// was detached meanwhile and attached to B, it answers ErrMoved and B keeps it. A detach from a
// server the volume is not attached to sends nothing. (DetachVolume, which retries the request
// blindly while locked, would have detached it from B.)
func TestDetachVolumeFromNeverLandsOnANewerAttachment(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithLocalServer("a"))
	c := newClient(t, sim)
	ctx := t.Context()
	a, err := hetzner.CurrentInstance(ctx, sim.MetadataEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateServer(ctx, hetzner.ServerSpec{Name: "b", ServerType: "cx23", Image: "debian-12", Location: "fsn1"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.CreateVolume(ctx, hetzner.VolumeSpec{Name: "moving", SizeGB: 10, ServerID: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	before := sim.Stats().ByEndpoint["POST /v1/volumes/{id}/actions/detach"]
	if err := c.DetachVolumeFrom(ctx, v.ID, b.ID, nil); !errors.Is(err, hetzner.ErrMoved) {
		t.Fatalf("detach from a server it is not attached to: %v, want ErrMoved", err)
	}
	if n := sim.Stats().ByEndpoint["POST /v1/volumes/{id}/actions/detach"]; n != before {
		t.Fatalf("a detach request was sent for a volume not attached to that server")
	}
	refused := errors.New("not allowed")
	if err := c.DetachVolumeFrom(ctx, v.ID, a.ID, func(*hetzner.Volume) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("detach refused by allow: %v", err)
	}

	// A detach of its own (another client's) is held while ours starts: ours meets locked.
	sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "detach_volume", Count: 1}}})
	other := make(chan error, 1)
	go func() { other <- c.DetachVolume(ctx, v.ID) }()
	held := sim.AwaitHeld(t, "detach_volume")
	ours := make(chan error, 1)
	go func() { ours <- c.DetachVolumeFrom(ctx, v.ID, a.ID, nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for sim.Stats().ByStatus["423"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the conditional detach never met the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	sim.Release(hcloudsim.ReleaseRequest{IDs: []int64{held.ID}})
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if err := c.AttachVolume(ctx, v.ID, b.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := <-ours; !errors.Is(err, hetzner.ErrMoved) {
		t.Fatalf("the conditional detach after the volume moved to b: %v, want ErrMoved", err)
	}
	if got, err := c.Volume(ctx, v.ID); err != nil || got.ServerID != b.ID {
		t.Fatalf("volume on server %d (%v), want it still on b (%d)", got.ServerID, err, b.ID)
	}
}
