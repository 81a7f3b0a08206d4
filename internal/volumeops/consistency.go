package volumeops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moby/moby/client"
)

// stopped is the list of containers we stopped, in stop order.
type stopped struct {
	e    *Engine
	refs []ContainerRef
	// noRestart: stopped for good (offen's stop-during-backup-no-restart label)
	noRestart map[string]bool
	done      bool
}

// StopTimeout is how long a container gets to stop before it is killed.
var StopTimeout = 30 * time.Second

// runningUsers lists the running containers that use any of vols.
func (e *Engine) runningUsers(ctx context.Context, vols []string) ([]ContainerRef, error) {
	seen := map[string]bool{}
	var running []ContainerRef
	for _, v := range vols {
		refs, err := e.ContainersUsing(ctx, v)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if isRunning(r.State) && !seen[r.ID] {
				seen[r.ID] = true
				running = append(running, r)
			}
		}
	}
	return running, nil
}

// stopUsers stops the running containers that use any of vols, newest first. Containers that
// were not running are left alone. On error the ones already stopped are started again.
func (e *Engine) stopUsers(ctx context.Context, vols []string) (*stopped, error) {
	running, err := e.runningUsers(ctx, vols)
	if err != nil {
		return nil, err
	}
	return e.stopContainers(ctx, running, nil)
}

// stopContainers stops running, newest first; noRestart marks those not to be started again.
// On error the ones already stopped are started again. Before a container is stopped, OnStop
// is told (a journal that survives a killed process).
func (e *Engine) stopContainers(ctx context.Context, running []ContainerRef, noRestart map[string]bool) (*stopped, error) {
	// Newest first: what was created last (often what depends on the rest) stops first. The list
	// has creation times in seconds; inspect has them to the nanosecond.
	created := map[string]time.Time{}
	for _, r := range running {
		if ci, err := e.API.ContainerInspect(ctx, r.ID, client.ContainerInspectOptions{}); err == nil {
			created[r.ID], _ = time.Parse(time.RFC3339Nano, ci.Container.Created)
		}
	}
	slices.SortStableFunc(running, func(a, b ContainerRef) int { return created[b.ID].Compare(created[a.ID]) })
	s := &stopped{e: e, noRestart: noRestart}
	timeout := int(StopTimeout.Seconds())
	for _, r := range running {
		if e.OnStop != nil && !noRestart[r.ID] {
			if err := e.OnStop(r); err != nil {
				rerr := s.restart(ctx)
				return nil, errors.Join(fmt.Errorf("record that container %s is stopped for the backup: %w", r.Name, err), rerr)
			}
		}
		e.progressf("Stopping container %s", r.Name)
		if _, err := e.API.ContainerStop(ctx, r.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
			rerr := s.restart(ctx)
			return nil, errors.Join(fmt.Errorf("stop container %s: %w", r.Name, err), rerr)
		}
		s.refs = append(s.refs, r)
	}
	return s, nil
}

// restart starts what stopUsers stopped, in reverse order. It runs even when ctx is cancelled
// (Ctrl-C): the containers must come back.
func (s *stopped) restart(ctx context.Context) error {
	if s == nil || s.done {
		return nil
	}
	s.done = true
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	var errs []error
	for i := len(s.refs) - 1; i >= 0; i-- {
		r := s.refs[i]
		if s.noRestart[r.ID] {
			s.e.progressf("Leaving container %s stopped (%s)", r.Name, LabelStopNoRestart)
			continue
		}
		s.e.progressf("Starting container %s", r.Name)
		if _, err := s.e.API.ContainerStart(rctx, r.ID, client.ContainerStartOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("restart container %s: %w (start it with `docker start %s`)", r.Name, err, r.Name))
		}
	}
	if s.e.OnRestarted != nil {
		s.e.OnRestarted(errors.Join(errs...))
	}
	return errors.Join(errs...)
}

func (s *stopped) names() []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, r := range s.refs {
		out = append(out, r.Name)
	}
	return out
}
