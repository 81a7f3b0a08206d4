package backup

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PrunePolicy says which backups to keep, per volume. A backup is kept when any rule keeps it.
type PrunePolicy struct {
	KeepLast   int           // the newest N
	KeepWithin time.Duration // those younger than this
}

// Validate refuses a policy that would keep nothing by accident.
func (p PrunePolicy) Validate() error {
	if p.KeepLast < 0 || p.KeepWithin < 0 {
		return errors.New("--keep-last and --keep-within cannot be negative")
	}
	if p.KeepLast == 0 && p.KeepWithin == 0 {
		return errors.New("give --keep-last N and/or --keep-within DURATION: prune without a rule would delete everything")
	}
	return nil
}

// Decision is the verdict on one backup.
type Decision struct {
	Backup
	Keep   bool   `json:"keep"`
	Reason string `json:"reason"`
}

// PlanPrune decides, per volume, which backups to keep (backups newest first, as List returns
// them). The newest backup for which verified returns true is always kept, whatever the rules
// say; verified is asked newest first and only until it says yes.
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
		for n, i := range idx {
			d := &out[i]
			switch {
			case i == protected:
				d.Keep, d.Reason = true, "newest verified backup"
			case p.KeepLast > 0 && n < p.KeepLast:
				d.Keep, d.Reason = true, fmt.Sprintf("among the last %d", p.KeepLast)
			case p.KeepWithin > 0 && now.Sub(d.Time) <= p.KeepWithin:
				d.Keep, d.Reason = true, fmt.Sprintf("younger than %s", p.KeepWithin)
			default:
				d.Reason = "outside the policy"
			}
		}
	}
	return out
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
