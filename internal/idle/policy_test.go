package idle

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// t0 is a server's creation in every case: 09:00:20 on a Monday.
var t0 = time.Date(2026, 11, 30, 9, 0, 20, 0, time.UTC)

func at(hhmm string) time.Time {
	d, err := time.ParseDuration(hhmm)
	if err != nil {
		panic(err)
	}
	return t0.Add(d)
}

func TestGoDownAt(t *testing.T) {
	h, m := time.Hour, 5*time.Minute
	for _, c := range []struct {
		name     string
		earliest time.Time
		want     time.Time
	}{
		{"early in the first hour: stays until 5 min before it ends", at("10m"), at("55m")},
		{"exactly at the margin", at("55m"), at("55m")},
		{"inside the margin: at once (the hour has not ended yet)", at("57m"), at("57m")},
		{"at the hour's end: the next hour is started, so the whole of it", at("1h"), at("1h55m")},
		{"third hour", at("2h30m"), at("2h55m")},
		{"before the creation counts as the first hour", t0.Add(-time.Minute), at("55m")},
	} {
		if got := GoDownAt(t0, c.earliest, h, m); !got.Equal(c.want) {
			t.Errorf("%s: GoDownAt(+%s) = +%s, want +%s", c.name, c.earliest.Sub(t0), got.Sub(t0), c.want.Sub(t0))
		}
	}
	// A margin of more than half the period is bounded to half of it.
	if got, want := GoDownAt(t0, at("1s"), time.Minute, time.Hour), at("30s"); !got.Equal(want) {
		t.Errorf("margin over half the period: +%s, want +%s", got.Sub(t0), want.Sub(t0))
	}
	// The billing period comes from the settings: with 40 s periods and a 5 s margin.
	if got, want := GoDownAt(t0, at("45s"), 40*time.Second, 5*time.Second), at("75s"); !got.Equal(want) {
		t.Errorf("40 s periods: +%s, want +%s", got.Sub(t0), want.Sub(t0))
	}
}

func TestBilledPeriods(t *testing.T) {
	for _, c := range []struct {
		life time.Duration
		want int
	}{{0, 1}, {time.Second, 1}, {time.Hour, 1}, {time.Hour + time.Second, 2}, {3*time.Hour + 55*time.Minute, 4}} {
		if got := BilledPeriods(t0, t0.Add(c.life), time.Hour); got != c.want {
			t.Errorf("BilledPeriods(%s) = %d, want %d", c.life, got, c.want)
		}
	}
}

func TestDecide(t *testing.T) {
	def := Settings{Timeout: 30 * time.Minute}
	for _, c := range []struct {
		name string
		tl   Timeline
		now  time.Time
		s    Settings
		want Decision
	}{
		{
			name: "busy: a docker command in flight keeps it up, whatever the hour",
			tl:   Timeline{{Start: at("5m"), Reason: "docker command"}},
			now:  at("3h56m"), s: def,
			want: Decision{KeepingUp: []string{"docker command"}, PaidUntil: at("4h")},
		},
		{
			name: "reasons are listed once, sorted",
			tl: Timeline{{Start: at("1m"), Reason: "ssh shell"}, {Start: at("2m"), Reason: "container db (dockbridge.keep-alive=true)"},
				{Start: at("3m"), Reason: "ssh shell"}, {Start: at("1m"), End: at("2m"), Reason: "over"}},
			now: at("10m"), s: def,
			want: Decision{KeepingUp: []string{"container db (dockbridge.keep-alive=true)", "ssh shell"}, PaidUntil: at("1h")},
		},
		{
			name: "never used: idle since the creation, down 5 min before the first hour ends",
			now:  at("20m"), s: def,
			want: Decision{Idle: true, IdleSince: t0, KeepingUp: []string{}, DownAt: at("55m"), PaidUntil: at("1h")},
		},
		{
			name: "idle 30 min reached inside the hour: still waits for the end of the paid hour",
			tl:   Timeline{{Start: at("2m"), End: at("10m"), Reason: "docker command"}},
			now:  at("41m"), s: def,
			want: Decision{Idle: true, IdleSince: at("10m"), KeepingUp: []string{}, DownAt: at("55m"), PaidUntil: at("1h")},
		},
		{
			name: "at the margin: down",
			tl:   Timeline{{Start: at("2m"), End: at("10m"), Reason: "docker command"}},
			now:  at("55m"), s: def,
			want: Decision{Idle: true, IdleSince: at("10m"), KeepingUp: []string{}, DownAt: at("55m"), Down: true, PaidUntil: at("1h")},
		},
		{
			name: "timeout ends in the next hour: that hour is paid anyway, so it serves it to its end",
			tl:   Timeline{{Start: at("40m"), End: at("40m"), Reason: "a command ended"}},
			now:  at("56m"), s: def,
			want: Decision{Idle: true, IdleSince: at("40m"), KeepingUp: []string{}, DownAt: at("1h55m"), PaidUntil: at("1h")},
		},
		{
			name: "work in the free window makes it busy again",
			tl:   Timeline{{Start: at("2m"), End: at("10m"), Reason: "a"}, {Start: at("50m"), End: at("51m"), Reason: "b"}},
			now:  at("55m"), s: def,
			want: Decision{Idle: true, IdleSince: at("51m"), KeepingUp: []string{}, DownAt: at("1h55m"), PaidUntil: at("1h")},
		},
		{
			name: "timeout off: idle, but never down",
			tl:   Timeline{{Start: at("2m"), End: at("3m"), Reason: "a"}},
			now:  at("100h"), s: Settings{Timeout: Off},
			want: Decision{Idle: true, IdleSince: at("3m"), KeepingUp: []string{}, PaidUntil: at("100h").Add(time.Hour)},
		},
		{
			name: "the moment was missed (agent not running): the new hour is paid, so the next margin",
			tl:   Timeline{{Start: at("2m"), End: at("10m"), Reason: "a"}},
			now:  at("1h3m"), s: def,
			want: Decision{Idle: true, IdleSince: at("10m"), KeepingUp: []string{}, DownAt: at("1h55m"), PaidUntil: at("2h")},
		},
		{
			name: "late, but still inside the paid hour: down now",
			tl:   Timeline{{Start: at("2m"), End: at("10m"), Reason: "a"}},
			now:  at("58m"), s: def,
			want: Decision{Idle: true, IdleSince: at("10m"), KeepingUp: []string{}, DownAt: at("55m"), Down: true, PaidUntil: at("1h")},
		},
		{
			name: "short billing period and timeout (the simulator's tests)",
			tl:   Timeline{{Start: at("5s"), End: at("12s"), Reason: "a"}},
			now:  at("35s"), s: Settings{Timeout: 20 * time.Second, BillingPeriod: 40 * time.Second, Margin: 5 * time.Second},
			want: Decision{Idle: true, IdleSince: at("12s"), KeepingUp: []string{}, DownAt: at("35s"), Down: true, PaidUntil: at("40s")},
		},
		{
			name: "an activity that starts later (a replay's future) is not seen yet",
			tl:   Timeline{{Start: at("2h"), Reason: "later"}},
			now:  at("56m"), s: def,
			want: Decision{Idle: true, IdleSince: t0, KeepingUp: []string{}, DownAt: at("55m"), Down: true, PaidUntil: at("1h")},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Decide(c.tl, t0, c.now, c.s)
			if got.Idle != c.want.Idle || !got.IdleSince.Equal(c.want.IdleSince) || !got.DownAt.Equal(c.want.DownAt) ||
				got.Down != c.want.Down || !got.PaidUntil.Equal(c.want.PaidUntil) || !slices.Equal(got.KeepingUp, c.want.KeepingUp) {
				t.Errorf("Decide at +%s\n got  %s\n want %s", c.now.Sub(t0), show(got), show(c.want))
			}
		})
	}
}

func show(d Decision) string {
	rel := func(x time.Time) string {
		if x.IsZero() {
			return "-"
		}
		return "+" + x.Sub(t0).String()
	}
	return fmt.Sprintf("idle=%v since=%s down_at=%s down=%v paid_until=%s keeping_up=[%s]",
		d.Idle, rel(d.IdleSince), rel(d.DownAt), d.Down, rel(d.PaidUntil), strings.Join(d.KeepingUp, ", "))
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"20s": 20 * time.Second, "30m": 30 * time.Minute, "off": Off, "OFF": Off, " 1h30m ": 90 * time.Minute} {
		if got, err := ParseTimeout(in); err != nil || got != want {
			t.Errorf("ParseTimeout(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5s", "30", "-1m", "never", "0"} {
		if _, err := ParseTimeout(in); err == nil {
			t.Errorf("ParseTimeout(%q): no error", in)
		}
	}
	if FormatTimeout(Off) != "off" || FormatTimeout(45*time.Minute) != "45m0s" {
		t.Errorf("FormatTimeout: %q %q", FormatTimeout(Off), FormatTimeout(45*time.Minute))
	}
}
