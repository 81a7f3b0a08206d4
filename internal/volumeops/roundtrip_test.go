package volumeops_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
	"github.com/dockbridge/dockbridge/internal/volumedriver/plugintest"
	"github.com/dockbridge/dockbridge/internal/volumeops"
	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

func newEngine(t *testing.T) (*volumeops.Engine, *client.Client) {
	c := volumeopstest.Client(t)
	return &volumeops.Engine{API: c, Context: "test", HelperBinary: volumeopstest.HelperBinary(t), Progress: testWriter{t}}, c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// volumeKind is a kind of volume the round trip covers: setup prepares what the kind needs, once
// per test.
type volumeKind struct {
	name  string
	setup func(t *testing.T) kindEnv
}

// kindEnv says how to make volumes of a kind and where their files are on this host.
type kindEnv struct {
	driver string
	opts   map[string]string
	// hostPath maps the Mountpoint the engine reports to this host's path (nil: the same).
	hostPath func(string) (string, error)
}

var volumeKinds = []volumeKind{
	{"local", func(*testing.T) kindEnv { return kindEnv{driver: "local"} }},
	// The hetzner volume plugin against the simulator's local backend (real loop devices, ext4).
	// Its instance is this process's own (dockbridge-test-<pid>/hetzner:latest), so the plugin's
	// integration tests, which own hetzner:latest, may run at the same time.
	{"hetzner", func(t *testing.T) kindEnv {
		volumeopstest.Client(t) // -short skips here, like every engine test
		env, err := plugintest.Start(context.Background(), plugintest.Options{})
		if err != nil {
			t.Fatalf("hetzner volume plugin on the simulator: %v", err)
		}
		t.Cleanup(env.Close)
		return kindEnv{driver: env.PluginName, opts: map[string]string{"size": "10", "fstype": "ext4"}, hostPath: env.HostPath}
	}},
}

type storeKind struct {
	name string
	open func(t *testing.T) backup.Store
}

var storeKinds = []storeKind{
	{"dir", func(t *testing.T) backup.Store {
		s, err := backup.NewDirStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"s3", func(t *testing.T) backup.Store {
		srv := backuptest.StartS3(t)
		s, err := backup.OpenStore(t.Context(), srv.Location("engine/"), backup.S3Config{Endpoint: srv.Endpoint,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// mountpoint returns the volume's directory on this host (the tests drive a local engine).
func mountpoint(t *testing.T, c *client.Client, vol string) string {
	return kindEnv{}.mountpoint(t, c, vol)
}

// mountpoint returns the directory on this host of a mounted volume of the kind. The engine
// reports a managed plugin's volume at the plugin's own path (/mnt/volumes/NAME); hostPath maps
// it, and the path must be a mount point (a plugin volume is mounted only while in use).
func (k kindEnv) mountpoint(t *testing.T, c *client.Client, vol string) string {
	t.Helper()
	r, err := c.VolumeInspect(context.Background(), vol, client.VolumeInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mp := r.Volume.Mountpoint
	if k.hostPath == nil {
		return mp
	}
	if mp, err = k.hostPath(mp); err != nil {
		t.Fatalf("volume %s: %v", vol, err)
	}
	var st, parent unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil || unix.Stat(filepath.Dir(mp), &parent) != nil || st.Dev == parent.Dev {
		t.Fatalf("volume %s is not mounted at %s on this host (%v)", vol, mp, err)
	}
	return mp
}

// Round trip through the real engine, bit for bit, including a 1 GB file: back up a volume used
// by a running and a stopped container, restore it into a volume that does not exist yet.
func TestBackupRestoreRoundTrip(t *testing.T) {
	for _, vk := range volumeKinds {
		t.Run(vk.name, func(t *testing.T) {
			k := vk.setup(t)
			for _, sk := range storeKinds {
				t.Run(sk.name, func(t *testing.T) { roundTrip(t, k, sk) })
			}
		})
	}
}

// roundTrip backs up a volume of driver with opts into the store of sk and restores it into a
// volume the restore creates.
func roundTrip(t *testing.T, k kindEnv, sk storeKind) {
	driver, opts := k.driver, k.opts
	e, c := newEngine(t)
	ctx := t.Context()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	src := volumeopstest.Volume(t, c, "dbt-src-"+suffix, driver, opts, map[string]string{"app": "roundtrip", "tier": "db"})
	// A running container mounts the volume (a plugin volume has a mountpoint only then).
	running := volumeopstest.Container(t, c, "dbt-run-"+suffix, src, true)
	stoppedC := volumeopstest.Container(t, c, "dbt-stop-"+suffix, src, false)
	backuptest.MakeTree(t, k.mountpoint(t, c, src), backuptest.TreeOptions{BigFile: 1 << 30})
	want := backuptest.Snapshot(t, k.mountpoint(t, c, src))

	store := sk.open(t)
	res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{src}, Store: store, Compression: backup.Zstd})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Stopped) != 1 || res[0].Metadata.Bytes < 1<<30 {
		t.Fatalf("result %+v", res)
	}
	if !volumeopstest.Running(t, c, running) || volumeopstest.Running(t, c, stoppedC) {
		t.Fatal("after the backup the running container must run again and the stopped one stay stopped")
	}
	m := res[0].Metadata
	if m.Driver != driver || m.Labels["app"] != "roundtrip" || m.SourceContext != "test" || m.Compression != backup.Zstd {
		t.Fatalf("metadata %+v", m)
	}
	if rep, err := backup.Verify(ctx, store, res[0].Archive.Name, nil); err != nil || !rep.Walked {
		t.Fatalf("verify: %v", err)
	}

	dst := "dbt-dst-" + suffix
	t.Cleanup(func() { volumeopstest.RemoveVolume(c, dst) })
	rr, err := e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: res[0].Archive.Name, Volume: dst})
	if err != nil {
		t.Fatal(err)
	}
	if !rr.Created || rr.Stats.Bytes != m.Bytes {
		t.Fatalf("restore result %+v", rr)
	}
	v, err := c.VolumeInspect(ctx, dst, client.VolumeInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Volume.Driver != driver || !maps.Equal(v.Volume.Labels, map[string]string{"app": "roundtrip", "tier": "db"}) ||
		!maps.Equal(v.Volume.Options, opts) {
		t.Fatalf("recreated volume lost its driver, labels or options: %s %v %v", v.Volume.Driver, v.Volume.Labels, v.Volume.Options)
	}
	volumeopstest.Container(t, c, "dbt-look-"+suffix, dst, true) // mounted, for plugin volumes
	if volumeops.IsHetznerDriver(driver) {
		// A Hetzner volume of the recorded size really backs it (the plugin's Status).
		iv, err := e.InspectVolume(ctx, dst)
		if err != nil || iv.Hetzner == nil || iv.Hetzner.ID == 0 || fmt.Sprint(iv.Hetzner.SizeGB) != opts["size"] {
			t.Fatalf("restored hetzner volume: %+v %v", iv.Hetzner, err)
		}
	}
	if d := backuptest.Diff(want, backuptest.Snapshot(t, k.mountpoint(t, c, dst))); len(d) > 0 {
		t.Fatalf("restored volume differs:\n%s", strings.Join(d, "\n"))
	}

	// The target now holds data: refused without --force.
	_, err = e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: res[0].Archive.Name, Volume: dst})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over data: %v", err)
	}
}

// --force on a volume in use: the containers using it are stopped, a safety backup holds the old
// content, the new content replaces it (nothing of the old stays), the containers run again.
func TestRestoreForce(t *testing.T) {
	e, c := newEngine(t)
	ctx := t.Context()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	vol := volumeopstest.Volume(t, c, "dbt-force-"+suffix, "local", nil, nil)
	mp := mountpoint(t, c, vol)
	must(t, os.WriteFile(filepath.Join(mp, "v1.txt"), []byte("version 1"), 0o644))
	store, _ := backup.NewDirStore(t.TempDir())
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Minute); return clock }
	res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store, Now: now})
	must(t, err)
	must(t, os.Remove(filepath.Join(mp, "v1.txt")))
	must(t, os.WriteFile(filepath.Join(mp, "v2.txt"), []byte("version 2"), 0o644))
	app := volumeopstest.Container(t, c, "dbt-forceapp-"+suffix, vol, true)

	rr, err := e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: res[0].Archive.Name, Force: true, Now: now})
	must(t, err)
	if rr.SafetyBackup == nil || len(rr.Stopped) != 1 {
		t.Fatalf("result %+v", rr)
	}
	if !volumeopstest.Running(t, c, app) {
		t.Fatal("the container using the volume was not started again")
	}
	if _, err := os.Stat(filepath.Join(mp, "v2.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("restore left the old content in place")
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "v1.txt")); string(b) != "version 1" {
		t.Fatalf("restored content %q", b)
	}
	// The safety backup holds version 2.
	rc, err := backup.OpenTar(ctx, store, rr.SafetyBackup.Archive.Name, nil)
	must(t, err)
	defer rc.Close()
	dir := t.TempDir()
	_, _, err = backup.Extract(ctx, rc, dir, backup.ExtractOptions{})
	must(t, err)
	if b, _ := os.ReadFile(filepath.Join(dir, "v2.txt")); string(b) != "version 2" {
		t.Fatalf("safety backup holds %q", b)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
