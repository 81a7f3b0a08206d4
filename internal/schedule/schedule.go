// Package schedule is backups on a schedule: what a schedule is and when it is due, what its
// runs left behind (State), how healthy that is (Assess), and running the due ones on a
// dockbridge host (RunDue), where the server binary runs them from a systemd timer and
// uploads the archives from the host straight to an S3-compatible bucket.
package schedule

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/dockbridge/dockbridge/internal/backup"
)

// Schedule is one `docker dockbridge backup schedule`: which volumes, where to, how often,
// what to keep. It holds no secret: the S3 credentials are a file of their own (SecretFile).
type Schedule struct {
	ID      string   `json:"id"`
	Volumes []string `json:"volumes,omitempty"`
	All     bool     `json:"all,omitempty"`
	// To is s3://bucket/prefix.
	To string `json:"to"`
	S3 S3     `json:"s3"`
	// Every or Cron says when it runs (exactly one of them).
	Every Duration `json:"every,omitempty"`
	Cron  string   `json:"cron,omitempty"`
	// Retention is applied after every successful run, to this schedule's volumes only.
	Retention   Retention `json:"retention"`
	Compression string    `json:"compression,omitempty"`
	// EncryptTo are age recipients (public keys).
	EncryptTo   []string `json:"encrypt_to,omitempty"`
	KeepRunning bool     `json:"keep_running,omitempty"`
	// VerifyRestoreEvery runs a restore drill of each volume's newest archive after a backup
	// when the last drill is at least this old (0: never).
	VerifyRestoreEvery Duration `json:"verify_restore_every,omitempty"`
	// Context is the docker context name recorded in the archives (dockbridge, dockbridge-NAME).
	Context string    `json:"context,omitempty"`
	Created time.Time `json:"created"`
}

// S3 is where the bucket is; the credentials are not here.
type S3 struct {
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
	PartSize uint64 `json:"part_size,omitempty"`
}

// Retention is backup.PrunePolicy as stored.
type Retention struct {
	KeepLast    int      `json:"keep_last,omitempty"`
	KeepWithin  Duration `json:"keep_within,omitempty"`
	KeepDaily   int      `json:"keep_daily,omitempty"`
	KeepWeekly  int      `json:"keep_weekly,omitempty"`
	KeepMonthly int      `json:"keep_monthly,omitempty"`
}

// Policy is the retention as prune takes it.
func (r Retention) Policy() backup.PrunePolicy {
	return backup.PrunePolicy{KeepLast: r.KeepLast, KeepWithin: time.Duration(r.KeepWithin),
		KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly, KeepMonthly: r.KeepMonthly}
}

// RetentionOf is the stored form of p.
func RetentionOf(p backup.PrunePolicy) Retention {
	return Retention{KeepLast: p.KeepLast, KeepWithin: Duration(p.KeepWithin), KeepDaily: p.KeepDaily,
		KeepWeekly: p.KeepWeekly, KeepMonthly: p.KeepMonthly}
}

// Duration is a time.Duration that reads and writes as "24h0m0s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return shortDuration(time.Duration(d)) }

// shortDuration writes 24h instead of 24h0m0s, 168h as 7d.
func shortDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d%(24*time.Hour) == 0 && d > 24*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// MinInterval is the shortest --every: the timer looks every minute.
const MinInterval = time.Minute

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidateID checks a schedule's id (it names the credentials file and scopes offen's labels).
func ValidateID(id string) error {
	if !idRe.MatchString(id) {
		return fmt.Errorf("schedule id %q: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit", id)
	}
	return nil
}

// DefaultID names a schedule after what it backs up: the volume, or "all".
func DefaultID(volumes []string, all bool) (string, error) {
	switch {
	case all:
		return "all", nil
	case len(volumes) == 1 && idRe.MatchString(volumes[0]):
		return volumes[0], nil
	}
	return "", errors.New("name the schedule with --id NAME (it backs up several volumes)")
}

// Validate checks a schedule before it is stored on a dockbridge host.
func (s Schedule) Validate() error {
	if err := s.ValidateLocal(); err != nil {
		return err
	}
	if !strings.HasPrefix(s.To, "s3://") || len(strings.TrimPrefix(s.To, "s3://")) == 0 {
		return fmt.Errorf("--to %q: a schedule on a dockbridge host uploads to an S3-compatible bucket (s3://bucket/prefix); a directory on the server would share the server's fate", s.To)
	}
	return nil
}

// ValidateLocal checks a schedule that runs where no dockbridge host is (any destination).
func (s Schedule) ValidateLocal() error {
	switch {
	case s.All && len(s.Volumes) > 0:
		return errors.New("give volume names or --all, not both")
	case !s.All && len(s.Volumes) == 0:
		return errors.New("name the volumes to back up, or give --all")
	}
	if err := ValidateID(s.ID); err != nil {
		return err
	}
	if s.To == "" {
		return errors.New("where to? give --to s3://bucket/prefix (or set DOCKBRIDGE_BACKUP_TO)")
	}
	if (s.Every != 0) == (s.Cron != "") {
		return errors.New("say when: --every DURATION (e.g. 24h) or --cron EXPR (e.g. '0 3 * * *'), one of them")
	}
	if s.Every != 0 && time.Duration(s.Every) < MinInterval {
		return fmt.Errorf("--every %s: the shortest interval is %s", time.Duration(s.Every), MinInterval)
	}
	if s.Cron != "" {
		if _, err := ParseCron(s.Cron); err != nil {
			return err
		}
	}
	if err := s.Retention.Policy().Validate(); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if _, err := backup.ParseCompression(s.compression()); err != nil {
		return err
	}
	if s.VerifyRestoreEvery < 0 {
		return errors.New("--verify-restore-every cannot be negative")
	}
	if s.VerifyRestoreEvery > 0 && len(s.EncryptTo) > 0 {
		return errors.New("--verify-restore-every with --encrypt-to: a restore drill needs the age identity, which never goes to the server; run `docker dockbridge backup verify --restore --identity FILE` where the key is")
	}
	return nil
}

func (s Schedule) compression() string {
	if s.Compression == "" {
		return string(backup.Zstd)
	}
	return s.Compression
}

// ParseCron parses a cron expression: five fields (minute hour day-of-month month
// day-of-week) or a descriptor (@hourly, @daily, @weekly, @monthly, @yearly), in UTC unless
// it starts with CRON_TZ=Zone.
func ParseCron(expr string) (cron.Schedule, error) {
	e := strings.TrimSpace(expr)
	if strings.HasPrefix(e, "@every") {
		return nil, fmt.Errorf("--cron %q: use --every DURATION for a fixed interval", expr)
	}
	if !strings.HasPrefix(e, "CRON_TZ=") && !strings.HasPrefix(e, "TZ=") {
		e = "CRON_TZ=UTC " + e
	}
	sch, err := cron.ParseStandard(e)
	if err != nil {
		return nil, fmt.Errorf("--cron %q: %v (five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *' for 03:00 UTC)", expr, err)
	}
	return sch, nil
}

// Next is the first slot after t. The slots of --every D are Created + k·D; those of --cron
// are the expression's times.
func (s Schedule) Next(t time.Time) time.Time {
	if s.Cron != "" {
		sch, err := ParseCron(s.Cron)
		if err != nil {
			return time.Time{}
		}
		return sch.Next(t)
	}
	d := time.Duration(s.Every)
	if d <= 0 {
		return time.Time{}
	}
	if t.Before(s.Created) {
		return s.Created
	}
	k := t.Sub(s.Created)/d + 1
	return s.Created.Add(k * d)
}

// Latest is the last slot at or before t (zero when there is none yet).
func (s Schedule) Latest(t time.Time) time.Time {
	first := s.First()
	if first.IsZero() || first.After(t) {
		return time.Time{}
	}
	if s.Cron == "" {
		d := time.Duration(s.Every)
		return s.Created.Add(t.Sub(s.Created) / d * d)
	}
	// Look back, doubling, until a slot lies between there and t; then step forward.
	from, back := first, time.Minute
	for {
		f := t.Add(-back)
		if !f.After(first) {
			break
		}
		if !s.Next(f).After(t) {
			from = f
			break
		}
		back *= 2
	}
	prev := from
	for n := s.Next(prev); !n.After(t); n = s.Next(prev) {
		prev = n
	}
	return prev
}

// First is the first slot: at creation for --every (the first backup runs at once), the
// expression's first time after creation for --cron.
func (s Schedule) First() time.Time {
	if s.Cron != "" {
		return s.Next(s.Created)
	}
	return s.Created
}

// NextDue is when the schedule is due next, after the slot of its last attempt (zero: never
// attempted).
func (s Schedule) NextDue(lastSlot time.Time) time.Time {
	if lastSlot.IsZero() {
		return s.First()
	}
	return s.Next(lastSlot)
}

// IntervalAt is the time between the two slots that follow t.
func (s Schedule) IntervalAt(t time.Time) time.Duration {
	if s.Cron == "" {
		return time.Duration(s.Every)
	}
	a := s.Next(t)
	return s.Next(a).Sub(a)
}

// When says when it runs, as a person reads it: "every 24h", "cron 0 3 * * * (UTC)".
func (s Schedule) When() string {
	if s.Cron != "" {
		if strings.HasPrefix(strings.TrimSpace(s.Cron), "CRON_TZ=") || strings.HasPrefix(strings.TrimSpace(s.Cron), "TZ=") {
			return "cron " + s.Cron
		}
		return "cron " + s.Cron + " (UTC)"
	}
	return "every " + s.Every.String()
}

// What says what it backs up.
func (s Schedule) What() string {
	if s.All {
		return "all volumes"
	}
	return strings.Join(s.Volumes, ", ")
}
