// Package idle is the one place that decides when a dockbridge server nobody uses goes down:
// a pure function of what kept the server busy (the activity timeline), when the server was
// created, the time now and the environment's settings. The agent on the server (its idle mode,
// internal/idleagent) feeds it what it sees every second; `make bench-idle` replays a day of
// use against it with a fake clock.
//
// The policy, in full:
//
//  1. The server is idle when nothing keeps it up now (see internal/idleagent for what counts:
//     a docker command in flight through the context, an SSH shell or command, a port forward in
//     use, a running container labelled dockbridge.keep-alive=true). It has been idle since the
//     end of the last activity, or since it was created when nothing was ever seen.
//  2. Once it has been idle for the timeout (default 30 min, Settings.Timeout), it may go down.
//  3. It goes down at GoDownAt: shortly (the margin) before the end of the paid billing period
//     that contains that moment, because Hetzner bills every started hour from the server's
//     creation and deleting earlier in the hour saves nothing. Work that arrives in the
//     meantime is served for free and makes the server busy again (back to 1).
//  4. With the timeout off the server never goes down by itself.
package idle

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults of Settings.
const (
	DefaultTimeout = 30 * time.Minute
	// DefaultBillingPeriod is Hetzner's: every started hour of a server is billed.
	DefaultBillingPeriod = time.Hour
	// MarginDivisor: the default margin is the billing period divided by it (5 min of an hour):
	// time for the clean stop (containers' stop timeouts, Docker, unmounts) and the delete
	// before the next period starts.
	MarginDivisor = 12
)

// Settings are an environment's idle settings, as `up --idle-timeout` and `settings` set them
// and the server's agent reads them.
type Settings struct {
	// Timeout is how long the server must be idle before it may go down; Off (0) never.
	Timeout time.Duration `json:"timeout"`
	// BillingPeriod is the unit the cloud bills in, counted from the server's creation
	// (0: DefaultBillingPeriod). Only the simulator and tests change it.
	BillingPeriod time.Duration `json:"billing_period,omitempty"`
	// Margin is how long before the end of a paid period the server goes down
	// (0: BillingPeriod/MarginDivisor). At most half the period.
	Margin time.Duration `json:"margin,omitempty"`
}

// Off is the Timeout that never lets a server go down by itself.
const Off time.Duration = 0

// WithDefaults fills the zero BillingPeriod and Margin and bounds Margin to half the period.
func (s Settings) WithDefaults() Settings {
	if s.BillingPeriod <= 0 {
		s.BillingPeriod = DefaultBillingPeriod
	}
	if s.Margin <= 0 {
		s.Margin = s.BillingPeriod / MarginDivisor
	}
	s.Margin = min(s.Margin, s.BillingPeriod/2)
	return s
}

// ParseTimeout reads an idle timeout as users write it: a Go duration ("20s", "30m", "1h30m")
// or "off". A timeout under 10 s is refused (the agent looks every second; a clean stop takes
// longer than that anyway).
func ParseTimeout(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return Off, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Second {
		return 0, fmt.Errorf("idle timeout %q: want a duration of at least 10s such as 20s, 30m or 1h, or off (the server never goes down by itself)", s)
	}
	return d, nil
}

// FormatTimeout writes a timeout the way ParseTimeout reads it ("off" for Off).
func FormatTimeout(d time.Duration) string {
	if d == Off {
		return "off"
	}
	return d.String()
}

// Activity is one thing that kept the server busy: from Start to End, or still going on when
// End is zero. Start == End is a moment (a command that began and ended between two looks).
type Activity struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end,omitzero"`
	Reason string    `json:"reason"`
}

// Ongoing reports whether the activity still goes on at now.
func (a Activity) Ongoing(now time.Time) bool {
	return !a.Start.After(now) && (a.End.IsZero() || a.End.After(now))
}

// Timeline is what kept a server busy, in any order.
type Timeline []Activity

// Decision is what the policy says at one moment.
type Decision struct {
	// Idle: nothing keeps the server up now.
	Idle bool `json:"idle"`
	// IdleSince is when the last activity ended (the creation when there was none); zero while
	// not idle.
	IdleSince time.Time `json:"idle_since,omitzero"`
	// KeepingUp are the reasons the server is busy now, sorted; empty when idle.
	KeepingUp []string `json:"keeping_up"`
	// DownAt is when the server goes down if nothing happens until then; zero while it is busy
	// and when the timeout is off.
	DownAt time.Time `json:"down_at,omitzero"`
	// Down: go down now (the clean stop, then the delete).
	Down bool `json:"down"`
	// PaidUntil is the end of the billing period the server is in now.
	PaidUntil time.Time `json:"paid_until"`
}

// Decide is the policy (see the package comment): what a server created at created, busy as
// tl says, should do at now with settings s.
func Decide(tl Timeline, created, now time.Time, s Settings) Decision {
	s = s.WithDefaults()
	d := Decision{PaidUntil: PeriodEnd(created, now, s.BillingPeriod), KeepingUp: []string{}}
	last := created
	for _, a := range tl {
		if a.Start.After(now) {
			continue // not yet (a replay's future)
		}
		if a.Ongoing(now) {
			if !slices.Contains(d.KeepingUp, a.Reason) {
				d.KeepingUp = append(d.KeepingUp, a.Reason)
			}
			continue
		}
		end := a.End
		if end.IsZero() || end.Before(a.Start) {
			end = a.Start
		}
		if end.After(last) {
			last = end
		}
	}
	if len(d.KeepingUp) > 0 {
		slices.Sort(d.KeepingUp)
		return d
	}
	d.Idle, d.IdleSince = true, last
	if s.Timeout == Off {
		return d
	}
	at := GoDownAt(created, last.Add(s.Timeout), s.BillingPeriod, s.Margin)
	if now.After(at) && !now.Before(PeriodEnd(created, at, s.BillingPeriod)) {
		// The moment was missed (the agent was not running, the machine was suspended): the
		// period now running is paid already, so the server serves it to its end too.
		at = GoDownAt(created, now, s.BillingPeriod, s.Margin)
	}
	d.DownAt = at
	d.Down = !now.Before(at)
	return d
}

// PeriodEnd is the end of the billing period that contains t, for a server created at
// created: periods are counted from the creation, each one billed once it has started (t
// before the creation is in the first one).
func PeriodEnd(created, t time.Time, period time.Duration) time.Time {
	if period <= 0 {
		period = DefaultBillingPeriod
	}
	n := time.Duration(0)
	if t.After(created) {
		n = t.Sub(created) / period
	}
	return created.Add((n + 1) * period)
}

// GoDownAt is the billing rule, the one place to correct if Hetzner counts differently: a
// server created at created that may go down from earliest on goes down margin before the end
// of the billing period that contains earliest: that period is paid whatever happens, so
// the server stays for it, and leaving margin for the clean stop and the delete keeps the next
// period from starting. When earliest is already within the margin, it goes down at earliest.
//
// Hetzner's rule as this project read it: a server is billed per started hour from its
// creation until it is deleted, powered off or not, up to the monthly price.
func GoDownAt(created, earliest time.Time, period, margin time.Duration) time.Time {
	if period <= 0 {
		period = DefaultBillingPeriod
	}
	margin = min(max(margin, 0), period/2)
	at := PeriodEnd(created, earliest, period).Add(-margin)
	if at.Before(earliest) {
		return earliest
	}
	return at
}

// BilledPeriods is how many billing periods a server that lived from created to deleted is
// billed for: every started period, at least one.
func BilledPeriods(created, deleted time.Time, period time.Duration) int {
	if period <= 0 {
		period = DefaultBillingPeriod
	}
	life := deleted.Sub(created)
	if life <= 0 {
		return 1
	}
	n := int(life / period)
	if life%period != 0 {
		n++
	}
	return n
}
