package backup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
)

func s3Store(t *testing.T, srv *backuptest.S3Server, prefix string) Store {
	t.Helper()
	s, err := OpenStore(t.Context(), srv.Location(prefix), S3Config{Endpoint: srv.Endpoint,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1", PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Against a real S3 server: a multipart upload (several parts), list, verify, restore, prune,
// and an aborted upload that leaves no object behind.
func TestS3Store(t *testing.T) {
	srv := backuptest.StartS3(t)
	store := s3Store(t, srv, "host1/")
	src := t.TempDir()
	backuptest.MakeTree(t, src, backuptest.TreeOptions{BigFile: 24 << 20}) // random half: > 3 parts of 5 MiB
	res, _ := backupDir(t, store, src, Zstd, nil)
	if res.Size < 10<<20 {
		t.Fatalf("archive of %d bytes is too small to need several parts", res.Size)
	}
	// The object landed in the posix backend under the prefix.
	if _, err := os.Stat(filepath.Join(srv.Dir, srv.Bucket, "host1", res.Name)); err != nil {
		t.Fatalf("object not on the server: %v", err)
	}
	bs, err := List(t.Context(), store)
	if err != nil || len(bs) != 1 || bs[0].Name != res.Name || !bs[0].HasChecksum || bs[0].Size != res.Size {
		t.Fatalf("list: %v %+v", err, bs)
	}
	if rep, err := Verify(t.Context(), store, res.Name, nil); err != nil || !rep.Walked {
		t.Fatalf("verify: %v", err)
	}
	dst := t.TempDir()
	if _, _, err := restoreDir(t, store, res.Name, dst, nil); err != nil {
		t.Fatal(err)
	}
	if d := backuptest.Diff(backuptest.Snapshot(t, src), backuptest.Snapshot(t, dst)); len(d) > 0 {
		t.Fatalf("restored tree differs:\n%s", strings.Join(d, "\n"))
	}

	// Aborted upload: nothing appears.
	w, err := store.Create(t.Context(), "aborted.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(bytes.Repeat([]byte("x"), 6<<20))
	w.Abort()
	if _, err := store.Open(t.Context(), "aborted.tar.zst"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("aborted upload is visible: %v", err)
	}
	// A damaged object fails verification.
	obj := filepath.Join(srv.Dir, srv.Bucket, "host1", res.Name)
	b, _ := os.ReadFile(obj)
	b[len(b)/3] ^= 1
	_ = os.WriteFile(obj, b, 0o644)
	if _, err := Verify(t.Context(), store, res.Name, nil); !errors.Is(err, ErrChecksum) {
		t.Fatalf("verify of a damaged object: %v", err)
	}
}
