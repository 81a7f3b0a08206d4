package hetzner

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// ParseVolumeSize reads a volume size as people write it for `volume resize`: "50" or "50G"
// (GB, as Hetzner counts them; "GB" and "T"/"TB" = 1024 GB work too) is the new size, "+10G"
// adds to currentGB. Hetzner sizes are whole GB. The result is not checked against currentGB
// (the API refuses a shrink with its own reason) but must be within the API's limits.
func ParseVolumeSize(s string, currentGB int) (int, error) {
	in := strings.TrimSpace(s)
	rel := strings.HasPrefix(in, "+")
	num := strings.TrimPrefix(in, "+")
	unit := 1
	upper := strings.ToUpper(num)
	for _, suf := range []struct {
		s string
		n int
	}{{"TB", 1024}, {"T", 1024}, {"GB", 1}, {"G", 1}} {
		if strings.HasSuffix(upper, suf.s) {
			num, unit = num[:len(num)-len(suf.s)], suf.n
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 || strings.HasPrefix(num, "+") || strings.HasPrefix(num, "-") {
		return 0, fmt.Errorf("size %q: write whole GB, as Hetzner counts them: 50 (or 50G) for the new size, +10G to add 10 GB", s)
	}
	if n > MaxVolumeSizeGB/unit {
		return 0, fmt.Errorf("size %q: more than a Hetzner volume can hold (%d GB)", s, MaxVolumeSizeGB)
	}
	gb := n * unit
	if rel {
		gb += currentGB
	}
	if gb > MaxVolumeSizeGB {
		return 0, fmt.Errorf("size %q: %d GB is more than a Hetzner volume can hold (%d GB)", s, gb, MaxVolumeSizeGB)
	}
	if gb < MinVolumeSizeGB {
		return 0, fmt.Errorf("size %q: %d GB is less than the smallest Hetzner volume (%d GB)", s, gb, MinVolumeSizeGB)
	}
	return gb, nil
}

// VolumePricing is what volume storage costs, gross, per GB and month.
type VolumePricing struct {
	Currency   string
	PerGBMonth float64
}

// Monthly is what a volume of sizeGB costs per month.
func (p VolumePricing) Monthly(sizeGB int) float64 { return float64(sizeGB) * p.PerGBMonth }

// VolumePricing reads the price of volume storage from /pricing.
func (c *Client) VolumePricing(ctx context.Context) (VolumePricing, error) {
	p, _, err := c.api.Pricing.Get(ctx)
	if err != nil {
		return VolumePricing{}, wrap(err, "get pricing")
	}
	per, err := strconv.ParseFloat(p.Volume.PerGBMonthly.Gross, 64)
	if err != nil {
		return VolumePricing{}, fmt.Errorf("volume price %q: %w", p.Volume.PerGBMonthly.Gross, err)
	}
	return VolumePricing{Currency: p.Currency, PerGBMonth: per}, nil
}
