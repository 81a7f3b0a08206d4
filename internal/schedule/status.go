package schedule

import (
	"slices"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// Status is every schedule and every volume's backup state on a host, as `backup schedule ls`,
// `status` and the metrics show it.
type Status struct {
	Now time.Time `json:"now"`
	// Running: a run holds the lock now.
	Running   bool             `json:"running"`
	Schedules []ScheduleStatus `json:"schedules"`
	Volumes   []VolumeStatus   `json:"volumes"`
	// Unscheduled are the engine's volumes no schedule backs up.
	Unscheduled []string  `json:"unscheduled,omitempty"`
	Findings    []Finding `json:"findings,omitempty"`
	Level       string    `json:"level"`
}

// ScheduleStatus is a schedule with its last run and its next.
type ScheduleStatus struct {
	Schedule
	When         string    `json:"when"`
	NextRun      time.Time `json:"next_run,omitzero"`
	LastRunStart time.Time `json:"last_run_start,omitzero"`
	LastRunEnd   time.Time `json:"last_run_end,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastDrill    time.Time `json:"last_drill,omitzero"`
}

// VolumeStatus is one volume's backups in one schedule.
type VolumeStatus struct {
	Volume   string `json:"volume"`
	Schedule string `json:"schedule"`
	To       string `json:"to"`
	When     string `json:"when"`
	VolumeState
	NextRun time.Time `json:"next_run,omitzero"`
	Level   string    `json:"health"`
}

// MakeStatus puts together what a host knows: its schedules, their state, the engine's
// volumes (nil when unknown) and whether a run holds the lock.
func MakeStatus(c Config, st State, now time.Time, engineVolumes []string, running bool) Status {
	out := Status{Now: now.UTC(), Running: running, Findings: Assess(c, st, now)}
	out.Level = Worst(out.Findings)
	covered := map[string]bool{}
	all := false
	for _, s := range c.Schedules {
		ss := st.Schedules[s.ID]
		row := ScheduleStatus{Schedule: s, When: s.When()}
		var lastSlot time.Time
		if ss != nil {
			lastSlot = ss.LastSlot
			row.LastRunStart, row.LastRunEnd, row.LastError, row.LastDrill = ss.LastRunStart, ss.LastRunEnd, ss.LastError, ss.LastDrill
		}
		row.NextRun = s.NextDue(lastSlot)
		out.Schedules = append(out.Schedules, row)
		all = all || s.All
		vols := volumesOf(s, ss)
		if s.All {
			for _, v := range engineVolumes {
				if !slices.Contains(vols, v) && !strings.HasPrefix(v, "dockbridge-drill-") {
					vols = append(vols, v)
				}
			}
			slices.Sort(vols)
		}
		for _, v := range vols {
			covered[v] = true
			vs := VolumeStatus{Volume: v, Schedule: s.ID, To: s.To, When: s.When(), NextRun: row.NextRun, Level: OK}
			if ss != nil && ss.Volumes[v] != nil {
				vs.VolumeState = *ss.Volumes[v]
			}
			for _, f := range out.Findings {
				if f.Schedule == s.ID && (f.Volume == v || f.Volume == "") {
					vs.Level = Worst([]Finding{{Level: vs.Level}, f})
				}
			}
			out.Volumes = append(out.Volumes, vs)
		}
	}
	if !all {
		for _, v := range engineVolumes {
			if !covered[v] && !strings.HasPrefix(v, "dockbridge-drill-") {
				out.Unscheduled = append(out.Unscheduled, v)
			}
		}
	}
	return out
}

// Metrics are the volumes' scheduled backups as the metrics command exports them.
func (s Status) Metrics() []volumeops.BackupMetrics {
	var out []volumeops.BackupMetrics
	for _, v := range s.Volumes {
		fails := v.ConsecutiveFailures
		out = append(out, volumeops.BackupMetrics{Volume: v.Volume, Schedule: v.Schedule,
			LastSuccess: v.LastSuccess, LastSize: v.LastSizeBytes, LastDuration: v.LastDurationSeconds,
			ConsecutiveFailures: &fails, LastRestoreVerified: v.LastRestoreVerified, NextRun: v.NextRun, Health: v.Level})
	}
	return out
}
