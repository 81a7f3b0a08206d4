package schedule

import (
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/backup"
)

func at(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func valid() Schedule {
	return Schedule{ID: "db", Volumes: []string{"db"}, To: "s3://b/p", Every: Duration(24 * time.Hour),
		Retention: Retention{KeepDaily: 7}, Created: time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)}
}

func TestValidate(t *testing.T) {
	if err := valid().Validate(); err != nil {
		t.Fatalf("a valid schedule: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*Schedule)
		want string
	}{
		"no volumes":         {func(s *Schedule) { s.Volumes = nil }, "--all"},
		"volumes and all":    {func(s *Schedule) { s.All = true }, "not both"},
		"a directory":        {func(s *Schedule) { s.To = "/srv/backups" }, "S3-compatible bucket"},
		"no bucket":          {func(s *Schedule) { s.To = "s3://" }, "S3-compatible bucket"},
		"neither":            {func(s *Schedule) { s.Every = 0 }, "--every"},
		"both":               {func(s *Schedule) { s.Cron = "0 3 * * *" }, "one of them"},
		"too often":          {func(s *Schedule) { s.Every = Duration(30 * time.Second) }, "shortest"},
		"bad cron":           {func(s *Schedule) { s.Every, s.Cron = 0, "0 25 * * *" }, "five fields"},
		"@every":             {func(s *Schedule) { s.Every, s.Cron = 0, "@every 1h" }, "use --every"},
		"no retention":       {func(s *Schedule) { s.Retention = Retention{} }, "retention"},
		"bad id":             {func(s *Schedule) { s.ID = "../x" }, "schedule id"},
		"drill of encrypted": {func(s *Schedule) { s.EncryptTo, s.VerifyRestoreEvery = []string{"age1x"}, Duration(time.Hour) }, "identity"},
	} {
		s := valid()
		tc.mod(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}

func TestSlots(t *testing.T) {
	every := valid() // every 24h from 2026-03-01T10:30Z
	cron := valid()
	cron.Every, cron.Cron = 0, "0 3 * * *"
	berlin := cron
	berlin.Cron = "CRON_TZ=Europe/Berlin 0 3 * * *"
	weekdays := cron
	weekdays.Cron = "0 3 * * 1-5"
	cases := []struct {
		name       string
		s          Schedule
		first      string
		latestAt   string
		latest     string
		next       string // Next(latest)
		intervalAt string
		interval   time.Duration
	}{
		{"every 24h runs at once, then at creation + k·24h", every, "2026-03-01T10:30:00Z", "2026-03-04T09:00:00Z", "2026-03-03T10:30:00Z", "2026-03-04T10:30:00Z", "2026-03-04T09:00:00Z", 24 * time.Hour},
		{"cron 03:00 UTC", cron, "2026-03-02T03:00:00Z", "2026-03-04T09:00:00Z", "2026-03-04T03:00:00Z", "2026-03-05T03:00:00Z", "2026-03-04T09:00:00Z", 24 * time.Hour},
		{"cron in Berlin's time", berlin, "2026-03-02T02:00:00Z", "2026-03-04T09:00:00Z", "2026-03-04T02:00:00Z", "2026-03-05T02:00:00Z", "2026-03-04T09:00:00Z", 24 * time.Hour},
		// 2026-03-02 is a Monday; on Saturday the 7th the last slot is Friday's, the next Monday's.
		{"weekdays", weekdays, "2026-03-02T03:00:00Z", "2026-03-07T12:00:00Z", "2026-03-06T03:00:00Z", "2026-03-09T03:00:00Z", "2026-03-05T12:00:00Z", 72 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.First(); !got.Equal(at(t, tc.first)) {
				t.Errorf("First = %s, want %s", got, tc.first)
			}
			l := tc.s.Latest(at(t, tc.latestAt))
			if !l.Equal(at(t, tc.latest)) {
				t.Errorf("Latest(%s) = %s, want %s", tc.latestAt, l, tc.latest)
			}
			if got := tc.s.NextDue(l); !got.Equal(at(t, tc.next)) {
				t.Errorf("NextDue(%s) = %s, want %s", l, got, tc.next)
			}
			if got := tc.s.IntervalAt(at(t, tc.intervalAt)); got != tc.interval {
				t.Errorf("IntervalAt = %s, want %s", got, tc.interval)
			}
			if got := tc.s.NextDue(time.Time{}); !got.Equal(tc.s.First()) {
				t.Errorf("never run: due at %s, want the first slot %s", got, tc.s.First())
			}
			if got := tc.s.Latest(tc.s.First().Add(-time.Second)); !got.IsZero() {
				t.Errorf("Latest before the first slot = %s, want none", got)
			}
		})
	}
	t.Run("a server gone for days runs once, for the latest slot", func(t *testing.T) {
		s := cron
		last := at(t, "2026-03-02T03:00:00Z")
		now := at(t, "2026-03-09T08:00:00Z")
		if due := s.NextDue(last); due.After(now) {
			t.Fatalf("not due after a week: %s", due)
		}
		if got := s.Latest(now); !got.Equal(at(t, "2026-03-09T03:00:00Z")) {
			t.Fatalf("the run's slot is %s, want today's", got)
		}
	})
}

func TestAssess(t *testing.T) {
	s := valid() // daily from 2026-03-01T10:30Z
	c := Config{Schedules: []Schedule{s}}
	ok := &VolumeState{LastSuccess: at(t, "2026-03-03T10:31:00Z"), LastSuccessSlot: at(t, "2026-03-03T10:30:00Z"), LastDurationSeconds: 30}
	cases := []struct {
		name  string
		vs    *VolumeState
		now   string
		level string
		msg   string
	}{
		{"fresh", ok, "2026-03-04T12:00:00Z", OK, ""},
		{"one slot missed is not stale yet", ok, "2026-03-05T10:31:00Z", OK, ""},
		{"older than twice the interval", ok, "2026-03-05T10:32:00Z", Warning, "more than twice the interval"},
		{"one failure", &VolumeState{LastSuccessSlot: ok.LastSuccessSlot, LastSuccess: ok.LastSuccess, ConsecutiveFailures: 1, LastError: "boom"}, "2026-03-04T11:00:00Z", OK, ""},
		{"two failures in a row", &VolumeState{LastSuccessSlot: ok.LastSuccessSlot, LastSuccess: ok.LastSuccess, ConsecutiveFailures: 2, LastFailure: at(t, "2026-03-05T10:30:10Z"), LastError: "bucket \"b\" gone"}, "2026-03-05T10:31:00Z", Critical, "failed 2 times in a row"},
		{"a failed restore drill", &VolumeState{LastSuccessSlot: ok.LastSuccessSlot, LastSuccess: ok.LastSuccess, DrillError: "checksum mismatch"}, "2026-03-04T11:00:00Z", Critical, "restore drill"},
		{"never backed up, two intervals after creation", nil, "2026-03-03T10:32:00Z", Warning, "no backup of db"},
		{"never backed up, just made", nil, "2026-03-01T10:31:00Z", OK, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := State{}
			if tc.vs != nil {
				st.schedule("db").Volumes["db"] = tc.vs
			}
			fs := Assess(c, st, at(t, tc.now))
			if got := Worst(fs); got != tc.level {
				t.Fatalf("level %s, want %s: %+v", got, tc.level, fs)
			}
			if tc.msg != "" && !strings.Contains(fs[0].Message, tc.msg) {
				t.Errorf("message %q, want %q", fs[0].Message, tc.msg)
			}
			for _, f := range fs {
				if strings.Contains(f.Message, `"`) || strings.Contains(f.Message, "\n") {
					t.Errorf("message %q has a double quote or a newline (the health log's format)", f.Message)
				}
			}
		})
	}
}

func TestLocalInstructions(t *testing.T) {
	s := valid()
	s.Volumes = []string{"db data"}
	s.Retention = RetentionOf(backup.PrunePolicy{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6})
	s.S3.Endpoint = "https://fsn1.your-objectstorage.com"
	out := LocalInstructions(s, "/usr/bin/docker")
	for _, want := range []string{
		"ExecStart=/usr/bin/docker dockbridge backup 'db data' --to s3://b/p --label db --s3-endpoint https://fsn1.your-objectstorage.com",
		"ExecStart=/usr/bin/docker dockbridge backup prune --from s3://b/p --s3-endpoint https://fsn1.your-objectstorage.com --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --force",
		"OnCalendar=daily", "Persistent=true", "EnvironmentFile=/etc/dockbridge/dockbridge-backup-db.env",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("systemd units lack %q:\n%s", want, out)
		}
	}
	s.Every, s.Cron = 0, "30 2 * * *"
	out = LocalInstructions(s, "docker")
	if !strings.Contains(out, "30 2 * * * root . /etc/dockbridge/dockbridge-backup-db.env && export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY && docker dockbridge backup 'db data'") ||
		!strings.Contains(out, "&& docker dockbridge backup prune --from s3://b/p") {
		t.Errorf("cron line:\n%s", out)
	}
	for d, want := range map[time.Duration]string{time.Hour: "*-*-* 00/1:00:00", 6 * time.Hour: "*-*-* 00/6:00:00", 15 * time.Minute: "*-*-* *:00/15:00", 168 * time.Hour: "weekly", 36 * time.Hour: ""} {
		if got := onCalendar(d); got != want {
			t.Errorf("onCalendar(%s) = %q, want %q", d, got, want)
		}
	}
}
