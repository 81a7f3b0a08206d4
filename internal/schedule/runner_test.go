package schedule

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/volumeops"
	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testHost is a Host on the local engine whose schedules write to a directory (through the
// OpenStore hook) and whose store can be made to fail.
type testHost struct {
	*Host
	store   *backup.DirStore
	dir     string
	failing error
}

func newTestHost(t *testing.T) (*testHost, *client.Client) {
	t.Helper()
	c := volumeopstest.Client(t)
	th := &testHost{dir: t.TempDir()}
	var err error
	if th.store, err = backup.NewDirStore(th.dir); err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	th.Host = &Host{Dir: t.TempDir(), SecretsDir: secrets, Log: logWriter{t},
		Engine:       &volumeops.Engine{API: c, Context: "test", HelperBinary: volumeopstest.HelperBinary(t), Progress: logWriter{t}},
		DockerActive: func(context.Context) bool { return true },
		OpenStore: func(context.Context, Schedule, Credentials) (backup.Store, error) {
			if th.failing != nil {
				return nil, th.failing
			}
			return th.store, nil
		},
	}
	return th, c
}

func (th *testHost) add(t *testing.T, s Schedule) {
	t.Helper()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(SecretFile(th.SecretsDir, s.ID), []byte("AWS_ACCESS_KEY_ID=test-access\nAWS_SECRET_ACCESS_KEY=test-secret-key\n"), 0o600))
	c, err := th.LoadConfig()
	must(t, err)
	c.Schedules = append(c.Schedules, s)
	must(t, writeJSON(filepath.Join(th.Dir, SchedulesFile), c))
}

func (th *testHost) runAt(t *testing.T, now time.Time, o RunOptions) RunReport {
	t.Helper()
	o.Now = func() time.Time { return now }
	rep, err := th.RunDue(t.Context(), o)
	must(t, err)
	return rep
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (th *testHost) archives(t *testing.T) []string {
	t.Helper()
	bs, err := backup.List(t.Context(), th.store)
	must(t, err)
	var out []string
	for _, b := range bs {
		out = append(out, b.Time.Format("01-02"))
	}
	return out
}

// TestRunDue runs a daily schedule on the local engine with a fake clock: the first run is
// at once, the next only a day later; two months of daily runs leave what the retention
// says; failures are counted and raise the health level; a success clears them.
func TestRunDue(t *testing.T) {
	th, c := newTestHost(t)
	vol := volumeopstest.Volume(t, c, fmt.Sprintf("dbt-sched-%d", time.Now().UnixNano()%1e9), "local", nil, nil)
	volumeopstest.Container(t, c, vol+"-app", vol, true)
	t0 := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	s := Schedule{ID: "nightly", Volumes: []string{vol}, To: "s3://b/p", Every: Duration(24 * time.Hour),
		Retention: Retention{KeepDaily: 3, KeepWeekly: 3}, Created: t0}
	th.add(t, s)

	if rep := th.runAt(t, t0, RunOptions{}); len(rep.Runs) != 1 || rep.Runs[0].Volumes[0].Error != "" {
		t.Fatalf("the first run (at creation): %+v", rep)
	}
	if rep := th.runAt(t, t0.Add(23*time.Hour), RunOptions{}); len(rep.Runs) != 0 {
		t.Fatalf("ran again before the next slot: %+v", rep)
	}
	for day := 1; day <= 60; day++ {
		now := t0.AddDate(0, 0, day).Add(20 * time.Second) // the timer's tick after the slot
		rep := th.runAt(t, now, RunOptions{})
		if len(rep.Runs) != 1 || rep.Failed() != nil {
			t.Fatalf("day %d: %+v", day, rep)
		}
	}
	// 2026-03-02 (a Monday) is the last day: 3 daily (03-02, 03-01, 02-28); 3 weekly are the
	// newest of ISO weeks 10, 9 and 8: 03-02, 03-01 and 02-22.
	if got := strings.Join(th.archives(t), " "); got != "03-02 03-01 02-28 02-22" {
		t.Errorf("after 61 daily runs the store holds %s, want 03-02 03-01 02-28 02-22", got)
	}
	st, err := th.LoadState()
	must(t, err)
	vs := st.Schedules["nightly"].Volumes[vol]
	if vs.LastSuccessSlot != t0.AddDate(0, 0, 60) || vs.ConsecutiveFailures != 0 || vs.LastSizeBytes <= 0 || vs.LastDurationSeconds <= 0 {
		t.Errorf("state after the runs: %+v", vs)
	}
	metrics, err := os.ReadFile(filepath.Join(th.Dir, MetricsFile))
	must(t, err)
	if want := fmt.Sprintf(`dockbridge_backup_last_success_timestamp_seconds{volume="%s",schedule="nightly"}`, vol); !strings.Contains(string(metrics), want) {
		t.Errorf("metrics file lacks %s:\n%s", want, metrics)
	}

	t.Run("failures are counted, two make it critical, a success clears them", func(t *testing.T) {
		th.failing = errors.New("s3 bucket b at http://s3: connection refused (key test-secret-key)")
		day := t0.AddDate(0, 0, 61).Add(time.Minute)
		for i := 1; i <= 2; i++ {
			rep := th.runAt(t, day, RunOptions{})
			if rep.Failed() == nil {
				t.Fatalf("run %d with a failing store: %+v", i, rep)
			}
			cfg, _ := th.LoadConfig()
			st, _ := th.LoadState()
			lvl := Worst(Assess(cfg, st, day))
			if want := map[int]string{1: OK, 2: Critical}[i]; lvl != want {
				t.Errorf("after %d failures: %s, want %s", i, lvl, want)
			}
			if strings.Contains(st.Schedules["nightly"].Volumes[vol].LastError, "test-secret-key") {
				t.Errorf("the secret key is in the state: %q", st.Schedules["nightly"].Volumes[vol].LastError)
			}
			day = day.AddDate(0, 0, 1)
		}
		th.failing = nil
		th.runAt(t, day, RunOptions{})
		cfg, _ := th.LoadConfig()
		st, _ := th.LoadState()
		if lvl := Worst(Assess(cfg, st, day)); lvl != OK || st.Schedules["nightly"].Volumes[vol].ConsecutiveFailures != 0 {
			t.Errorf("after a success: %s, %+v", lvl, st.Schedules["nightly"].Volumes[vol])
		}
	})

	t.Run("Docker stopped: nothing runs and no attempt counts", func(t *testing.T) {
		th.DockerActive = func(context.Context) bool { return false }
		defer func() { th.DockerActive = func(context.Context) bool { return true } }()
		before, _ := os.ReadFile(filepath.Join(th.Dir, StateFile))
		rep := th.runAt(t, t0.AddDate(0, 1, 0).AddDate(0, 0, 10), RunOptions{})
		after, _ := os.ReadFile(filepath.Join(th.Dir, StateFile))
		if rep.Skipped == "" || len(rep.Runs) > 0 || string(before) != string(after) {
			t.Errorf("with Docker stopped: %+v; state changed: %v", rep, string(before) != string(after))
		}
	})

	t.Run("a run starts the containers a killed run left stopped", func(t *testing.T) {
		id := volumeopstest.Container(t, c, vol+"-victim", vol, true)
		must(t, writeJSON(filepath.Join(th.Dir, journalFile), journal{Containers: []volumeops.ContainerRef{{ID: id, Name: vol + "-victim"}}}))
		timeout := 1
		if _, err := c.ContainerStop(t.Context(), id, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
			t.Fatal(err)
		}
		th.runAt(t, t0.Add(24*time.Hour*365), RunOptions{Only: []string{"nightly"}, NoBackup: true})
		if !volumeopstest.Running(t, c, id) {
			t.Error("the container the journal names is still stopped")
		}
		if _, err := os.Stat(filepath.Join(th.Dir, journalFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the journal is still there: %v", err)
		}
	})

	t.Run("a drill on the schedule", func(t *testing.T) {
		rep := th.runAt(t, t0.AddDate(0, 3, 0), RunOptions{Only: []string{"nightly"}, Drill: true})
		if len(rep.Runs) != 1 || len(rep.Runs[0].Drills) != 1 || rep.Runs[0].Drills[0].Error != "" {
			t.Fatalf("run with a drill: %+v", rep)
		}
		st, _ := th.LoadState()
		if vs := st.Schedules["nightly"].Volumes[vol]; vs.LastRestoreVerified != t0.AddDate(0, 3, 0) || vs.LastRestoreArchive != rep.Runs[0].Volumes[0].Archive {
			t.Errorf("state after the drill: %+v", vs)
		}
	})
}
