package volumeops_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/klauspost/compress/zstd"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
	"github.com/dockbridge/dockbridge/internal/volumeops"
	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

// storeHostile writes a hand-made archive with a correct checksum, so only the extraction in
// the helper container can catch it.
func storeHostile(t *testing.T, s backup.Store, name string, m backup.Metadata, entries ...func(*tar.Writer)) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mj, _ := json.Marshal(m)
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: backup.MetadataName, Mode: 0o644, Size: int64(len(mj))}))
	_, _ = tw.Write(mj)
	for _, e := range entries {
		e(tw)
	}
	must(t, tw.Close())
	var z bytes.Buffer
	zw, _ := zstd.NewWriter(&z)
	_, _ = zw.Write(raw.Bytes())
	must(t, zw.Close())
	must(t, backup.WriteObject(t.Context(), s, name, z.Bytes()))
	sum := sha256.Sum256(z.Bytes())
	must(t, backup.WriteObject(t.Context(), s, backup.ChecksumName(name), backup.ChecksumLine(sum[:], name)))
}

func file(name, content string) func(*tar.Writer) {
	return func(tw *tar.Writer) {
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))})
		_, _ = tw.Write([]byte(content))
	}
}

// Hostile archives through the engine: refused by the helper with a clear error, and the volume
// the restore created is removed again.
func TestRestoreRefusesHostileArchives(t *testing.T) {
	e, c := newEngine(t)
	store, err := backup.NewDirStore(t.TempDir())
	must(t, err)
	meta := func(entries, files, bytes int64) backup.Metadata {
		return backup.Metadata{FormatVersion: backup.FormatVersion, Volume: "hostile", Driver: "local",
			Compression: backup.Zstd, Encryption: "none", Entries: entries, Files: files, Bytes: bytes}
	}
	cases := []struct {
		name    string
		meta    backup.Metadata
		entries []func(*tar.Writer)
		want    string
	}{
		{"path traversal", meta(1, 1, 4), []func(*tar.Writer){file("data/../../etc/evil", "evil")}, "climbs out"},
		{"symlink escape", meta(2, 1, 4), []func(*tar.Writer){
			func(tw *tar.Writer) {
				_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "data/etc", Linkname: "/etc"})
			},
			file("data/etc/evil", "evil")}, "unsafe archive entry"},
		{"lying metadata", meta(1, 1, 2), []func(*tar.Writer){file("data/a", "four")}, "more than announced"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := backup.ArchiveName("hostile", time.Date(2025, 1, 1, 0, 0, i, 0, time.UTC), backup.Zstd, false)
			storeHostile(t, store, name, tc.meta, tc.entries...)
			target := fmt.Sprintf("dbt-hostile-%d-%d", i, time.Now().UnixNano()%1e9)
			_, err := e.Restore(t.Context(), volumeops.RestoreOptions{Store: store, Archive: name, Volume: target})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v, want an error about %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "was removed") {
				t.Errorf("error does not say the created volume was removed: %v", err)
			}
			if _, err := c.VolumeInspect(context.Background(), target, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
				t.Errorf("the volume created for the failed restore is still there: %v", err)
			}
		})
	}
}

// A wrong checksum, found at the end of the single pass: nothing of the archive is kept. A volume
// the restore created is removed, an empty one is left empty, and a volume that holds data is
// checked before anything changes (--force: no safety backup, no stopped container, data intact).
func TestRestoreWrongChecksum(t *testing.T) {
	e, c := newEngine(t)
	ctx := t.Context()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	src := volumeopstest.Volume(t, c, "dbt-sum-src-"+suffix, "local", nil, nil)
	backuptest.MakeTree(t, mountpoint(t, c, src), backuptest.TreeOptions{BigFile: 8 << 20})
	dir := t.TempDir()
	store, err := backup.NewDirStore(dir)
	must(t, err)
	res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: []string{src}, Store: store})
	must(t, err)
	name := res[0].Archive.Name
	archive := filepath.Join(dir, name)

	damage := map[string]func(t *testing.T){
		// The archive decodes fine; only the plugin's hash can tell.
		"sidecar of another archive": func(t *testing.T) {
			sum := sha256.Sum256([]byte("another archive"))
			must(t, os.WriteFile(archive+".sha256", backup.ChecksumLine(sum[:], name), 0o600))
		},
		"flipped byte": func(t *testing.T) {
			b, err := os.ReadFile(archive)
			must(t, err)
			b[len(b)-100] ^= 0x55
			must(t, os.WriteFile(archive, b, 0o600))
		},
	}
	for what, spoil := range damage {
		t.Run(what, func(t *testing.T) {
			good, _ := os.ReadFile(archive)
			goodSum, _ := os.ReadFile(archive + ".sha256")
			t.Cleanup(func() {
				_ = os.WriteFile(archive, good, 0o600)
				_ = os.WriteFile(archive+".sha256", goodSum, 0o600)
			})
			spoil(t)
			wantErr := func(err error) {
				t.Helper()
				if !errors.Is(err, backup.ErrChecksum) {
					t.Fatalf("restore: %v, want a checksum error", err)
				}
			}

			created := "dbt-sum-new-" + suffix
			_, err := e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: name, Volume: created})
			wantErr(err)
			if _, err := c.VolumeInspect(ctx, created, client.VolumeInspectOptions{}); !cerrdefs.IsNotFound(err) {
				volumeopstest.RemoveVolume(c, created)
				t.Fatalf("the volume created for the failed restore is still there: %v", err)
			}

			empty := volumeopstest.Volume(t, c, "dbt-sum-empty-"+suffix, "local", nil, nil)
			_, err = e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: name, Volume: empty})
			wantErr(err)
			if des, err := os.ReadDir(mountpoint(t, c, empty)); err != nil || len(des) != 0 {
				t.Fatalf("the empty target holds %d entries after the failed restore (%v)", len(des), err)
			}

			full := volumeopstest.Volume(t, c, "dbt-sum-full-"+suffix, "local", nil, nil)
			must(t, os.WriteFile(filepath.Join(mountpoint(t, c, full), "keep.txt"), []byte("keep"), 0o644))
			app := volumeopstest.Container(t, c, "dbt-sum-app-"+suffix, full, true)
			safety, err := backup.NewDirStore(t.TempDir())
			must(t, err)
			rr, err := e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: name, Volume: full, Force: true, SafetyStore: safety})
			wantErr(err)
			if rr.SafetyBackup != nil || len(rr.Stopped) > 0 || !volumeopstest.Running(t, c, app) {
				t.Fatalf("a wrong checksum must stop the restore before anything happens: %+v", rr)
			}
			if b, err := os.ReadFile(filepath.Join(mountpoint(t, c, full), "keep.txt")); string(b) != "keep" {
				t.Fatalf("the target's data changed: %q %v", b, err)
			}
		})
	}
}
