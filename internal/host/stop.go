package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/serverstop"
)

// StopBounds bound each step of the clean stop before a server is deleted (Deps.Stop; a zero
// field takes its default).
type StopBounds struct {
	// SSH bounds the server-side stop over SSH, connection included: Docker (systemd gives
	// docker.service 90 s to stop its containers and plugins), sync and unmounts. Default 3m.
	SSH time.Duration
	// Action bounds each API action: the shutdown request and the delete. Default 2m.
	Action time.Duration
	// Off bounds the wait for the server to power off after the shutdown request, once the
	// server-side stop has finished. Default 2m.
	Off time.Duration
	// OffAlone bounds that wait when SSH could not stop the server: its own shutdown then stops
	// Docker and unmounts the volumes. Default 5m.
	OffAlone time.Duration
	// Poll is the pause between two looks at the server's status. Default 1s.
	Poll time.Duration
}

// Defaults of StopBounds.
const (
	DefaultStopSSH      = 3 * time.Minute
	DefaultStopAction   = 2 * time.Minute
	DefaultStopOff      = 2 * time.Minute
	DefaultStopOffAlone = 5 * time.Minute
)

func (b StopBounds) withDefaults() StopBounds {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&b.SSH, DefaultStopSSH)
	def(&b.Action, DefaultStopAction)
	def(&b.Off, DefaultStopOff)
	def(&b.OffAlone, DefaultStopOffAlone)
	def(&b.Poll, time.Second)
	return b
}

// ServerStop is how a server was stopped and deleted.
type ServerStop struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	// Stop is how it ended before the delete: "clean" (stopped over SSH, shut down, off),
	// "acpi" (SSH could not stop it; its own shutdown did, then it was off), "was off", or
	// "forced" (deleted while running: --force, a power cut).
	Stop string `json:"stop"`
	// ContainersStopped is how many containers ran when Docker was stopped over SSH.
	ContainersStopped int `json:"containers_stopped"`
	// Unmounted are the volume filesystems unmounted over SSH, deepest first.
	Unmounted []string `json:"unmounted,omitempty"`
	// Notes say what did not go as planned on the way (and was made up for).
	Notes   []string `json:"notes,omitempty"`
	Seconds float64  `json:"seconds"`
}

// Stop values of ServerStop.
const (
	StopClean  = "clean"
	StopACPI   = "acpi"
	StopWasOff = "was off"
	StopForced = "forced"
)

// ForceRisk is what --force risks, for help texts and messages.
const ForceRisk = "deleting a running server is a power cut: what Docker, the containers and the page cache had not yet written to the volumes is lost"

// StillRunningError: the server did not reach off within its bound, so it was not deleted.
// It is running and billed.
type StillRunningError struct {
	Server  *hetzner.Server
	Env     string
	Command string // the command to run again, e.g. "down"
	Err     error
	// Restarted says what became of Docker on it (started again after a stop over SSH, or not).
	Restarted string
}

func (e *StillRunningError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v\n\n", e.Err)
	fmt.Fprintf(&b, "!! Server %s (id %d) was NOT deleted: it is STILL RUNNING AND BILLED.\n", e.Server.Name, e.Server.ID)
	if e.Restarted != "" {
		fmt.Fprintf(&b, "!! %s\n", e.Restarted)
	}
	fmt.Fprintf(&b, "!! Look at it with `docker dockbridge ssh%s` (or the Hetzner console), then run `docker dockbridge %s%s` again.\n", nameFlag(e.Env), e.Command, nameFlag(e.Env))
	fmt.Fprintf(&b, "!! `docker dockbridge %s%s --force` deletes it anyway: %s.", e.Command, nameFlag(e.Env), ForceRisk)
	return b.String()
}

func (e *StillRunningError) Unwrap() error { return e.Err }

// ErrNotOff: the server did not power off within the bound after the shutdown request.
var ErrNotOff = errors.New("the server did not power off")

// stopOptions are the choices of one stopAndDelete.
type stopOptions struct {
	Force   bool   // delete without stopping: a power cut
	Command string // the command the user ran ("down", "destroy", "up"), for what to do next
}

// stopAndDelete is THE way dockbridge deletes a server of an environment: every command that
// deletes a server calls it. Unless the server is off already or o.Force, it first stops it
// cleanly, each step bounded (Deps.Stop):
//
//  1. over SSH, with the pinned host key, the server-side stop (internal/serverstop): Docker
//     stops every container with its own stop timeout and then the volume plugins (which record
//     the release of their volumes), the data volume and every hetzner volume are synced and
//     unmounted;
//  2. the API's shutdown action (an ACPI request), then a wait until the server is off. When
//     SSH could not do step 1, the server's own shutdown does it (systemd stops Docker before it
//     unmounts), so this step runs in every case;
//  3. only then the delete.
//
// A server that does not reach off is not deleted: the error (*StillRunningError) says it is
// running and billed and what to do, and Docker is started again on it if step 1 stopped it.
// With o.Force a running server is deleted at once: a power cut (ForceRisk).
func stopAndDelete(ctx context.Context, d *Deps, env string, s *hetzner.Server, o stopOptions) (res *ServerStop, err error) {
	b := d.Stop.withDefaults()
	start := d.Now()
	res = &ServerStop{ID: s.ID, Name: s.Name}
	defer func() { res.Seconds = d.Now().Sub(start).Round(100 * time.Millisecond).Seconds() }()
	switch {
	case s.Off():
		res.Stop = StopWasOff
	case o.Force:
		res.Stop = StopForced
		d.Progress.Printf("!! --force: deleting server %s (id %d) while it runs, without stopping it: %s.\n", s.Name, s.ID, ForceRisk)
	default:
		if err := cleanStop(ctx, d, env, s, res, b, o); err != nil {
			return res, err
		}
	}
	step := d.Progress.Start(fmt.Sprintf("Deleting server %s (id %d)", s.Name, s.ID))
	dctx, cancel := context.WithTimeout(ctx, b.Action)
	err = d.API.DeleteServer(dctx, s.ID)
	cancel()
	if errors.Is(err, hetzner.ErrNotFound) {
		step.Note("it was gone already")
		err = nil
	}
	step.End(&err)
	return res, err
}

// cleanStop runs steps 1 and 2 of stopAndDelete.
func cleanStop(ctx context.Context, d *Deps, env string, s *hetzner.Server, res *ServerStop, b StopBounds, o stopOptions) error {
	step := d.Progress.Start(fmt.Sprintf("Stopping Docker and unmounting the volumes on %s over SSH", s.Name))
	rep, err := runServerStop(ctx, d, env, s, serverstop.Stop, b.SSH)
	stoppedOverSSH := false
	switch {
	case err != nil:
		step.Note("not done: %s", shortErr(err))
		step.Fail(err)
		res.Notes = append(res.Notes, fmt.Sprintf("the stop over SSH failed (%v): the server's own shutdown stopped Docker and unmounted the volumes", shortErr(err)))
	case !rep.OK:
		step.Note("incomplete: %s", describeStop(rep))
		step.Fail(errors.New("incomplete"))
		stoppedOverSSH = true
		res.ContainersStopped, res.Unmounted = rep.ContainersRunning, rep.Unmounted
		res.Notes = append(res.Notes, "the stop over SSH was incomplete ("+describeStop(rep)+"): the server's own shutdown finished it")
	default:
		step.Note("%s", describeStop(rep))
		step.Done()
		stoppedOverSSH = true
		res.ContainersStopped, res.Unmounted = rep.ContainersRunning, rep.Unmounted
	}

	bound := b.Off
	if err != nil || !rep.OK {
		bound = b.OffAlone
	}
	step = d.Progress.Start(fmt.Sprintf("Shutting down server %s (id %d) and waiting until it is off", s.Name, s.ID))
	err = shutdownAndWaitOff(ctx, d, s.ID, b.Action, bound, b.Poll)
	step.End(&err)
	if err == nil {
		res.Stop = StopClean
		if !rep.OK {
			res.Stop = StopACPI
		}
		return nil
	}
	if errors.Is(err, hetzner.ErrNotFound) {
		return nil // deleted meanwhile (by someone else): nothing is running any more
	}
	serr := &StillRunningError{Server: s, Env: env, Command: o.Command, Err: err}
	if stoppedOverSSH {
		// Never leave a server billed with Docker stopped: start it again (bounded).
		r, rerr := runServerStop(context.WithoutCancel(ctx), d, env, s, serverstop.Start, b.SSH)
		switch {
		case rerr == nil && r.OK:
			serr.Restarted = "Docker was stopped on it and has been started again, with its data volume mounted."
		case rerr == nil:
			rerr = errors.New(strings.Join(append(r.Errors, "docker "+r.Docker), "; "))
			fallthrough
		default:
			serr.Restarted = fmt.Sprintf("Docker was stopped on it, and starting it again failed (%s): `docker dockbridge ssh%s -- 'mount /var/lib/docker; systemctl start docker'`.", shortErr(rerr), nameFlag(env))
		}
	}
	return serr
}

// runServerStop runs the server-side script's verb over SSH with the pinned host key, within
// bound (connection included). A report that says the verb is incomplete is no error: the
// report says what is left.
func runServerStop(ctx context.Context, d *Deps, env string, s *hetzner.Server, verb string, bound time.Duration) (serverstop.Report, error) {
	if s.IPv4 == "" {
		return serverstop.Report{}, errors.New("the server has no public IPv4 address")
	}
	t, err := serverTarget(d, env, s)
	if err != nil {
		return serverstop.Report{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	r, err := d.Dial(ctx, t)
	if err != nil {
		return serverstop.Report{}, err
	}
	defer r.Close()
	out, err := r.Run(ctx, serverstop.Command(verb), nil)
	rep := serverstop.Parse(out)
	var re *RemoteError
	if errors.As(err, &re) && re.ExitCode == 1 && strings.Contains(string(out), "result=") {
		err = nil
	}
	return rep, err
}

// serverTarget is how to reach server s of env over SSH: its address, our key, and the host
// keys pinned for it (the state must be this server's: its label names the key it was created
// with).
func serverTarget(d *Deps, env string, s *hetzner.Server) (Target, error) {
	es, err := loadState(d.Paths, env)
	if err != nil {
		return Target{}, err
	}
	st := es.pinnedFor(s)
	if st == nil {
		return Target{}, fmt.Errorf("no host key pinned on this machine is that of server %d", s.ID)
	}
	t, err := stateTarget(d, env, st)
	if err != nil {
		return Target{}, err
	}
	// The API's address: the state's may be a replaced server's.
	_, port, _ := net.SplitHostPort(t.Addr)
	t.Addr = net.JoinHostPort(s.IPv4, port)
	return t, nil
}

// shutdownAndWaitOff sends the shutdown request (bounded by action) and waits, polling every
// poll, until the server is off (bounded by off). ErrNotOff when it is not.
func shutdownAndWaitOff(ctx context.Context, d *Deps, id int64, action, off, poll time.Duration) error {
	actx, cancel := context.WithTimeout(ctx, action)
	err := d.API.Shutdown(actx, id)
	cancel()
	if err != nil {
		return fmt.Errorf("shutdown request: %w", err)
	}
	deadline := d.Now().Add(off)
	for {
		s, err := d.API.Server(ctx, id)
		if err != nil {
			return err
		}
		if s.Off() {
			return nil
		}
		if d.Now().After(deadline) {
			return fmt.Errorf("%w within %s of the shutdown request (status %s)", ErrNotOff, off, s.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for server %d to power off: %w", id, ctx.Err())
		case <-time.After(poll):
		}
	}
}

func describeStop(r serverstop.Report) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%d container(s) stopped, Docker %s in %.1fs", r.ContainersRunning, r.Docker, r.DockerSeconds))
	parts = append(parts, fmt.Sprintf("%d volume filesystem(s) unmounted", len(r.Unmounted)))
	if r.StillMounted != "" {
		parts = append(parts, "still mounted: "+r.StillMounted)
	}
	parts = append(parts, r.Errors...)
	return strings.Join(parts, ", ")
}

// shortErr is the first line of an error, for progress notes.
func shortErr(err error) string {
	if err == nil {
		return ""
	}
	s := strings.TrimSpace(err.Error())
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
