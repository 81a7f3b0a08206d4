package host

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// shortStops are bounds small enough for a test to see them end.
var shortStops = StopBounds{SSH: 300 * time.Millisecond, Action: time.Second, Off: 300 * time.Millisecond, OffAlone: 300 * time.Millisecond, Poll: 10 * time.Millisecond}

// actions is how often the simulator ran command.
func (e *simEnv) actions(command string) int64 { return e.sim.Stats().Actions[command] }

// wantUnclean fails unless the simulator counted n deletes under a mounted volume (on this
// backend: of a server that was not off with a volume attached).
func (e *simEnv) wantUnclean(n int64) {
	e.t.Helper()
	if got := e.sim.Stats().UncleanDeletes; got != n {
		e.t.Fatalf("unclean_deletes = %d, want %d", got, n)
	}
}

// TestDownStopsCleanlyThenDeletes: down runs the server-side stop over SSH, shuts the server
// down, waits until it is off, and only then deletes it: the simulator counts no unclean
// delete. The result says how, and lists only what exists and is kept.
func TestDownStopsCleanlyThenDeletes(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	first, err := e.up(ctx, "default")
	must(t, err)
	res, err := Down(ctx, e.deps, DownOptions{Env: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.disk.verbs, []string{"stop"}) {
		t.Errorf("server-side verbs run: %v, want [stop]", e.disk.verbs)
	}
	if n := e.actions("shutdown_server"); n != 1 {
		t.Errorf("shutdown actions: %d, want 1", n)
	}
	e.wantUnclean(0)
	if len(res.Deleted) != 1 {
		t.Fatalf("deleted %+v", res.Deleted)
	}
	got := res.Deleted[0]
	if got.ID != first.ServerID || got.Stop != StopClean || got.ContainersStopped != 2 || len(got.Unmounted) != 2 || len(got.Notes) != 0 {
		t.Errorf("deleted server: %+v, want %d stopped clean with 2 containers and 2 unmounts", got, first.ServerID)
	}
	kept := strings.Join(res.Persisting, "\n")
	for _, want := range []string{"data volume dockbridge-default-data", "SSH key dockbridge-default", "firewall dockbridge-default", "docker context dockbridge"} {
		if !strings.Contains(kept, want) {
			t.Errorf("kept does not list %q:\n%s", want, kept)
		}
	}
	for _, step := range []string{"Stopping Docker and unmounting the volumes on dockbridge-default over SSH ... done (2 container(s) stopped",
		"Shutting down server dockbridge-default", "Deleting server dockbridge-default"} {
		if !strings.Contains(e.stderr.String(), step) {
			t.Errorf("progress lacks %q:\n%s", step, e.stderr)
		}
	}
}

// TestDownOfAnEnvironmentThatNeverExisted keeps nothing, and says so (issue 17: it listed a
// key, a firewall and a context that did not exist).
func TestDownOfAnEnvironmentThatNeverExisted(t *testing.T) {
	e := newSimEnv(t)
	res, err := Down(t.Context(), e.deps, DownOptions{Env: "never"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deleted) != 0 || len(res.Persisting) != 0 || res.Volume != nil {
		t.Fatalf("down of nothing: %+v", res)
	}
}

// TestDownWithoutSSHShutsDownThroughACPI: when SSH does not answer, the shutdown request still
// goes first (the server's own shutdown stops Docker and unmounts), then the delete.
func TestDownWithoutSSHShutsDownThroughACPI(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	e.dialErr = func(int) error { return errors.New("dial tcp: connection refused") }
	res, err := Down(ctx, e.deps, DownOptions{Env: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.disk.verbs) != 0 || e.actions("shutdown_server") != 1 {
		t.Errorf("verbs %v, shutdown actions %d; want none over SSH and one shutdown", e.disk.verbs, e.actions("shutdown_server"))
	}
	e.wantUnclean(0)
	if got := res.Deleted[0]; got.Stop != StopACPI || len(got.Notes) != 1 || !strings.Contains(got.Notes[0], "connection refused") {
		t.Errorf("deleted server: %+v, want stopped by acpi with a note on SSH", got)
	}
}

// TestStopStepsAreBounded: an SSH stop that hangs ends at its bound (the shutdown request then
// does the stop); a shutdown request that is never answered ends at its bound and deletes
// nothing; a delete never answered ends at its bound.
func TestStopStepsAreBounded(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	e.deps.Stop = shortStops
	e.disk.stopHang = true
	e.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{
		{Kind: "timeout", Rate: 1, Path: "/v1/servers/*/actions/shutdown", Count: 1, MaxDelay: "30s"}}})
	_, err = Down(ctx, e.deps, DownOptions{Env: "default"})
	var still *StillRunningError
	if !errors.As(err, &still) || !strings.Contains(err.Error(), "shutdown request") {
		t.Fatalf("down with a shutdown request never answered: %v, want it refused as still running", err)
	}
	if servers, _ := e.api.Servers(ctx, selector("default", RoleServer)); len(servers) != 1 {
		t.Fatalf("%d servers after the refused down, want the one still running", len(servers))
	}
	if !strings.Contains(e.stderr.String(), "over SSH ... failed (not done: ") {
		t.Errorf("the hanging SSH stop did not end at its bound:\n%s", e.stderr)
	}
	// The same stop, answered this time: the hanging SSH stop ends at its bound, the server's
	// own shutdown does the rest.
	e.stderr.Reset()
	res, err := Down(ctx, e.deps, DownOptions{Env: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted[0].Stop != StopACPI || !strings.Contains(res.Deleted[0].Notes[0], "deadline exceeded") {
		t.Errorf("deleted: %+v, want acpi after the SSH stop's bound", res.Deleted[0])
	}
	e.wantUnclean(0)

	// A delete never answered ends at its bound and says the server may still be billed.
	_, err = e.up(ctx, "default")
	must(t, err)
	e.disk.stopHang = false
	e.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{
		{Kind: "timeout", Rate: 1, Method: "DELETE", Path: "/v1/servers/*", MaxDelay: "30s"}}})
	_, err = Down(ctx, e.deps, DownOptions{Env: "default"})
	if err == nil || !strings.Contains(err.Error(), "may still exist and be billed") {
		t.Fatalf("down with a delete never answered: %v, want it to end and say the server may be billed", err)
	}
	e.wantUnclean(0)
}

// TestDownRefusesAServerThatWillNotPowerOff: the OS ignores the shutdown request, so the server
// stays running; down refuses to delete it, says it is running and billed and what to do, and
// starts Docker again on it. Only --force deletes it, and that is a power cut the simulator
// counts.
func TestDownRefusesAServerThatWillNotPowerOff(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	first, err := e.up(ctx, "default")
	must(t, err)
	e.deps.Stop = shortStops
	e.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "ignore_shutdown", Rate: 1}}})
	_, err = Down(ctx, e.deps, DownOptions{Env: "default"})
	var still *StillRunningError
	if !errors.As(err, &still) || !errors.Is(err, ErrNotOff) {
		t.Fatalf("down of a server that ignores the shutdown: %v, want ErrNotOff in a StillRunningError", err)
	}
	for _, want := range []string{"STILL RUNNING AND BILLED", "has been started again", "docker dockbridge down --force", "power cut"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q:\n%v", want, err)
		}
	}
	if !slices.Equal(e.disk.verbs, []string{"stop", "start"}) {
		t.Errorf("server-side verbs: %v, want stop then start (Docker back up)", e.disk.verbs)
	}
	if s, err := e.api.Server(ctx, first.ServerID); err != nil || s.Status != "running" {
		t.Fatalf("server after the refusal: %+v, %v; want it running", s, err)
	}
	e.wantUnclean(0)

	e.stderr.Reset()
	res, err := Down(ctx, e.deps, DownOptions{Env: "default", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.Server(ctx, first.ServerID); !errors.Is(err, hetzner.ErrNotFound) {
		t.Fatalf("server after down --force: %v, want it deleted", err)
	}
	if res.Deleted[0].Stop != StopForced || !strings.Contains(e.stderr.String(), "--force: deleting server dockbridge-default") || !strings.Contains(e.stderr.String(), ForceRisk) {
		t.Errorf("down --force: %+v\n%s\nwant it to say what it risks", res.Deleted[0], e.stderr)
	}
	e.wantUnclean(1)
}

// TestDestroyStopsCleanlyThenDeletes: destroy deletes its server the same way as down.
func TestDestroyStopsCleanlyThenDeletes(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	res, err := Destroy(ctx, e.deps, DestroyOptions{Env: "default", Yes: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Servers) != 1 || res.Servers[0].Stop != StopClean || e.actions("shutdown_server") != 1 {
		t.Fatalf("destroy: %+v, shutdown actions %d", res.Servers, e.actions("shutdown_server"))
	}
	e.wantUnclean(0)
	if !strings.Contains(e.stderr.String(), "stopped cleanly first") {
		t.Errorf("destroy's plan does not say the server is stopped first:\n%s", e.stderr)
	}
}

// TestDestroyRefusesAServerThatWillNotPowerOff: nothing else is deleted either.
func TestDestroyRefusesAServerThatWillNotPowerOff(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	e.deps.Stop = shortStops
	e.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "ignore_shutdown", Rate: 1}}})
	_, err = Destroy(ctx, e.deps, DestroyOptions{Env: "default", Yes: true})
	if !errors.As(err, new(*StillRunningError)) || !strings.Contains(err.Error(), "docker dockbridge destroy --force") {
		t.Fatalf("destroy: %v, want a refusal naming destroy --force", err)
	}
	if s, v, f, k := e.count(ctx); s != 1 || v != 1 || f != 1 || k != 1 {
		t.Fatalf("after the refused destroy: %d servers %d volumes %d firewalls %d keys; want all kept", s, v, f, k)
	}
	_, err = Destroy(ctx, e.deps, DestroyOptions{Env: "default", Yes: true, Force: true})
	must(t, err)
	e.wantUnclean(1)
}

// TestUpDeletesABrokenServerTheSameWay: a server whose start failed is off; up deletes it
// through the same path (nothing to stop) and says so.
func TestUpDeletesABrokenServerTheSameWay(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	e.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "action_error", Rate: 1, Command: "start_server", Count: 1}}})
	_, err := e.up(ctx, "default")
	if err == nil || !strings.Contains(err.Error(), "was deleted") {
		t.Fatalf("up with a failing start: %v, want the broken server deleted", err)
	}
	if servers, _ := e.api.Servers(ctx, ""); len(servers) != 0 {
		t.Fatalf("%d servers left", len(servers))
	}
	e.wantUnclean(0)
	if _, err := e.up(ctx, "default"); err != nil {
		t.Fatalf("up again: %v", err)
	}
}

// TestUpDeletesARunningBrokenServerCleanlyOrWithForce: should a server whose creation failed
// run (with its volume) after all, up stops it cleanly before deleting it; with --force it
// deletes it at once, a power cut.
func TestUpDeletesARunningBrokenServerCleanlyOrWithForce(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	failed := fmt.Errorf("create server: %w", hetzner.ErrActionFailed)
	for _, force := range []bool{false, true} {
		res, err := e.up(ctx, "default")
		must(t, err)
		s, err := e.api.Server(ctx, res.ServerID)
		must(t, err)
		e.disk.verbs = nil
		err = createFailed(ctx, e.deps, "default", s, failed, force)
		if err == nil || !strings.Contains(err.Error(), "was deleted") {
			t.Fatalf("force=%v: %v, want the broken server deleted", force, err)
		}
		want, unclean := []string{"stop"}, int64(0)
		if force {
			want, unclean = nil, 1
			if !strings.Contains(e.stderr.String(), ForceRisk) {
				t.Errorf("up --force did not say what it risks:\n%s", e.stderr)
			}
		}
		if !slices.Equal(e.disk.verbs, want) {
			t.Errorf("force=%v: server-side verbs %v, want %v", force, e.disk.verbs, want)
		}
		e.wantUnclean(unclean)
	}
}
