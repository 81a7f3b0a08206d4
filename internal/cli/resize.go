package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/volumefs"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// dataArgs checks the positional arguments of a command that takes n of them, or n-1 with --data.
func dataArgs(data *bool, n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if *data && n == 1 {
			return cli.NoArgs(cmd, args)
		}
		if *data {
			return cli.ExactArgs(n-1)(cmd, args)
		}
		return cli.ExactArgs(n)(cmd, args)
	}
}

func volumeResizeCmd(d deps) *cobra.Command {
	var hf hostFlags
	var data bool
	return spec[*volumefs.Resized]{
		Use:   "resize [OPTIONS] VOLUME SIZE | --data SIZE",
		Short: "Grow a hetzner volume (or the environment's data volume) and its filesystem, online",
		Long: `Grow a hetzner volume with Hetzner's resize action, then its filesystem (resize2fs, xfs_growfs)
on the server that has it mounted, while containers keep using it. SIZE is the new size in GB
(50, 50G) or what to add (+10G). Volumes only grow: a smaller size is refused with the API's
reason; the size a volume already has changes nothing.

Where the filesystem grows:
  - mounted on a dockbridge host (the current context is an environment's): right away, as
    root over SSH;
  - mounted on this machine's engine (and you are root): right away, here;
  - not mounted, or mounted where neither reaches: at its next mount (the plugin grows it
    before the container starts).
--data grows the environment's data volume (Docker's data root) the same way, or at the next
up when no server runs.`,
		Example: `  docker dockbridge volume resize db_data +10G
  docker dockbridge volume resize db_data 50
  docker dockbridge volume resize --data 40`,
		Args:     dataArgs(&data, 2),
		Complete: completeVolumes(d, false),
		Formats:  tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.BoolVar(&data, "data", false, "the environment's data volume (Docker's data root on a dockbridge host) instead of a hetzner volume")
			hf.add(cmd)
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*volumefs.Resized, error) {
			hd, err := d.host(hf, host.Flags{}, true)
			if err != nil {
				return nil, err
			}
			if data {
				res, err := host.ResizeData(ctx, hd, hf.env, args[0])
				return res, afterOutputIf(res, err)
			}
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			t, err := e.ResizeTarget(ctx, args[0])
			if err != nil {
				return nil, err
			}
			if !t.Mounted {
				t.NoServer = "no container uses it: its filesystem grows at its next mount (the plugin grows it before the container starts)"
			} else {
				srv, closeSrv, why := d.diskServer(ctx, t.Grow.Device)
				defer closeSrv()
				t.Server, t.NoServer = srv, why
			}
			res, err := volumefs.Resize(ctx, hd.API, t, args[1])
			return res, afterOutputIf(res, err)
		},
		Print: func(w io.Writer, _ string, r *volumefs.Resized) error { return printResized(w, r) },
	}.build(d.out)
}

func printResized(w io.Writer, r *volumefs.Resized) error {
	what := fmt.Sprintf("%s (Hetzner volume %d)", r.Volume, r.HetznerID)
	if r.Data {
		what = fmt.Sprintf("%s (Hetzner volume %d, the data volume: Docker's data root)", r.Volume, r.HetznerID)
	}
	size := fmt.Sprintf("%d GB -> %d GB", r.SizeGBBefore, r.SizeGB)
	if !r.Resized {
		size = fmt.Sprintf("%d GB, as asked: nothing to resize", r.SizeGB)
	}
	kv := [][2]string{{"Volume", what}, {"Size", size}}
	fs := "grows at its next mount"
	if g := r.Filesystem; g != nil && g.Mounted && !r.GrowsAtNextMount {
		switch {
		case g.Grown:
			fs = fmt.Sprintf("%s grown online on %s: %s -> %s", g.FSType, r.GrownOn, humanBytes(int64(g.FilesystemBytesBefore)), humanBytes(int64(g.FilesystemBytesAfter)))
		default:
			fs = fmt.Sprintf("%s already fills the volume (%s, on %s)", g.FSType, humanBytes(int64(g.FilesystemBytesAfter)), r.GrownOn)
		}
	}
	if r.Note != "" {
		fs += ": " + r.Note
	}
	kv = append(kv, [2]string{"Filesystem", fs})
	if r.Currency != "" {
		kv = append(kv, [2]string{"Cost", fmt.Sprintf("%.2f %s/month at %d GB", r.MonthlyCost, r.Currency, r.SizeGB)})
	}
	return ui.KeyValues(w, kv)
}

func volumeFsckCmd(d deps) *cobra.Command {
	var hf hostFlags
	var data, repair bool
	return spec[*volumefs.Checked]{
		Use:   "fsck [OPTIONS] VOLUME | --data",
		Short: "Check (--repair: repair) the filesystem of a hetzner volume no container uses, or of the data volume",
		Long: `Check the filesystem of a hetzner volume: unmount it, run e2fsck -f -n (ext4) or xfs_repair -n
(xfs), which change nothing, and mount it again. With --repair, when the check found problems,
e2fsck -f -y or xfs_repair repairs them and a second check confirms it (xfs_repair -L, which
discards the log, is never run). It refuses while running containers use the volume, and
names them. It runs as root on the server that has the volume: a dockbridge host over SSH, or
this machine.

--data checks the environment's data volume: Docker is stopped first (every container stops)
and started again afterwards. Exit status 1 when problems are left.`,
		Example: `  docker dockbridge volume fsck db_data
  docker dockbridge volume fsck db_data --repair -o json
  docker dockbridge volume fsck --data`,
		Args:     dataArgs(&data, 1),
		Complete: completeVolumes(d, false),
		Formats:  tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.BoolVar(&repair, "repair", false, "repair what the check finds (e2fsck -f -y, xfs_repair)")
			f.BoolVar(&data, "data", false, "the environment's data volume (Docker is stopped meanwhile)")
			hf.add(cmd)
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*volumefs.Checked, error) {
			var res *volumefs.Checked
			var err error
			if data {
				hd, herr := d.host(hf, host.Flags{}, true)
				if herr != nil {
					return nil, herr
				}
				res, err = host.FsckData(ctx, hd, hf.env, repair)
			} else {
				res, err = d.fsckVolume(ctx, args[0], repair)
			}
			if err == nil && res != nil && res.ProblemsLeft() {
				hint := " (repair with --repair)"
				if repair {
					hint = ": the repair did not fix everything; see the tool's output with -o json, restore from a backup if data is missing"
				}
				err = fmt.Errorf("the filesystem of %s has problems%s", res.Volume, hint)
			}
			return res, afterOutputIf(res, err)
		},
		Print: func(w io.Writer, _ string, r *volumefs.Checked) error { return printChecked(w, r) },
	}.build(d.out)
}

// fsckVolume checks a hetzner volume of the current context's engine on its server.
func (d deps) fsckVolume(ctx context.Context, name string, repair bool) (*volumefs.Checked, error) {
	e, err := d.engine()
	if err != nil {
		return nil, err
	}
	req, v, err := e.FsckTarget(ctx, name, repair)
	if err != nil {
		return nil, err
	}
	srv, closeSrv, why := d.diskServer(ctx, req.Device)
	defer closeSrv()
	if srv == nil {
		return nil, fmt.Errorf("check volume %s: it can only be checked as root on the server that has it, and %s", name, why)
	}
	r, err := srv.Fsck(ctx, req)
	if r == nil {
		return nil, err
	}
	return &volumefs.Checked{Volume: v.Name, HetznerID: v.Hetzner.ID, CheckedOn: srv.Where(), FsckResult: *r}, err
}

func printChecked(w io.Writer, r *volumefs.Checked) error {
	result := "clean"
	switch {
	case !r.Clean && r.Repaired:
		result = fmt.Sprintf("REPAIRED: %s found; a second check is clean", plural(len(r.Findings), "problem", "problems"))
	case !r.Clean && r.Repair:
		result = fmt.Sprintf("PROBLEMS LEFT: %s found; the repair did not fix everything", plural(len(r.Findings), "problem", "problems"))
	case !r.Clean:
		result = fmt.Sprintf("PROBLEMS FOUND: %s; nothing was changed (repair with --repair)", plural(len(r.Findings), "problem", "problems"))
	}
	var tools []string
	for _, run := range r.Runs {
		tools = append(tools, fmt.Sprintf("%s (exit %d)", run.Command, run.ExitCode))
	}
	mounted := "no (it was not mounted)"
	if len(r.Unmounted) > 0 {
		mounted = fmt.Sprintf("unmounted from %s, mounted again: %s", strings.Join(r.Unmounted, ", "), yesNo(r.Remounted))
	}
	kv := [][2]string{
		{"Volume", fmt.Sprintf("%s (Hetzner volume %d)", r.Volume, r.HetznerID)},
		{"Device", fmt.Sprintf("%s, %s, on %s", r.Device, r.FSType, r.CheckedOn)},
		{"Result", result},
		{"Ran", strings.Join(tools, "; ")},
		{"Mount", mounted},
	}
	if r.Data {
		kv = append(kv, [2]string{"Docker", fmt.Sprintf("stopped: %s, started again: %s", yesNo(r.DockerStopped), yesNo(r.DockerStarted))})
	}
	if err := ui.KeyValues(w, kv); err != nil {
		return err
	}
	if len(r.Findings) > 0 {
		fmt.Fprintln(w, "Findings:")
		for _, f := range r.Findings {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	return nil
}

// afterOutputIf prints a result that exists before its error.
func afterOutputIf[R any](r *R, err error) error {
	if r == nil {
		return err
	}
	return afterOutput(err)
}

// diskServer reaches, as root, the server the current context's engine runs on, to grow or
// check the filesystem of device there: a dockbridge host over SSH, or this machine when the
// engine is local and the device is here. Without one it says why.
func (d deps) diskServer(ctx context.Context, device string) (volumefs.Server, func(), string) {
	if d.cli != nil {
		if env, ok := host.EnvOfContext(d.cli.CurrentContext()); ok {
			hd, err := d.host(hostFlags{env: env}, host.Flags{}, true)
			if err == nil {
				var srv volumefs.Server
				var closeSrv func()
				if srv, closeSrv, err = host.DiskServer(ctx, hd, env); err == nil {
					return srv, closeSrv, ""
				}
			}
			return nil, func() {}, fmt.Sprintf("the server of environment %s could not be reached as root (%v): the filesystem grows at its next mount", env, err)
		}
	}
	local := d.cli == nil || strings.HasPrefix(d.cli.DockerEndpoint().Host, "unix://")
	if fi, err := os.Stat(device); local && err == nil && fi.Mode()&os.ModeDevice != 0 {
		if os.Geteuid() != 0 {
			return nil, func() {}, "the engine runs on this machine, but this command runs without root: run it as root to grow the filesystem now; otherwise it grows at its next mount"
		}
		return volumefs.Local(), func() {}, ""
	}
	return nil, func() {}, "the engine's server is neither a dockbridge host nor this machine, so nothing here can reach it as root: the filesystem grows at its next mount (restart the containers that use it)"
}

// adviseResizes sets the resize that would bring each warning or critical volume under target
// (the warning threshold): a hetzner volume's own, and for the local volumes of a dockbridge
// host, whose usage is the data volume's, the data volume's. Prices come from /pricing when
// the API can be reached; without it the advice says why there is no price.
func (d deps) adviseResizes(ctx context.Context, res []volumeops.CheckResult, target float64) {
	var (
		hd       *host.Deps
		pricing  *hetzner.VolumePricing
		priceErr error
		asked    bool
	)
	price := func() {
		if asked {
			return
		}
		asked = true
		if d.cli == nil {
			priceErr = errors.New("no API access in this context")
			return
		}
		if hd, priceErr = d.host(hostFlags{env: host.DefaultEnv}, host.Flags{}, true); priceErr == nil {
			p, err := hd.API.VolumePricing(ctx)
			if pricing, priceErr = &p, err; err != nil {
				pricing = nil
			}
		}
	}
	for i := range res {
		r := &res[i]
		if r.Status == volumeops.StatusOK || r.ProbeFailed || r.TotalBytes == 0 {
			continue
		}
		used := r.TotalBytes - min(r.FreeBytes, r.TotalBytes)
		switch {
		case r.Hetzner != nil && r.Hetzner.SizeGB > 0:
			price()
			r.Resize = volumefs.Advise(r.Volume, false, "", int(r.Hetzner.SizeGB), used, r.TotalBytes, volumefs.ReservedBytes(r.FSType, int(r.Hetzner.SizeGB)), target, pricing, priceErr)
		case r.SharedFS && d.cli != nil:
			env, ok := host.EnvOfContext(d.cli.CurrentContext())
			if !ok {
				continue
			}
			price()
			if hd == nil {
				continue
			}
			v, err := host.DataVolume(ctx, hd, env)
			if err != nil {
				continue
			}
			r.Resize = volumefs.Advise(v.Name, true, nameFlagText(env), v.SizeGB, used, r.TotalBytes, volumefs.ReservedBytes(r.FSType, v.SizeGB), target, pricing, priceErr)
		}
	}
}

// printResizeAdvice prints each distinct resize advice under the check's table.
func printResizeAdvice(w io.Writer, res []volumeops.CheckResult, warnPct float64) error {
	seen := map[string]bool{}
	for _, r := range res {
		a := r.Resize
		if a == nil || seen[a.Command] {
			continue
		}
		if len(seen) == 0 {
			fmt.Fprintf(w, "\nTo bring usage under %.0f %%:\n", warnPct)
		}
		seen[a.Command] = true
		cost := "price unknown: " + a.PriceError
		if a.Currency != "" {
			cost = fmt.Sprintf("%d GB: %.2f %s/month, %.2f more than now", a.SizeGB, a.MonthlyCost, a.Currency, a.MonthlyIncrease)
		}
		if _, err := fmt.Fprintf(w, "  %s    # %s\n", a.Command, cost); err != nil {
			return err
		}
	}
	return nil
}
