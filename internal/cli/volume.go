package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// volumeCmd is `docker dockbridge volume ls|inspect|check|resize|fsck`.
func volumeCmd(d deps) *cobra.Command {
	return group("volume", "List, inspect, check, resize and repair the volumes of the current docker context",
		volumeLsCmd(d), volumeInspectCmd(d), volumeCheckCmd(d), volumeResizeCmd(d), volumeFsckCmd(d))
}

func volumeLsCmd(d deps) *cobra.Command {
	return spec[[]volumeops.Volume]{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes: driver, space used, and the Hetzner volume id and size for hetzner volumes",
		Formats: tableOrJSON,
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) ([]volumeops.Volume, error) {
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			return e.ListVolumes(ctx)
		},
		Print: func(w io.Writer, _ string, vols []volumeops.Volume) error {
			var rows [][]string
			for _, v := range vols {
				hid, size := "-", "-"
				if v.Hetzner != nil {
					hid, size = fmt.Sprint(v.Hetzner.ID), fmt.Sprintf("%d GB", v.Hetzner.SizeGB)
				}
				rows = append(rows, []string{v.Name, v.Driver, humanBytes(v.UsedBytes), hid, size})
			}
			return ui.Table(w, []string{"name", "driver", "used", "hetzner id", "size"}, rows)
		},
	}.build(d.out)
}

type volumeDetails struct {
	volumeops.Volume
	Usage      *usageJSON               `json:"usage,omitempty"`
	UsageError string                   `json:"usage_error,omitempty"`
	Containers []volumeops.ContainerRef `json:"containers"`
}

type usageJSON struct {
	UsedBytes       int64  `json:"used_bytes"`
	Entries         int64  `json:"entries"`
	FilesystemBytes uint64 `json:"filesystem_bytes"`
	FilesystemFree  uint64 `json:"filesystem_free_bytes"`
	FSType          string `json:"fs_type,omitempty"`
}

func volumeInspectCmd(d deps) *cobra.Command {
	return spec[*volumeDetails]{
		Use:      "inspect [OPTIONS] VOLUME",
		Short:    "Show a volume's details, its usage and the containers that use it",
		Args:     cli.ExactArgs(1),
		Complete: completeVolumes(d, false),
		Formats:  tableOrJSON,
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*volumeDetails, error) {
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			v, err := e.InspectVolume(ctx, args[0])
			if err != nil {
				return nil, err
			}
			det := &volumeDetails{Volume: v}
			if det.Containers, err = e.ContainersUsing(ctx, v.Name); err != nil {
				return nil, err
			}
			if det.Containers == nil {
				det.Containers = []volumeops.ContainerRef{}
			}
			if p, err := e.Probe(ctx, v.Name, false); err != nil {
				det.UsageError = err.Error()
			} else {
				det.Usage = &usageJSON{UsedBytes: p.UsedBytes, Entries: p.Entries, FilesystemBytes: p.TotalBytes,
					FilesystemFree: p.FreeBytes, FSType: p.FSType}
			}
			return det, nil
		},
		Print: func(w io.Writer, _ string, det *volumeDetails) error { return printVolumeDetails(w, *det) },
	}.build(d.out)
}

func printVolumeDetails(w io.Writer, det volumeDetails) error {
	kv := [][2]string{{"Name", det.Name}, {"Driver", det.Driver}, {"Scope", det.Scope}, {"Created", det.CreatedAt},
		{"Mountpoint", det.Mountpoint}}
	if h := det.Hetzner; h != nil {
		kv = append(kv, [2]string{"Hetzner volume", fmt.Sprintf("%d (%d GB, %s)", h.ID, h.SizeGB, h.Location)},
			[2]string{"Attached to", h.Server}, [2]string{"Device", h.Device})
	}
	if u := det.Usage; u != nil {
		kv = append(kv, [2]string{"Used", fmt.Sprintf("%s in %d entries", humanBytes(u.UsedBytes), u.Entries)},
			[2]string{"Filesystem", fmt.Sprintf("%s, %s free of %s", u.FSType, humanBytes(int64(u.FilesystemFree)), humanBytes(int64(u.FilesystemBytes)))})
	} else {
		kv = append(kv, [2]string{"Used", "unknown: " + det.UsageError})
	}
	kv = append(kv, [2]string{"Labels", joinMap(det.Labels)}, [2]string{"Options", joinMap(det.Options)})
	if err := ui.KeyValues(w, kv); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(det.Containers) == 0 {
		fmt.Fprintln(w, "No container uses this volume.")
		return nil
	}
	var rows [][]string
	for _, c := range det.Containers {
		mode := "ro"
		if c.RW {
			mode = "rw"
		}
		rows = append(rows, []string{c.Name, c.State, c.Mount, mode})
	}
	return ui.Table(w, []string{"container", "state", "mounted at", "mode"}, rows)
}

func joinMap(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sortStrings(parts)
	return strings.Join(parts, ", ")
}

func volumeCheckCmd(d deps) *cobra.Command {
	var warn, crit float64
	return spec[[]volumeops.CheckResult]{
		Use:      "check [OPTIONS] [VOLUME...]",
		Short:    "Check volumes (all by default): mounted, writable, usage against thresholds; exits non-zero on critical",
		Args:     cobra.ArbitraryArgs,
		Complete: completeVolumes(d, true),
		Formats:  tableOrJSON,
		Flags: func(_ *cobra.Command, f *pflag.FlagSet) {
			f.Float64Var(&warn, "warning", volumeops.DefaultThresholds.Warning*100, "usage percentage that is a warning")
			f.Float64Var(&crit, "critical", volumeops.DefaultThresholds.Critical*100, "usage percentage that is critical (exit status 1)")
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) ([]volumeops.CheckResult, error) {
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			res, err := e.Check(ctx, args, volumeops.Thresholds{Warning: warn / 100, Critical: crit / 100})
			if err != nil {
				return nil, err
			}
			d.adviseResizes(ctx, res, warn/100)
			critical := 0
			for _, r := range res {
				if r.Status == volumeops.StatusCritical {
					critical++
				}
			}
			if critical > 0 {
				return res, afterOutput(errors.New(plural(critical, "volume is", "volumes are") + " critical"))
			}
			return res, nil
		},
		Print: func(w io.Writer, _ string, res []volumeops.CheckResult) error {
			if len(res) == 0 {
				_, err := fmt.Fprintln(w, "No volumes: nothing to check.")
				return err
			}
			var rows [][]string
			for _, r := range res {
				usage := fmt.Sprintf("%.1f%%", r.Usage*100)
				if r.ProbeFailed {
					usage = "-"
				} else if r.SharedFS {
					usage += " (engine disk)"
				}
				rows = append(rows, []string{r.Volume, strings.ToUpper(string(r.Status)), usage, humanBytes(r.UsedBytes),
					yesNo(r.Mounted), yesNo(r.Writable), strings.Join(r.Problems, "; ")})
			}
			if err := ui.Table(w, []string{"volume", "status", "usage", "used", "mounted", "writable", "problems"}, rows); err != nil {
				return err
			}
			return printResizeAdvice(w, res, warn)
		},
	}.build(d.out)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
