package volumeops_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
	"github.com/dockbridge/dockbridge/internal/volumeops"
	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

func TestSplitWords(t *testing.T) {
	cases := map[string][]string{
		`/bin/sh -c 'mysqldump --all-databases > /backups/dump.sql'`: {"/bin/sh", "-c", "mysqldump --all-databases > /backups/dump.sql"},
		`  echo   "a \"b\" $x"  c\ d `:                               {"echo", `a "b" $x`, "c d"},
		`pg_dump -U "" db`:                                           {"pg_dump", "-U", "", "db"},
		`a'b'"c"d`:                                                   {"abcd"},
		``:                                                           nil,
	}
	for in, want := range cases {
		got, err := volumeops.SplitWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("SplitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`echo 'unterminated`, `echo "unterminated`} {
		if got, err := volumeops.SplitWords(bad); err == nil {
			t.Errorf("SplitWords(%q) = %q, want an error", bad, got)
		}
	}
}

// labelled creates a running busybox container with labels and, if vol is set, vol at /data.
func labelled(t *testing.T, c *client.Client, name, vol string, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	img := volumeopstest.Busybox(t, c)
	_, _ = c.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
	hc := &container.HostConfig{NetworkMode: "none"}
	if vol != "" {
		hc.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}}
	}
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name,
		Config:     &container.Config{Image: img, Cmd: []string{"/bin/sleep", "3600"}, StopSignal: "SIGKILL", Labels: labels},
		HostConfig: hc})
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	t.Cleanup(func() {
		_, _ = c.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return res.ID
}

// TestOffenLabels: a compose file written for offen/docker-volume-backup keeps working. The
// archive-pre command's dump is in the archive, the archive-post command ran after the
// containers were started again, stop-during-backup stops a container that does not even use
// the volume and starts it again, -no-restart leaves it stopped, and labels scoped to another
// schedule (a value other than true, exec-label) are left alone unless the backup has that
// label.
func TestOffenLabels(t *testing.T) {
	e, c := newEngine(t)
	ctx := t.Context()
	sfx := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	vol := volumeopstest.Volume(t, c, "dbt-offen-"+sfx, "local", nil, nil)
	mp := mountpoint(t, c, vol)
	must(t, os.WriteFile(filepath.Join(mp, "table"), []byte("rows"), 0o644))

	db := labelled(t, c, "dbt-offen-db-"+sfx, vol, map[string]string{
		"docker-volume-backup.archive-pre":  `/bin/sh -c 'echo "dump of $(cat /data/table)" > /data/dump.sql'`,
		"docker-volume-backup.archive-post": `/bin/sh -c 'echo post >> /data/post.log'`,
	})
	app := labelled(t, c, "dbt-offen-app-"+sfx, "", map[string]string{"docker-volume-backup.stop-during-backup": "true"})
	batch := labelled(t, c, "dbt-offen-batch-"+sfx, "", map[string]string{"docker-volume-backup.stop-during-backup-no-restart": "true"})
	other := labelled(t, c, "dbt-offen-other-"+sfx, "", map[string]string{"docker-volume-backup.stop-during-backup": "nightly"})
	scoped := labelled(t, c, "dbt-offen-scoped-"+sfx, vol, map[string]string{
		"docker-volume-backup.archive-pre": `/bin/sh -c 'touch /data/scoped-ran'`,
		"docker-volume-backup.exec-label":  "nightly",
	})
	started := func(id string) time.Time { return startedAt(t, e, id) }
	before := map[string]time.Time{}
	for _, id := range []string{db, app, other, scoped} {
		before[id] = started(id)
	}
	time.Sleep(1100 * time.Millisecond) // StartedAt has a resolution of the engine's clock

	dir := t.TempDir()
	store, err := backup.NewDirStore(dir)
	must(t, err)
	res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store})
	must(t, err)
	// The archive holds the dump the pre command made, not the post command's file.
	rep, err := backup.Verify(ctx, store, res[0].Archive.Name, nil)
	must(t, err)
	if rep.Stats.Files != 2 {
		t.Errorf("the archive holds %s, want 2 files (table, dump.sql)", rep.Stats)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "dump.sql")); err != nil || string(b) != "dump of rows\n" {
		t.Errorf("archive-pre's dump: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "post.log")); err != nil || string(b) != "post\n" {
		t.Errorf("archive-post's file: %q, %v (it runs once, after the containers are started again)", b, err)
	}
	if _, err := os.Stat(filepath.Join(mp, "scoped-ran")); err == nil {
		t.Error("the archive-pre command of a container with exec-label=nightly ran in an unlabelled backup")
	}
	for id, what := range map[string]string{db: "the volume's user", app: "stop-during-backup=true"} {
		if !volumeopstest.Running(t, c, id) || !started(id).After(before[id]) {
			t.Errorf("%s: running=%v, started %s (before %s): want stopped and started again", what, volumeopstest.Running(t, c, id), started(id), before[id])
		}
	}
	if volumeopstest.Running(t, c, batch) {
		t.Error("stop-during-backup-no-restart: the container was started again")
	}
	if !started(other).Equal(before[other]) {
		t.Error("stop-during-backup=nightly: stopped by an unlabelled backup")
	}

	t.Run("a backup labelled nightly runs the scoped ones", func(t *testing.T) {
		b0 := started(other)
		time.Sleep(1100 * time.Millisecond)
		_, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store, Label: "nightly"})
		must(t, err)
		if _, err := os.Stat(filepath.Join(mp, "scoped-ran")); err != nil {
			t.Error("exec-label=nightly: its archive-pre command did not run in the nightly backup")
		}
		if !volumeopstest.Running(t, c, other) || !started(other).After(b0) {
			t.Error("stop-during-backup=nightly: not stopped and started again by the nightly backup")
		}
	})

	t.Run("a failing archive-pre command stops the backup before anything is stopped", func(t *testing.T) {
		labelled(t, c, "dbt-offen-fail-"+sfx, "", map[string]string{
			"docker-volume-backup.archive-pre": `/bin/sh -c 'echo no space for the dump >&2; exit 3'`})
		b0 := started(db)
		n := len(listDir(t, dir))
		_, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store})
		var he *volumeops.HookError
		if !errors.As(err, &he) || !strings.Contains(err.Error(), "status 3") || !strings.Contains(err.Error(), "no space for the dump") {
			t.Fatalf("backup with a failing pre command: %v, want a HookError with the status and its output", err)
		}
		if !started(db).Equal(b0) || !volumeopstest.Running(t, c, db) {
			t.Error("a container was stopped although the pre command failed")
		}
		if got := len(listDir(t, dir)); got != n {
			t.Errorf("the store holds %d files, had %d: something was stored", got, n)
		}
	})

	t.Run("both stop labels on one container is an error, as in offen", func(t *testing.T) {
		labelled(t, c, "dbt-offen-both-"+sfx, "", map[string]string{
			"docker-volume-backup.stop-during-backup": "true", "docker-volume-backup.stop-during-backup-no-restart": "true"})
		_, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store})
		if err == nil || !strings.Contains(err.Error(), "carries both") {
			t.Fatalf("backup: %v, want 'carries both'", err)
		}
	})
}

// TestRestoreDrill: a drill restores into a scratch volume, finds what the metadata says and
// removes the volume; a tampered archive fails the drill (as a checksum mismatch, also when
// the codec notices first), and the scratch volume is removed too. From a directory and from
// an S3 bucket (versitygw, whose objects are files we can change).
func TestRestoreDrill(t *testing.T) {
	e, c := newEngine(t)
	ctx := t.Context()
	sfx := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	vol := volumeopstest.Volume(t, c, "dbt-drill-"+sfx, "local", nil, nil)
	mp := mountpoint(t, c, vol)
	must(t, os.MkdirAll(filepath.Join(mp, "a", "b"), 0o755))
	must(t, os.WriteFile(filepath.Join(mp, "a", "b", "data"), randomBytes(12<<20), 0o644))
	must(t, os.Link(filepath.Join(mp, "a", "b", "data"), filepath.Join(mp, "a", "hardlink")))
	must(t, os.Symlink("b/data", filepath.Join(mp, "a", "symlink")))
	must(t, os.WriteFile(filepath.Join(mp, "small"), []byte("x"), 0o600))
	drillVolumes := func() []string {
		r, err := c.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", volumeops.DrillLabel)})
		must(t, err)
		var out []string
		for _, v := range r.Items {
			if strings.Contains(v.Name, sfx) || strings.Contains(v.Name, "dbt-drill") {
				out = append(out, v.Name)
			}
		}
		return out
	}
	for _, kind := range []struct {
		name string
		open func(t *testing.T) (backup.Store, string) // the store, and the directory of its objects
	}{
		{"dir", func(t *testing.T) (backup.Store, string) {
			dir := t.TempDir()
			s, err := backup.NewDirStore(dir)
			must(t, err)
			return s, dir
		}},
		{"s3", func(t *testing.T) (backup.Store, string) {
			srv := backuptest.StartS3(t)
			s, err := backup.OpenStore(ctx, srv.Location("drill/"), backup.S3Config{Endpoint: srv.Endpoint,
				AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1", PartSize: 5 << 20})
			must(t, err)
			return s, filepath.Join(srv.Dir, srv.Bucket, "drill")
		}},
	} {
		t.Run(kind.name, func(t *testing.T) {
			store, dir := kind.open(t)
			res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store})
			must(t, err)
			name := res[0].Archive.Name
			dr, err := e.VerifyRestore(ctx, volumeops.DrillOptions{Store: store, Archive: name})
			must(t, err)
			m := res[0].Metadata
			if dr.Found != (backup.Stats{Entries: m.Entries, Files: m.Files, Bytes: m.Bytes}) || m.Files != 2 || m.Bytes != 12<<20+1 {
				t.Errorf("drill found %s, metadata %d/%d/%d; want equal, with 2 files and 12 MiB + 1 bytes", dr.Found, m.Entries, m.Files, m.Bytes)
			}
			if left := drillVolumes(); len(left) > 0 {
				t.Errorf("scratch volumes left: %v", left)
			}
			tamper := func(t *testing.T, recomputeSum bool) {
				b, err := os.ReadFile(filepath.Join(dir, name))
				must(t, err)
				b[len(b)/2] ^= 0x40
				bad := strings.Replace(name, vol, vol+"x", 1)
				must(t, os.WriteFile(filepath.Join(dir, bad), b, 0o600))
				sum, err := os.ReadFile(filepath.Join(dir, backup.ChecksumName(name)))
				must(t, err)
				if recomputeSum {
					sum = backup.ChecksumLine(sha256Of(b), bad)
				} else {
					sum = []byte(strings.Replace(string(sum), name, bad, 1))
				}
				must(t, os.WriteFile(filepath.Join(dir, backup.ChecksumName(bad)), sum, 0o600))
				start := time.Now()
				_, err = e.VerifyRestore(ctx, volumeops.DrillOptions{Store: store, Archive: bad})
				if err == nil {
					t.Fatal("the drill passed on a tampered archive")
				}
				t.Logf("drill of the tampered archive failed as it should, in %v: %v", time.Since(start).Round(time.Millisecond), err)
				if !recomputeSum && !errors.Is(err, backup.ErrChecksum) {
					t.Errorf("error %v, want a checksum mismatch", err)
				}
				if left := drillVolumes(); len(left) > 0 {
					t.Errorf("scratch volumes left after a failed drill: %v", left)
				}
			}
			t.Run("tampered archive", func(t *testing.T) { tamper(t, false) })
			t.Run("tampered archive with a matching .sha256", func(t *testing.T) { tamper(t, true) })
		})
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
