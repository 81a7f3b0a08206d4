package hcloudsim_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

// uncleanDeletes reads the counter the way other checks do: the top-level integer
// "unclean_deletes" of GET /_sim/stats.
func uncleanDeletes(t *testing.T, sim *hcloudsimtest.Sim) int64 {
	t.Helper()
	r := raw(t, sim, http.MethodGet, "/_sim/stats", "", nil)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("/_sim/stats: %v: %s", err, r.body)
	}
	var n int64
	if err := json.Unmarshal(doc["unclean_deletes"], &n); err != nil {
		t.Fatalf("/_sim/stats has no integer unclean_deletes: %v: %s", err, r.body)
	}
	return n
}

// TestUncleanDeletesCountsDeletesOfRunningServersWithVolumes: on the backends that cannot look
// inside a server, a delete is unclean when the server was not off and had a volume attached.
func TestUncleanDeletesCountsDeletesOfRunningServersWithVolumes(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()

	withVolume := func(name string) *hcloud.Server {
		s := mustServer(t, c, name, "fsn1", nil)
		v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: name + "-data"})
		a, _, err := c.Volume.Attach(ctx, v, s)
		waitAction(t, c, a, err)
		return s
	}
	del := func(s *hcloud.Server) {
		t.Helper()
		res, _, err := c.Server.DeleteWithResult(ctx, s)
		waitAction(t, c, res.Action, err)
	}

	// Shut down first: off, then deleted. Clean.
	a := withVolume("clean")
	res, _, err := c.Server.Shutdown(ctx, a)
	waitAction(t, c, res, err)
	if got, _, _ := c.Server.GetByID(ctx, a.ID); got.Status != hcloud.ServerStatusOff {
		t.Fatalf("after shutdown: %s, want off", got.Status)
	}
	del(a)
	if n := uncleanDeletes(t, sim); n != 0 {
		t.Fatalf("unclean_deletes after shutdown + delete = %d, want 0", n)
	}

	// A running server without volumes holds no filesystem of a volume. Clean.
	del(mustServer(t, c, "novolume", "fsn1", nil))
	if n := uncleanDeletes(t, sim); n != 0 {
		t.Fatalf("unclean_deletes after deleting a running server without volumes = %d, want 0", n)
	}

	// Running with a volume: a power cut.
	del(withVolume("cut"))
	if n := uncleanDeletes(t, sim); n != 1 {
		t.Fatalf("unclean_deletes after deleting a running server with a volume = %d, want 1", n)
	}

	// A delete that failed deleted nothing: not counted.
	b := withVolume("kept")
	sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "action_error", Rate: 1, Command: "delete_server", Count: 1}}})
	dres, _, err := c.Server.DeleteWithResult(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Action.WaitFor(ctx, dres.Action); err == nil {
		t.Fatal("the delete with an injected action error succeeded")
	}
	if n := uncleanDeletes(t, sim); n != 1 {
		t.Fatalf("unclean_deletes after a failed delete = %d, want still 1", n)
	}
}

// TestShutdownIgnoredByTheOS: with the ignore_shutdown fault the shutdown action succeeds (the
// request was delivered) and the server stays running, as a server whose OS ignores ACPI does.
func TestShutdownIgnoredByTheOS(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithFaults(hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "ignore_shutdown", Rate: 1, Count: 1}}}))
	c := sim.Client()
	ctx := t.Context()
	s := mustServer(t, c, "deaf", "fsn1", nil)
	a, _, err := c.Server.Shutdown(ctx, s)
	waitAction(t, c, a, err)
	if got, _, _ := c.Server.GetByID(ctx, s.ID); got.Status != hcloud.ServerStatusRunning {
		t.Fatalf("after an ignored shutdown: %s, want running", got.Status)
	}
	if st := sim.Stats(); st.FaultsInjected != 1 {
		t.Fatalf("faults injected %d, want 1", st.FaultsInjected)
	}
	// The rule fired once (count 1): the next shutdown is obeyed.
	a, _, err = c.Server.Shutdown(ctx, s)
	waitAction(t, c, a, err)
	if got, _, _ := c.Server.GetByID(ctx, s.ID); got.Status != hcloud.ServerStatusOff {
		t.Fatalf("after the second shutdown: %s, want off", got.Status)
	}
	// The kind applies to actions only: no request is failed by it.
	if st := sim.Stats(); st.ByStatus["504"] != 0 || st.FaultsInjected != 1 {
		t.Fatalf("ignore_shutdown touched requests: %+v", st)
	}
}
