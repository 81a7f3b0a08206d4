package backup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

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

// A backup killed in the middle of its upload leaves a multipart upload that S3 never lists;
// AbortStaleUploads aborts those of archives once they are old enough (a younger one may be a
// backup still going, from another machine).
func TestS3AbortStaleUploads(t *testing.T) {
	srv := backuptest.StartS3(t)
	store := s3Store(t, srv, "host1/").(*S3Store)
	ctx := t.Context()
	core := minio.Core{Client: store.client}
	for _, key := range []string{"host1/db-20260101T030000Z.tar.zst", "host1/not-an-archive.bin"} {
		id, err := core.NewMultipartUpload(ctx, store.bucket, key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		part := bytes.Repeat([]byte("p"), 5<<20)
		if _, err := core.PutObjectPart(ctx, store.bucket, key, id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	unfinished := func() []string {
		var keys []string
		for u := range store.client.ListIncompleteUploads(ctx, store.bucket, "host1/", false) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			keys = append(keys, u.Key)
		}
		return keys
	}
	if k := unfinished(); len(k) != 2 {
		t.Fatalf("unfinished uploads: %v", k)
	}
	if bs, _ := List(ctx, store); len(bs) != 0 {
		t.Fatalf("an unfinished upload is listed: %+v", bs)
	}
	if n, err := store.AbortStaleUploads(ctx, 24*time.Hour, time.Now()); err != nil || n != 0 {
		t.Fatalf("a fresh upload was aborted: %d, %v", n, err)
	}
	n, err := store.AbortStaleUploads(ctx, 24*time.Hour, time.Now().Add(25*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("AbortStaleUploads a day later: %d, %v", n, err)
	}
	if k := unfinished(); len(k) != 1 || k[0] != "host1/not-an-archive.bin" {
		t.Fatalf("unfinished uploads left: %v, want only the one that is not ours", k)
	}
}
