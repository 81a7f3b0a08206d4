package hcloudsim

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// HeldAction is an action a "hold" fault keeps in status running until it is released: a test
// knows then that its client is waiting on that action, and does something at that moment
// (kill the client, restart the simulator, ...).
type HeldAction struct {
	ID        int64                            `json:"id"`
	Command   string                           `json:"command"`
	Resources []schema.ActionResourceReference `json:"resources"`
	HeldSince time.Time                        `json:"held_since"`
}

// ReleaseRequest is the body of POST /_sim/release.
type ReleaseRequest struct {
	// IDs are the held actions to release; none releases every held action.
	IDs []int64 `json:"ids,omitempty"`
	// Error, when set, ends the released actions in status error with this message; otherwise
	// they go on as if never held (their duration, then their work).
	Error string `json:"error,omitempty"`
}

// HeldList is the answer of GET /_sim/held and POST /_sim/release.
type HeldList struct {
	Held []HeldAction `json:"held"`
}

type heldEntry struct {
	HeldAction
	release chan string // gets the error message ("" = go on), once
}

// holdRegistry keeps the held actions.
type holdRegistry struct {
	mu   sync.Mutex
	held map[int64]*heldEntry
	// changed is closed (and replaced) whenever an action is held, for waiters.
	changed chan struct{}
}

func newHoldRegistry() *holdRegistry {
	return &holdRegistry{held: map[int64]*heldEntry{}, changed: make(chan struct{})}
}

// hold keeps action a (already counted as an injected fault) until it is released or the
// simulator closes (closed). err is the release's error (nil: go on).
func (s *Sim) hold(a *action) (closed bool, err error) {
	e := &heldEntry{release: make(chan string, 1)}
	s.mu.Lock()
	e.HeldAction = HeldAction{ID: a.ID, Command: a.Command, Resources: slices.Clone(a.Resources), HeldSince: s.clock.Now().UTC()}
	a.held = true
	s.mu.Unlock()
	h := s.holds
	h.mu.Lock()
	h.held[a.ID] = e
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	s.log.Info("action held", "action", a.ID, "command", a.Command)

	var msg string
	select {
	case msg = <-e.release:
	case <-s.ctx.Done():
		h.mu.Lock()
		delete(h.held, a.ID)
		h.mu.Unlock()
		return true, nil
	}
	s.mu.Lock()
	a.held = false
	a.startedAt = time.Now() // its progress starts now
	s.mu.Unlock()
	if msg != "" {
		return false, errors.New(msg)
	}
	return false, nil
}

// HeldActions lists the actions a "hold" fault keeps running, oldest first.
func (s *Sim) HeldActions() []HeldAction {
	h := s.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]HeldAction, 0, len(h.held))
	for _, e := range h.held {
		out = append(out, e.HeldAction)
	}
	slices.SortFunc(out, func(a, b HeldAction) int { return int(a.ID - b.ID) })
	return out
}

// WaitHeld blocks until an action whose command matches the glob is held (any command for ""),
// and returns it; or returns ctx's error.
func (s *Sim) WaitHeld(ctx context.Context, command string) (HeldAction, error) {
	h := s.holds
	for {
		h.mu.Lock()
		var found *HeldAction
		for _, e := range h.held {
			if globMatch(command, e.Command) && (found == nil || e.ID < found.ID) {
				found = &e.HeldAction
			}
		}
		changed := h.changed
		h.mu.Unlock()
		if found != nil {
			return *found, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return HeldAction{}, ctx.Err()
		}
	}
}

// Release lets held actions go on (or fail, with r.Error) and returns those it released.
func (s *Sim) Release(r ReleaseRequest) []HeldAction {
	h := s.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []HeldAction
	for id, e := range h.held {
		if len(r.IDs) > 0 && !slices.Contains(r.IDs, id) {
			continue
		}
		e.release <- r.Error
		delete(h.held, id)
		out = append(out, e.HeldAction)
	}
	slices.SortFunc(out, func(a, b HeldAction) int { return int(a.ID - b.ID) })
	return out
}
