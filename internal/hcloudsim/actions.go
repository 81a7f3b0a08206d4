package hcloudsim

import (
	"context"
	"fmt"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// Action durations per profile. "realistic" follows what the real API takes in practice
// (server create ~10-15 s until running, volume attach/detach ~2-3 s, resize ~2 s).
var profiles = map[string]map[string]time.Duration{
	"fast": {
		"create_server": 100 * time.Millisecond, "start_server": 40 * time.Millisecond,
		"stop_server": 30 * time.Millisecond, "shutdown_server": 50 * time.Millisecond,
		"reboot_server": 40 * time.Millisecond, "reset_server": 30 * time.Millisecond,
		"delete_server": 40 * time.Millisecond, "create_volume": 40 * time.Millisecond,
		"attach_volume": 30 * time.Millisecond, "detach_volume": 30 * time.Millisecond,
		"resize_volume": 30 * time.Millisecond, "delete_volume": 20 * time.Millisecond,
		"change_protection": 20 * time.Millisecond, "apply_firewall": 20 * time.Millisecond,
		"remove_firewall": 20 * time.Millisecond, "set_firewall_rules": 20 * time.Millisecond,
		"change_server_type": 60 * time.Millisecond,
	},
	"realistic": {
		"create_server": 12 * time.Second, "start_server": 5 * time.Second,
		"stop_server": 3 * time.Second, "shutdown_server": 8 * time.Second,
		"reboot_server": 6 * time.Second, "reset_server": 4 * time.Second,
		"delete_server": 4 * time.Second, "create_volume": 4 * time.Second,
		"attach_volume": 2500 * time.Millisecond, "detach_volume": 2500 * time.Millisecond,
		"resize_volume": 2 * time.Second, "delete_volume": time.Second,
		"change_protection": 500 * time.Millisecond, "apply_firewall": 2 * time.Second,
		"remove_firewall": 2 * time.Second, "set_firewall_rules": 2 * time.Second,
		"change_server_type": 30 * time.Second,
	},
}

func (s *Sim) durationFor(command string) time.Duration {
	if d, ok := s.cfg.ActionDurations[command]; ok {
		return d
	}
	if d, ok := profiles[s.cfg.ActionProfile][command]; ok {
		return d
	}
	if s.cfg.ActionProfile == "realistic" {
		return time.Second
	}
	return 20 * time.Millisecond
}

// actionSpec describes an action to start.
type actionSpec struct {
	command   string
	resources []schema.ActionResourceReference
	// lock locks every resource in resources while the action runs (423 locked).
	lock bool
	// after delays the action until that action finished; if it failed, this fails too.
	after *action
	// run does the backend work. It runs without the simulator lock.
	run func(ctx context.Context) error
	// done applies the outcome to the state; it runs with the simulator lock held.
	done func(err error)
	// failed, when set, runs without the lock when the action ends in error (also an injected
	// one), so the backend matches the state the failure leaves.
	failed func(ctx context.Context)
}

func ref(typ string, id int64) schema.ActionResourceReference {
	return schema.ActionResourceReference{ID: id, Type: typ}
}

// isLocked reports whether a running action holds the resource.
func (s *Sim) isLocked(typ string, id int64) bool {
	_, ok := s.locks[lockKey{typ, id}]
	return ok
}

// startActionLocked registers a running action and starts its goroutine. The caller
// holds s.mu (and has already checked the locks).
func (s *Sim) startActionLocked(spec actionSpec) *action {
	s.st.NextActionID++
	a := &action{
		Action: schema.Action{
			ID: s.st.NextActionID, Status: "running", Command: spec.command,
			Started: s.clock.Now().UTC(), Resources: spec.resources,
		},
		duration: s.durationFor(spec.command),
		done:     make(chan struct{}),
	}
	a.startedAt = time.Now()
	s.st.Actions[a.ID] = a
	if spec.lock {
		for _, r := range spec.resources {
			s.locks[lockKey{r.Type, r.ID}] = a.ID
		}
	}
	s.stats.action(spec.command)
	s.wg.Add(1)
	go s.runAction(a, spec)
	return a
}

func (s *Sim) runAction(a *action, spec actionSpec) {
	defer s.wg.Done()
	defer close(a.done)
	var err error
	if spec.after != nil {
		select {
		case <-spec.after.done:
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		failed := spec.after.Status == "error"
		a.startedAt = time.Now()
		s.mu.Unlock()
		if failed {
			err = fmt.Errorf("action %d (%s) it depends on failed", spec.after.ID, spec.after.command())
		}
	}
	if err == nil && s.faults.forHold(a.Command, a.Resources) {
		s.stats.fault()
		closed, herr := s.hold(a)
		if closed {
			return
		}
		err = herr
	}
	if err == nil {
		t := time.NewTimer(a.duration)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		if s.faults.forAction(a.Command, a.Resources) {
			s.stats.fault()
			err = fmt.Errorf("injected fault: action %s failed", a.Command)
		} else if spec.run != nil {
			err = spec.run(s.ctx)
			if err != nil {
				s.log.Warn("action failed", "action", a.ID, "command", a.Command, "err", err)
			}
		}
	}
	if err != nil && spec.failed != nil {
		spec.failed(s.ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now().UTC()
	a.Finished = &now
	a.Progress = 100
	if err != nil {
		a.Status = "error"
		a.Error = &schema.ActionError{Code: "action_failed", Message: err.Error()}
	} else {
		a.Status = "success"
	}
	if spec.done != nil {
		spec.done(err)
	}
	if spec.lock {
		for _, r := range spec.resources {
			if s.locks[lockKey{r.Type, r.ID}] == a.ID {
				delete(s.locks, lockKey{r.Type, r.ID})
			}
		}
	}
	s.persistLocked()
}

func (a *action) command() string { return a.Command }

// schemaLocked renders the action with its current progress.
func (a *action) schemaLocked() schema.Action {
	out := a.Action
	out.Resources = append([]schema.ActionResourceReference{}, a.Resources...)
	if out.Status == "running" {
		p := 0
		if a.duration > 0 && !a.startedAt.IsZero() && !a.held {
			p = int(time.Since(a.startedAt) * 100 / a.duration)
		}
		out.Progress = min(max(p, 0), 99)
	}
	return out
}

// finishedActionLocked records an action that completes at once (e.g. a change that has
// no asynchronous part), like the API does for change_protection.
func (s *Sim) finishedActionLocked(command string, resources ...schema.ActionResourceReference) *action {
	s.st.NextActionID++
	now := s.clock.Now().UTC()
	a := &action{Action: schema.Action{
		ID: s.st.NextActionID, Status: "success", Command: command, Progress: 100,
		Started: now, Finished: &now, Resources: resources,
	}, done: make(chan struct{})}
	close(a.done)
	s.st.Actions[a.ID] = a
	s.stats.action(command)
	return a
}
