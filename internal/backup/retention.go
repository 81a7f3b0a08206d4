package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// PrunePolicy says which backups to keep, per volume. A backup is kept when any rule keeps it.
//
// The daily, weekly and monthly rules are grandfather-father-son, as restic and kopia have
// them: for the last N days (ISO weeks, months) that have a backup, the newest backup of each
// is kept. Days, weeks and months are UTC's, like the times in the archives' names.
type PrunePolicy struct {
	KeepLast    int           // the newest N
	KeepWithin  time.Duration // those younger than this
	KeepDaily   int           // the newest of each of the last N days with a backup
	KeepWeekly  int           // the newest of each of the last N ISO weeks with a backup
	KeepMonthly int           // the newest of each of the last N months with a backup
}

// IncompleteGrace is how long an archive without its .sha256 is kept: it may be a backup
// still being written (the checksum comes last). Older ones are interrupted backups, which
// restore refuses, and prune deletes them.
const IncompleteGrace = 24 * time.Hour

// Validate refuses a policy that would keep nothing by accident.
func (p PrunePolicy) Validate() error {
	if p.KeepLast < 0 || p.KeepWithin < 0 || p.KeepDaily < 0 || p.KeepWeekly < 0 || p.KeepMonthly < 0 {
		return errors.New("--keep-* values cannot be negative")
	}
	if p.Empty() {
		return errors.New("give --keep-last N, --keep-within DURATION, --keep-daily N, --keep-weekly N and/or --keep-monthly N: prune without a rule would delete everything")
	}
	return nil
}

// Empty reports whether no rule is set.
func (p PrunePolicy) Empty() bool {
	return p.KeepLast == 0 && p.KeepWithin == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 && p.KeepMonthly == 0
}

// String is the policy as flags.
func (p PrunePolicy) String() string {
	s := ""
	add := func(flag string, v any) {
		if s != "" {
			s += " "
		}
		s += fmt.Sprintf("--%s %v", flag, v)
	}
	if p.KeepLast > 0 {
		add("keep-last", p.KeepLast)
	}
	if p.KeepWithin > 0 {
		add("keep-within", p.KeepWithin)
	}
	if p.KeepDaily > 0 {
		add("keep-daily", p.KeepDaily)
	}
	if p.KeepWeekly > 0 {
		add("keep-weekly", p.KeepWeekly)
	}
	if p.KeepMonthly > 0 {
		add("keep-monthly", p.KeepMonthly)
	}
	return s
}

// Decision is the verdict on one backup.
type Decision struct {
	Backup
	Keep   bool   `json:"keep"`
	Reason string `json:"reason"`
}

// bucket is one grandfather-father-son rule: the newest backup of each of the last n periods.
type bucket struct {
	name string
	n    int
	key  func(time.Time) string
}

func (p PrunePolicy) buckets() []bucket {
	return []bucket{
		{"daily", p.KeepDaily, func(t time.Time) string { return t.UTC().Format(time.DateOnly) }},
		{"weekly", p.KeepWeekly, func(t time.Time) string {
			y, w := t.UTC().ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{"monthly", p.KeepMonthly, func(t time.Time) string { return t.UTC().Format("2006-01") }},
	}
}

// PlanPrune decides, per volume, which backups to keep (backups newest first, as List returns
// them). The newest backup for which verified returns true is always kept, whatever the rules
// say; verified is asked newest first and only until it says yes. An archive without its
// .sha256 counts for no rule: it is kept while younger than IncompleteGrace (it may still be
// being written) and deleted after.
func PlanPrune(backups []Backup, p PrunePolicy, now time.Time, verified func(Backup) bool) []Decision {
	out := make([]Decision, len(backups))
	byVolume := map[string][]int{}
	var order []string
	for i, b := range backups {
		out[i] = Decision{Backup: b}
		if _, ok := byVolume[b.Volume]; !ok {
			order = append(order, b.Volume)
		}
		byVolume[b.Volume] = append(byVolume[b.Volume], i)
	}
	for _, v := range order {
		idx := byVolume[v]
		protected := -1
		for _, i := range idx {
			if backups[i].HasChecksum && verified(backups[i]) {
				protected = i
				break
			}
		}
		var reasons = map[int][]string{}
		// The complete archives, newest first: what the rules count.
		var complete []int
		for _, i := range idx {
			if backups[i].HasChecksum {
				complete = append(complete, i)
			}
		}
		for n, i := range complete {
			if p.KeepLast > 0 && n < p.KeepLast {
				reasons[i] = append(reasons[i], fmt.Sprintf("among the last %d", p.KeepLast))
			}
			if p.KeepWithin > 0 && now.Sub(backups[i].Time) <= p.KeepWithin {
				reasons[i] = append(reasons[i], fmt.Sprintf("younger than %s", p.KeepWithin))
			}
		}
		for _, b := range p.buckets() {
			if b.n <= 0 {
				continue
			}
			last, kept := "", 0
			for _, i := range complete {
				if kept >= b.n {
					break
				}
				k := b.key(backups[i].Time)
				if k == last {
					continue
				}
				last = k
				kept++
				reasons[i] = append(reasons[i], fmt.Sprintf("%s %s", b.name, k))
			}
		}
		for _, i := range idx {
			d := &out[i]
			switch {
			case i == protected:
				d.Keep, d.Reason = true, joinReasons(append([]string{"newest verified backup"}, reasons[i]...))
			case len(reasons[i]) > 0:
				d.Keep, d.Reason = true, joinReasons(reasons[i])
			case !d.HasChecksum && now.Sub(d.Time) < IncompleteGrace:
				d.Keep, d.Reason = true, "no .sha256 yet: may still be being written"
			case !d.HasChecksum:
				d.Reason = "incomplete: no .sha256 (an interrupted backup)"
			default:
				d.Reason = "outside the policy"
			}
		}
	}
	return out
}

func joinReasons(rs []string) string {
	s := rs[0]
	for _, r := range rs[1:] {
		s += ", " + r
	}
	return s
}

// Prune applies PlanPrune to a store; with dryRun nothing is deleted. The archive goes first,
// then its checksum file.
func Prune(ctx context.Context, s Store, p PrunePolicy, now time.Time, dryRun bool) ([]Decision, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	backups, err := List(ctx, s)
	if err != nil {
		return nil, err
	}
	plan := PlanPrune(backups, p, now, func(b Backup) bool { return VerifyChecksum(ctx, s, b.Name) == nil })
	if dryRun {
		return plan, nil
	}
	return plan, ApplyPrune(ctx, s, plan)
}

// PruneVolumes is Prune for the backups of some volumes only (a schedule prunes its own
// volumes, not those another schedule writes to the same prefix); nil volumes: all of them.
func PruneVolumes(ctx context.Context, s Store, p PrunePolicy, now time.Time, volumes []string, dryRun bool) ([]Decision, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	all, err := List(ctx, s)
	if err != nil {
		return nil, err
	}
	backups := all
	if volumes != nil {
		backups = nil
		for _, b := range all {
			if slices.Contains(volumes, b.Volume) {
				backups = append(backups, b)
			}
		}
	}
	plan := PlanPrune(backups, p, now, func(b Backup) bool { return VerifyChecksum(ctx, s, b.Name) == nil })
	if dryRun {
		return plan, nil
	}
	return plan, ApplyPrune(ctx, s, plan)
}

// ApplyPrune deletes what plan (from Prune with dryRun) does not keep, the archive first,
// then its checksum file: what a user confirmed after seeing the plan.
func ApplyPrune(ctx context.Context, s Store, plan []Decision) error {
	for _, d := range plan {
		if d.Keep {
			continue
		}
		if err := s.Delete(ctx, d.Name); err != nil {
			return fmt.Errorf("delete %s: %w", d.Name, err)
		}
		if err := s.Delete(ctx, ChecksumName(d.Name)); err != nil {
			return fmt.Errorf("delete %s: %w", ChecksumName(d.Name), err)
		}
	}
	return nil
}
