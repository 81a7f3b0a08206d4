package volumeops_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/klauspost/compress/zstd"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/volumeops"
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
