package backup

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		// The interrupted archive (no .sha256) counts for no rule; an hour old, it may still be
		// being written, so it stays.
		{"keep last 1 only", PrunePolicy{KeepLast: 1}, []int{0, 1, 2, 5}},
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

// TestPlanPruneGFS checks the grandfather-father-son rules on a hand-made history, with a
// fake clock: the expected archives were worked out by hand from the calendar.
func TestPlanPruneGFS(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	times := []string{
		"2026-03-02T03:00:00Z", // Mon, week 10, the newest
		"2026-03-01T15:00:00Z", // Sun, week 9: two that day, this one is the day's newest
		"2026-03-01T03:00:00Z",
		"2026-02-28T03:00:00Z", // Sat, week 9
		"2026-02-27T03:00:00Z", // Fri, week 9
		"2026-02-20T03:00:00Z", // week 8
		"2026-02-13T03:00:00Z", // week 7
		"2026-02-01T03:00:00Z", // Sun, week 5; February's oldest
		"2026-01-31T03:00:00Z", // Sat, week 5: January's newest
		"2026-01-10T03:00:00Z", // week 2
		"2025-12-24T03:00:00Z", // December's newest
		"2025-12-01T03:00:00Z",
		"2025-11-15T03:00:00Z", // November's newest
	}
	var backups []Backup
	for _, s := range times {
		tm := at(s)
		backups = append(backups, Backup{Name: ArchiveName("db", tm, Zstd, false), Volume: "db", Time: tm, HasChecksum: true})
	}
	now := at("2026-03-02T12:00:00Z")
	all := func(Backup) bool { return true }
	cases := []struct {
		name   string
		policy PrunePolicy
		keep   []string
	}{
		{"3 daily", PrunePolicy{KeepDaily: 3}, []string{
			"2026-03-02T03:00:00Z", "2026-03-01T15:00:00Z", "2026-02-28T03:00:00Z"}},
		{"3 weekly", PrunePolicy{KeepWeekly: 3}, []string{
			"2026-03-02T03:00:00Z", "2026-03-01T15:00:00Z", "2026-02-20T03:00:00Z"}},
		{"3 monthly", PrunePolicy{KeepMonthly: 3}, []string{
			"2026-03-02T03:00:00Z", "2026-02-28T03:00:00Z", "2026-01-31T03:00:00Z"}},
		{"2 daily, 2 weekly, 4 monthly", PrunePolicy{KeepDaily: 2, KeepWeekly: 2, KeepMonthly: 4}, []string{
			"2026-03-02T03:00:00Z", "2026-03-01T15:00:00Z", "2026-02-28T03:00:00Z",
			"2026-01-31T03:00:00Z", "2025-12-24T03:00:00Z"}},
		{"more periods than there are backups keeps every period's newest", PrunePolicy{KeepMonthly: 12}, []string{
			"2026-03-02T03:00:00Z", "2026-02-28T03:00:00Z", "2026-01-31T03:00:00Z",
			"2025-12-24T03:00:00Z", "2025-11-15T03:00:00Z"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var kept []string
			for _, d := range PlanPrune(backups, tc.policy, now, all) {
				if d.Keep {
					kept = append(kept, d.Time.Format(time.RFC3339))
				}
			}
			if !slices.Equal(kept, tc.keep) {
				t.Fatalf("kept %v\nwant %v", kept, tc.keep)
			}
		})
	}

	t.Run("an unverifiable newest does not lose the newest verified one", func(t *testing.T) {
		// Only the oldest verifies: it is kept although no rule keeps it.
		oldest := backups[len(backups)-1].Name
		plan := PlanPrune(backups, PrunePolicy{KeepDaily: 1}, now, func(b Backup) bool { return b.Name == oldest })
		if !plan[0].Keep || !plan[len(plan)-1].Keep || !strings.HasPrefix(plan[len(plan)-1].Reason, "newest verified backup") {
			t.Fatalf("plan: %+v", plan)
		}
	})

	t.Run("incomplete archives count for no rule", func(t *testing.T) {
		// A killed backup on the newest day must not take that day's place from a complete one.
		killed := at("2026-03-02T05:00:00Z")
		old := at("2026-02-25T05:00:00Z")
		bs := append([]Backup{{Name: ArchiveName("db", killed, Zstd, false), Volume: "db", Time: killed}}, backups...)
		bs = append(bs, Backup{Name: ArchiveName("db", old, Zstd, false), Volume: "db", Time: old})
		slices.SortStableFunc(bs, func(a, b Backup) int { return b.Time.Compare(a.Time) })
		plan := PlanPrune(bs, PrunePolicy{KeepDaily: 1}, now, all)
		for _, d := range plan {
			switch d.Time {
			case killed:
				if !d.Keep || !strings.Contains(d.Reason, "may still be") {
					t.Errorf("young incomplete archive: %+v, want kept as possibly in progress", d)
				}
			case backups[0].Time:
				if !d.Keep || !strings.Contains(d.Reason, "daily 2026-03-02") {
					t.Errorf("the day's complete archive: %+v, want kept as daily", d)
				}
			case old:
				if d.Keep || !strings.Contains(d.Reason, "incomplete") {
					t.Errorf("old incomplete archive: %+v, want deleted as incomplete", d)
				}
			}
		}
	})
}

// TestPlanPruneGFSYear runs a year of daily backups (with gaps and extra runs) through the
// rules day by day, with a fake clock, and compares every plan with a direct count of the
// calendar: the newest backup of each of the last N distinct days, weeks and months.
func TestPlanPruneGFSYear(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := PrunePolicy{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6}
	start := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	var have []Backup // newest first
	for day := range 365 {
		now := start.AddDate(0, 0, day)
		if rng.IntN(7) == 0 {
			continue // the server was down that day
		}
		for k := range 1 + rng.IntN(2) {
			tm := now.Add(time.Duration(k) * 5 * time.Hour)
			have = append([]Backup{{Name: ArchiveName("v", tm, Zstd, false), Volume: "v", Time: tm, HasChecksum: true}}, have...)
		}
		plan := PlanPrune(have, p, now, func(Backup) bool { return true })
		want := map[string]bool{have[0].Name: true} // the newest verified
		for _, rule := range []struct {
			n   int
			key func(time.Time) string
		}{
			{p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
			{p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, w) }},
			{p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		} {
			newest := map[string]Backup{}
			for _, b := range have {
				k := rule.key(b.Time)
				if cur, ok := newest[k]; !ok || b.Time.After(cur.Time) {
					newest[k] = b
				}
			}
			var periods []Backup
			for _, b := range newest {
				periods = append(periods, b)
			}
			slices.SortFunc(periods, func(a, b Backup) int { return b.Time.Compare(a.Time) })
			for _, b := range periods[:min(rule.n, len(periods))] {
				want[b.Name] = true
			}
		}
		var kept []Backup
		for _, d := range plan {
			if d.Keep != want[d.Name] {
				t.Fatalf("day %d (%s): %s keep=%v (%s), want keep=%v", day, now.Format(time.DateOnly), d.Name, d.Keep, d.Reason, want[d.Name])
			}
			if d.Keep {
				kept = append(kept, d.Backup)
			}
		}
		have = kept // what prune left is what the next day starts with
	}
	if len(have) > p.KeepDaily+p.KeepWeekly+p.KeepMonthly {
		t.Fatalf("%d archives left after a year, want at most %d", len(have), p.KeepDaily+p.KeepWeekly+p.KeepMonthly)
	}
	t.Logf("after a year: %d archives kept", len(have))
}
