package schedule

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Health levels, as the host's health check writes them.
const (
	OK       = "OK"
	Warning  = "WARNING"
	Critical = "CRITICAL"
)

// Finding is one thing the health check reports about scheduled backups.
type Finding struct {
	Level    string `json:"level"`
	Schedule string `json:"schedule"`
	Volume   string `json:"volume,omitempty"`
	Message  string `json:"message"`
}

// FailuresCritical is how many failed runs in a row make a volume CRITICAL (the volume guide's
// "backup failure 2 consecutive days" for a daily schedule).
const FailuresCritical = 2

// volumesOf lists the volumes a schedule's findings are about: its own, or for --all the ones
// its runs have met.
func volumesOf(s Schedule, ss *ScheduleState) []string {
	if !s.All {
		return s.Volumes
	}
	var out []string
	if ss != nil {
		for v := range ss.Volumes {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// StaleAfter is when a volume's backups count as stale: once two slots have passed since the
// slot of its last good backup (since the schedule's creation when it never had one), i.e.
// the last backup is older than twice the interval, plus the time a run takes (its last
// duration and the timer's minute).
func StaleAfter(s Schedule, vs *VolumeState) time.Time {
	base := s.Created
	var took time.Duration
	if vs != nil && !vs.LastSuccessSlot.IsZero() {
		base = vs.LastSuccessSlot
		took = time.Duration(vs.LastDurationSeconds * float64(time.Second))
	}
	return s.Next(s.Next(base)).Add(time.Minute + took)
}

// Assess judges every schedule's state at now: CRITICAL after FailuresCritical failed runs in a
// row or a failed restore drill, WARNING when the newest good backup is older than twice the
// interval (StaleAfter).
func Assess(c Config, st State, now time.Time) []Finding {
	var out []Finding
	for _, s := range c.Schedules {
		ss := st.Schedules[s.ID]
		vols := volumesOf(s, ss)
		if s.All && len(vols) == 0 {
			// Never ran: judged as one.
			if now.After(StaleAfter(s, nil)) {
				out = append(out, Finding{Level: Warning, Schedule: s.ID,
					Message: fmt.Sprintf("schedule %s (%s, %s) has not backed up anything since it was made %s ago", s.ID, s.What(), s.When(), ago(now, s.Created))})
			}
			continue
		}
		for _, v := range vols {
			var vs *VolumeState
			if ss != nil {
				vs = ss.Volumes[v]
			}
			if vs != nil && vs.ConsecutiveFailures >= FailuresCritical {
				out = append(out, Finding{Level: Critical, Schedule: s.ID, Volume: v, Message: fmt.Sprintf(
					"backup of %s (schedule %s) failed %d times in a row, last %s ago: %s", v, s.ID, vs.ConsecutiveFailures, ago(now, vs.LastFailure), oneLine(vs.LastError))})
			}
			if vs != nil && vs.DrillError != "" {
				out = append(out, Finding{Level: Critical, Schedule: s.ID, Volume: v, Message: fmt.Sprintf(
					"restore drill of %s (schedule %s) failed %s ago: %s", v, s.ID, ago(now, vs.LastDrillRun), oneLine(vs.DrillError))})
			}
			if now.After(StaleAfter(s, vs)) {
				msg := fmt.Sprintf("no backup of %s (schedule %s, %s) since it was made %s ago", v, s.ID, s.When(), ago(now, s.Created))
				if vs != nil && !vs.LastSuccess.IsZero() {
					msg = fmt.Sprintf("the last backup of %s is %s old (schedule %s, %s): more than twice the interval", v, ago(now, vs.LastSuccess), s.ID, s.When())
				}
				out = append(out, Finding{Level: Warning, Schedule: s.ID, Volume: v, Message: msg})
			}
		}
	}
	return out
}

// Worst is the highest level among findings (OK for none).
func Worst(fs []Finding) string {
	lvl := OK
	for _, f := range fs {
		switch {
		case f.Level == Critical:
			lvl = Critical
		case f.Level == Warning && lvl == OK:
			lvl = Warning
		}
	}
	return lvl
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return shortDuration(d.Round(time.Minute))
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// oneLine keeps a message on one line and without double quotes (the health log's format).
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, `"`, "'")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
