package backup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Reading never creates a directory; a destination is created, and the caller is told.
func TestOnlyADestinationIsCreated(t *testing.T) {
	typo := filepath.Join(t.TempDir(), "srv", "bakups")
	if _, err := OpenStore(t.Context(), typo, S3Config{}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("OpenStore of a missing directory: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(typo)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenStore created %s", filepath.Dir(typo))
	}
	s, created, err := OpenDestination(t.Context(), typo, S3Config{})
	if err != nil || !created || s.String() != typo {
		t.Fatalf("OpenDestination: %v, created %v", err, created)
	}
	if fi, err := os.Stat(typo); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("destination: %v %v", fi, err)
	}
	if _, created, err := OpenDestination(t.Context(), typo, S3Config{}); err != nil || created {
		t.Fatalf("an existing destination: %v, created %v", err, created)
	}
	file := filepath.Join(typo, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDirStore(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a file as a store: %v", err)
	}
}

func TestLocateNamesTheNearest(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	names := []string{
		ArchiveName("db_data", time.Date(2025, 10, 16, 0, 0, 0, 0, time.UTC), Zstd, false),
		ArchiveName("db_data", time.Date(2025, 10, 17, 0, 0, 0, 0, time.UTC), Zstd, false),
		ArchiveName("web", time.Date(2025, 10, 17, 0, 0, 0, 0, time.UTC), Gzip, false),
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(b, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sa, _ := NewDirStore(a)
	sb, _ := NewDirStore(b)
	if s, err := Locate(t.Context(), names[2], sa, sb); err != nil || s != Store(sb) {
		t.Fatalf("Locate in the second store: %v %v", s, err)
	}
	_, err := Locate(t.Context(), "db_data", sa, sb)
	var nb *NoBackupError
	if !errors.As(err, &nb) || len(nb.Where) != 2 || len(nb.Nearest) != 2 || nb.Nearest[0] != names[1] {
		t.Fatalf("db_data: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "no backup named db_data in "+a+" or "+b) {
		t.Fatalf("message: %v", err)
	}
	_, err = Locate(t.Context(), "completely-unrelated-name", sa, sb)
	if !errors.As(err, &nb) || len(nb.Nearest) != 0 {
		t.Fatalf("unrelated: %v", err)
	}
}
