package volumefs

import (
	"errors"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

func TestSizeFor(t *testing.T) {
	const gib = 1 << 30
	for _, tt := range []struct {
		name                    string
		sizeGB                  int
		used, fsBytes, reserved uint64
		target                  float64
		want                    int
	}{
		// 7.5 of 9.8 GiB used (77 %): 7.5 / 0.7 / 9.8 * 10 = 10.9 -> 11 GB.
		{"warning", 10, 75 * gib / 10, 98 * gib / 10, 0, 0.70, 11},
		// 9 of 9.8 GiB (92 %): 13.1 -> 14 GB, where 9 GiB is 65.5 % of 13.7 GiB.
		{"critical", 10, 9 * gib, 98 * gib / 10, 0, 0.70, 14},
		// exactly 70 % after: strictly under needs one GB more.
		{"boundary", 10, 7 * gib, 10 * gib, 0, 0.70, 11},
		{"already under", 100, 1 * gib, 98 * gib, 0, 0.70, 101},
		{"at most the largest volume", 10000, 9990 * gib, 9800 * gib, 0, 0.70, hetzner.MaxVolumeSizeGB},
		{"no size", 0, 1, 1, 0, 0.70, 0},
		// ext4 at 95 % of 100 GB, 5 GiB of it the reserve, which grows with the filesystem: 136
		// GB (the reserve taken for data that stays) would leave it at 71.2 %.
		{"ext4's reserve grows", 100, 931 * gib / 10, 98 * gib, ReservedBytes("ext4", 100), 0.70, 139},
		// the reserve alone (5.1 %) is over a 4 % target: no size brings it under.
		{"the reserve reaches the target", 10, 6 * gib / 10, 98 * gib / 10, ReservedBytes("ext4", 10), 0.04, 0},
	} {
		got := SizeFor(tt.sizeGB, tt.used, tt.fsBytes, tt.reserved, tt.target)
		if got != tt.want {
			t.Errorf("%s: SizeFor(%d GB, %d used of %d, %d reserved) = %d, want %d", tt.name, tt.sizeGB, tt.used, tt.fsBytes, tt.reserved, got, tt.want)
		}
		if got > 0 && got < hetzner.MaxVolumeSizeGB {
			k := float64(got) / float64(tt.sizeGB)
			after := float64(tt.used-tt.reserved)/(float64(tt.fsBytes)*k) + float64(tt.reserved)/float64(tt.fsBytes)
			if after >= tt.target {
				t.Errorf("%s: at %d GB the usage is still %.3f", tt.name, got, after)
			}
		}
	}
	if r := ReservedBytes("xfs", 100); r != 0 {
		t.Errorf("ReservedBytes(xfs) = %d", r)
	}
}

func TestAdvise(t *testing.T) {
	const gib = 1 << 30
	p := &hetzner.VolumePricing{Currency: "EUR", PerGBMonth: 0.044}
	a := Advise("db_data", false, "", 10, 9*gib, 98*gib/10, 0, 0.70, p, nil)
	if a == nil || a.Command != "docker dockbridge volume resize db_data 14" || a.SizeGB != 14 || a.Currency != "EUR" ||
		a.MonthlyCost < 0.615 || a.MonthlyCost > 0.617 || a.MonthlyIncrease < 0.175 || a.MonthlyIncrease > 0.177 {
		t.Errorf("Advise = %+v", a)
	}
	a = Advise("dockbridge-dev-data", true, " --name dev", 20, 18*gib, 196*gib/10, 0, 0.70, nil, errors.New("no token"))
	if a == nil || a.Command != "docker dockbridge volume resize --data --name dev 27" || a.MonthlyCost != 0 || !strings.Contains(a.PriceError, "no token") {
		t.Errorf("Advise(data, no price) = %+v", a)
	}
}
