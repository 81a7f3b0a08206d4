package idleagent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idle"
)

// A multi-server environment (a Docker Swarm) goes down as a whole: node 1 (the first manager,
// the one the docker context points at) runs the agent as the decider, with the API token; every
// other node runs it as a member, with no token and no decision of its own. A member answers
// the decider, over the private network only, with what its own Sources see, and on the
// decider's word runs its due backups and its clean stop (or starts Docker again). Activity on
// any node keeps the whole environment up.

// Roles of SwarmConfig.
const (
	RoleDecider = "decider"
	RoleMember  = "member"
)

const (
	// DefaultMemberPort is where a member listens, on its private address only (the public
	// firewall opens port 22 alone).
	DefaultMemberPort = 7411
	// SwarmSecretPath is the secret the decider proves itself to the members with (root, 0600,
	// on the root disk; up writes it on every node over SSH, never in the user-data).
	SwarmSecretPath = "/etc/dockbridge/idle-swarm-secret"
	// PausedLabel marks the Swarm nodes that dockbridge paused before they stopped (the
	// decider's self-down, `down`): up makes them active again. A node a user paused is left so.
	PausedLabel = "dockbridge.paused"
	// DefaultMemberLostAfter is how long a member may stay unreachable, and neither off nor
	// deleted per the API, before the health log says so. The environment stays up all the
	// same: unreachable is not idle.
	DefaultMemberLostAfter = 10 * time.Minute
	// memberAPICheck is how often the decider asks the API about a member that does not answer.
	memberAPICheck = 30 * time.Second
)

// SwarmConfig is the agent's part in a Swarm (Config.Swarm).
type SwarmConfig struct {
	// Node is this server's node number (1 is the decider's).
	Node int    `json:"node"`
	Role string `json:"role"`
	// PrivateIP is this node's address on the environment's private network: a member listens
	// there (Port), and nowhere else.
	PrivateIP  string `json:"private_ip"`
	Port       int    `json:"port,omitempty"`
	SecretFile string `json:"secret_file"`
	// Members are the other nodes (the decider's configuration only).
	Members []Member `json:"members,omitempty"`
	// LostAfter: DefaultMemberLostAfter when "".
	LostAfter string `json:"member_lost_after,omitempty"`
}

// Member is one of the other nodes of the swarm, as the decider knows it.
type Member struct {
	Node       int    `json:"node"`
	ServerID   int64  `json:"server_id"`
	ServerName string `json:"server_name"`
	PrivateIP  string `json:"private_ip"`
	Manager    bool   `json:"manager,omitempty"`
}

func (s *SwarmConfig) validate() error {
	if s == nil {
		return nil
	}
	if s.Role != RoleDecider && s.Role != RoleMember {
		return fmt.Errorf("swarm role %q: want %s or %s; run `docker dockbridge up` again", s.Role, RoleDecider, RoleMember)
	}
	if s.SecretFile == "" {
		return errors.New("swarm: no secret file; run `docker dockbridge up` again")
	}
	if s.Role == RoleMember && net.ParseIP(s.PrivateIP) == nil {
		return fmt.Errorf("swarm: member without a private address (%q); run `docker dockbridge up` again", s.PrivateIP)
	}
	for _, m := range s.Members {
		if m.ServerID == 0 || net.ParseIP(m.PrivateIP) == nil {
			return fmt.Errorf("swarm: node %d has no server id or private address; run `docker dockbridge up` again", m.Node)
		}
	}
	if _, err := optDuration("member_lost_after", s.LostAfter, DefaultMemberLostAfter); err != nil {
		return err
	}
	return nil
}

func (s *SwarmConfig) port() int {
	if s.Port > 0 {
		return s.Port
	}
	return DefaultMemberPort
}

func (s *SwarmConfig) lostAfter() time.Duration {
	d, _ := optDuration("member_lost_after", s.LostAfter, DefaultMemberLostAfter)
	return d
}

// SortForStop sorts items into the order the nodes of a swarm stop in, for `docker dockbridge
// down` and the decider alike: workers first (by number), then managers (the highest number
// first), node 1 (the manager the context uses, usually the leader) last. key gives an item's
// node number and whether it is a manager.
func SortForStop[T any](items []T, key func(T) (node int, manager bool)) {
	rank := func(n int, manager bool) int {
		switch {
		case n == 1:
			return 2
		case manager:
			return 1
		}
		return 0
	}
	slices.SortStableFunc(items, func(a, b T) int {
		na, ma := key(a)
		nb, mb := key(b)
		ra, rb := rank(na, ma), rank(nb, mb)
		if ra != rb {
			return ra - rb
		}
		if ra == 1 {
			return nb - na
		}
		return na - nb
	})
}

// MemberClient is how the decider asks the members (Agent.Members; HTTPMembers is the real one).
type MemberClient interface {
	// Look is what the member's sources see now and saw since the decider's previous look.
	Look(ctx context.Context, m Member) (Look, error)
	// Backups runs the member's scheduled backups that are due, within d.
	Backups(ctx context.Context, m Member, within time.Duration) error
	// Stop runs the member's clean stop ("stop": its idle SSH connections closed, then
	// internal/serverstop's stop) or starts its Docker again ("start").
	Stop(ctx context.Context, m Member, verb string) (ok bool, report string, err error)
}

// SwarmOps are the decider's Swarm commands, run on node 1 (a manager).
type SwarmOps interface {
	// Pause sets every active node to availability pause (labelled PausedLabel), so that
	// Swarm moves no task while the nodes stop one after the other; it returns their ids.
	Pause(ctx context.Context) ([]string, error)
	// Unpause makes those nodes active again (a self-down that did not happen).
	Unpause(ctx context.Context, ids []string) error
	// Paused are the ids of the nodes labelled PausedLabel (paused by a self-down or a `down`
	// that did not finish).
	Paused(ctx context.Context) ([]string, error)
}

// SwarmCloud is what the decider asks of the API beyond its own delete: the members' status,
// their shutdown, and power on (a member off whose delete failed). internal/hetzner's Client
// is one.
type SwarmCloud interface {
	Cloud
	Server(ctx context.Context, id int64) (*hetzner.Server, error)
	Shutdown(ctx context.Context, id int64) error
	PowerOn(ctx context.Context, id int64) error
}

// memberWatch is what the decider remembers of a member that does not answer.
type memberWatch struct {
	since   time.Time // unreachable since (zero: it answers)
	checked time.Time // the API last asked
	gone    string    // "off" or "deleted" per the API at that check; "" otherwise
	warned  bool      // the health log said it is lost
}

func (a *Agent) decider() bool {
	return a.Config.Swarm != nil && a.Config.Swarm.Role == RoleDecider && len(a.Config.Swarm.Members) > 0
}

// lookMembers asks every member what it sees. A member that does not answer counts as activity
// ("cannot tell": unreachable is not idle, the environment stays up, billed, rather than stop
// the nodes that are left under a node that may be busy), unless the API says its server is off
// or deleted, which is no activity. After SwarmConfig.LostAfter of silence the health log says
// so once; it stays up all the same until the member answers, or is off or deleted.
func (a *Agent) lookMembers(ctx context.Context, now time.Time) []Look {
	if !a.decider() {
		return nil
	}
	var looks []Look
	var leftStopped []Member
	defer func() { a.startLeftStopped(ctx, leftStopped) }()
	for _, m := range a.Config.Swarm.Members {
		w := a.watches[m.Node]
		if w == nil {
			w = &memberWatch{}
			a.watches[m.Node] = w
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l, err := a.Members.Look(lctx, m)
		cancel()
		if err == nil {
			if !w.since.IsZero() {
				a.Log.Printf("node %d answers again", m.Node)
			}
			*w = memberWatch{}
			looks = append(looks, memberLook(m, l))
			if l.LeftStopped {
				leftStopped = append(leftStopped, m)
			}
			continue
		}
		if w.since.IsZero() {
			w.since = now
			a.Log.Printf("node %d (%s) does not answer: %v (counted as activity until it answers, or the API says it is off or deleted: unreachable is not idle)", m.Node, m.ServerName, err)
		}
		if gone := a.memberGone(ctx, m, now, w); gone != "" {
			continue
		}
		var look Look
		look.ongoing(fmt.Sprintf("node%d:unreachable", m.Node), fmt.Sprintf("node %d (%s): cannot tell what it is doing, its idle agent does not answer since %s (unreachable is not idle)",
			m.Node, m.ServerName, w.since.UTC().Format(time.RFC3339)))
		if !w.warned && now.Sub(w.since) >= a.Config.Swarm.lostAfter() {
			w.warned = true
			a.healthLine("WARNING", fmt.Sprintf("node %d (%s) has not answered for %s (%v) and the API does not say it is off or deleted: the environment stays up, and billed, until it answers; `docker dockbridge node ls` shows it, `docker dockbridge down` stops every node",
				m.Node, m.ServerName, now.Sub(w.since).Round(time.Second), err))
		}
		looks = append(looks, look)
	}
	return looks
}

// startLeftStopped repairs what a self-down of the swarm that did not finish left (node 1's
// agent ended between the members' clean stop and their shutdown; systemd starts it again):
// members stopped and Swarm's nodes paused. Not repaired, users working through node 1 would
// find the services of those nodes gone until the next self-down. The members' Docker starts
// again, the nodes become active again, and the health log says so.
func (a *Agent) startLeftStopped(ctx context.Context, ms []Member) {
	if len(ms) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var started, bad []string
	for _, m := range ms {
		if ok, report, err := a.Members.Stop(ctx, m, "start"); err != nil || !ok {
			bad = append(bad, fmt.Sprintf("node %d: Docker did not start again (%v %s)", m.Node, err, report))
			continue
		}
		started = append(started, fmt.Sprint(m.Node))
	}
	if ids, err := a.Swarm.Paused(ctx); err != nil {
		bad = append(bad, fmt.Sprintf("cannot list the nodes dockbridge paused (%v)", err))
	} else if err := a.Swarm.Unpause(ctx, ids); err != nil {
		bad = append(bad, fmt.Sprintf("the nodes stay paused (%v): `docker dockbridge up` makes them active", err))
	}
	level, msg := "WARNING", fmt.Sprintf("a self-down of the swarm that did not finish had left node(s) %s stopped: Docker started again there", strings.Join(started, ", "))
	if len(bad) > 0 {
		level, msg = "CRITICAL", msg+"; but "+strings.Join(bad, "; ")+"; `docker dockbridge up` repairs the environment"
	}
	a.healthLine(level, msg)
}

// memberLook is a member's look as the decider records it: its keys and texts name the node.
func memberLook(m Member, l Look) Look {
	var out Look
	for k, r := range l.Ongoing {
		out.ongoing(fmt.Sprintf("node%d:%s", m.Node, k), fmt.Sprintf("node %d: %s", m.Node, r))
	}
	for _, h := range l.Happened {
		out.Happened = append(out.Happened, fmt.Sprintf("node %d: %s", m.Node, h))
	}
	return out
}

// memberGone asks the API, at most every memberAPICheck, whether a member that does not answer
// is off or deleted; "" when it is not, or the API cannot tell.
func (a *Agent) memberGone(ctx context.Context, m Member, now time.Time, w *memberWatch) string {
	if !w.checked.IsZero() && now.Sub(w.checked) < memberAPICheck {
		return w.gone
	}
	w.checked, w.gone = now, ""
	sc, err := a.swarmCloud()
	if err != nil {
		a.Log.Printf("node %d: cannot ask the API whether it is off: %v", m.Node, err)
		return ""
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	s, err := sc.Server(actx, m.ServerID)
	cancel()
	switch {
	case errors.Is(err, hetzner.ErrNotFound):
		w.gone = "deleted"
	case err == nil && s.Off():
		w.gone = "off"
	}
	if w.gone != "" {
		a.Log.Printf("node %d (%s) is %s per the API: not activity", m.Node, m.ServerName, w.gone)
	}
	return w.gone
}

// cloudNow makes the API client from the token file as it is now.
func (a *Agent) cloudNow() (Cloud, error) {
	token, err := os.ReadFile(a.Config.TokenFile)
	if err != nil {
		return nil, err
	}
	return a.NewCloud(strings.TrimSpace(string(token)))
}

func (a *Agent) swarmCloud() (SwarmCloud, error) {
	c, err := a.cloudNow()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(SwarmCloud)
	if !ok {
		return nil, errors.New("the API client cannot look at or shut down the other nodes")
	}
	return sc, nil
}

// membersInStopOrder are the members, workers first, managers last.
func (a *Agent) membersInStopOrder() []Member {
	ms := slices.Clone(a.Config.Swarm.Members)
	SortForStop(ms, func(m Member) (int, bool) { return m.Node, m.Manager })
	return ms
}

// memberBackups runs the members' due backups, each within the deadline; failures go to the
// health log (the delete goes on, as for node 1's own).
func (a *Agent) memberBackups(ctx context.Context, deadline time.Time) {
	if !a.decider() {
		return
	}
	for _, m := range a.Config.Swarm.Members {
		bctx, cancel := context.WithDeadline(ctx, deadline)
		err := a.Members.Backups(bctx, m, deadline.Sub(a.Now()))
		cancel()
		if err != nil {
			a.healthLine("WARNING", fmt.Sprintf("the backups due on node %d before the self-down failed (the down goes on): %v", m.Node, err))
		}
	}
}

// downSwarm is the decider's part of going down, after the due backups and the last look found
// every node idle (goDown). In two phases, so that nothing is deleted unless every node
// stopped cleanly:
//
//  1. the swarm's nodes are paused (SwarmOps.Pause; Swarm moves no task while the nodes stop),
//     then every member stops cleanly (MemberClient.Stop), workers first, managers last
//     (SortForStop, as `down`), then node 1 itself. A member off or deleted per the API needs
//     no stop. Anything that does not stop cleanly: Docker starts again on every node stopped
//     so far, the nodes are made active again, the health log says why, and the environment
//     stays up until the next window;
//  2. each member: the API's shutdown, a wait until it is off (bounded; a server deleted while
//     running is a power cut, so a member that is not off is not deleted), the delete, retried
//     for Config.DeleteFor; then node 1 deletes itself as a single server does. A member whose
//     delete still failed is not left billed and useless: powered on again (or its Docker
//     started again), node 1's Docker too, the nodes active, the reason in the health log.
func (a *Agent) downSwarm(ctx context.Context, cloud Cloud) (gone bool) {
	sc, ok := cloud.(SwarmCloud)
	if !ok {
		a.startAgain(ctx, "the API client cannot shut down the other nodes")
		return false
	}
	paused, err := a.Swarm.Pause(ctx)
	if err != nil {
		a.Log.Printf("pausing the swarm's nodes failed (the down goes on, Swarm may move tasks while the nodes stop): %v", err)
	} else {
		a.Log.Printf("paused %d swarm node(s): no task moves while they stop", len(paused))
	}

	var stopped, toDelete []Member
	for _, m := range a.membersInStopOrder() {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := sc.Server(actx, m.ServerID)
		cancel()
		switch {
		case errors.Is(err, hetzner.ErrNotFound):
			a.Log.Printf("node %d (%s) is deleted already", m.Node, m.ServerName)
			continue
		case err == nil && s.Off():
			a.Log.Printf("node %d (%s) is off already: nothing to stop", m.Node, m.ServerName)
			toDelete = append(toDelete, m)
			continue
		}
		ok, report, err := a.Members.Stop(ctx, m, "stop")
		if err != nil || !ok {
			why := fmt.Sprintf("node %d (%s) did not stop cleanly (%s)", m.Node, m.ServerName, report)
			if err != nil {
				why = fmt.Sprintf("node %d (%s): the clean stop failed: %v (%s)", m.Node, m.ServerName, err, report)
			}
			a.swarmStartAgain(ctx, sc, why, stopped, nil, paused, false)
			return false
		}
		a.Log.Printf("node %d (%s) stopped cleanly: %s", m.Node, m.ServerName, report)
		stopped, toDelete = append(stopped, m), append(toDelete, m)
	}

	report, why := a.stopHere(ctx, "node 1's")
	if why != "" {
		a.swarmStartAgain(ctx, sc, why, stopped, nil, paused, true)
		return false
	}
	a.Log.Printf("node 1 stopped cleanly: %s; every node is stopped, deleting them", report)

	a.setPhase(a.Decide(a.Now()), PhaseDeleting)
	var failed []Member
	var whys []string
	for _, m := range toDelete {
		if err := a.deleteMember(ctx, sc, m); err != nil {
			failed, whys = append(failed, m), append(whys, fmt.Sprintf("node %d (%s): %v", m.Node, m.ServerName, err))
			continue
		}
		a.Log.Printf("node %d (%s) deleted", m.Node, m.ServerName)
	}
	if len(failed) > 0 {
		a.swarmStartAgain(ctx, sc, "deleting "+strings.Join(whys, "; ")+" failed", nil, failed, paused, true)
		return false
	}
	attempts, err := a.deleteSelf(ctx, cloud)
	if err == nil {
		a.Log.Printf("node 1 deleted (attempt %d): the environment is down", attempts)
		return true
	}
	a.startAgain(ctx, fmt.Sprintf("the other nodes are deleted, node 1's delete failed %d time(s) within %s, last: %v; `docker dockbridge up` brings the other nodes back",
		attempts, a.Config.deleteFor(), err))
	return false
}

// deleteMember shuts a member down through the API, waits until it is off, and deletes it,
// retrying for Config.DeleteFor. A member that is not off is never deleted (a power cut).
func (a *Agent) deleteMember(ctx context.Context, sc SwarmCloud, m Member) error {
	deadline := a.Now().Add(a.Config.deleteFor())
	pause := 2 * time.Second
	var last error
	for attempt := 1; ; attempt++ {
		last = a.deleteMemberOnce(ctx, sc, m)
		if last == nil {
			return nil
		}
		a.Log.Printf("node %d: attempt %d: %v", m.Node, attempt, last)
		if ctx.Err() != nil || !a.Now().Add(pause).Before(deadline) {
			return last
		}
		a.Sleep(ctx, pause)
		pause = min(2*pause, 30*time.Second)
	}
}

// offWait bounds the wait for a member to power off after its shutdown request.
const offWait = 2 * time.Minute

func (a *Agent) deleteMemberOnce(ctx context.Context, sc SwarmCloud, m Member) error {
	get := func() (*hetzner.Server, error) {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return sc.Server(actx, m.ServerID)
	}
	s, err := get()
	if errors.Is(err, hetzner.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !s.Off() {
		actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := sc.Shutdown(actx, m.ServerID)
		cancel()
		if err != nil {
			return fmt.Errorf("shutdown request: %w", err)
		}
		for end := a.Now().Add(offWait); ; {
			if s, err = get(); errors.Is(err, hetzner.ErrNotFound) {
				return nil
			}
			if err == nil && s.Off() {
				break
			}
			if !a.Now().Before(end) {
				return fmt.Errorf("not off within %s of the shutdown request (not deleted: deleting a running server is a power cut)", offWait)
			}
			a.Sleep(ctx, time.Second)
		}
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err = sc.DeleteServer(actx, m.ServerID)
	cancel()
	if errors.Is(err, hetzner.ErrNotFound) {
		return nil
	}
	return err
}

// swarmStartAgain is what a self-down of a swarm that did not happen ends with: every member
// stopped started again (stopped: its Docker; notDeleted: powered on when off, else its
// Docker), node 1's Docker when it was stopped (self), the nodes active again, the reason in
// the health log and status, and the next attempt at the next window.
func (a *Agent) swarmStartAgain(ctx context.Context, sc SwarmCloud, why string, stopped, notDeleted []Member, paused []string, self bool) {
	a.setPhase(a.Decide(a.Now()), PhaseRestart)
	ctx = context.WithoutCancel(ctx)
	var bad []string
	for _, m := range stopped {
		if ok, report, err := a.Members.Stop(ctx, m, "start"); err != nil || !ok {
			bad = append(bad, fmt.Sprintf("node %d: Docker did not start again (%v %s)", m.Node, err, report))
		}
	}
	for _, m := range notDeleted {
		s, err := sc.Server(ctx, m.ServerID)
		switch {
		case err == nil && s.Off():
			if err := sc.PowerOn(ctx, m.ServerID); err != nil {
				bad = append(bad, fmt.Sprintf("node %d is off and billed, power on failed: %v", m.Node, err))
			}
		case err == nil:
			if ok, report, err := a.Members.Stop(ctx, m, "start"); err != nil || !ok {
				bad = append(bad, fmt.Sprintf("node %d: Docker did not start again (%v %s)", m.Node, err, report))
			}
		case !errors.Is(err, hetzner.ErrNotFound):
			bad = append(bad, fmt.Sprintf("node %d: cannot tell whether it is off (%v)", m.Node, err))
		}
	}
	if self {
		if ok, report, err := a.Stop(ctx, "start"); err != nil || !ok {
			bad = append(bad, fmt.Sprintf("node 1: Docker did not start again (%v %s)", err, report))
		}
	}
	if len(paused) > 0 {
		if err := a.Swarm.Unpause(ctx, paused); err != nil {
			bad = append(bad, fmt.Sprintf("the nodes stay paused (%v): `docker node update --availability active`", err))
		}
	}
	stamp := a.Now().UTC().Format(time.RFC3339)
	if len(bad) == 0 {
		a.notBefore = a.nextWindow()
		a.note = fmt.Sprintf("%s: the swarm's self-down did not happen: %s. Docker runs again on every node; the next attempt is at %s",
			stamp, why, a.notBefore.UTC().Format(time.RFC3339))
		a.healthLine("WARNING", a.note)
	} else {
		a.notBefore = a.Now().Add(time.Minute)
		a.note = fmt.Sprintf("%s: the swarm's self-down did not happen: %s; and starting again failed: %s. Tried again in a minute; `docker dockbridge up` repairs the environment",
			stamp, why, strings.Join(bad, "; "))
		a.healthLine("CRITICAL", a.note)
	}
	a.setPhase(a.Decide(a.Now()), PhaseWatching)
}

// The member's side: an HTTP server on the node's private address, every request proven by
// the shared secret.

// memberRequest and memberReply are the protocol between the decider and a member.
type memberRequest struct {
	// Within bounds the backups ("backups").
	Within string `json:"within,omitempty"`
}

type memberReply struct {
	Look   *Look  `json:"look,omitempty"`
	OK     bool   `json:"ok"`
	Report string `json:"report,omitempty"`
	Error  string `json:"error,omitempty"`
}

// readSecret reads the swarm's shared secret (hex, at least 32 bytes of it).
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the swarm's secret: %w (run `docker dockbridge up` again)", err)
	}
	s := strings.TrimSpace(string(b))
	if raw, err := hex.DecodeString(s); err != nil || len(raw) < 32 {
		return "", fmt.Errorf("the swarm's secret in %s is not 64 hex digits (run `docker dockbridge up` again)", path)
	}
	return s, nil
}

// MemberHandler is the member's endpoint: POST /v1/look, /v1/backups, /v1/stop, /v1/start,
// each with "Authorization: Bearer SECRET" (compared in constant time). One request at a time.
func (a *Agent) MemberHandler(secret string) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if secret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(secret)) != 1 {
			a.Log.Printf("refused a request from %s: not the swarm's secret", r.RemoteAddr)
			http.Error(w, "not the swarm's secret", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		var req memberRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		var rep memberReply
		ctx := r.Context()
		switch r.URL.Path {
		case "/v1/look":
			now := a.Now()
			var merged Look
			for _, l := range a.lookAll(ctx, now) {
				for k, v := range l.Ongoing {
					merged.ongoing(k, v)
				}
				merged.Happened = append(merged.Happened, l.Happened...)
			}
			a.record(now, []Look{merged})
			a.writeState(idle.Decision{})
			_, err := os.Stat(a.leftStoppedPath())
			merged.LeftStopped = err == nil
			rep.Look, rep.OK = &merged, true
		case "/v1/backups":
			rep.OK = true
			if a.RunDueBackups != nil {
				within, err := time.ParseDuration(req.Within)
				if err != nil || within <= 0 {
					within = a.Config.backupsFor()
				}
				deadline := a.Now().Add(within)
				bctx, cancel := context.WithDeadline(ctx, deadline)
				if err := a.RunDueBackups(bctx, deadline); err != nil {
					rep.OK, rep.Error = false, err.Error()
					a.healthLine("WARNING", fmt.Sprintf("the backups due before the swarm's self-down failed: %v", err))
				}
				cancel()
			}
		case "/v1/stop", "/v1/start":
			verb := strings.TrimPrefix(r.URL.Path, "/v1/")
			ctx := context.WithoutCancel(ctx) // a stop once begun runs to its end
			if verb == "stop" {
				a.phase = PhaseGoingDown
				a.closeIdle()
			} else {
				a.phase = PhaseMember
			}
			a.Log.Printf("node 1 asks for the clean %s", verb)
			ok, report, err := a.Stop(ctx, verb)
			rep.OK, rep.Report = ok, report
			if err != nil {
				rep.Error = err.Error()
			}
			// Until the server is shut down (which empties /run) or started again, its looks
			// say it was left stopped: node 1 repairs that if its self-down does not go on.
			switch {
			case verb == "stop" && ok && err == nil:
				if werr := os.WriteFile(a.leftStoppedPath(), nil, 0o600); werr != nil {
					a.Log.Printf("mark the stop: %v", werr)
				}
			case verb == "start" && ok && err == nil:
				_ = os.Remove(a.leftStoppedPath())
			}
			a.Log.Printf("%s: ok=%v %s %s", verb, ok, report, rep.Error)
			a.writeState(idle.Decision{})
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// leftStoppedPath marks a member stopped on node 1's word, beside the agent's state (under
// /run: a shutdown or boot clears it).
func (a *Agent) leftStoppedPath() string {
	return filepath.Join(filepath.Dir(a.StatePath), "idle-stopped-by-node1")
}

// PhaseMember is a member's phase while it watches for the decider.
const PhaseMember = "member (node 1 decides for the environment)"

// runMember serves the decider on the node's private address until ctx ends. The address may
// not be there yet at boot: listening is tried again every few seconds.
func (a *Agent) runMember(ctx context.Context) error {
	sw := a.Config.Swarm
	secret, err := readSecret(sw.SecretFile)
	if err != nil {
		return err
	}
	a.phase = PhaseMember
	a.writeState(idle.Decision{})
	addr := net.JoinHostPort(sw.PrivateIP, fmt.Sprint(sw.port()))
	var ln net.Listener
	for said := false; ; said = true {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", addr); err == nil {
			break
		}
		if !said {
			a.Log.Printf("listen on %s: %v (tried again every 5 s)", addr, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	a.Log.Printf("member node %d of environment %s: node 1 decides; serving it on %s (private network only)", sw.Node, a.Config.Env, addr)
	srv := &http.Server{Handler: a.MemberHandler(secret), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// HTTPMembers asks the members over the private network (the decider's MemberClient).
type HTTPMembers struct {
	Secret string
	Port   int
	Client *http.Client
}

func (h *HTTPMembers) call(ctx context.Context, m Member, what string, req memberRequest) (memberReply, error) {
	var rep memberReply
	body, _ := json.Marshal(req)
	port := h.Port
	if port == 0 {
		port = DefaultMemberPort
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+net.JoinHostPort(m.PrivateIP, fmt.Sprint(port))+"/v1/"+what, bytes.NewReader(body))
	if err != nil {
		return rep, err
	}
	hr.Header.Set("Authorization", "Bearer "+h.Secret)
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(hr)
	if err != nil {
		return rep, fmt.Errorf("node %d (%s): %w", m.Node, m.PrivateIP, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return rep, fmt.Errorf("node %d (%s): %s: %s", m.Node, m.PrivateIP, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return rep, fmt.Errorf("node %d (%s): %w", m.Node, m.PrivateIP, err)
	}
	return rep, nil
}

func (h *HTTPMembers) Look(ctx context.Context, m Member) (Look, error) {
	rep, err := h.call(ctx, m, "look", memberRequest{})
	if err != nil {
		return Look{}, err
	}
	if rep.Look == nil {
		return Look{}, fmt.Errorf("node %d: an answer without a look", m.Node)
	}
	return *rep.Look, nil
}

func (h *HTTPMembers) Backups(ctx context.Context, m Member, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within+30*time.Second)
	defer cancel()
	rep, err := h.call(ctx, m, "backups", memberRequest{Within: within.String()})
	if err == nil && !rep.OK {
		err = errors.New(rep.Error)
	}
	return err
}

func (h *HTTPMembers) Stop(ctx context.Context, m Member, verb string) (bool, string, error) {
	// The member bounds its script at 4 minutes (runServerStop), and the connection with it.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rep, err := h.call(ctx, m, verb, memberRequest{})
	if err != nil {
		return false, "", err
	}
	if rep.Error != "" {
		return rep.OK, rep.Report, errors.New(rep.Error)
	}
	return rep.OK, rep.Report, nil
}
