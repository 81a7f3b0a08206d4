package volumeops

import (
	"context"
	"fmt"

	"github.com/dockbridge/dockbridge/internal/volumefs"
	"github.com/dockbridge/dockbridge/internal/volumeops/helper"
)

// Thresholds are usage fractions (0.70 = 70 %).
type Thresholds struct {
	Warning  float64
	Critical float64
}

// DefaultThresholds: 70 % warning, 85 % critical.
var DefaultThresholds = Thresholds{Warning: 0.70, Critical: 0.85}

// Validate checks 0 < warning <= critical <= 1.
func (t Thresholds) Validate() error {
	if t.Warning <= 0 || t.Critical <= 0 || t.Warning > t.Critical || t.Critical > 1 {
		return fmt.Errorf("thresholds warning %.0f%% and critical %.0f%%: need 0 < warning <= critical <= 100", t.Warning*100, t.Critical*100)
	}
	return nil
}

// Status of a check.
type Status string

const (
	StatusOK       Status = "ok"
	StatusWarning  Status = "warning"
	StatusCritical Status = "critical"
)

// CheckResult is one volume's health.
type CheckResult struct {
	Volume      string   `json:"volume"`
	Driver      string   `json:"driver"`
	Status      Status   `json:"status"`
	Mounted     bool     `json:"mounted"`
	Writable    bool     `json:"writable"`
	UsedBytes   int64    `json:"used_bytes"`
	TotalBytes  uint64   `json:"filesystem_bytes"`
	FreeBytes   uint64   `json:"filesystem_free_bytes"`
	FSType      string   `json:"fs_type,omitempty"`
	Usage       float64  `json:"usage"`       // fraction of the filesystem in use (its reserve included)
	InodeUsage  float64  `json:"inode_usage"` // fraction of inodes in use
	Problems    []string `json:"problems,omitempty"`
	SharedFS    bool     `json:"shared_filesystem,omitempty"` // a local volume: usage is the engine's disk
	ProbeFailed bool     `json:"probe_failed,omitempty"`
	// Hetzner: the Hetzner volume of a hetzner volume.
	Hetzner *HetznerInfo `json:"hetzner,omitempty"`
	// Resize is the resize that brings a warning or critical volume under the warning
	// threshold, and its price (set by the command, which can reach the API).
	Resize *volumefs.Advice `json:"resize,omitempty"`
}

// Evaluate turns a probe into a verdict.
func Evaluate(vol Volume, p helper.ProbeResult, probeErr error, t Thresholds) CheckResult {
	r := CheckResult{Volume: vol.Name, Driver: vol.Driver, Status: StatusOK, SharedFS: vol.Driver == "local", Hetzner: vol.Hetzner}
	worse := func(s Status, msg string) {
		r.Problems = append(r.Problems, msg)
		if s == StatusCritical || r.Status == StatusOK {
			r.Status = s
		}
	}
	if probeErr != nil {
		r.ProbeFailed = true
		worse(StatusCritical, fmt.Sprintf("cannot mount: %v", probeErr))
		return r
	}
	r.Mounted, r.Writable, r.UsedBytes, r.TotalBytes, r.FreeBytes, r.FSType = p.Mounted, p.Writable, p.UsedBytes, p.TotalBytes, p.FreeBytes, p.FSType
	if !p.Mounted {
		worse(StatusCritical, "not mounted in the helper container")
	}
	if !p.Writable {
		worse(StatusCritical, "not writable: "+p.WriteError)
	}
	if p.TotalBytes > 0 {
		r.Usage = float64(p.TotalBytes-min(p.FreeBytes, p.TotalBytes)) / float64(p.TotalBytes)
	}
	if p.TotalInodes > 0 {
		r.InodeUsage = float64(p.TotalInodes-min(p.FreeInodes, p.TotalInodes)) / float64(p.TotalInodes)
	}
	for _, u := range []struct {
		what string
		v    float64
	}{{"disk", r.Usage}, {"inodes", r.InodeUsage}} {
		switch {
		case u.v >= t.Critical:
			worse(StatusCritical, fmt.Sprintf("%s %.1f%% used (critical at %.0f%%): grow the volume or free space", u.what, u.v*100, t.Critical*100))
		case u.v >= t.Warning:
			worse(StatusWarning, fmt.Sprintf("%s %.1f%% used (warning at %.0f%%): plan to grow the volume", u.what, u.v*100, t.Warning*100))
		}
	}
	return r
}

// Check probes volumes (all when names is empty): mounted, writable, usage against thresholds.
func (e *Engine) Check(ctx context.Context, names []string, t Thresholds) ([]CheckResult, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	var vols []Volume
	var err error
	if len(names) == 0 {
		vols, err = e.ListVolumes(ctx) // none is nothing to check, not an error
	} else {
		vols, err = e.resolveVolumes(ctx, names, false)
	}
	if err != nil {
		return nil, err
	}
	var out []CheckResult
	for _, v := range vols {
		p, perr := e.Probe(ctx, v.Name, true)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		out = append(out, Evaluate(v, p, perr, t))
	}
	return out, nil
}
