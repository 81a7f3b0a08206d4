package schedule

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// State is what the runs of every schedule left: on the data volume, so it outlives the
// server (a failed backup before an idle delete is there for the next server's health check).
type State struct {
	Schedules map[string]*ScheduleState `json:"schedules"`
}

// ScheduleState is one schedule's runs.
type ScheduleState struct {
	// LastSlot is the slot of the last attempt: the next is due after it.
	LastSlot     time.Time `json:"last_slot,omitzero"`
	LastRunStart time.Time `json:"last_run_start,omitzero"`
	LastRunEnd   time.Time `json:"last_run_end,omitzero"`
	// LastError is a failure of the run as a whole (the bucket unreachable, ...).
	LastError string `json:"last_error,omitempty"`
	// LastDrill is when restore drills last ran for this schedule.
	LastDrill time.Time               `json:"last_drill,omitzero"`
	Volumes   map[string]*VolumeState `json:"volumes"`
}

// VolumeState is one volume's backups in one schedule.
type VolumeState struct {
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// LastSuccess is when the last good archive was stored, LastSuccessSlot the slot it was for.
	LastSuccess         time.Time `json:"last_success,omitzero"`
	LastSuccessSlot     time.Time `json:"last_success_slot,omitzero"`
	LastArchive         string    `json:"last_archive,omitempty"`
	LastSizeBytes       int64     `json:"last_size_bytes,omitempty"`
	LastDurationSeconds float64   `json:"last_duration_seconds,omitempty"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastFailure         time.Time `json:"last_failure,omitzero"`
	LastError           string    `json:"last_error,omitempty"`
	// LastRestoreVerified is when a restore drill of LastRestoreArchive last passed.
	LastRestoreVerified time.Time `json:"last_restore_verified,omitzero"`
	LastRestoreArchive  string    `json:"last_restore_archive,omitempty"`
	// DrillError is set while the last drill failed.
	DrillError   string    `json:"drill_error,omitempty"`
	LastDrillRun time.Time `json:"last_drill_run,omitzero"`
}

func (st *State) schedule(id string) *ScheduleState {
	if st.Schedules == nil {
		st.Schedules = map[string]*ScheduleState{}
	}
	ss := st.Schedules[id]
	if ss == nil {
		ss = &ScheduleState{}
		st.Schedules[id] = ss
	}
	if ss.Volumes == nil {
		ss.Volumes = map[string]*VolumeState{}
	}
	return ss
}

func (ss *ScheduleState) volume(name string) *VolumeState {
	v := ss.Volumes[name]
	if v == nil {
		v = &VolumeState{}
		ss.Volumes[name] = v
	}
	return v
}

// The files in the host's backup directory.
const (
	SchedulesFile = "schedules.json"
	StateFile     = "state.json"
	MetricsFile   = "metrics.prom"
	runLockFile   = "run.lock"
	configLock    = "schedules.lock"
	journalFile   = "stopped.json"
)

// Config is the host's schedules file.
type Config struct {
	Schedules []Schedule `json:"schedules"`
}

// Find returns the schedule with id.
func (c Config) Find(id string) (Schedule, bool) {
	i := slices.IndexFunc(c.Schedules, func(s Schedule) bool { return s.ID == id })
	if i < 0 {
		return Schedule{}, false
	}
	return c.Schedules[i], true
}

// readJSON reads path into v; a missing file leaves v as it is.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeJSON writes v to path atomically (temp file, fsync, rename), 0600.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
