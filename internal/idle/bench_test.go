package idle

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// The usage traces `make bench-idle` replays. Every trace is generated from a fixed seed, so a
// run is reproducible; what each holds is written next to it.

var monday = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

func clock(day time.Time, hhmm string) time.Time {
	t, err := time.Parse("15:04", hhmm)
	if err != nil {
		panic(err)
	}
	return day.Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute)
}

// burst is a stretch of a developer's work from `from` to `to`: docker commands of a few
// seconds with pauses of 1 to 12 minutes between them (reading, editing), now and then a build
// of 2 to 6 minutes, a `docker logs -f` followed for 10 to 25 minutes, or an ssh shell of 5 to
// 15 minutes. The last command starts before `to`.
func burst(r *rand.Rand, from, to time.Time) Timeline {
	var tl Timeline
	for t := from; t.Before(to); {
		var d time.Duration
		reason := "docker command"
		switch x := r.IntN(20); {
		case x == 0:
			d, reason = time.Duration(10+r.IntN(16))*time.Minute, "docker logs -f"
		case x == 1:
			d, reason = time.Duration(5+r.IntN(11))*time.Minute, "ssh shell"
		case x <= 4:
			d, reason = time.Duration(2+r.IntN(5))*time.Minute, "docker build"
		default:
			d = time.Duration(1+r.IntN(10)) * time.Second
		}
		end := t.Add(d)
		if end.After(to) {
			end = to
		}
		tl = append(tl, Activity{Start: t, End: end, Reason: reason})
		t = end.Add(time.Duration(1+r.IntN(12)) * time.Minute)
	}
	return tl
}

type trace struct {
	name      string
	about     string
	tl        Timeline
	from, to  time.Time
	upAtStart bool
}

func traces() []trace {
	r := rand.New(rand.NewPCG(11, 2026))
	day := burst(r, clock(monday, "09:00"), clock(monday, "12:00"))
	day = append(day, burst(r, clock(monday, "13:00"), clock(monday, "15:00"))...)
	// A meeting: longer than the idle timeout, shorter than an hour.
	day = append(day, burst(r, clock(monday, "15:45"), clock(monday, "18:00"))...)

	var ci Timeline
	for d := range 7 {
		n := monday.AddDate(0, 0, d)
		ci = append(ci, Activity{Start: clock(n, "02:00"), End: clock(n, "02:20"), Reason: "CI job"})
	}

	friday := monday.AddDate(0, 0, 4)
	weekend := burst(r, clock(friday, "15:00"), clock(friday, "18:00"))

	build := Timeline{
		{Start: clock(monday, "09:40"), End: clock(monday, "09:41"), Reason: "docker command"},
		{Start: clock(monday, "10:00"), End: clock(monday, "13:20"), Reason: "docker build (3 h 20 min)"},
	}
	return []trace{
		{"developer's day", "bursts 09:00-12:00 and 13:00-18:00, lunch in between, a meeting 15:00-15:45", day, monday, monday.AddDate(0, 0, 1), false},
		{"nightly CI", "a 20-minute job at 02:00, 7 nights", ci, monday, monday.AddDate(0, 0, 7), false},
		{"untouched weekend", "work Friday 15:00-18:00, no down, nothing until Monday 08:00", weekend, friday, monday.AddDate(0, 0, 7).Add(8 * time.Hour), false},
		{"long build", "one command, then a build of 3 h 20 min", build, monday, monday.AddDate(0, 0, 1), false},
	}
}

// BenchmarkIdleReplay is `make bench-idle`'s first table: each trace under dockbridge's
// policy with its default settings (30 min idle timeout, 1 h billing period, 5 min margin), the
// same timeout without the billing hour, "always on" and the naive "delete after 5 idle
// minutes", replayed with a fake clock ticking every 10 s; then the developer's day under
// shorter idle timeouts. It fails when dockbridge's policy pays more than the floor of its
// timeout on a trace, bills any time twice, pays or wakes more than without the billing hour,
// or wakes more often than the naive policy (fewer on the developer's day). Issue 11's goal of
// billed ÷ needed ≤ 1.10 on the developer's day is printed as met or missed, with the timeouts
// that meet it.
func BenchmarkIdleReplay(b *testing.B) {
	var out strings.Builder
	for range b.N {
		out.Reset()
		replayTable(&out, b)
	}
	fmt.Fprint(os.Stdout, out.String())
}

func replayTable(out *strings.Builder, b *testing.B) {
	const step = 10 * time.Second
	ours := Dockbridge("dockbridge (30 min, hour-aware)", Settings{Timeout: DefaultTimeout})
	plain := AfterIdle("30 idle min, not hour-aware", DefaultTimeout)
	naive := AfterIdle("naive: delete after 5 idle min", 5*time.Minute)
	fmt.Fprintln(out, "\nIdle policy replayed on usage traces (fake clock, 10 s ticks; every started hour of each server billed, from its creation)")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "trace\tpolicy\tbilled h\tneeded h\tbilled ÷ needed\tfloor h (30 min)\twakes\tbilled twice\t")
	var failed []string
	var devRatio float64
	for _, tr := range traces() {
		needed := Needed(tr.tl, DefaultBillingPeriod)
		floor := Floor(tr.tl, DefaultBillingPeriod, DefaultTimeout)
		results := map[string]ReplayResult{}
		for _, p := range []Policy{ours, plain, AlwaysOn(), naive} {
			up := tr.upAtStart || p.Name == "always on"
			r := Replay(tr.tl, tr.from, tr.to, p, step, DefaultBillingPeriod, up)
			results[p.Name] = r
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%d\t%d\t%d (%.0f min)\t\n", tr.name, p.Name, r.Billed, needed, float64(r.Billed)/float64(needed), floor, r.Wakes, r.BilledTwice, r.BilledTwiceMinutes)
		}
		o, n, pl := results[ours.Name], results[naive.Name], results[plain.Name]
		if o.Billed > pl.Billed || o.Wakes > pl.Wakes {
			failed = append(failed, fmt.Sprintf("%s: dockbridge billed %d h with %d wakes, the same timeout without the billing hour %d h with %d", tr.name, o.Billed, o.Wakes, pl.Billed, pl.Wakes))
		}
		if o.Billed > floor {
			failed = append(failed, fmt.Sprintf("%s: dockbridge billed %d h, the floor of a 30 min timeout is %d h", tr.name, o.Billed, floor))
		}
		if o.BilledTwice != 0 {
			failed = append(failed, fmt.Sprintf("%s: %d servers created within the paid hour of the one before", tr.name, o.BilledTwice))
		}
		if o.Wakes > n.Wakes || (tr.name == "developer's day" && o.Wakes >= n.Wakes) {
			failed = append(failed, fmt.Sprintf("%s: %d wakes, the naive policy %d", tr.name, o.Wakes, n.Wakes))
		}
		if tr.name == "developer's day" {
			devRatio = float64(o.Billed) / float64(needed)
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "needed h: the fewest server-hours that serve every activity with a server already up (an oracle that knows the future and deletes the server the second work stops).")
	fmt.Fprintln(out, "floor h: the same for a policy that must wait 30 idle minutes before it deletes (the least any such policy pays, even knowing the future).")
	for _, tr := range traces() {
		fmt.Fprintf(out, "  %s: %s (%d activities)\n", tr.name, tr.about, len(tr.tl))
	}

	tr := traces()[0]
	needed := Needed(tr.tl, DefaultBillingPeriod)
	fmt.Fprintf(out, "\nThe developer's day under shorter idle timeouts (docker dockbridge settings set idle_timeout ...):\n")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "idle timeout\tbilled h\tbilled ÷ needed\tfloor h\twakes\tbilled twice\t")
	var meets []string
	for _, to := range []time.Duration{5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 20 * time.Minute, 30 * time.Minute, 45 * time.Minute} {
		r := Replay(tr.tl, tr.from, tr.to, Dockbridge("", Settings{Timeout: to}), step, DefaultBillingPeriod, false)
		ratio := float64(r.Billed) / float64(needed)
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%d\t%d\t%d\t\n", FormatTimeout(to), r.Billed, ratio, Floor(tr.tl, DefaultBillingPeriod, to), r.Wakes, r.BilledTwice)
		if ratio <= 1.10 {
			meets = append(meets, FormatTimeout(to))
		}
	}
	tw.Flush()
	if len(meets) == 0 {
		meets = []string{"none of those (the oracle deletes the server the second the work stops, at 11:59 and 17:59)"}
	}
	if devRatio <= 1.10 {
		fmt.Fprintf(out, "issue 11's goal billed ÷ needed ≤ 1.10 on the developer's day: met (%.2f)\n", devRatio)
	} else {
		fmt.Fprintf(out, "issue 11's goal billed ÷ needed ≤ 1.10 on the developer's day: MISSED with the default 30 min timeout (%.2f): the work before lunch and in the evening ends\n"+
			"  less than 30 min before a paid hour ends, so any policy that waits 30 idle minutes pays that hour (the floor). Met with idle timeouts: %s\n", devRatio, strings.Join(meets, ", "))
	}
	if len(failed) > 0 {
		fmt.Fprintln(out, "FAILED:\n  "+strings.Join(failed, "\n  "))
		b.Errorf("idle replay: %s", strings.Join(failed, "; "))
	} else {
		fmt.Fprintln(out, "checked: dockbridge pays its timeout's floor on every trace, bills nothing twice, pays and wakes no more than without the billing hour, wakes no more often than the naive policy (less on the developer's day)")
	}
}
