package idleagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// swarmRig is the rig's agent as the decider of a swarm of four nodes: node 1 (itself, server
// 42), workers 2 and 4, manager 3; fake members, Swarm commands and cloud, all recorded in
// r.calls ("node3:stop", "pause", "shutdown:103", "delete:103", "delete:42", ...).
type swarmRig struct {
	*rig
	looks    map[int]Look  // what each member's look answers
	lookErr  map[int]error // a member that does not answer
	stopFail map[int]bool  // a member whose clean stop is incomplete
	status   map[int64]string
	neverOff map[int64]bool // a server that ignores the shutdown request
}

func newSwarmRig(t *testing.T) *swarmRig {
	t.Helper()
	r := &swarmRig{rig: newRig(t), looks: map[int]Look{}, lookErr: map[int]error{}, stopFail: map[int]bool{},
		status: map[int64]string{42: "running", 102: "running", 103: "running", 104: "running"}, neverOff: map[int64]bool{}}
	r.a.Config.Swarm = &SwarmConfig{Node: 1, Role: RoleDecider, PrivateIP: "10.0.0.2", SecretFile: "unused", LostAfter: "2m",
		Members: []Member{
			{Node: 2, ServerID: 102, ServerName: "w2", PrivateIP: "10.0.0.3"},
			{Node: 3, ServerID: 103, ServerName: "m3", PrivateIP: "10.0.0.4", Manager: true},
			{Node: 4, ServerID: 104, ServerName: "w4", PrivateIP: "10.0.0.5"},
		}}
	r.a.Members = &fakeMembers{r}
	r.a.Swarm = &fakeSwarm{r}
	r.a.NewCloud = func(token string) (Cloud, error) {
		if token != "secret-token" {
			return nil, fmt.Errorf("token %q", token)
		}
		return &fakeSwarmCloud{r: r, t: t}, nil
	}
	if err := r.a.Init(); err != nil {
		t.Fatal(err)
	}
	return r
}

type fakeMembers struct{ r *swarmRig }

func (f *fakeMembers) Look(_ context.Context, m Member) (Look, error) {
	if err := f.r.lookErr[m.Node]; err != nil {
		return Look{}, err
	}
	return f.r.looks[m.Node], nil
}

func (f *fakeMembers) Backups(_ context.Context, m Member, _ time.Duration) error {
	f.r.calls = append(f.r.calls, fmt.Sprintf("node%d:backups", m.Node))
	return nil
}

func (f *fakeMembers) Stop(_ context.Context, m Member, verb string) (bool, string, error) {
	f.r.calls = append(f.r.calls, fmt.Sprintf("node%d:%s", m.Node, verb))
	if verb == "stop" && f.r.stopFail[m.Node] {
		return false, "result=incomplete still_mounted=/var/lib/docker", nil
	}
	if verb == "start" {
		l := f.r.looks[m.Node]
		l.LeftStopped = false
		f.r.looks[m.Node] = l
	}
	return true, "result=ok", nil
}

type fakeSwarm struct{ r *swarmRig }

func (f *fakeSwarm) Pause(context.Context) ([]string, error) {
	f.r.calls = append(f.r.calls, "pause")
	return []string{"n1", "n2", "n3", "n4"}, nil
}

func (f *fakeSwarm) Paused(context.Context) ([]string, error) {
	f.r.calls = append(f.r.calls, "paused?")
	return []string{"n2", "n3"}, nil
}

func (f *fakeSwarm) Unpause(_ context.Context, ids []string) error {
	f.r.calls = append(f.r.calls, fmt.Sprintf("unpause:%d", len(ids)))
	return nil
}

// fakeSwarmCloud is the API: servers by status; a member deleted while not off fails the test
// (a power cut).
type fakeSwarmCloud struct {
	r *swarmRig
	t *testing.T
}

func (c *fakeSwarmCloud) Server(_ context.Context, id int64) (*hetzner.Server, error) {
	st, ok := c.r.status[id]
	if !ok {
		return nil, fmt.Errorf("get server %d: %w", id, hetzner.ErrNotFound)
	}
	return &hetzner.Server{ID: id, Status: st}, nil
}

func (c *fakeSwarmCloud) Shutdown(_ context.Context, id int64) error {
	c.r.calls = append(c.r.calls, fmt.Sprintf("shutdown:%d", id))
	if !c.r.neverOff[id] {
		c.r.status[id] = "off"
	}
	return nil
}

func (c *fakeSwarmCloud) PowerOn(_ context.Context, id int64) error {
	c.r.calls = append(c.r.calls, fmt.Sprintf("poweron:%d", id))
	c.r.status[id] = "running"
	return nil
}

func (c *fakeSwarmCloud) DeleteServer(_ context.Context, id int64) error {
	c.r.calls = append(c.r.calls, fmt.Sprintf("delete:%d", id))
	if id != 42 && c.r.status[id] != "off" {
		c.t.Errorf("deleted server %d while %s: a power cut", id, c.r.status[id])
	}
	delete(c.r.status, id)
	return nil
}

func deletes(calls []string) []string {
	return slices.DeleteFunc(slices.Clone(calls), func(c string) bool { return !strings.HasPrefix(c, "delete:") })
}

// TestSwarmGoesDownAsAWhole: idle everywhere, node 1 runs every node's due backups, pauses the
// swarm, stops the workers (by number), then the managers, then itself, all before any delete;
// then shuts down, waits for off and deletes each member in that order, and itself last.
func TestSwarmGoesDownAsAWhole(t *testing.T) {
	r := newSwarmRig(t)
	gone := r.runUntil(t, t0.Add(3*time.Minute))
	if want := t0.Add(55 * time.Second); !gone.Equal(want) {
		t.Fatalf("deleted at +%s, want +%s", gone.Sub(t0), want.Sub(t0))
	}
	want := []string{"backups", "node2:backups", "node3:backups", "node4:backups", "pause",
		"node2:stop", "node4:stop", "node3:stop", "close", "stop",
		"shutdown:102", "delete:102", "shutdown:104", "delete:104", "shutdown:103", "delete:103", "delete:42"}
	if !slices.Equal(r.calls, want) {
		t.Fatalf("calls\n%v\nwant\n%v", r.calls, want)
	}
}

// TestSwarmActivityOnAMemberKeepsItUp: a session on worker 2 keeps the whole environment up,
// and status says which node's activity it is; once it ends, the environment goes down.
func TestSwarmActivityOnAMemberKeepsItUp(t *testing.T) {
	r := newSwarmRig(t)
	r.looks[2] = Look{Ongoing: map[string]string{"sshd:77": "SSH command `sleep 600` (pid 77)"}}
	if gone := r.runUntil(t, t0.Add(3*time.Minute)); !gone.IsZero() {
		t.Fatalf("deleted at +%s while node 2 was busy", gone.Sub(t0))
	}
	st := readState(t, r.a.StatePath)
	if st.Idle || !slices.Equal(st.KeepingUp, []string{"node 2: SSH command `sleep 600` (pid 77)"}) {
		t.Fatalf("state while node 2 is busy: %+v", st)
	}
	if len(deletes(r.calls)) > 0 || slices.Contains(r.calls, "pause") {
		t.Fatalf("calls %v while node 2 was busy", r.calls)
	}
	r.looks[2] = Look{}
	// Idle from +3m; timeout 20 s; the period ending at +4m has its margin at +3m55s.
	if gone := r.runUntil(t, t0.Add(5*time.Minute)); !gone.Equal(t0.Add(3*time.Minute + 55*time.Second)) {
		t.Fatalf("after node 2's session ended: deleted at %v, want +3m55s", gone)
	}
}

// TestSwarmMemberLeftStoppedIsStartedAgain: node 1's agent ended in the middle of a self-down,
// after node 3's clean stop (systemd starts it again): its first look finds node 3 left
// stopped, starts its Docker again, makes the paused nodes active, and says so in the health
// log; once only.
func TestSwarmMemberLeftStoppedIsStartedAgain(t *testing.T) {
	r := newSwarmRig(t)
	r.looks[2] = Look{Ongoing: map[string]string{"sshd:77": "SSH session (pid 77)"}} // someone works meanwhile
	r.looks[3] = Look{LeftStopped: true}
	r.runUntil(t, t0.Add(5*time.Second))
	if want := []string{"node3:start", "paused?", "unpause:2"}; !slices.Equal(r.calls, want) {
		t.Fatalf("calls %v, want %v", r.calls, want)
	}
	if h := readFile(t, r.a.HealthLog); !strings.Contains(h, "level=WARNING") || !strings.Contains(h, "had left node(s) 3 stopped") {
		t.Fatalf("health log: %s", h)
	}
}

// TestSwarmMemberThatDoesNotStopCleanly: manager 3's stop is incomplete: nothing is deleted,
// Docker starts again on the workers stopped before it, node 1 never stopped, the nodes are
// active again, and the health log says why.
func TestSwarmMemberThatDoesNotStopCleanly(t *testing.T) {
	r := newSwarmRig(t)
	r.stopFail[3] = true
	if gone := r.runUntil(t, t0.Add(58*time.Second)); !gone.IsZero() {
		t.Fatal("deleted although node 3 did not stop cleanly")
	}
	if d := deletes(r.calls); len(d) > 0 {
		t.Fatalf("deletes %v although node 3 did not stop cleanly", d)
	}
	i := slices.Index(r.calls, "node3:stop")
	if want := []string{"node3:stop", "node2:start", "node4:start", "unpause:4"}; i < 0 || !slices.Equal(r.calls[i:], want) {
		t.Fatalf("calls %v, want them to end with %v", r.calls, want)
	}
	if slices.Contains(r.calls, "stop") {
		t.Fatalf("node 1 stopped although node 3 did not: %v", r.calls)
	}
	if h := readFile(t, r.a.HealthLog); !strings.Contains(h, "node 3 (m3) did not stop cleanly") || !strings.Contains(h, "Docker runs again on every node") {
		t.Fatalf("health log: %s", h)
	}
	if st := readState(t, r.a.StatePath); st.Phase != PhaseWatching || !strings.Contains(st.Note, "node 3") {
		t.Fatalf("state: %+v", st)
	}
}

// TestSwarmMemberThatDoesNotPowerOff: worker 4 ignores the shutdown request: it is never
// deleted (a power cut), node 1 does not delete itself, Docker starts again on worker 4 and
// node 1, the nodes are active again; the deleted worker 2 and manager 3 come back with up.
func TestSwarmMemberThatDoesNotPowerOff(t *testing.T) {
	r := newSwarmRig(t)
	r.neverOff[104] = true
	if gone := r.runUntil(t, t0.Add(58*time.Second)); !gone.IsZero() {
		t.Fatal("node 1 deleted itself although node 4 was not deleted")
	}
	if d := deletes(r.calls); !slices.Equal(d, []string{"delete:102", "delete:103"}) {
		t.Fatalf("deletes %v, want nodes 2 and 3 only", d)
	}
	if n := len(r.calls); n < 3 || !slices.Equal(r.calls[n-3:], []string{"node4:start", "start", "unpause:4"}) {
		t.Fatalf("calls %v: want Docker started on node 4 and node 1, the nodes active", r.calls)
	}
	if h := readFile(t, r.a.HealthLog); !strings.Contains(h, "node 4 (w4)") || !strings.Contains(h, "power cut") {
		t.Fatalf("health log: %s", h)
	}
}

// TestSwarmUnreachableMemberIsNotIdle: a member that does not answer keeps the environment up
// (status says so, the health log after member_lost_after); once the API says it is off, it is
// no activity: the environment goes down, without asking it to stop, and it is deleted (off).
func TestSwarmUnreachableMemberIsNotIdle(t *testing.T) {
	r := newSwarmRig(t)
	r.lookErr[2] = errors.New("dial tcp 10.0.0.3:7411: connect: no route to host")
	if gone := r.runUntil(t, t0.Add(5*time.Minute)); !gone.IsZero() {
		t.Fatalf("deleted at +%s while node 2 did not answer", gone.Sub(t0))
	}
	st := readState(t, r.a.StatePath)
	if st.Idle || len(st.KeepingUp) != 1 || !strings.Contains(st.KeepingUp[0], "node 2 (w2): cannot tell") || !strings.Contains(st.KeepingUp[0], "unreachable is not idle") {
		t.Fatalf("state while node 2 does not answer: %+v", st)
	}
	if h := readFile(t, r.a.HealthLog); strings.Count(h, "node 2 (w2) has not answered") != 1 {
		t.Fatalf("health log (one line after 2m): %s", h)
	}
	r.status[102] = "off"
	gone := r.runUntil(t, t0.Add(8*time.Minute))
	if gone.IsZero() {
		t.Fatal("not down once node 2 was off per the API")
	}
	if slices.Contains(r.calls, "node2:stop") || slices.Contains(r.calls, "shutdown:102") || !slices.Contains(r.calls, "delete:102") {
		t.Fatalf("calls %v: node 2, off, is deleted without a stop", r.calls)
	}
}

// TestMemberEndpointNeedsTheSecret: the member's endpoint refuses a request without the
// swarm's secret or with another one (its sources are not even asked, nothing stops), and
// answers the decider's.
func TestMemberEndpointNeedsTheSecret(t *testing.T) {
	r := newRig(t)
	r.a.Config.Swarm = &SwarmConfig{Node: 2, Role: RoleMember, PrivateIP: "127.0.0.1", SecretFile: "unused"}
	r.src.ongoing = map[string]string{"c": "container job (dockbridge.keep-alive=true)"}
	secret := strings.Repeat("ab", 32)
	srv := httptest.NewServer(r.a.MemberHandler(secret))
	defer srv.Close()
	m := Member{Node: 2, ServerID: 102, PrivateIP: "127.0.0.1"}
	u, _ := url.Parse(srv.URL)
	portN, _ := strconv.Atoi(u.Port())

	for _, bad := range []string{"", strings.Repeat("ab", 31) + "ac", secret + "x"} {
		h := &HTTPMembers{Secret: bad, Port: portN}
		if _, err := h.Look(t.Context(), m); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("look with secret %q: %v, want 401", bad, err)
		}
		if ok, _, err := h.Stop(t.Context(), m, "stop"); ok || err == nil {
			t.Fatalf("stop with secret %q: ok=%v err=%v", bad, ok, err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/stop", nil)
	req.Header.Set("Authorization", "Basic "+secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("another scheme: %v %v", resp, err)
	}
	if len(r.calls) > 0 {
		t.Fatalf("refused requests ran %v", r.calls)
	}

	h := &HTTPMembers{Secret: secret, Port: portN}
	l, err := h.Look(t.Context(), m)
	if err != nil || l.Ongoing["c"] != "container job (dockbridge.keep-alive=true)" {
		t.Fatalf("the decider's look: %+v %v", l, err)
	}
	if ok, _, err := h.Stop(t.Context(), m, "stop"); !ok || err != nil || !slices.Equal(r.calls, []string{"close", "stop"}) {
		t.Fatalf("the decider's stop: ok=%v err=%v calls %v", ok, err, r.calls)
	}
	// Stopped on node 1's word, its looks say so (until it is started again, or shut down).
	if l, err := h.Look(t.Context(), m); err != nil || !l.LeftStopped {
		t.Fatalf("the look after the stop: %+v %v, want LeftStopped", l, err)
	}
	if ok, _, err := h.Stop(t.Context(), m, "start"); !ok || err != nil {
		t.Fatalf("the decider's start: ok=%v err=%v", ok, err)
	}
	if l, err := h.Look(t.Context(), m); err != nil || l.LeftStopped {
		t.Fatalf("the look after the start: %+v %v, want not LeftStopped", l, err)
	}
}

func TestSortForStop(t *testing.T) {
	type n struct {
		num     int
		manager bool
	}
	ns := []n{{1, true}, {5, false}, {2, true}, {4, false}, {3, true}, {6, false}}
	SortForStop(ns, func(x n) (int, bool) { return x.num, x.manager })
	var got []int
	for _, x := range ns {
		got = append(got, x.num)
	}
	if want := []int{4, 5, 6, 3, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v (workers by number, managers highest first, node 1 last)", got, want)
	}
}

// TestSwarmConfigValidate: a member needs its private address, every member of the decider a
// server and an address, and both the secret file.
func TestSwarmConfigValidate(t *testing.T) {
	dir := t.TempDir()
	ok := Config{ServerID: 1, Created: t0, Timeout: "20s", Swarm: &SwarmConfig{Node: 2, Role: RoleMember, PrivateIP: "10.0.0.3", SecretFile: filepath.Join(dir, "s")}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*SwarmConfig{
		{Node: 2, Role: "boss", PrivateIP: "10.0.0.3", SecretFile: "s"},
		{Node: 2, Role: RoleMember, SecretFile: "s"},
		{Node: 1, Role: RoleDecider, PrivateIP: "10.0.0.2"},
		{Node: 1, Role: RoleDecider, SecretFile: "s", Members: []Member{{Node: 2, PrivateIP: "10.0.0.3"}}},
	} {
		c := ok
		c.Swarm = bad
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "s"), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecret(filepath.Join(dir, "s")); err == nil {
		t.Error("a short secret accepted")
	}
}
