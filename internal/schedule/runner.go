package schedule

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// Host is a dockbridge host's side of scheduled backups: its backup directory on the data
// volume (schedules, state, metrics, the run lock), its secrets directory (each schedule's S3
// credentials) and the local Docker engine.
type Host struct {
	Dir        string
	SecretsDir string
	Engine     *volumeops.Engine
	// OpenStore opens a schedule's bucket with its credentials (default: backup.OpenStore).
	OpenStore func(ctx context.Context, s Schedule, c Credentials) (backup.Store, error)
	// DockerActive reports whether the Docker service runs (default: systemctl is-active
	// docker.service). A run that finds it stopped (for an fsck of the data volume, say) does
	// nothing and counts no attempt: touching Docker's socket would start it again.
	DockerActive func(ctx context.Context) bool
	// Log receives progress lines (the journal, on the host).
	Log io.Writer
}

// Credentials are a schedule's S3 keys, from its secret file.
type Credentials struct {
	AccessKey, SecretKey, SessionToken string
}

// SecretFile is where a schedule's credentials are kept (0600 in the 0700 secrets directory):
// AWS_ACCESS_KEY_ID=, AWS_SECRET_ACCESS_KEY= and AWS_SESSION_TOKEN= lines.
func SecretFile(secretsDir, id string) string {
	return filepath.Join(secretsDir, "backup-"+id+".env")
}

// ReadCredentials reads a schedule's secret file.
func ReadCredentials(secretsDir, id string) (Credentials, error) {
	var c Credentials
	path := SecretFile(secretsDir, id)
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("the S3 credentials of schedule %s: %w (run `docker dockbridge backup schedule` again to store them)", id, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch k {
		case "AWS_ACCESS_KEY_ID":
			c.AccessKey = v
		case "AWS_SECRET_ACCESS_KEY":
			c.SecretKey = v
		case "AWS_SESSION_TOKEN":
			c.SessionToken = v
		}
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return c, fmt.Errorf("%s has no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: run `docker dockbridge backup schedule` again with them in the environment", path)
	}
	return c, nil
}

// Redact removes the credentials from a message (what is recorded and logged).
func (c Credentials) Redact(s string) string {
	for _, secret := range []string{c.SecretKey, c.SessionToken, c.AccessKey} {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "<redacted>")
		}
	}
	return s
}

// Store opens a schedule's bucket.
func (h *Host) Store(ctx context.Context, s Schedule) (backup.Store, Credentials, error) {
	c, err := ReadCredentials(h.SecretsDir, s.ID)
	if err != nil {
		return nil, c, err
	}
	open := h.OpenStore
	if open == nil {
		open = OpenS3
	}
	st, err := open(ctx, s, c)
	if err != nil {
		return nil, c, errors.New(c.Redact(err.Error()))
	}
	return st, c, nil
}

// OpenS3 opens a schedule's bucket with credentials; it must exist.
func OpenS3(ctx context.Context, s Schedule, c Credentials) (backup.Store, error) {
	return backup.OpenStore(ctx, s.To, backup.S3Config{Endpoint: s.S3.Endpoint, Region: s.S3.Region,
		AccessKey: c.AccessKey, SecretKey: c.SecretKey, SessionToken: c.SessionToken, PartSize: s.S3.PartSize})
}

func (h *Host) logf(format string, args ...any) {
	if h.Log != nil {
		fmt.Fprintf(h.Log, format+"\n", args...)
	}
}

func systemdActive(ctx context.Context) bool {
	if _, err := exec.LookPath("systemctl"); err != nil {
		return true // not systemd: nothing stops Docker behind our back
	}
	return exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", "docker.service").Run() == nil
}

// LoadConfig reads the host's schedules.
func (h *Host) LoadConfig() (Config, error) {
	var c Config
	err := readJSON(filepath.Join(h.Dir, SchedulesFile), &c)
	return c, err
}

// LoadState reads what the runs left.
func (h *Host) LoadState() (State, error) {
	var st State
	err := readJSON(filepath.Join(h.Dir, StateFile), &st)
	return st, err
}

// Running reports whether a run holds the lock.
func (h *Host) Running() bool { return locked(filepath.Join(h.Dir, runLockFile)) }

// StaleUploadAge is when an unfinished upload of an archive counts as a killed backup's.
const StaleUploadAge = 24 * time.Hour

// RunOptions say what a run does.
type RunOptions struct {
	// Now is the clock (default time.Now). A run with another clock names its archives and
	// applies the retention at that time (restore drills and tests).
	Now func() time.Time
	// DueBy: the schedules whose next slot is at or before it run (default: now). An idle
	// server about to delete itself may pass a later time, to take the backups that would fall
	// due while it is gone.
	DueBy time.Time
	// Deadline bounds the run: a backup still going then is stopped, its archive is never
	// listed, its containers are started again, and it is recorded as failed.
	Deadline time.Time
	// Only runs these schedules now, due or not.
	Only []string
	// Drill runs a restore drill of each volume's newest archive after the backup, whatever
	// the schedule says; NoBackup skips the backup (a drill alone).
	Drill, NoBackup bool
}

func (o RunOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// RunReport is what one call of RunDue did.
type RunReport struct {
	// Skipped says why nothing ran (Docker is stopped).
	Skipped string      `json:"skipped,omitempty"`
	Runs    []RunResult `json:"runs"`
}

// RunResult is one schedule's run.
type RunResult struct {
	Schedule string         `json:"schedule"`
	Slot     time.Time      `json:"slot"`
	Started  time.Time      `json:"started"`
	Ended    time.Time      `json:"ended"`
	Volumes  []VolumeResult `json:"volumes,omitempty"`
	Deleted  []string       `json:"pruned,omitempty"`
	// AbortedUploads counts the unfinished uploads of killed backups that were aborted.
	AbortedUploads int           `json:"aborted_uploads,omitempty"`
	PruneError     string        `json:"prune_error,omitempty"`
	Drills         []DrillResult `json:"drills,omitempty"`
	Error          string        `json:"error,omitempty"`
}

// VolumeResult is one volume's backup in a run.
type VolumeResult struct {
	Volume  string  `json:"volume"`
	Archive string  `json:"archive,omitempty"`
	Size    int64   `json:"size_bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// DrillResult is one restore drill in a run.
type DrillResult struct {
	Volume  string       `json:"volume"`
	Archive string       `json:"archive,omitempty"`
	Found   backup.Stats `json:"found"`
	Seconds float64      `json:"seconds,omitempty"`
	Error   string       `json:"error,omitempty"`
}

// Failed reports whether anything in the run failed.
func (r RunReport) Failed() error {
	var errs []error
	for _, run := range r.Runs {
		if run.Error != "" {
			errs = append(errs, fmt.Errorf("schedule %s: %s", run.Schedule, run.Error))
		}
		for _, v := range run.Volumes {
			if v.Error != "" {
				errs = append(errs, fmt.Errorf("schedule %s: %s", run.Schedule, v.Error))
			}
		}
		for _, d := range run.Drills {
			if d.Error != "" {
				errs = append(errs, fmt.Errorf("schedule %s: %s", run.Schedule, d.Error))
			}
		}
	}
	return errors.Join(errs...)
}

// RunDue runs every backup that is due (RunOptions.DueBy), one schedule after the other,
// within RunOptions.Deadline: the backup, then the retention, then a restore drill when one is
// due. Only one run goes at a time on a host (it waits for the lock, until the deadline). A
// run first starts the containers a killed run left stopped. What each run did is recorded in
// the state file after every step, and the metrics file is written at the end. The error is
// about the run itself (the lock, the files); failed backups are in the report (Failed) and
// the state.
func (h *Host) RunDue(ctx context.Context, o RunOptions) (RunReport, error) {
	var rep RunReport
	if !o.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, o.Deadline)
		defer cancel()
	}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return rep, err
	}
	unlock, err := lock(ctx, filepath.Join(h.Dir, runLockFile))
	if err != nil {
		return rep, err
	}
	defer unlock()
	active := h.DockerActive
	if active == nil {
		active = systemdActive
	}
	if !active(ctx) {
		rep.Skipped = "Docker is not running (stopped for maintenance?): nothing was backed up, and no attempt counted"
		h.logf("%s", rep.Skipped)
		return rep, nil
	}
	h.recover(ctx)
	h.Journal()
	cfg, err := h.LoadConfig()
	if err != nil {
		return rep, err
	}
	st, err := h.LoadState()
	if err != nil {
		// A damaged state file must not stop the backups: start afresh, keep the old one aside.
		h.logf("warning: %v: starting with an empty state (the old file is kept as %s.damaged)", err, StateFile)
		_ = os.Rename(filepath.Join(h.Dir, StateFile), filepath.Join(h.Dir, StateFile+".damaged"))
		st = State{}
	}
	now := o.now()
	dueBy := o.DueBy
	if dueBy.IsZero() {
		dueBy = now
	}
	for _, s := range cfg.Schedules {
		ss := st.schedule(s.ID)
		if len(o.Only) > 0 {
			if !slices.Contains(o.Only, s.ID) {
				continue
			}
		} else if s.NextDue(ss.LastSlot).After(dueBy) {
			continue
		}
		rep.Runs = append(rep.Runs, h.run(ctx, s, &st, o))
	}
	for id := range st.Schedules {
		if _, ok := cfg.Find(id); !ok {
			delete(st.Schedules, id) // removed while we ran, or before
		}
	}
	if err := h.save(st); err != nil {
		return rep, err
	}
	if err := h.WriteMetrics(cfg, st, o.now()); err != nil {
		h.logf("warning: write %s: %v", MetricsFile, err)
	}
	for _, id := range o.Only {
		if _, ok := cfg.Find(id); !ok {
			return rep, fmt.Errorf("no schedule %q on this host", id)
		}
	}
	return rep, nil
}

func (h *Host) save(st State) error { return writeJSON(filepath.Join(h.Dir, StateFile), st) }

// run runs one schedule: backup, retention, drill; the state is saved after each step.
func (h *Host) run(ctx context.Context, s Schedule, st *State, o RunOptions) (rr RunResult) {
	now := o.now()
	ss := st.schedule(s.ID)
	slot := s.Latest(now)
	if slot.IsZero() {
		slot = now // run by hand before its first slot
	}
	rr = RunResult{Schedule: s.ID, Slot: slot, Started: now}
	if s.Context != "" {
		h.Engine.Context = s.Context // recorded in the archives, as a backup through the context would
	}
	defer func() {
		rr.Ended = o.now()
		ss.LastRunEnd = rr.Ended
		if err := h.save(*st); err != nil {
			h.logf("warning: record the run of %s: %v", s.ID, err)
		}
	}()
	if !o.NoBackup {
		if slot.After(ss.LastSlot) {
			ss.LastSlot = slot
		}
		ss.LastRunStart, ss.LastError = now, ""
		if err := h.save(*st); err != nil {
			h.logf("warning: record the start of %s: %v", s.ID, err)
		}
	}
	h.logf("Schedule %s: %s of %s to %s", s.ID, map[bool]string{true: "restore drill", false: "backup"}[o.NoBackup], s.What(), s.To)
	store, creds, err := h.Store(ctx, s)
	if err != nil {
		rr.Error = err.Error()
		ss.LastError = rr.Error
		if !o.NoBackup {
			h.failAll(ctx, s, ss, now, rr.Error, &rr)
		}
		return rr
	}
	var backedUp []string
	if !o.NoBackup {
		backedUp = h.backup(ctx, s, ss, store, creds, slot, o, &rr)
		if err := h.save(*st); err != nil {
			h.logf("warning: record the backup of %s: %v", s.ID, err)
		}
		if len(backedUp) > 0 && ctx.Err() == nil {
			h.prune(ctx, s, store, now, &rr)
			if rr.PruneError != "" {
				ss.LastError = "retention: " + rr.PruneError
			}
		}
	}
	drillDue := s.VerifyRestoreEvery > 0 && (ss.LastDrill.IsZero() || now.Sub(ss.LastDrill) >= time.Duration(s.VerifyRestoreEvery))
	if (o.Drill || drillDue) && ctx.Err() == nil {
		h.drill(ctx, s, ss, store, now, &rr)
	}
	return rr
}

// failAll records a failed attempt for every volume of the schedule.
func (h *Host) failAll(ctx context.Context, s Schedule, ss *ScheduleState, now time.Time, msg string, rr *RunResult) {
	vols := s.Volumes
	if s.All {
		vols = volumesOf(s, ss)
		if list, err := h.Engine.ListVolumes(ctx); err == nil {
			for _, v := range list {
				if v.Labels[volumeops.DrillLabel] == "" && !slices.Contains(vols, v.Name) {
					vols = append(vols, v.Name)
				}
			}
		}
	}
	for _, v := range vols {
		vs := ss.volume(v)
		vs.LastAttempt, vs.LastFailure, vs.LastError = now, now, msg
		vs.ConsecutiveFailures++
		rr.Volumes = append(rr.Volumes, VolumeResult{Volume: v, Error: msg})
	}
	h.logf("Schedule %s failed: %s", s.ID, msg)
}

// backup backs the schedule's volumes up and records each volume's outcome; it returns the
// volumes that were backed up.
func (h *Host) backup(ctx context.Context, s Schedule, ss *ScheduleState, store backup.Store, creds Credentials, slot time.Time, o RunOptions, rr *RunResult) []string {
	now := o.now()
	var rcpt []age.Recipient
	for _, r := range s.EncryptTo {
		rs, err := backup.ParseRecipients(r)
		if err != nil {
			h.failAll(ctx, s, ss, now, err.Error(), rr)
			return nil
		}
		rcpt = append(rcpt, rs...)
	}
	c, _ := backup.ParseCompression(s.compression())
	results, err := h.Engine.Backup(ctx, volumeops.BackupOptions{Volumes: s.Volumes, All: s.All, Store: store,
		Compression: c, Recipients: rcpt, KeepRunning: s.KeepRunning, Now: o.Now, Label: s.ID, ContinueOnError: true})
	if len(results) == 0 {
		msg := "nothing was backed up"
		if err != nil {
			msg = creds.Redact(err.Error())
		}
		if ctx.Err() != nil {
			msg = "the run's deadline passed or it was stopped: " + msg
		}
		h.failAll(ctx, s, ss, now, msg, rr)
		return nil
	}
	var hookErr string
	var he *volumeops.HookError
	if errors.As(err, &he) {
		hookErr = he.Error()
	}
	end := o.now()
	var done []string
	for _, r := range results {
		vs := ss.volume(r.Volume)
		vs.LastAttempt = now
		vr := VolumeResult{Volume: r.Volume, Archive: r.Archive.Name, Size: r.Archive.Size, Seconds: r.Seconds}
		if r.Error != "" {
			vr.Error = creds.Redact(r.Error)
			if ctx.Err() != nil {
				vr.Error = "the run's deadline passed or it was stopped: " + vr.Error
			}
			vs.ConsecutiveFailures++
			vs.LastFailure, vs.LastError = end, vr.Error
			h.logf("Backup of %s failed: %s", r.Volume, vr.Error)
		} else {
			vs.ConsecutiveFailures, vs.LastError = 0, ""
			vs.LastSuccess, vs.LastSuccessSlot = end, slot
			vs.LastArchive, vs.LastSizeBytes, vs.LastDurationSeconds = r.Archive.Name, r.Archive.Size, r.Seconds
			done = append(done, r.Volume)
			h.logf("Backed up %s: %s (%d bytes, %.1fs)", r.Volume, r.Archive.Name, r.Archive.Size, r.Seconds)
		}
		for _, w := range r.Warnings {
			h.logf("warning: %s: %s", r.Volume, w)
		}
		rr.Volumes = append(rr.Volumes, vr)
	}
	if hookErr != "" {
		// The archives are stored: the backups count, the command's failure is the run's.
		rr.Error = hookErr
		ss.LastError = hookErr
		h.logf("warning: %s", hookErr)
	}
	return done
}

// prune applies the schedule's retention to its own volumes, between offen's prune-pre and
// prune-post commands.
func (h *Host) prune(ctx context.Context, s Schedule, store backup.Store, now time.Time, rr *RunResult) {
	var vols []string // nil: every volume in the store (--all)
	if !s.All {
		vols = s.Volumes
	}
	if err := h.Engine.RunHooks(ctx, volumeops.HookPrunePre, s.ID); err != nil {
		rr.PruneError = "nothing was pruned: " + err.Error()
		return
	}
	plan, err := backup.PruneVolumes(ctx, store, s.Retention.Policy(), now, vols, false)
	for _, d := range plan {
		if !d.Keep {
			rr.Deleted = append(rr.Deleted, d.Name)
		}
	}
	if err != nil {
		rr.PruneError = err.Error()
	}
	if herr := h.Engine.RunHooks(ctx, volumeops.HookPrunePost, s.ID); herr != nil && rr.PruneError == "" {
		rr.PruneError = herr.Error()
	}
	if len(rr.Deleted) > 0 {
		h.logf("Retention (%s) deleted %d archives: %s", s.Retention.Policy(), len(rr.Deleted), strings.Join(rr.Deleted, ", "))
	}
	// A backup killed in its upload leaves parts S3 bills but never lists: abort them once they
	// are a day old (a younger one may be another machine's backup still going). The server's
	// clock: S3 records when an upload started in real time.
	if su, ok := store.(backup.StaleUploads); ok {
		n, err := su.AbortStaleUploads(ctx, StaleUploadAge, time.Now())
		rr.AbortedUploads = n
		if err != nil && rr.PruneError == "" {
			rr.PruneError = err.Error()
		}
		if n > 0 {
			h.logf("Aborted %d unfinished uploads of killed backups", n)
		}
	}
}

// drill restores each volume's newest complete archive into a scratch volume and compares it
// with the metadata (volumeops.VerifyRestore).
func (h *Host) drill(ctx context.Context, s Schedule, ss *ScheduleState, store backup.Store, now time.Time, rr *RunResult) {
	list, err := backup.List(ctx, store)
	if err != nil {
		rr.Error = "restore drill: " + err.Error()
		return
	}
	vols := s.Volumes
	if s.All {
		vols = volumesOf(s, ss)
	}
	ss.LastDrill = now
	for _, v := range vols {
		i := slices.IndexFunc(list, func(b backup.Backup) bool { return b.Volume == v && b.HasChecksum })
		if i < 0 {
			continue // nothing to drill yet
		}
		name := list[i].Name
		vs := ss.volume(v)
		vs.LastDrillRun = now
		dr, err := h.Engine.VerifyRestore(ctx, volumeops.DrillOptions{Store: store, Archive: name})
		res := DrillResult{Volume: v, Archive: name, Found: dr.Found, Seconds: dr.Seconds}
		if err != nil {
			res.Error = err.Error()
			vs.DrillError = res.Error
			h.logf("Restore drill of %s FAILED: %s", name, res.Error)
		} else {
			vs.DrillError = ""
			vs.LastRestoreVerified, vs.LastRestoreArchive = now, name
		}
		rr.Drills = append(rr.Drills, res)
	}
}

// journal is the containers a run stopped and has not started again yet.
type journal struct {
	Containers []volumeops.ContainerRef `json:"containers"`
}

// Journal makes the engine record the containers it stops for a backup in the backup
// directory until they run again, so that a run killed in between has them started by the next
// (recover).
func (h *Host) Journal() {
	path := filepath.Join(h.Dir, journalFile)
	var j journal
	h.Engine.OnStop = func(r volumeops.ContainerRef) error {
		j.Containers = append(j.Containers, r)
		return writeJSON(path, j)
	}
	h.Engine.OnRestarted = func(error) {
		j = journal{}
		_ = os.Remove(path)
	}
}

// recover cleans up after a run that was killed: it starts the containers it had stopped,
// removes its helper containers and a restore drill's scratch volume.
func (h *Host) recover(ctx context.Context) {
	path := filepath.Join(h.Dir, journalFile)
	var j journal
	if err := readJSON(path, &j); err != nil {
		h.logf("warning: %v", err)
	}
	for _, r := range j.Containers {
		ci, err := h.Engine.API.ContainerInspect(ctx, r.ID, client.ContainerInspectOptions{})
		if err != nil {
			h.logf("warning: a killed backup had stopped container %s, which is gone: %v", r.Name, err)
			continue
		}
		if ci.Container.State != nil && ci.Container.State.Running {
			continue
		}
		h.logf("Starting container %s, which a killed backup run had stopped", r.Name)
		if _, err := h.Engine.API.ContainerStart(ctx, r.ID, client.ContainerStartOptions{}); err != nil {
			h.logf("warning: start container %s: %v (start it with `docker start %s`)", r.Name, err, r.Name)
		}
	}
	if len(j.Containers) > 0 {
		_ = os.Remove(path)
	}
	h.Engine.RemoveStaleHelpers(ctx)
	h.Engine.RemoveDrillLeftovers(ctx)
}

// WriteMetrics writes the Prometheus text of every volume's scheduled backups to the metrics
// file (node_exporter's textfile collector can read it there).
func (h *Host) WriteMetrics(c Config, st State, now time.Time) error {
	s := MakeStatus(c, st, now, nil, false)
	m := volumeops.Metrics{Backups: s.Metrics()}
	return m.WriteTextfile(filepath.Join(h.Dir, MetricsFile))
}
