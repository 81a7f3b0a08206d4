package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestPlanPrune(t *testing.T) {
	now := time.Date(2025, 10, 17, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	mk := func(vol string, ago time.Duration, sum bool) Backup {
		tm := now.Add(-ago)
		return Backup{Name: ArchiveName(vol, tm, Zstd, false), Volume: vol, Time: tm, HasChecksum: sum}
	}
	// Newest first, as List returns them.
	backups := []Backup{
		mk("db", 1*time.Hour, false), // interrupted: no checksum
		mk("db", 1*day, true),        // corrupt (see verified below)
		mk("db", 2*day, true),
		mk("db", 10*day, true),
		mk("db", 40*day, true),
		mk("web", 50*day, true),
		mk("web", 60*day, true),
	}
	corrupt := backups[1].Name
	verified := func(b Backup) bool { return b.Name != corrupt }
	cases := []struct {
		name   string
		policy PrunePolicy
		keep   []int
	}{
		{"keep last 2", PrunePolicy{KeepLast: 2}, []int{0, 1, 2, 5, 6}},
		{"keep within 7 days", PrunePolicy{KeepWithin: 7 * day}, []int{0, 1, 2, 5}},
		{"keep last 1 or within 15 days", PrunePolicy{KeepLast: 1, KeepWithin: 15 * day}, []int{0, 1, 2, 3, 5}},
		{"keep last 1 only", PrunePolicy{KeepLast: 1}, []int{0, 2, 5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var kept []int
			for i, d := range PlanPrune(backups, tc.policy, now, verified) {
				if d.Keep {
					kept = append(kept, i)
				}
			}
			if !slices.Equal(kept, tc.keep) {
				t.Fatalf("kept %v, want %v", kept, tc.keep)
			}
		})
	}
}

func TestPruneStore(t *testing.T) {
	dir := t.TempDir()
	store, _ := NewDirStore(dir)
	now := time.Date(2025, 10, 17, 12, 0, 0, 0, time.UTC)
	var names []string
	for i := range 5 {
		name := ArchiveName("vol", now.Add(-time.Duration(i)*24*time.Hour), Zstd, false)
		names = append(names, name)
		content := []byte(fmt.Sprint("archive ", i))
		must(t, os.WriteFile(filepath.Join(dir, name), content, 0o600))
		sum := ChecksumLine(sha(content), name)
		if i == 0 {
			sum = ChecksumLine(sha([]byte("something else")), name) // newest is corrupt
		}
		must(t, os.WriteFile(filepath.Join(dir, ChecksumName(name)), sum, 0o600))
	}
	must(t, os.WriteFile(filepath.Join(dir, "unrelated.txt"), nil, 0o600))
	if _, err := Prune(t.Context(), store, PrunePolicy{}, now, false); err == nil {
		t.Fatal("prune without a rule was accepted")
	}
	plan, err := Prune(t.Context(), store, PrunePolicy{KeepLast: 1}, now, true)
	must(t, err)
	if n := countKeep(plan); n != 2 {
		t.Fatalf("dry run keeps %d, want 2 (the newest and the newest verified)", n)
	}
	if des, _ := os.ReadDir(dir); len(des) != 11 {
		t.Fatalf("dry run deleted files: %d left", len(des))
	}
	_, err = Prune(t.Context(), store, PrunePolicy{KeepLast: 1}, now, false)
	must(t, err)
	var left []string
	des, _ := os.ReadDir(dir)
	for _, d := range des {
		left = append(left, d.Name())
	}
	want := []string{names[1], ChecksumName(names[1]), names[0], ChecksumName(names[0]), "unrelated.txt"}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
}

func countKeep(ds []Decision) int {
	n := 0
	for _, d := range ds {
		if d.Keep {
			n++
		}
	}
	return n
}
