package volumeops_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
	"github.com/dockbridge/dockbridge/internal/volumeops"
	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

// cancelOnWrite cancels the backup when the first archive bytes arrive: Ctrl-C in the middle.
type cancelOnWrite struct {
	backup.Store
	cancel context.CancelFunc
}

func (c cancelOnWrite) Create(ctx context.Context, name string) (backup.ObjectWriter, error) {
	w, err := c.Store.Create(ctx, name)
	return cancelWriter{w, c.cancel}, err
}

type cancelWriter struct {
	backup.ObjectWriter
	cancel context.CancelFunc
}

func (w cancelWriter) Write(p []byte) (int, error) {
	w.cancel()
	time.Sleep(50 * time.Millisecond)
	return w.ObjectWriter.Write(p)
}

// A backup that fails midway (destination full, destination gone, Ctrl-C) still starts the
// containers it stopped, leaves stopped ones stopped, and leaves no archive behind.
func TestBackupFailureRestartsContainers(t *testing.T) {
	cases := []struct {
		name  string
		store func(t *testing.T, cancel context.CancelFunc) (backup.Store, func() []string)
	}{
		{"destination full", func(t *testing.T, _ context.CancelFunc) (backup.Store, func() []string) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
				t.Fatalf("mount a 2 MB tmpfs (needs root): %v: %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
			s, err := backup.NewDirStore(dir)
			must(t, err)
			return s, func() []string { return listDir(t, dir) }
		}},
		{"destination unreachable", func(t *testing.T, _ context.CancelFunc) (backup.Store, func() []string) {
			srv := backuptest.StartS3(t)
			s, err := backup.OpenStore(t.Context(), srv.Location("gone/"), backup.S3Config{Endpoint: srv.Endpoint,
				AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1", PartSize: 5 << 20})
			must(t, err)
			// Gone after the store was opened: the upload itself fails.
			srv.Stop(t)
			return s, func() []string { return nil }
		}},
		{"interrupted (Ctrl-C)", func(t *testing.T, cancel context.CancelFunc) (backup.Store, func() []string) {
			dir := t.TempDir()
			s, err := backup.NewDirStore(dir)
			must(t, err)
			return cancelOnWrite{s, cancel}, func() []string { return listDir(t, dir) }
		}},
	}
	e, c := newEngine(t)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	vol := volumeopstest.Volume(t, c, "dbt-fail-"+suffix, "local", nil, nil)
	mp := mountpoint(t, c, vol)
	// Incompressible data, more than the full destination holds.
	must(t, os.WriteFile(filepath.Join(mp, "random"), randomBytes(8<<20), 0o644))
	first := volumeopstest.Container(t, c, "dbt-fail-a-"+suffix, vol, true)
	second := volumeopstest.Container(t, c, "dbt-fail-b-"+suffix, vol, true)
	idle := volumeopstest.Container(t, c, "dbt-fail-idle-"+suffix, vol, false)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			store, left := tc.store(t, cancel)
			_, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store})
			if err == nil {
				t.Fatal("the backup succeeded")
			}
			t.Logf("backup failed as it should: %v", err)
			for _, id := range []string{first, second} {
				if !volumeopstest.Running(t, c, id) {
					t.Errorf("container %s was left stopped", id)
				}
			}
			// Stopped newest first, started again in reverse: the older container first.
			if a, b := startedAt(t, e, first), startedAt(t, e, second); !a.Before(b) {
				t.Errorf("restart order: %s started at %s, after %s at %s", first[:12], a, second[:12], b)
			}
			if volumeopstest.Running(t, c, idle) {
				t.Error("a container that was stopped before was started")
			}
			if l := left(); len(l) > 0 {
				t.Errorf("the failed backup left %v", l)
			}
		})
	}
}

func listDir(t *testing.T, dir string) []string {
	des, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	return out
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	f, _ := os.Open("/dev/urandom")
	defer f.Close()
	_, _ = f.Read(b)
	if bytes.Count(b, []byte{0}) == n {
		panic("no randomness")
	}
	return b
}

func startedAt(t *testing.T, e *volumeops.Engine, id string) time.Time {
	r, err := e.API.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	must(t, err)
	ts, err := time.Parse(time.RFC3339Nano, r.Container.State.StartedAt)
	must(t, err)
	return ts
}
