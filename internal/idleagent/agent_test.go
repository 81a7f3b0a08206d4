package idleagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// fakeSource is a source whose answer the test sets.
type fakeSource struct {
	ongoing  map[string]string
	happened []string
	err      error
}

func (f *fakeSource) Name() string { return "fake" }
func (f *fakeSource) Look(context.Context, time.Time) (Look, error) {
	l := Look{Ongoing: f.ongoing, Happened: f.happened}
	f.happened = nil
	return l, f.err
}

// fakeCloud answers DeleteServer with the errors it is given, in turn, then success.
type fakeCloud struct {
	errs  []error
	calls int
}

func (c *fakeCloud) DeleteServer(_ context.Context, id int64) error {
	c.calls++
	if len(c.errs) > 0 {
		err := c.errs[0]
		c.errs = c.errs[1:]
		return err
	}
	return nil
}

// rig is an agent with a fake clock, a fake source, a fake stop script and a fake cloud, on
// a server created at t0 with a 20 s timeout, 60 s billing periods and a 5 s margin.
type rig struct {
	a      *Agent
	now    time.Time
	src    *fakeSource
	cloud  *fakeCloud
	calls  []string // "stop", "start", "delete", "backups", "close"
	stopOK func(verb string) (bool, error)
	dir    string
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{now: t0, src: &fakeSource{}, cloud: &fakeCloud{}, dir: t.TempDir()}
	r.stopOK = func(string) (bool, error) { return true, nil }
	token := filepath.Join(r.dir, "token")
	if err := os.WriteFile(token, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.a = &Agent{
		Config: Config{Env: "t", ServerID: 42, ServerName: "dockbridge-t", Created: t0, Endpoint: "http://sim/v1", TokenFile: token,
			Timeout: "20s", BillingPeriod: "60s", Margin: "5s", DeleteFor: "30s"},
		Sources: []Source{r.src},
		Stop: func(_ context.Context, verb string) (bool, string, error) {
			r.calls = append(r.calls, verb)
			ok, err := r.stopOK(verb)
			return ok, "result=" + fmt.Sprint(ok), err
		},
		NewCloud: func(token string) (Cloud, error) {
			if token != "secret-token" {
				return nil, fmt.Errorf("token %q", token)
			}
			return &countingCloud{r}, nil
		},
		RunDueBackups:    func(context.Context, time.Time) error { r.calls = append(r.calls, "backups"); return nil },
		CloseConnections: func() int { r.calls = append(r.calls, "close"); return 1 },
		Now:              func() time.Time { return r.now },
		Sleep:            func(_ context.Context, d time.Duration) { r.now = r.now.Add(d) },
		StatePath:        filepath.Join(r.dir, "state.json"),
		HealthLog:        filepath.Join(r.dir, "health.log"),
	}
	if err := r.a.Init(); err != nil {
		t.Fatal(err)
	}
	return r
}

type countingCloud struct{ r *rig }

func (c *countingCloud) DeleteServer(ctx context.Context, id int64) error {
	c.r.calls = append(c.r.calls, "delete")
	if id != 42 {
		return fmt.Errorf("deleting server %d, not itself", id)
	}
	return c.r.cloud.DeleteServer(ctx, id)
}

// runUntil steps once a second until the agent deletes the server or until end; it returns
// the time of the delete (zero: none).
func (r *rig) runUntil(t *testing.T, end time.Time) time.Time {
	t.Helper()
	for ; !r.now.After(end); r.now = r.now.Add(time.Second) {
		if r.a.Step(t.Context()) {
			return r.now
		}
	}
	return time.Time{}
}

func TestAgentGoesDownAtTheEndOfThePaidPeriod(t *testing.T) {
	r := newRig(t)
	r.src.ongoing = map[string]string{"s1": "docker logs -f"}
	r.runUntil(t, t0.Add(10*time.Second))
	r.src.ongoing = nil // 10 s: idle from now; 20 s timeout → 30 s; the first period ends at 60 s, margin 5 s
	gone := r.runUntil(t, t0.Add(3*time.Minute))
	if want := t0.Add(55 * time.Second); !gone.Equal(want) {
		t.Fatalf("deleted at +%s, want +%s", gone.Sub(t0), want.Sub(t0))
	}
	if want := []string{"backups", "close", "stop", "delete"}; !slices.Equal(r.calls, want) {
		t.Fatalf("calls %v, want %v", r.calls, want)
	}
}

func TestAgentStateSaysWhatKeepsItUp(t *testing.T) {
	r := newRig(t)
	r.src.ongoing = map[string]string{"c": "container db (dockbridge.keep-alive=true)", "s": "SSH shell on pts/0 (pid 7) from 203.0.113.7"}
	r.runUntil(t, t0.Add(3*time.Second))
	st := readState(t, r.a.StatePath)
	if st.Idle || !slices.Equal(st.KeepingUp, []string{"SSH shell on pts/0 (pid 7) from 203.0.113.7", "container db (dockbridge.keep-alive=true)"}) || !st.DownAt.IsZero() {
		t.Fatalf("busy state: %+v", st)
	}
	r.src.ongoing = nil
	r.runUntil(t, t0.Add(5*time.Second))
	st = readState(t, r.a.StatePath)
	if !st.Idle || !st.IdleSince.Equal(t0.Add(4*time.Second)) || !st.DownAt.Equal(t0.Add(55*time.Second)) || len(st.KeepingUp) != 0 || st.Phase != PhaseWatching {
		t.Fatalf("idle state: %+v", st)
	}
}

// TestAgentNeverDeletesWhatItCannotSee: a source that fails counts as activity.
func TestAgentNeverDeletesWhatItCannotSee(t *testing.T) {
	r := newRig(t)
	r.src.err = errors.New("permission denied")
	if gone := r.runUntil(t, t0.Add(5*time.Minute)); !gone.IsZero() {
		t.Fatalf("deleted at +%s while a source failed", gone.Sub(t0))
	}
	st := readState(t, r.a.StatePath)
	if st.Idle || len(st.KeepingUp) != 1 || !strings.Contains(st.KeepingUp[0], "permission denied") {
		t.Fatalf("state: %+v", st)
	}
}

func TestAgentActivityDuringTheBackupsStopsTheDelete(t *testing.T) {
	r := newRig(t)
	r.a.RunDueBackups = func(context.Context, time.Time) error {
		r.calls = append(r.calls, "backups")
		r.src.ongoing = map[string]string{"s": "docker command through the context"}
		return nil
	}
	if gone := r.runUntil(t, t0.Add(58*time.Second)); !gone.IsZero() {
		t.Fatalf("deleted at +%s", gone.Sub(t0))
	}
	if slices.Contains(r.calls, "stop") || slices.Contains(r.calls, "delete") {
		t.Fatalf("calls %v: stopped or deleted a busy server", r.calls)
	}
}

func TestAgentFailedBackupsDoNotStopTheDelete(t *testing.T) {
	r := newRig(t)
	r.a.RunDueBackups = func(context.Context, time.Time) error { return errors.New("s3: 503") }
	if gone := r.runUntil(t, t0.Add(time.Minute)); gone.IsZero() {
		t.Fatal("not deleted")
	}
	if h := readFile(t, r.a.HealthLog); !strings.Contains(h, "backups due before the self-delete failed") || !strings.Contains(h, "s3: 503") {
		t.Fatalf("health log: %s", h)
	}
}

// TestAgentFailedDelete: whatever the API answers, the server ends deleted or running Docker
// with the reason in the health log; never stopped and billed.
func TestAgentFailedDelete(t *testing.T) {
	failed := fmt.Errorf("delete server 42: %w", hetzner.ErrActionFailed)
	unavailable := fmt.Errorf("delete server 42: %w", hetzner.ErrUnavailable)
	limited := fmt.Errorf("delete server 42: %w", hetzner.ErrRateLimited)
	for _, c := range []struct {
		name    string
		errs    []error
		deleted bool
	}{
		{"a failed action, then success", []error{failed}, true},
		{"5xx and 429, then success", []error{unavailable, limited, unavailable}, true},
		{"already gone", []error{fmt.Errorf("x: %w", hetzner.ErrNotFound)}, true},
		{"fails for good", slices.Repeat([]error{failed}, 100), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.cloud.errs = c.errs
			gone := r.runUntil(t, t0.Add(90*time.Second))
			if c.deleted != !gone.IsZero() {
				t.Fatalf("deleted=%v, want %v (calls %v)", !gone.IsZero(), c.deleted, r.calls)
			}
			if c.deleted {
				if slices.Contains(r.calls, "start") {
					t.Fatalf("calls %v: started Docker on a deleted server", r.calls)
				}
				return
			}
			// 30 s of retries, then Docker again, and the reason where status shows it.
			if r.calls[len(r.calls)-1] != "start" {
				t.Fatalf("calls %v: Docker left stopped", r.calls)
			}
			h := readFile(t, r.a.HealthLog)
			rec, err := cloudinit.ParseHealthLine(strings.TrimSpace(h))
			if err != nil || rec.Level != cloudinit.HealthWarning || !strings.Contains(rec.Message, "self-delete failed") || !strings.Contains(rec.Message, "Docker was started again") {
				t.Fatalf("health log %q: %+v %v", h, rec, err)
			}
			st := readState(t, r.a.StatePath)
			if !strings.Contains(st.Note, "action failed") || st.Phase != PhaseWatching || !st.DownAt.Equal(t0.Add(115*time.Second)) {
				t.Fatalf("state after the failure: %+v", st)
			}
			// The next attempt is at the margin of the period the retries ended in, and it succeeds.
			r.cloud.errs = nil
			if gone := r.runUntil(t, t0.Add(3*time.Minute)); !gone.Equal(t0.Add(115 * time.Second)) {
				t.Fatalf("second attempt at +%s, want +1m55s", gone.Sub(t0))
			}
		})
	}
}

func TestAgentIncompleteStopIsNotDeleted(t *testing.T) {
	r := newRig(t)
	r.stopOK = func(verb string) (bool, error) { return verb == "start", nil }
	if gone := r.runUntil(t, t0.Add(58*time.Second)); !gone.IsZero() {
		t.Fatal("deleted after an incomplete stop")
	}
	if slices.Contains(r.calls, "delete") || !slices.Contains(r.calls, "start") {
		t.Fatalf("calls %v", r.calls)
	}
	if h := readFile(t, r.a.HealthLog); !strings.Contains(h, "clean stop did not finish") {
		t.Fatalf("health log: %s", h)
	}
}

// TestAgentDockerThatWillNotStartIsDeletedLater: when the delete fails and Docker does not start
// again either, the server is useless: the delete is tried again a minute later.
func TestAgentDockerThatWillNotStartIsDeletedLater(t *testing.T) {
	r := newRig(t)
	r.cloud.errs = slices.Repeat([]error{fmt.Errorf("x: %w", hetzner.ErrUnavailable)}, 4) // one round of retries
	r.stopOK = func(verb string) (bool, error) {
		if verb == "start" {
			return false, errors.New("mount: /var/lib/docker: can't find in /etc/fstab")
		}
		return true, nil
	}
	gone := r.runUntil(t, t0.Add(5*time.Minute))
	if gone.IsZero() || gone.After(t0.Add(3*time.Minute)) {
		t.Fatalf("deleted at %v (calls %v)", gone, r.calls)
	}
	if h := readFile(t, r.a.HealthLog); !strings.Contains(h, "level=CRITICAL") || !strings.Contains(h, "starting Docker again failed") {
		t.Fatalf("health log: %s", h)
	}
}

func TestAgentWithoutTokenDoesNotStop(t *testing.T) {
	r := newRig(t)
	r.a.Config.TokenFile = filepath.Join(r.dir, "missing")
	if gone := r.runUntil(t, t0.Add(58*time.Second)); !gone.IsZero() || len(r.calls) != 0 {
		t.Fatalf("gone %v, calls %v", gone, r.calls)
	}
	if h := readFile(t, r.a.HealthLog); !strings.Contains(h, "no API token") {
		t.Fatalf("health log: %s", h)
	}
}

func TestAgentTimeoutOffNeverGoesDown(t *testing.T) {
	r := newRig(t)
	r.a.Config.Timeout = "off"
	if err := r.a.Init(); err != nil {
		t.Fatal(err)
	}
	if gone := r.runUntil(t, t0.Add(10*time.Minute)); !gone.IsZero() {
		t.Fatal("deleted with the timeout off")
	}
	if st := readState(t, r.a.StatePath); !st.Idle || !st.DownAt.IsZero() || st.Timeout != "off" {
		t.Fatalf("state: %+v", st)
	}
}

// TestAgentRestartKeepsTheIdleTime: an agent started again (a unit restart, an upgrade by up)
// takes over the timeline of the one before.
func TestAgentRestartKeepsTheIdleTime(t *testing.T) {
	r := newRig(t)
	r.src.ongoing = map[string]string{"s": "ssh shell"}
	r.runUntil(t, t0.Add(10*time.Second))
	r.src.ongoing = nil
	r.runUntil(t, t0.Add(20*time.Second))
	again := *r.a
	again.ongoing, again.ended = nil, nil
	if err := again.Init(); err != nil {
		t.Fatal(err)
	}
	if d := again.Decide(r.now); !d.Idle || !d.IdleSince.Equal(t0.Add(11*time.Second)) {
		t.Fatalf("after a restart: %+v", d)
	}
}

func readState(t *testing.T, path string) State {
	t.Helper()
	var st State
	b := readFile(t, path)
	if err := json.Unmarshal([]byte(b), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
