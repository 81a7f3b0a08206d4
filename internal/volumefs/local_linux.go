package volumefs

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dockbridge/dockbridge/internal/mount"
)

// Local runs the procedures in this process, on this machine's devices; it needs root.
func Local() Server { return &local{m: mount.New(), systemctl: systemctl, dataRoot: DataMountpoint} }

type local struct {
	m         *mount.Linux
	systemctl func(ctx context.Context, args ...string) error
	dataRoot  string // DataMountpoint; tests use a directory of their own
}

func (l *local) Where() string { return "this machine" }

func (l *local) Grow(ctx context.Context, req GrowRequest) (*GrowResult, error) {
	res := &GrowResult{Device: req.Device, FSType: req.FSType}
	size, err := mount.DeviceSize(req.Device)
	if err != nil {
		return nil, fmt.Errorf("grow %s: %w", req.Device, err)
	}
	res.DeviceBytes = size
	mps, err := l.m.MountsOf(req.Device)
	if err != nil {
		return nil, fmt.Errorf("grow %s: %w", req.Device, err)
	}
	mp := ""
	switch {
	case req.Mountpoint != "" && slices.Contains(mps, filepath.Clean(req.Mountpoint)):
		mp = filepath.Clean(req.Mountpoint)
	case len(mps) > 0:
		// Any mount of the filesystem grows it. Docker may report a managed plugin's volume at
		// the path inside the plugin (/mnt/volumes/NAME), which is not a path on the server.
		mp = mps[0]
	}
	if mp == "" {
		return res, nil // not mounted: it grows at its next mount
	}
	if res.FSType == "" {
		sig, err := l.m.Probe(ctx, req.Device)
		if err != nil {
			return nil, fmt.Errorf("grow %s: %w", req.Device, err)
		}
		res.FSType = sig.Type
	}
	res.Mounted, res.Mountpoint = true, mp
	before, err := l.m.Usage(mp)
	if err != nil {
		return nil, fmt.Errorf("grow %s: %w", req.Device, err)
	}
	res.FilesystemBytesBefore, res.FilesystemBytesAfter = before.SizeBytes, before.SizeBytes
	err = l.m.Grow(ctx, req.Device, mp, res.FSType)
	if errors.Is(err, mount.ErrMissingCapability) {
		res.Deferred = "online ext4 growth needs CAP_SYS_RESOURCE, which root lacks on this server (a container or sandbox that drops it): the filesystem grows at its next mount, when the volume is unmounted and mounted again"
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	after, err := l.m.Usage(mp)
	if err != nil {
		return nil, fmt.Errorf("grow %s: %w", req.Device, err)
	}
	res.FilesystemBytesAfter = after.SizeBytes
	res.Grown = after.SizeBytes > before.SizeBytes
	return res, nil
}

func (l *local) Fsck(ctx context.Context, req FsckRequest) (res *FsckResult, err error) {
	res = &FsckResult{Device: req.Device, FSType: req.FSType, Repair: req.Repair, Findings: []string{}, Runs: []ToolRun{}, Unmounted: []string{}}
	if res.FSType == "" {
		sig, err := l.m.Probe(ctx, req.Device)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", req.Device, err)
		}
		res.FSType = sig.Type
	}
	mps, err := l.m.MountsOf(req.Device)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", req.Device, err)
	}
	if req.Data {
		if len(mps) > 0 && !slices.Contains(mps, l.dataRoot) {
			return nil, fmt.Errorf("check %s: it is mounted at %s, not at %s: not a dockbridge host's data volume", req.Device, strings.Join(mps, ", "), l.dataRoot)
		}
		if err := l.systemctl(ctx, "stop", "docker.socket", "docker.service"); err != nil {
			return nil, fmt.Errorf("stop Docker before the check: %w", err)
		}
		res.DockerStopped = true
	}
	growMounted := false // an xfs to grow once mounted again
	// The mount comes back, and Docker with it, whatever happened in between.
	defer func() {
		if len(res.Unmounted) > 0 {
			target, opts := res.Unmounted[0], []string(nil) // where it was mounted first
			if req.Data {
				target, opts = l.dataRoot, []string{"discard"} // as the user-data mounts it
			}
			if merr := l.m.Mount(context.WithoutCancel(ctx), req.Device, target, res.FSType, opts); merr != nil {
				err = errors.Join(err, fmt.Errorf("mount %s at %s again: %w", req.Device, target, merr))
			} else {
				res.Remounted = true
				if growMounted && l.m.Grow(context.WithoutCancel(ctx), req.Device, target, res.FSType) == nil {
					res.Grown = true
				}
			}
		}
		if req.Data {
			if !res.Remounted && len(res.Unmounted) > 0 {
				err = errors.Join(err, fmt.Errorf("Docker is left stopped: its data root %s is not mounted (it must never run on the root disk). Fix the volume, mount it (mount %s), then `systemctl start docker`", l.dataRoot, l.dataRoot))
				return
			}
			if serr := l.systemctl(context.WithoutCancel(ctx), "start", "docker.service"); serr != nil {
				err = errors.Join(err, fmt.Errorf("start Docker again: %w", serr))
			} else {
				res.DockerStarted = true
			}
		}
	}()
	if req.Data {
		done, err := l.m.UnmountTree(ctx, l.dataRoot)
		res.Unmounted = append(res.Unmounted, reverse(done)...)
		if err != nil {
			return res, fmt.Errorf("unmount Docker's data root: %w", err)
		}
	} else {
		for _, mp := range mps {
			if err := l.m.Unmount(ctx, mp); err != nil {
				return res, err
			}
			res.Unmounted = append(res.Unmounted, mp)
		}
	}
	rep, cerr := l.m.Check(ctx, req.Device, res.FSType, req.Repair)
	res.Clean, res.Findings, res.Repaired = rep.Clean, rep.Findings, rep.Repaired
	for _, r := range rep.Runs {
		res.Runs = append(res.Runs, ToolRun(r))
	}
	// Its next mount is now: a resize not yet grown into is grown (only a sound filesystem).
	if cerr == nil && (rep.Clean || rep.Repaired) && len(res.Unmounted) > 0 {
		_, grown, gerr := l.m.GrowUnmounted(ctx, req.Device, res.FSType)
		res.Grown = grown
		growMounted = errors.Is(gerr, mount.ErrNotMounted)
	}
	return res, cerr
}

func reverse(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func systemctl(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
