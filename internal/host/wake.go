package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/idleagent"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// The wake: when the environment's server is down, the next `docker --context dockbridge ...`
// (or compose, buildx, `docker dockbridge ssh`) brings it up with the same idempotent `up`,
// then runs. ssh runs it before it connects (the Match exec line of the environment's
// ssh_config, wakeScript): OpenSSH evaluates Match exec while it reads its configuration,
// before its connect timer starts, so docker's ConnectTimeout=30 does not cut a wake short,
// and the server's address and connection path come after it, from a file the wake rewrote.
//
// While the shared connection (ControlMaster) lives, wakeScript ends at a `test -S` and spends
// neither an API request nor a measurable moment. Without one, Wake asks the server itself
// (its probe, over SSH with the pinned key: no API request) and wakes it only when it does not
// answer, or answers that it is going down. Concurrent commands wait on one wake (a lock); the
// wake runs in a process of its own that holds the lock, so that it finishes when its caller
// is killed (docker kills the ssh of its 2 s ping). The user sees that a wake happens and how
// long the last one took on the controlling terminal: docker hides ssh's stderr unless -D.

// WakeLockFile serialises the wakes of an environment.
func (p Paths) WakeLockFile(env string) string { return filepath.Join(p.EnvDir(env), "wake.lock") }

// WakeLogFile is the full progress of the last wakes.
func (p Paths) WakeLogFile(env string) string { return filepath.Join(p.EnvDir(env), "wake.log") }

// WakeResultFile is what the last wake did (WakeResult).
func (p Paths) WakeResultFile(env string) string { return filepath.Join(p.EnvDir(env), "wake.json") }

// WakeResult is what one wake did: when, how long, of which how long waiting for the cloud
// (the server's creation and boot, cloud-init), and its error.
type WakeResult struct {
	Started      time.Time `json:"started"`
	Seconds      float64   `json:"seconds"`
	CloudSeconds float64   `json:"cloud_seconds"`
	Created      bool      `json:"server_created"`
	Error        string    `json:"error,omitempty"`
}

// LastWake reads the last wake's result.
func LastWake(p Paths, env string) (WakeResult, error) {
	var r WakeResult
	b, err := os.ReadFile(p.WakeResultFile(env))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// ServerUp reports whether the environment's server answers with the pinned host key and is
// not going down, asking it alone (its probe: no API request, and no activity for its idle
// agent). A server that says it is going down is waited for, up to bound, until it has gone or
// changed its mind.
func ServerUp(ctx context.Context, d *Deps, env string, bound time.Duration) bool {
	d.defaults()
	st, err := loadState(d.Paths, env)
	if err != nil || st.ServerIPv4 == "" || st.HostKey == "" {
		return false
	}
	t, err := stateTarget(d, env, &st.nodeState)
	if err != nil {
		return false
	}
	deadline := d.Now().Add(bound)
	for {
		phase, ok := probeOnce(ctx, d, t)
		if !ok {
			return false
		}
		if phase == "" || phase == idleagent.PhaseWatching {
			return true
		}
		if d.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// probeOnce connects (3 s at most) and asks the idle agent's phase; "" when the server has no
// agent (an older one, up all the same).
func probeOnce(ctx context.Context, d *Deps, t Target) (phase string, up bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r, err := d.Dial(ctx, t)
	if err != nil {
		return "", false
	}
	defer r.Close()
	out, err := r.Run(ctx, idleagent.ProbeCommand, nil)
	var re *RemoteError
	if err != nil && errors.As(err, &re) && re.ExitCode == 127 {
		return "", true
	}
	var p idleagent.ProbeReport
	if jerr := json.Unmarshal(out, &p); jerr != nil {
		return "", err == nil
	}
	return p.Phase, true
}

// WakeRun brings the environment up as its last up did (EnvSettings.Up), saying so on tty, and
// records the result. It is the detached process the wake spawns.
func WakeRun(ctx context.Context, d *Deps, env string, tty io.Writer) error {
	d.defaults()
	if tty == nil {
		tty = io.Discard
	}
	es, err := LoadEnvSettings(d.Paths, env)
	if err != nil {
		return err
	}
	o := UpOptions{Env: env}
	if es.Up != nil {
		o.NoVolumePlugin, o.PluginDir, o.Flags = es.Up.NoVolumePlugin, es.Up.PluginDir, es.Up.Flags
	}
	estimate := "usually under a minute"
	if last, err := LastWake(d.Paths, env); err == nil && last.Error == "" && last.Seconds > 0 {
		estimate = fmt.Sprintf("the last wake took %.0f s", last.Seconds)
	}
	fmt.Fprintf(tty, "dockbridge: environment %q has no server running: bringing it up for this command (%s)...\r\n", env, estimate)
	res := WakeResult{Started: d.Now().UTC()}
	up, err := Up(ctx, d, o)
	res.Seconds = d.Now().Sub(res.Started).Seconds()
	if up != nil {
		res.CloudSeconds, res.Created = CloudSeconds(up.Steps), up.ServerCreated
	}
	if err != nil {
		res.Error = err.Error()
		fmt.Fprintf(tty, "dockbridge: bringing environment %q up failed after %.0f s:\r\n  %s\r\n", env, res.Seconds, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "\r\n  "))
	} else {
		fmt.Fprintf(tty, "dockbridge: environment %q is up (%.1f s: %.1f s waiting for Hetzner, %.1f s our own)\r\n", env, res.Seconds, res.CloudSeconds, res.Seconds-res.CloudSeconds)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if werr := writePrivate(d.Paths.WakeResultFile(env), append(b, '\n')); werr != nil && err == nil {
		err = werr
	}
	return err
}

// CloudSeconds is how long up's steps waited for the cloud: the server's create and start
// actions ("Server"), its boot until SSH answers and cloud-init's setup. The rest is our own.
func CloudSeconds(steps []ui.StepResult) float64 {
	var s float64
	for _, st := range steps {
		if st.Title == "Server" || strings.HasPrefix(st.Title, "Waiting for SSH") || strings.HasPrefix(st.Title, "Waiting for cloud-init") {
			s += st.Seconds
		}
	}
	return s
}

// RecordWakeFailure records a wake that could not even start up (no token, unreadable
// settings), so that the command that waited for it can say why.
func RecordWakeFailure(p Paths, env string, started time.Time, err error) {
	b, _ := json.MarshalIndent(WakeResult{Started: started.UTC(), Seconds: time.Since(started).Seconds(), Error: err.Error()}, "", "  ")
	_ = writePrivate(p.WakeResultFile(env), append(b, '\n'))
}
