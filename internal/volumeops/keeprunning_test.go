package volumeops_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/volumeops"
	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

// --keep-running leaves the containers alone; --encrypt-to makes an age archive that restores
// only with the identity.
func TestBackupKeepRunningEncrypted(t *testing.T) {
	e, c := newEngine(t)
	ctx := t.Context()
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	vol := volumeopstest.Volume(t, c, "dbt-keep-"+suffix, "local", nil, map[string]string{"k": "v"})
	mp := mountpoint(t, c, vol)
	must(t, os.WriteFile(filepath.Join(mp, "db.log"), []byte("appended while running\n"), 0o644))
	app := volumeopstest.Container(t, c, "dbt-keepapp-"+suffix, vol, true)
	before := startedAt(t, e, app)

	id, err := age.GenerateX25519Identity()
	must(t, err)
	store, err := backup.NewDirStore(t.TempDir())
	must(t, err)
	res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{vol}, Store: store, KeepRunning: true,
		Recipients: []age.Recipient{id.Recipient()}})
	must(t, err)
	if len(res[0].Stopped) != 0 || !startedAt(t, e, app).Equal(before) || !volumeopstest.Running(t, c, app) {
		t.Fatal("--keep-running stopped the container")
	}
	if m := res[0].Metadata; !m.KeepRunning || m.Encryption != "age" {
		t.Fatalf("metadata %+v", m)
	}
	name := res[0].Archive.Name
	dst := "dbt-keepdst-" + suffix
	t.Cleanup(func() { volumeopstest.RemoveVolume(c, dst) })
	if _, err := e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: name, Volume: dst}); err == nil {
		t.Fatal("restored an encrypted archive without the identity")
	}
	if _, err := e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: name, Volume: dst, Identities: []age.Identity{id}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(mountpoint(t, c, dst), "db.log"))
	if err != nil || string(b) != "appended while running\n" {
		t.Fatalf("restored %q, %v", b, err)
	}
}
