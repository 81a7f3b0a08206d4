package host

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/volumefs"
)

// diskToolScript runs the volume plugin's binary on the server as its disk tool
// (`hetzner-volume-plugin disk ...`, internal/volumefs): copied first from the plugin's rootfs on
// the data volume to /run/dockbridge (a tmpfs), so that it can unmount the data volume it came
// from. The copy of an earlier run serves when Docker is not answering.
func diskToolScript(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	return fmt.Sprintf(`set -u
t=/run/dockbridge/disk-tool
if id=$(docker plugin inspect -f '{{.ID}}' %[1]s 2>/dev/null) && [ -x "%[2]s/plugins/$id/rootfs/hetzner-volume-plugin" ]; then
  mkdir -p /run/dockbridge && cp "%[2]s/plugins/$id/rootfs/hetzner-volume-plugin" "$t.new" && chmod 0700 "$t.new" && mv -f "$t.new" "$t"
fi
if [ ! -x "$t" ]; then echo '{"error":"the hetzner volume plugin, whose binary is the disk tool, is not installed on this server: run docker dockbridge up"}'; exit 1; fi
exec "$t" disk %[3]s
`, pluginName, cloudinit.DefaultMountPoint, strings.Join(quoted, " "))
}

// remoteDisk runs volumefs's procedures on a dockbridge host, as root over SSH.
type remoteDisk struct {
	r     Remote
	where string
}

func (rd *remoteDisk) Where() string { return rd.where }

func (rd *remoteDisk) call(ctx context.Context, args []string) (*volumefs.GrowResult, *volumefs.FsckResult, error) {
	out, err := rd.r.Run(ctx, diskToolScript(args), nil)
	g, f, perr := volumefs.ParseReply(out)
	var serr *volumefs.ServerError
	switch {
	case perr == nil, errors.As(perr, &serr):
		return g, f, perr
	case err != nil:
		return nil, nil, fmt.Errorf("the disk tool on %s: %w", rd.where, err)
	}
	return nil, nil, perr
}

func (rd *remoteDisk) Grow(ctx context.Context, req volumefs.GrowRequest) (*volumefs.GrowResult, error) {
	g, _, err := rd.call(ctx, req.Args())
	if err == nil && g == nil {
		err = fmt.Errorf("the disk tool on %s answered without a result", rd.where)
	}
	return g, err
}

func (rd *remoteDisk) Fsck(ctx context.Context, req volumefs.FsckRequest) (*volumefs.FsckResult, error) {
	_, f, err := rd.call(ctx, req.Args())
	if err == nil && f == nil {
		err = fmt.Errorf("the disk tool on %s answered without a result", rd.where)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: interrupted; on the server the check goes on to its end and mounts the volume again (and starts Docker, for the data volume): its report will be in %s (docker dockbridge ssh -- cat %s)", err, volumefs.ReportPath, volumefs.ReportPath)
	}
	return f, err
}

// runningServer is the environment's server (node 1's in a swarm), which must exist and run.
func runningServer(ctx context.Context, d *Deps, env string) (*hetzner.Server, error) {
	servers, err := d.API.Servers(ctx, selector(env, RoleServer))
	if err != nil {
		return nil, err
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("environment %s has no server: start it with `docker dockbridge up%s`", env, nameFlag(env))
	}
	s := nodeOne(servers, func(s *hetzner.Server) map[string]string { return s.Labels })
	if s.Status != "running" {
		return nil, fmt.Errorf("server %s of environment %s is %s, not running: `docker dockbridge up%s` starts it", s.Name, env, s.Status, nameFlag(env))
	}
	return s, nil
}

// DiskServer reaches the environment's running server as root over SSH (pinned host key), to
// grow or check filesystems there. Close closes the connection.
func DiskServer(ctx context.Context, d *Deps, env string) (volumefs.Server, func(), error) {
	d.defaults()
	s, err := runningServer(ctx, d, env)
	if err != nil {
		return nil, nil, d.explainAPI(err)
	}
	r, err := dialServer(ctx, d, env, s)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to server %s: %w", s.Name, err)
	}
	return &remoteDisk{r: r, where: fmt.Sprintf("server %s (over SSH, as root)", s.Name)}, func() { r.Close() }, nil
}

// DataVolume is the environment's data volume (node 1's in a swarm: the docker context's server).
func DataVolume(ctx context.Context, d *Deps, env string) (*hetzner.Volume, error) {
	return dataVolume(ctx, d, env)
}

// dataVolume is the environment's data volume (node 1's in a swarm).
func dataVolume(ctx context.Context, d *Deps, env string) (*hetzner.Volume, error) {
	vols, err := d.API.Volumes(ctx, selector(env, RoleDataRoot))
	if err != nil {
		return nil, err
	}
	if len(vols) == 0 {
		return nil, fmt.Errorf("environment %s has no data volume (`docker dockbridge up%s` makes one)", env, nameFlag(env))
	}
	return nodeOne(vols, func(v *hetzner.Volume) map[string]string { return v.Labels }), nil
}

// nodeOne is node 1's among an environment's servers or data volumes (a swarm has one per
// node; node 1's server is the one the docker context reaches), else the first.
func nodeOne[T any](items []T, labels func(T) map[string]string) T {
	for _, it := range items {
		if n, err := nodeOf(labels(it)); err == nil && n == 1 {
			return it
		}
	}
	return items[0]
}

// ResizeData is `volume resize --data`: it grows the environment's data volume (Docker's data
// root) with the API, then its filesystem online on the running server, as root over SSH.
// Without a running server, the filesystem grows at the next `up`, before Docker starts.
func ResizeData(ctx context.Context, d *Deps, env, size string) (res *volumefs.Resized, err error) {
	d.defaults()
	if err := ValidateEnvName(env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	v, err := dataVolume(ctx, d, env)
	if err != nil {
		return nil, err
	}
	t := volumefs.Target{Name: v.Name, HetznerID: v.ID, Data: true,
		Grow: volumefs.GrowRequest{Device: fmt.Sprintf("%s%d", cloudinit.DeviceByIDPrefix, v.ID), Mountpoint: cloudinit.DefaultMountPoint}}
	servers, err := d.API.Servers(ctx, selector(env, RoleServer))
	if err != nil {
		return nil, err
	}
	var srv *hetzner.Server
	if len(servers) > 0 {
		srv = nodeOne(servers, func(s *hetzner.Server) map[string]string { return s.Labels })
	}
	switch {
	case srv == nil || srv.Status != "running" || v.ServerID != srv.ID:
		t.NoServer = fmt.Sprintf("no server runs with it: its filesystem grows at the next `docker dockbridge up%s`", nameFlag(env))
	default:
		srv, closeSrv, err := DiskServer(ctx, d, env)
		if err != nil {
			return nil, err
		}
		defer closeSrv()
		t.Server = srv
	}
	return volumefs.Resize(ctx, d.API, t, size)
}

// FsckData is `volume fsck --data`: on the running server, as root over SSH, Docker is
// stopped, the data volume unmounted, checked (and repaired), mounted again and Docker started.
func FsckData(ctx context.Context, d *Deps, env string, repair bool) (res *volumefs.Checked, err error) {
	d.defaults()
	if err := ValidateEnvName(env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	v, err := dataVolume(ctx, d, env)
	if err != nil {
		return nil, err
	}
	srv, closeSrv, err := DiskServer(ctx, d, env)
	if err != nil {
		return nil, err
	}
	defer closeSrv()
	r, err := srv.Fsck(ctx, volumefs.FsckRequest{Device: fmt.Sprintf("%s%d", cloudinit.DeviceByIDPrefix, v.ID), Repair: repair, Data: true})
	if r == nil {
		return nil, err
	}
	return &volumefs.Checked{Volume: v.Name, HetznerID: v.ID, Data: true, CheckedOn: srv.Where(), FsckResult: *r}, err
}

// growDataVolume grows the data volume's filesystem on a server that has just come up, when
// the volume was resized while no server ran (`volume resize --data`): online, as root, with
// the plugin's binary as disk tool. The note says what happened; "" when there was nothing to
// grow.
func growDataVolume(ctx context.Context, r Remote, volumeID int64) (string, error) {
	rd := &remoteDisk{r: r, where: "the server"}
	g, err := rd.Grow(ctx, volumefs.GrowRequest{Device: fmt.Sprintf("%s%d", cloudinit.DeviceByIDPrefix, volumeID), Mountpoint: cloudinit.DefaultMountPoint})
	switch {
	case err != nil:
		return "", err
	case g.Grown:
		return fmt.Sprintf("%s grown to the volume's %d GB: %d -> %d bytes", g.FSType, g.DeviceBytes>>30, g.FilesystemBytesBefore, g.FilesystemBytesAfter), nil
	case g.Deferred != "":
		return "not grown: " + g.Deferred + ". `docker dockbridge volume fsck --data` unmounts it and grows it (Docker stops meanwhile)", nil
	}
	return "", nil
}
