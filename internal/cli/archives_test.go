package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
)

// writeArchive puts a small, complete archive of volume vol (and its .sha256) into store.
func writeArchive(t *testing.T, store backup.Store, vol string, at time.Time) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, _, err := backup.WriteCompressed(t.Context(), &buf, src, backup.Metadata{Volume: vol, Driver: "local"}, backup.Zstd, backup.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	name := backup.ArchiveName(vol, at, backup.Zstd, false)
	sum := sha256.Sum256(buf.Bytes())
	if err := backup.WriteObject(t.Context(), store, name, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := backup.WriteObject(t.Context(), store, backup.ChecksumName(name), backup.ChecksumLine(sum[:], name)); err != nil {
		t.Fatal(err)
	}
	return name
}

func dirStore(t *testing.T, dir string) backup.Store {
	t.Helper()
	s, err := backup.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lsNames is what `backup ls -o json` lists.
func lsNames(t *testing.T, args ...string) []string {
	t.Helper()
	out, _, err := run(t, "", append([]string{"backup", "ls", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("backup ls: %v", err)
	}
	var bs []backup.Backup
	if err := json.Unmarshal([]byte(out), &bs); err != nil {
		t.Fatalf("backup ls -o json: %v\n%s", err, out)
	}
	var names []string
	for _, b := range bs {
		names = append(names, b.Name)
	}
	return names
}

// A bare archive name is looked for where `backup ls` lists it: the configured store
// ($DOCKBRIDGE_BACKUP_TO or --from) first, then the current directory. Exactly what `ls`
// prints is accepted.
func TestBareArchiveNameIsFoundWhereBackupLsListsIt(t *testing.T) {
	isolate(t)
	store, elsewhere := t.TempDir(), t.TempDir()
	t.Chdir(elsewhere)
	name := writeArchive(t, dirStore(t, store), "db_data", time.Date(2025, 10, 17, 14, 30, 25, 0, time.UTC))
	t.Setenv("DOCKBRIDGE_BACKUP_TO", store)
	listed := lsNames(t)
	if len(listed) != 1 || listed[0] != name {
		t.Fatalf("backup ls lists %q, want %q", listed, name)
	}
	out, _, err := run(t, "", "backup", "verify", listed[0])
	if err != nil || !strings.Contains(out, name+": OK") {
		t.Fatalf("backup verify %s with DOCKBRIDGE_BACKUP_TO=%s: %v\n%s", listed[0], store, err, out)
	}
	// --from wins over the environment, as for `backup ls`.
	other := t.TempDir()
	otherName := writeArchive(t, dirStore(t, other), "web", time.Date(2025, 10, 18, 0, 0, 0, 0, time.UTC))
	if out, _, err := run(t, "", "backup", "verify", otherName, "--from", other); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify --from: %v\n%s", err, out)
	}
	// Then the current directory.
	local := writeArchive(t, dirStore(t, elsewhere), "cache", time.Date(2025, 10, 19, 0, 0, 0, 0, time.UTC))
	if out, _, err := run(t, "", "backup", "verify", local); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("verify of an archive in the current directory with DOCKBRIDGE_BACKUP_TO set: %v\n%s", err, out)
	}
}

// A name that matches nothing says so, where it looked, and the nearest names: not "no
// checksum file (an interrupted backup?)".
func TestUnknownArchiveNameListsTheNearest(t *testing.T) {
	isolate(t)
	store := t.TempDir()
	t.Chdir(t.TempDir())
	s := dirStore(t, store)
	older := writeArchive(t, s, "db_data", time.Date(2025, 10, 16, 0, 0, 0, 0, time.UTC))
	newer := writeArchive(t, s, "db_data", time.Date(2025, 10, 17, 0, 0, 0, 0, time.UTC))
	other := writeArchive(t, s, "web", time.Date(2025, 10, 17, 0, 0, 0, 0, time.UTC))
	t.Setenv("DOCKBRIDGE_BACKUP_TO", store)
	for _, c := range []struct {
		args        []string
		want, wantN []string
	}{
		{[]string{"backup", "verify", "db_data"}, []string{"no backup named db_data in " + store + " or ."}, []string{newer, older}},
		{[]string{"restore", "db_data-20251017T000000Z.tar.gz"}, []string{"no backup named db_data-20251017T000000Z.tar.gz in " + store}, []string{newer}},
		{[]string{"backup", "verify", filepath.Join(store, "wbe-20251017T000000Z.tar.zst")}, []string{"no backup named wbe-20251017T000000Z.tar.zst in " + store}, []string{other}},
	} {
		_, _, err := run(t, "", c.args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		for _, w := range append(c.want, c.wantN...) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error lacks %q:\n%v", c.args, w, err)
			}
		}
		if strings.Contains(err.Error(), "interrupted") {
			t.Errorf("%v: %v", c.args, err)
		}
	}
}

// `backup ls` lists S3 entries, and verify takes exactly those names from the configured bucket.
func TestBareArchiveNameInABucket(t *testing.T) {
	isolate(t)
	srv := backuptest.StartS3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
	t.Chdir(t.TempDir())
	loc := srv.Location("host1/")
	s, err := backup.OpenStore(t.Context(), loc, backup.S3Config{})
	if err != nil {
		t.Fatal(err)
	}
	name := writeArchive(t, s, "db_data", time.Date(2025, 10, 17, 14, 30, 25, 0, time.UTC))
	t.Setenv("DOCKBRIDGE_BACKUP_TO", loc)
	listed := lsNames(t)
	if len(listed) != 1 || listed[0] != name {
		t.Fatalf("backup ls lists %q, want %q", listed, name)
	}
	if out, _, err := run(t, "", "backup", "verify", listed[0]); err != nil || !strings.Contains(out, name+": OK") {
		t.Fatalf("verify %s from %s: %v\n%s", name, loc, err, out)
	}
	// A missing bucket is an error, and none is created.
	_, _, err = run(t, "", "backup", "ls", "--from", "s3://no-such-bucket/x")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("backup ls of a missing bucket: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srv.Dir, "no-such-bucket")); err == nil {
		t.Fatal("a bucket was created")
	}
}

// Reading never creates: a typo in --from, --backups or an archive's directory is an error
// and leaves no directory behind.
func TestTypoPathsAreNotCreated(t *testing.T) {
	isolate(t)
	root := t.TempDir()
	typo := filepath.Join(root, "srv", "bakups")
	for _, args := range [][]string{
		{"backup", "ls", "--from", typo},
		{"backup", "prune", "--from", typo, "--keep-last", "1", "--force"},
		{"backup", "verify", filepath.Join(typo, "x-20251017T000000Z.tar.zst")},
		{"backup", "verify", "x-20251017T000000Z.tar.zst", "--from", typo},
		{"restore", filepath.Join(typo, "x-20251017T000000Z.tar.zst")},
		{"metrics", "--backups", typo, "--no-usage"},
	} {
		_, _, err := run(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%v: want an error that %s does not exist, got %v", args, typo, err)
		}
		if _, err := os.Stat(filepath.Join(root, "srv")); err == nil {
			t.Fatalf("%v created %s", args, filepath.Join(root, "srv"))
		}
	}
}
