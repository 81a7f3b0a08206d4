package volumefs

import (
	"context"
	"errors"
	"fmt"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// Cloud is what a resize needs from the Hetzner Cloud API (*hetzner.Client).
type Cloud interface {
	Volume(ctx context.Context, id int64) (*hetzner.Volume, error)
	ResizeVolume(ctx context.Context, volumeID int64, sizeGB int) error
	VolumePricing(ctx context.Context) (hetzner.VolumePricing, error)
}

var _ Cloud = (*hetzner.Client)(nil)

// Target is the volume a resize is about and how to reach its filesystem.
type Target struct {
	Name      string // the Docker volume, or the data volume's Hetzner name
	HetznerID int64
	Data      bool // the data volume of a dockbridge host
	Mounted   bool // its filesystem is mounted (a container uses it)
	// Server reaches the server that has the filesystem mounted, as root; nil when none can be
	// reached (or it is not mounted): then it grows at its next mount, and NoServer says why.
	Server   Server
	Grow     GrowRequest
	NoServer string
}

// Resized is the result of `volume resize`.
type Resized struct {
	Volume       string `json:"volume"`
	HetznerID    int64  `json:"hetzner_id"`
	Data         bool   `json:"data,omitempty"`
	SizeGBBefore int    `json:"size_gb_before"`
	SizeGB       int    `json:"size_gb"`
	// Resized: the API resized the volume. False: it already had that size (a no-op).
	Resized bool `json:"resized"`
	// Filesystem is what happened on the server; nil when it was not reached.
	Filesystem *GrowResult `json:"filesystem,omitempty"`
	GrownOn    string      `json:"grown_on,omitempty"`
	// GrowsAtNextMount: the filesystem was not grown now; it grows when it is next mounted.
	GrowsAtNextMount bool   `json:"grows_at_next_mount"`
	Note             string `json:"note,omitempty"`
	// MonthlyCost is what the volume costs per month at its new size (from /pricing).
	MonthlyCost float64 `json:"monthly_cost,omitempty"`
	Currency    string  `json:"currency,omitempty"`
}

// Resize grows the Hetzner volume to size ("50", "+10G"; hetzner.ParseVolumeSize) with the
// API's resize action (retried while the volume is locked by another action), then its
// filesystem on the server that has it mounted. The size it already has is a no-op for the
// API (and still makes sure the filesystem fills the device); a smaller size is sent, and
// the API's refusal is the error. After the API resized the volume, an error of the growth
// comes with the result.
func Resize(ctx context.Context, cloud Cloud, t Target, size string) (*Resized, error) {
	v, err := cloud.Volume(ctx, t.HetznerID)
	if err != nil {
		return nil, fmt.Errorf("resize volume %s: %w", t.Name, err)
	}
	want, err := hetzner.ParseVolumeSize(size, v.SizeGB)
	if err != nil {
		return nil, err
	}
	res := &Resized{Volume: t.Name, HetznerID: v.ID, Data: t.Data, SizeGBBefore: v.SizeGB, SizeGB: v.SizeGB}
	if want != v.SizeGB {
		if err := cloud.ResizeVolume(ctx, v.ID, want); err != nil {
			if want < v.SizeGB {
				return nil, fmt.Errorf("resize volume %s from %d GB to %d GB: Hetzner volumes only grow, and the API refused: %w\nTo move the data to a smaller volume, back it up and restore it into a new one (docker dockbridge backup, restore --volume NEW)", t.Name, v.SizeGB, want, err)
			}
			return nil, fmt.Errorf("resize volume %s to %d GB: %w", t.Name, want, err)
		}
		res.Resized, res.SizeGB = true, want
	}
	if p, err := cloud.VolumePricing(ctx); err == nil {
		res.MonthlyCost, res.Currency = p.Monthly(res.SizeGB), p.Currency
	}
	if t.Server == nil {
		res.GrowsAtNextMount, res.Note = true, t.NoServer
		return res, nil
	}
	res.GrownOn = t.Server.Where()
	g, err := t.Server.Grow(ctx, t.Grow)
	res.Filesystem = g
	switch {
	case err != nil:
		res.GrowsAtNextMount = true
		return res, fmt.Errorf("the volume is %d GB now, but growing its filesystem on %s failed (it grows at its next mount): %w", res.SizeGB, res.GrownOn, err)
	case !g.Mounted:
		res.GrowsAtNextMount, res.Note = true, "the filesystem is not mounted: it grows at its next mount"
	case g.Deferred != "":
		res.GrowsAtNextMount, res.Note = true, g.Deferred
	}
	return res, nil
}

// ErrInUse: fsck refuses a volume that running containers use.
var ErrInUse = errors.New("volume in use")

// Checked is the result of `volume fsck`.
type Checked struct {
	Volume    string `json:"volume"`
	HetznerID int64  `json:"hetzner_id"`
	Data      bool   `json:"data,omitempty"`
	CheckedOn string `json:"checked_on"`
	FsckResult
}

// Advice is the resize that brings a volume's usage under a target, with its price.
type Advice struct {
	Command string `json:"command"`
	SizeGB  int    `json:"size_gb"`
	// MonthlyCost is the volume's price per month at SizeGB, MonthlyIncrease what it adds to
	// today's; both unset when the price could not be read (PriceError says why).
	MonthlyCost     float64 `json:"monthly_cost,omitempty"`
	MonthlyIncrease float64 `json:"monthly_increase,omitempty"`
	Currency        string  `json:"currency,omitempty"`
	PriceError      string  `json:"price_error,omitempty"`
}

// ReservedBytes is what a volume of sizeGB with a filesystem of fsType keeps in reserve and
// counts as used (statfs' free is what unprivileged users may still write): mkfs.ext4's
// default 5 % of the device for root, which the plugin and the user-data both keep and which
// resize2fs grows with the filesystem; xfs reserves nothing that df shows.
func ReservedBytes(fsType string, sizeGB int) uint64 {
	if fsType != "ext4" || sizeGB <= 0 {
		return 0
	}
	return uint64(sizeGB) << 30 / 20
}

// SizeFor is the smallest whole GB size at which usedBytes fill less than target (0.70) of a
// volume of sizeGB whose filesystem has fsBytes: the filesystem grows in proportion to the
// volume, and so does its reserve (reservedBytes of usedBytes), while the rest of what is
// used stays. It is at least sizeGB+1 and at most the API's largest volume; 0 when no size
// brings the usage under target (the reserve alone reaches it).
func SizeFor(sizeGB int, usedBytes, fsBytes, reservedBytes uint64, target float64) int {
	if sizeGB <= 0 || fsBytes == 0 || target <= 0 {
		return 0
	}
	reserve := float64(min(reservedBytes, usedBytes)) / float64(fsBytes) // a fraction that stays
	if reserve >= target {
		return 0
	}
	stays := float64(usedBytes - min(reservedBytes, usedBytes))
	need := stays * float64(sizeGB) / ((target - reserve) * float64(fsBytes))
	n := int(need) + 1
	return min(max(n, sizeGB+1), hetzner.MaxVolumeSizeGB)
}

// Advise is the advice for a volume of sizeGB at usedBytes of fsBytes (reservedBytes of them
// the filesystem's reserve, ReservedBytes): `volume resize NAME N` (or `--data N` for the data
// volume, with envFlag such as " --name dev"), priced with p when it is not nil. Nil when no
// size helps.
func Advise(name string, data bool, envFlag string, sizeGB int, usedBytes, fsBytes, reservedBytes uint64, target float64, p *hetzner.VolumePricing, priceErr error) *Advice {
	n := SizeFor(sizeGB, usedBytes, fsBytes, reservedBytes, target)
	if n == 0 || n <= sizeGB {
		return nil
	}
	a := &Advice{SizeGB: n, Command: fmt.Sprintf("docker dockbridge volume resize %s %d", name, n)}
	if data {
		a.Command = fmt.Sprintf("docker dockbridge volume resize --data%s %d", envFlag, n)
	}
	switch {
	case p != nil:
		a.MonthlyCost, a.MonthlyIncrease, a.Currency = p.Monthly(n), p.Monthly(n)-p.Monthly(sizeGB), p.Currency
	case priceErr != nil:
		a.PriceError = priceErr.Error()
	}
	return a
}
