package idleagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idle"
)

// goDown is the server deleting itself, in this order:
//
//  1. the due scheduled backups run, bounded (RunDueBackups; a failure is written to the health
//     log and does not stop the delete);
//  2. one more look: anything busy now (a command that came meanwhile) ends the attempt;
//  3. the idle SSH connections are closed, so their clients' next command wakes a new server
//     instead of waiting on a server that is going;
//  4. the clean stop (internal/serverstop, run here): Docker stops every container with its own
//     stop timeout and then the plugins, which record their volumes' release; every volume
//     filesystem is synced and unmounted. Anything left mounted: no delete, Docker starts again;
//  5. the delete, retried for Config.DeleteFor (5xx, 429 and failed actions included; a delete
//     action that runs is waited for, since starting Docker under it would make it a power cut);
//  6. when it still failed, Docker starts again (serverstop start) and the health log says why;
//     the next attempt is at the next margin before a paid period ends. A server whose Docker does not
//     start again is not left billed and useless either: the delete is tried again a minute
//     later, and so on.
//
// Node 1 of a swarm (the decider) runs its members' due backups with its own, looks at every
// node once more, and then takes down the whole environment instead of steps 3 to 6: downSwarm.
func (a *Agent) goDown(ctx context.Context, dec idle.Decision) (gone bool) {
	a.setPhase(dec, PhaseGoingDown)
	a.Log.Printf("going down: idle since %s, paid until %s", dec.IdleSince.UTC().Format(time.RFC3339), dec.PaidUntil.UTC().Format(time.RFC3339))

	token, err := os.ReadFile(a.Config.TokenFile)
	var cloud Cloud
	if err == nil {
		cloud, err = a.NewCloud(strings.TrimSpace(string(token)))
	}
	if err != nil {
		a.notBefore = a.nextWindow()
		a.note = fmt.Sprintf("%s: cannot delete the server: no API token (%v); Docker keeps running. Run `docker dockbridge up` again to write it, or `docker dockbridge down`",
			a.Now().UTC().Format(time.RFC3339), err)
		a.healthLine("WARNING", a.note)
		a.setPhase(a.Decide(a.Now()), PhaseWatching)
		return false
	}

	if a.RunDueBackups != nil {
		deadline := a.Now().Add(a.Config.backupsFor())
		bctx, cancel := context.WithDeadline(ctx, deadline)
		err := a.RunDueBackups(bctx, deadline)
		cancel()
		if err != nil {
			a.healthLine("WARNING", fmt.Sprintf("the backups due before the self-delete failed (the delete goes on): %v", err))
		}
	}
	a.memberBackups(ctx, a.Now().Add(a.Config.backupsFor()))

	now := a.Now()
	looks := a.lookAll(ctx, now)
	a.record(now, looks)
	if d := a.Decide(now); !d.Down {
		a.Log.Printf("not going down after all: %s", strings.Join(append(d.KeepingUp, "activity meanwhile"), "; "))
		a.setPhase(d, PhaseWatching)
		return false
	}

	if a.decider() {
		return a.downSwarm(ctx, cloud)
	}

	report, why := a.stopHere(ctx, "the")
	if why != "" {
		a.startAgain(ctx, why)
		return false
	}
	a.Log.Printf("stopped cleanly: %s", report)

	a.setPhase(a.Decide(a.Now()), PhaseDeleting)
	attempts, err := a.deleteSelf(ctx, cloud)
	if err == nil {
		a.Log.Printf("deleted (attempt %d)", attempts)
		return true // on Hetzner the server is gone, and this process with it
	}
	a.startAgain(ctx, fmt.Sprintf("the delete failed %d time(s) within %s, last: %v", attempts, a.Config.deleteFor(), err))
	return false
}

// closeIdle ends this server's idle SSH connections (CloseConnections), before its clean stop.
func (a *Agent) closeIdle() {
	if a.CloseConnections != nil {
		if n := a.CloseConnections(); n > 0 {
			a.Log.Printf("closed %d idle SSH connection(s)", n)
		}
	}
}

// stopHere closes the idle SSH connections and runs this server's clean stop. why is "" when
// it finished, else the reason, worded with whose stop it was ("the", "node 1's").
func (a *Agent) stopHere(ctx context.Context, whose string) (report, why string) {
	a.closeIdle()
	ok, report, err := a.Stop(ctx, "stop")
	switch {
	case err != nil:
		why = fmt.Sprintf("%s clean stop failed: %v (%s)", whose, err, report)
	case !ok:
		why = whose + " clean stop did not finish (" + report + ")"
	}
	return report, why
}

// deleteSelf deletes this server, retrying for Config.DeleteFor.
func (a *Agent) deleteSelf(ctx context.Context, cloud Cloud) (attempts int, err error) {
	deadline := a.Now().Add(a.Config.deleteFor())
	pause := 2 * time.Second
	for attempts = 1; ; attempts++ {
		// One request and its action. A held or slow action is waited for: the server is not
		// started again under a delete that may still happen.
		actx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err = cloud.DeleteServer(actx, a.Config.ServerID)
		cancel()
		if err == nil || errors.Is(err, hetzner.ErrNotFound) {
			return attempts, nil
		}
		a.Log.Printf("delete attempt %d: %v", attempts, err)
		if ctx.Err() != nil || !a.Now().Add(pause).Before(deadline) {
			return attempts, err
		}
		a.Sleep(ctx, pause)
		pause = min(2*pause, 30*time.Second)
	}
}

// startAgain is what a failed self-delete ends with: Docker running again, and the reason in the
// health log and in status.
func (a *Agent) startAgain(ctx context.Context, why string) {
	a.setPhase(a.Decide(a.Now()), PhaseRestart)
	ok, report, err := a.Stop(context.WithoutCancel(ctx), "start")
	stamp := a.Now().UTC().Format(time.RFC3339)
	if err == nil && ok {
		a.notBefore = a.nextWindow()
		a.note = fmt.Sprintf("%s: self-delete failed: %s. Docker was started again; the next attempt is at %s, before the paid period then running ends",
			stamp, why, a.notBefore.UTC().Format(time.RFC3339))
		a.healthLine("WARNING", a.note)
	} else {
		if err != nil {
			report = err.Error() + "; " + report
		}
		// Useless and billed is the one outcome not allowed: try the delete again soon.
		a.notBefore = a.Now().Add(time.Minute)
		a.note = fmt.Sprintf("%s: self-delete failed: %s; starting Docker again failed too (%s): the delete is tried again in a minute", stamp, why, report)
		a.healthLine("CRITICAL", a.note)
	}
	a.setPhase(a.Decide(a.Now()), PhaseWatching)
}

// nextWindow is the next moment, after now, at which a paid period's margin begins: when the
// self-delete is tried again after a failure.
func (a *Agent) nextWindow() time.Time {
	now := a.Now()
	at := idle.PeriodEnd(a.Config.Created, now, a.settings.BillingPeriod).Add(-a.settings.Margin)
	if !at.After(now) {
		at = at.Add(a.settings.BillingPeriod)
	}
	return at
}

func (a *Agent) setPhase(dec idle.Decision, phase string) {
	a.phase = phase
	a.writeState(dec)
}
