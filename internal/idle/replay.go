package idle

import (
	"slices"
	"time"
)

// A Policy says whether a server should go down at now (the benchmark compares policies).
type Policy struct {
	Name string
	Down func(tl Timeline, created, now time.Time) bool
}

// Dockbridge is this package's policy with settings s.
func Dockbridge(name string, s Settings) Policy {
	return Policy{Name: name, Down: func(tl Timeline, created, now time.Time) bool { return Decide(tl, created, now, s).Down }}
}

// AlwaysOn never lets a server go down.
func AlwaysOn() Policy {
	return Policy{Name: "always on", Down: func(Timeline, time.Time, time.Time) bool { return false }}
}

// AfterIdle is the naive policy: down as soon as the server has been idle for d, whatever the
// hour.
func AfterIdle(name string, d time.Duration) Policy {
	return Policy{Name: name, Down: func(tl Timeline, created, now time.Time) bool {
		dec := Decide(tl, created, now, Settings{Timeout: Off})
		return dec.Idle && now.Sub(dec.IdleSince) >= d
	}}
}

// ReplayResult is what one policy cost on one trace.
type ReplayResult struct {
	Policy string
	// Billed is the billed server-periods (hours): every started period of every server.
	Billed int
	// Wakes is how many times a command found no server and had to wait for one.
	Wakes int
	// BilledTwice counts servers created while the previous server's last paid period had not
	// ended: that time is paid twice. BilledTwiceMinutes is how much of it.
	BilledTwice        int
	BilledTwiceMinutes float64
}

// Replay runs trace from `from` to `to` under p with a fake clock that ticks every step: a
// server is created when an activity starts and none exists (a wake; with upAtStart one exists
// at from, created then), asked p.Down every tick while it exists, and deleted when p says
// so. A server still up at `to` is billed until then.
func Replay(trace Timeline, from, to time.Time, p Policy, step, period time.Duration, upAtStart bool) ReplayResult {
	res := ReplayResult{Policy: p.Name}
	starts := make([]time.Time, 0, len(trace))
	for _, a := range trace {
		starts = append(starts, a.Start)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	var created, paidEnd time.Time
	up := upAtStart
	if up {
		created = from
	}
	next := 0 // first start not yet seen
	for now := from; now.Before(to); now = now.Add(step) {
		wanted := false
		for next < len(starts) && !starts[next].After(now) {
			wanted = true
			next++
		}
		if !wanted {
			for _, a := range trace {
				if a.Ongoing(now) {
					wanted = true
					break
				}
			}
		}
		if !up && wanted {
			up, created = true, now
			res.Wakes++
			if created.Before(paidEnd) {
				res.BilledTwice++
				res.BilledTwiceMinutes += paidEnd.Sub(created).Minutes()
			}
			continue
		}
		if up && p.Down(trace, created, now) {
			up = false
			res.Billed += BilledPeriods(created, now, period)
			paidEnd = PeriodEnd(created, now, period)
		}
	}
	if up {
		res.Billed += BilledPeriods(created, to, period)
	}
	return res
}

// Needed is the fewest billing periods that serve every activity of trace with a server that is
// already up: what an oracle that knows the future pays, creating a server at the start of a
// stretch of work and deleting it at the stretch's end, and keeping one server across a pause
// where that is cheaper (an exact minimum over every way to split the work).
func Needed(trace Timeline, period time.Duration) int { return Floor(trace, period, 0) }

// Floor is Needed for a policy that keeps a server at least timeout after its last activity:
// the least any policy honouring that timeout can pay, even one that knows the future.
func Floor(trace Timeline, period, timeout time.Duration) int {
	type span struct{ start, end time.Time }
	var spans []span
	for _, a := range trace {
		end := a.End
		if end.IsZero() || end.Before(a.Start) {
			end = a.Start
		}
		spans = append(spans, span{a.Start, end})
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && !s.start.After(merged[n-1].end) {
			if s.end.After(merged[n-1].end) {
				merged[n-1].end = s.end
			}
			continue
		}
		merged = append(merged, s)
	}
	// best[j]: the fewest periods for merged[:j]; the last server serves merged[i:j].
	best := make([]int, len(merged)+1)
	for j := 1; j <= len(merged); j++ {
		best[j] = -1
		end := merged[j-1].end.Add(timeout)
		for i := j - 1; i >= 0; i-- {
			if i > 0 && merged[i].start.Before(merged[i-1].end.Add(timeout)) {
				continue // the server before is still up (its timeout runs): no split here
			}
			c := best[i] + BilledPeriods(merged[i].start, end, period)
			if best[j] < 0 || c < best[j] {
				best[j] = c
			}
		}
	}
	return best[len(merged)]
}
