package volumeops

import (
	"context"
	"fmt"
	"strings"

	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/volumefs"
)

// hetznerVolume inspects a volume that must be of the hetzner driver and report its Hetzner id.
func (e *Engine) hetznerVolume(ctx context.Context, name, what string) (Volume, error) {
	v, err := e.InspectVolume(ctx, name)
	if err != nil {
		return v, err
	}
	if !IsHetznerDriver(v.Driver) {
		return v, fmt.Errorf("%s %s: it is a %s volume; only volumes of the hetzner driver are Hetzner volumes (a dockbridge host's data volume: --data)", what, name, v.Driver)
	}
	if v.Hetzner == nil || v.Hetzner.ID == 0 {
		return v, fmt.Errorf("%s %s: the hetzner plugin reports no Hetzner volume id for it (docker volume inspect %s)", what, name, name)
	}
	return v, nil
}

// ResizeTarget is the hetzner volume name as `volume resize` needs it: its Hetzner id, its
// device, and where it is mounted on the engine's server (if a container uses it). Server is
// left to the caller: only it knows how to reach that server as root.
func (e *Engine) ResizeTarget(ctx context.Context, name string) (volumefs.Target, error) {
	v, err := e.hetznerVolume(ctx, name, "resize volume")
	if err != nil {
		return volumefs.Target{}, err
	}
	t := volumefs.Target{Name: v.Name, HetznerID: v.Hetzner.ID,
		Grow: volumefs.GrowRequest{Device: v.Hetzner.Device, FSType: str(v.Status["fstype"])}}
	if mounted, _ := v.Status["mounted"].(bool); mounted {
		t.Mounted, t.Grow.Mountpoint = true, v.Mountpoint
	}
	return t, nil
}

// FsckTarget is the hetzner volume name as `volume fsck` needs it. It refuses while running
// containers use the volume (naming them, helpers included) and when it is not attached to the
// engine's server.
func (e *Engine) FsckTarget(ctx context.Context, name string, repair bool) (volumefs.FsckRequest, Volume, error) {
	v, err := e.hetznerVolume(ctx, name, "check volume")
	if err != nil {
		return volumefs.FsckRequest{}, v, err
	}
	users, helpers, err := e.runningMounters(ctx, v.Name)
	if err != nil {
		return volumefs.FsckRequest{}, v, err
	}
	if len(users) > 0 {
		return volumefs.FsckRequest{}, v, fmt.Errorf("check volume %s: %w by running containers: %s. Stop them first (docker stop %s), then check it, then start them again",
			v.Name, volumefs.ErrInUse, strings.Join(users, ", "), strings.Join(users, " "))
	}
	if len(helpers) > 0 {
		return volumefs.FsckRequest{}, v, fmt.Errorf("check volume %s: %w by dockbridge's helper %s: a backup or restore of it is running; check it when that has ended",
			v.Name, volumefs.ErrInUse, strings.Join(helpers, ", "))
	}
	if v.Hetzner.Device == "" {
		return volumefs.FsckRequest{}, v, fmt.Errorf("check volume %s: it is not attached to this engine's server (%s). Run a container with it once (docker run --rm -v %s:/v IMAGE true) so the plugin attaches it here, then check it",
			v.Name, v.Hetzner.Server, v.Name)
	}
	return volumefs.FsckRequest{Device: v.Hetzner.Device, FSType: str(v.Status["fstype"]), Repair: repair}, v, nil
}

// runningMounters names the running containers that mount vol, and apart from them
// dockbridge's own helpers that do (a backup or restore in progress).
func (e *Engine) runningMounters(ctx context.Context, vol string) (users, helpers []string, err error) {
	res, err := e.API.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("volume", vol)})
	if err != nil {
		return nil, nil, fmt.Errorf("list containers using %s: %w", vol, err)
	}
	for _, c := range res.Items {
		if !isRunning(string(c.State)) {
			continue
		}
		name := c.ID[:min(12, len(c.ID))]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if c.Labels[helperLabel] != "" {
			helpers = append(helpers, name)
		} else {
			users = append(users, name)
		}
	}
	return users, helpers, nil
}
