package backup

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
	"github.com/dockbridge/dockbridge/internal/testenv"
)

func testMeta() Metadata {
	return Metadata{ToolVersion: "test", Volume: "vol1", Driver: "local",
		Labels: map[string]string{"app": "x"}, DriverOptions: map[string]string{"o": "bind"}}
}

// backupDir stores an archive of src in s the way the engine path does: compressed stream →
// ArchiveWriter.
func backupDir(t *testing.T, s Store, src string, c Compression, rcpt []age.Recipient) (Result, Metadata) {
	t.Helper()
	ctx := t.Context()
	meta := testMeta()
	if len(rcpt) > 0 {
		meta.Encryption = "age"
	}
	name := ArchiveName(meta.Volume, meta.StartedAt, c, len(rcpt) > 0)
	aw, err := NewArchiveWriter(ctx, s, name, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := WriteCompressed(ctx, aw, src, meta, c, WriteOptions{Strict: true})
	if err != nil {
		aw.Abort()
		t.Fatal(err)
	}
	res, err := aw.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return res, m
}

func restoreDir(t *testing.T, s Store, name, dst string, ids []age.Identity) (Metadata, Stats, error) {
	t.Helper()
	if err := VerifyChecksum(t.Context(), s, name); err != nil {
		return Metadata{}, Stats{}, err
	}
	rc, err := OpenTar(t.Context(), s, name, ids)
	if err != nil {
		return Metadata{}, Stats{}, err
	}
	defer rc.Close()
	return Extract(t.Context(), rc, dst, ExtractOptions{Chown: os.Geteuid() == 0})
}

func TestRoundTripBitForBit(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Require(t, "this test restores owners", []string{"root (CI runs as root)"})
	}
	src := t.TempDir()
	backuptest.MakeTree(t, src, backuptest.TreeOptions{BigFile: 8 << 20})
	want := backuptest.Snapshot(t, src)
	for _, c := range []Compression{Zstd, Gzip, None} {
		t.Run(string(c), func(t *testing.T) {
			store, err := NewDirStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			res, m := backupDir(t, store, src, c, nil)
			if m.Files == 0 || m.Bytes < 8<<20 || m.Entries <= m.Files {
				t.Fatalf("metadata counts look wrong: %+v", m)
			}
			fi, err := os.Stat(filepath.Join(store.dir, res.Name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("archive mode %o, want 0600", fi.Mode().Perm())
			}
			if !strings.HasSuffix(res.Name, ".tar"+c.Ext()) {
				t.Errorf("archive name %s", res.Name)
			}
			// The sidecar is in sha256sum format: the real tool accepts it.
			cmd := exec.Command("sha256sum", "-c", ChecksumName(res.Name))
			cmd.Dir = store.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c: %v: %s", err, out)
			}
			rep, err := Verify(t.Context(), store, res.Name, nil)
			if err != nil || !rep.Walked {
				t.Fatalf("verify: %v %+v", err, rep)
			}
			dst := t.TempDir()
			gm, st, err := restoreDir(t, store, res.Name, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			if gm.Volume != "vol1" || gm.Labels["app"] != "x" || st.Bytes != m.Bytes {
				t.Errorf("metadata %+v stats %+v", gm, st)
			}
			if d := backuptest.Diff(want, backuptest.Snapshot(t, dst)); len(d) > 0 {
				t.Fatalf("restored tree differs:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

// A person without dockbridge restores with zstd and GNU tar.
func TestPlainToolsCanRestore(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("plain tools\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Several zstd frames: the archive is a concatenation of independent 4 MiB frames.
	if err := os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("0123456789abcdef"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	store, _ := NewDirStore(t.TempDir())
	res, _ := backupDir(t, store, src, Zstd, nil)
	dst := t.TempDir()
	cmd := exec.Command("sh", "-c", "zstd -dc "+res.Name+" | tar -x --xattrs -C "+dst)
	cmd.Dir = store.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dst, "data/hello.txt"))
	if err != nil || string(b) != "plain tools\n" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, MetadataName)); err != nil {
		t.Fatal(err)
	}
}

func TestAgeRoundTrip(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := ParseRecipients(id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	backuptest.MakeTree(t, src, backuptest.TreeOptions{})
	store, _ := NewDirStore(t.TempDir())
	res, _ := backupDir(t, store, src, Zstd, rcpt)
	if !strings.HasSuffix(res.Name, ".tar.zst.age") {
		t.Fatalf("name %s", res.Name)
	}
	raw, _ := os.ReadFile(filepath.Join(store.dir, res.Name))
	if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1")) || bytes.Contains(raw, []byte(MetadataName)) {
		t.Fatal("archive is not an age file or leaks the metadata")
	}
	// Without the key: checksum only.
	rep, err := Verify(t.Context(), store, res.Name, nil)
	if err != nil || rep.Walked {
		t.Fatalf("verify without key: %v %+v", err, rep)
	}
	if _, _, err := restoreDir(t, store, res.Name, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "--identity") {
		t.Fatalf("restore without key: %v", err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, _, err := restoreDir(t, store, res.Name, t.TempDir(), []age.Identity{other}); err == nil {
		t.Fatal("restore with the wrong key succeeded")
	}
	rep, err = Verify(t.Context(), store, res.Name, []age.Identity{id})
	if err != nil || !rep.Walked || rep.Metadata.Encryption != "age" {
		t.Fatalf("verify with key: %v %+v", err, rep)
	}
	dst := t.TempDir()
	if _, _, err := restoreDir(t, store, res.Name, dst, []age.Identity{id}); err != nil {
		t.Fatal(err)
	}
	if d := backuptest.Diff(backuptest.Snapshot(t, src), backuptest.Snapshot(t, dst)); len(d) > 0 {
		t.Fatalf("restored tree differs:\n%s", strings.Join(d, "\n"))
	}
}

// The scan fixes the counts: a file that changes while it is read is an error when nothing may
// write (strict), and a warning with the counts still exact when containers keep running.
func TestChangedWhileReading(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "grows")
	if err := os.WriteFile(p, bytes.Repeat([]byte("x"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := scan(context.Background(), src, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	// Shrink it after the scan.
	if err := os.WriteFile(p, []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, strict := range []bool{true, false} {
		var warnings []string
		var buf bytes.Buffer
		tw := &treeWriter{tw: newTarWriter(&buf), root: src, strict: strict, warn: func(s string) { warnings = append(warnings, s) },
			links: map[[2]uint64]string{}, buf: make([]byte, 4096)}
		var werr error
		for i := range entries {
			if werr = tw.add(&entries[i]); werr != nil {
				break
			}
		}
		if strict && (werr == nil || !strings.Contains(werr.Error(), "changed while it was read")) {
			t.Fatalf("strict: %v", werr)
		}
		if !strict && (werr != nil || len(warnings) != 1 || tw.stats.Bytes != 1000) {
			t.Fatalf("keep-running: err %v warnings %v stats %+v", werr, warnings, tw.stats)
		}
	}
}
