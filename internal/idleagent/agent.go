package idleagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/idle"
)

// Cloud is what the agent asks of the API: deleting its own server (waiting for the action).
// internal/hetzner's Client is one.
type Cloud interface {
	DeleteServer(ctx context.Context, id int64) error
}

// ServerStop runs a verb of the clean stop on this server (internal/serverstop's script, run
// here instead of over SSH): "stop" stops Docker (every container with its own stop timeout,
// then the plugins, which record their volumes' release) and syncs and unmounts every volume
// filesystem; "start" undoes it. ok is the script's result=ok; report its summary for logs.
type ServerStop func(ctx context.Context, verb string) (ok bool, report string, err error)

// Agent watches the server and deletes it when the policy says so. The zero values of the
// function fields are filled by Main with the real ones; tests give fakes.
type Agent struct {
	Config  Config
	Sources []Source
	Stop    ServerStop
	// NewCloud makes the API client from the token, which the agent reads from
	// Config.TokenFile only when it goes down (the file lives on the data volume).
	NewCloud func(token string) (Cloud, error)
	// RunDueBackups runs every scheduled backup that is due, within the deadline (Main: the
	// scheduled backups' run-due); nil: none. A failure does not stop the delete; it is written
	// to the health log.
	RunDueBackups func(ctx context.Context, deadline time.Time) error
	// CloseConnections ends the idle SSH connections (ControlPersist masters) before the stop,
	// so that their clients learn at once that the server goes, and wake a new one for the next
	// command; it returns how many it ended.
	CloseConnections func() int
	// Members and Swarm are the decider's, in a Swarm (Config.Swarm, swarm.go): how it asks
	// the other nodes, and its Swarm commands on node 1.
	Members MemberClient
	Swarm   SwarmOps

	Now       func() time.Time
	Sleep     func(ctx context.Context, d time.Duration) // between delete attempts
	Log       *log.Logger
	StatePath string
	// HealthLog gets one line (cloudinit's health-line format) when a self-delete fails.
	HealthLog string

	settings  idle.Settings
	ongoing   map[string]*idle.Activity
	ended     idle.Timeline
	notBefore time.Time // after a failed delete: not again before this
	note      string
	phase     string
	lastErr   map[string]string // by source: its last error, said once
	watches   map[int]*memberWatch
}

// keepEnded is how many ended activities the agent remembers (the policy needs only the last).
const keepEnded = 20

// Init fills the defaults and takes over the timeline an agent before this one left (Run calls
// it; tests that call Step call it first).
func (a *Agent) Init() error {
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.Log == nil {
		a.Log = log.New(io.Discard, "", 0)
	}
	if a.StatePath == "" {
		a.StatePath = StatePath
	}
	s, err := a.Config.Settings()
	if err != nil {
		return err
	}
	if a.Sleep == nil {
		a.Sleep = func(ctx context.Context, d time.Duration) {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	a.settings, a.ongoing, a.phase, a.lastErr = s, map[string]*idle.Activity{}, PhaseWatching, map[string]string{}
	a.watches = map[int]*memberWatch{}
	if a.decider() && (a.Members == nil || a.Swarm == nil) {
		return errors.New("the swarm's decider needs its members' client and its Swarm commands")
	}
	a.restore()
	return nil
}

// Run watches until ctx ends or the server is deleted.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Init(); err != nil {
		return err
	}
	if sw := a.Config.Swarm; sw != nil && sw.Role == RoleMember {
		return a.runMember(ctx)
	}
	a.Log.Printf("watching server %s (id %d, created %s): idle timeout %s, billing period %s, margin %s, a look every %s",
		a.Config.ServerName, a.Config.ServerID, a.Config.Created.UTC().Format(time.RFC3339), idle.FormatTimeout(a.settings.Timeout),
		a.settings.BillingPeriod, a.settings.Margin, a.Config.interval())
	// The agent starts when up installs it or the server boots: both are someone's doing.
	a.record(a.Now(), []Look{{Happened: []string{"the idle agent started (docker dockbridge up, or a boot)"}}})
	tick := time.NewTicker(a.Config.interval())
	defer tick.Stop()
	for {
		if a.Step(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Step is one look and decision, and the self-delete when the policy says so; it reports
// whether the server was deleted.
func (a *Agent) Step(ctx context.Context) (gone bool) {
	now := a.Now()
	a.record(now, a.lookAll(ctx, now))
	dec := a.Decide(now)
	a.writeState(dec)
	return dec.Down && a.goDown(ctx, dec)
}

// lookAll asks every source. A source that fails counts as activity ("cannot tell"): the agent
// never deletes a server it cannot see.
func (a *Agent) lookAll(ctx context.Context, now time.Time) []Look {
	lastErr := a.lastErr
	var looks []Look
	for _, s := range a.Sources {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := s.Look(lctx, now)
		cancel()
		if err != nil {
			if lastErr[s.Name()] != err.Error() {
				a.Log.Printf("%s: %v (counted as activity until it works again)", s.Name(), err)
			}
			lastErr[s.Name()] = err.Error()
			l.ongoing("error:"+s.Name(), fmt.Sprintf("cannot tell what %s is doing (%v)", s.Name(), err))
		} else if lastErr[s.Name()] != "" {
			a.Log.Printf("%s works again", s.Name())
			delete(lastErr, s.Name())
		}
		looks = append(looks, l)
	}
	return append(looks, a.lookMembers(ctx, now)...)
}

// record turns looks into the timeline: an ongoing thing starts when first seen and ends when
// no longer seen; a thing that happened between looks is a moment at now.
func (a *Agent) record(now time.Time, looks []Look) {
	seen := map[string]bool{}
	for _, l := range looks {
		for key, reason := range l.Ongoing {
			seen[key] = true
			if act, ok := a.ongoing[key]; ok {
				act.Reason = reason
				continue
			}
			a.ongoing[key] = &idle.Activity{Start: now, Reason: reason}
			a.Log.Printf("busy: %s", reason)
		}
		for _, h := range l.Happened {
			a.ended = append(a.ended, idle.Activity{Start: now, End: now, Reason: h})
			a.Log.Printf("activity: %s", h)
		}
	}
	for key, act := range a.ongoing {
		if !seen[key] {
			act.End = now
			a.ended = append(a.ended, *act)
			delete(a.ongoing, key)
			a.Log.Printf("over: %s", act.Reason)
		}
	}
	slices.SortStableFunc(a.ended, func(x, y idle.Activity) int { return x.End.Compare(y.End) })
	if len(a.ended) > keepEnded {
		a.ended = slices.Clone(a.ended[len(a.ended)-keepEnded:])
	}
}

// Timeline is what the agent remembers: the activities that ended and those going on.
func (a *Agent) Timeline() idle.Timeline {
	tl := slices.Clone(a.ended)
	for _, act := range a.ongoing {
		tl = append(tl, *act)
	}
	slices.SortStableFunc(tl, func(x, y idle.Activity) int { return x.Start.Compare(y.Start) })
	return tl
}

// Decide is the policy's decision at now, postponed after a failed self-delete (notBefore).
func (a *Agent) Decide(now time.Time) idle.Decision {
	dec := idle.Decide(a.Timeline(), a.Config.Created, now, a.settings)
	if dec.Down && now.Before(a.notBefore) {
		dec.Down, dec.DownAt = false, a.notBefore
	}
	return dec
}

func (a *Agent) writeState(dec idle.Decision) {
	st := State{
		Env: a.Config.Env, ServerID: a.Config.ServerID, Updated: a.Now().UTC(), Timeout: idle.FormatTimeout(a.settings.Timeout),
		Phase: a.phase, Decision: dec, Recent: a.Timeline(), Note: a.note,
	}
	if err := writeJSON(a.StatePath, st); err != nil {
		a.Log.Printf("write %s: %v", a.StatePath, err)
	}
}

// restore takes over the timeline of an agent that ran before on this server (a restart of
// the unit, an upgrade by up), so that its idle time is not forgotten.
func (a *Agent) restore() {
	b, err := os.ReadFile(a.StatePath)
	if err != nil {
		return
	}
	var st State
	if json.Unmarshal(b, &st) != nil || st.ServerID != a.Config.ServerID {
		return
	}
	for _, act := range st.Recent {
		if act.End.IsZero() {
			act.End = st.Updated // it went on at least until the last look
		}
		a.ended = append(a.ended, act)
	}
	a.note = st.Note
}

// healthLine appends one line to the health log, in the format `status` and the health check
// read (cloudinit.ParseHealthLine), with no volume figures.
func (a *Agent) healthLine(level, msg string) {
	a.Log.Printf("%s: %s", level, msg)
	if a.HealthLog == "" {
		return
	}
	msg = strings.ReplaceAll(strings.ReplaceAll(msg, `"`, "'"), "\n", " ")
	line := fmt.Sprintf("%s level=%s mount=/var/lib/docker used_pct=-1 size_bytes=-1 used_bytes=-1 avail_bytes=-1 warn_pct=-1 crit_pct=-1 msg=\"idle agent: %s\"\n",
		a.Now().UTC().Format(time.RFC3339), level, msg)
	f, err := os.OpenFile(a.HealthLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		a.Log.Printf("write %s: %v", a.HealthLog, err)
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line)
}
