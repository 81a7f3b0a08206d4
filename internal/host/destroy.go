package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// DestroyOptions are the choices of `destroy`.
type DestroyOptions struct {
	Env     string
	Volumes bool // also delete the data volume (its data is lost)
	Yes     bool // do not ask
	// Force deletes a running server without stopping it: a power cut (ForceRisk).
	Force bool
}

// DestroyResult lists what was deleted and kept.
type DestroyResult struct {
	Env     string   `json:"env"`
	Deleted []string `json:"deleted"`
	Kept    []string `json:"kept"`
	// Servers are the servers deleted, each with how it was stopped first.
	Servers []*ServerStop `json:"servers"`
}

// ErrNotConfirmed is returned when the person said no (or could not be asked).
var ErrNotConfirmed = errors.New("not confirmed")

// Destroy deletes everything the environment made that carries its labels: server,
// firewall, uploaded SSH key, docker context, local keys and state, and with Volumes the
// data volume. Resources without our labels are never touched.
func Destroy(ctx context.Context, d *Deps, o DestroyOptions) (res *DestroyResult, err error) {
	d.defaults()
	if err := ValidateEnvName(o.Env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	res = &DestroyResult{Env: o.Env, Servers: []*ServerStop{}}
	sel := selector(o.Env, "")
	servers, err := d.API.Servers(ctx, selector(o.Env, RoleServer))
	if err != nil {
		return res, err
	}
	fws, err := d.API.Firewalls(ctx, selector(o.Env, RoleFirewall))
	if err != nil {
		return res, err
	}
	keys, err := d.API.SSHKeys(ctx, sel)
	if err != nil {
		return res, err
	}
	vols, err := d.API.Volumes(ctx, selector(o.Env, RoleDataRoot))
	if err != nil {
		return res, err
	}
	servers, swarm := downOrder(o.Env, servers, vols)
	var nets []*hetzner.Network
	if swarm {
		if nets, err = d.API.Networks(ctx, selector(o.Env, RoleNetwork)); err != nil {
			return res, err
		}
	}

	// Volumes the hetzner plugin made on this environment's servers (it labels them with the
	// server's id): deleted with --volumes, like the data volume.
	var pluginVols []*hetzner.Volume
	if o.Volumes {
		st, err := loadState(d.Paths, o.Env)
		if err != nil {
			return res, err
		}
		for _, s := range servers {
			st.addServer(s.ID)
		}
		if pluginVols, err = pluginVolumes(ctx, d, st.ServerIDs); err != nil {
			return res, err
		}
	}

	var plan []string
	for _, s := range servers {
		how := "stopped cleanly first (Docker, volumes unmounted, shut down)"
		switch {
		case s.Off():
			how = "off"
		case o.Force:
			how = "RUNNING, deleted without stopping it (--force): " + ForceRisk
		}
		plan = append(plan, fmt.Sprintf("server %s (id %d), %s", s.Name, s.ID, how))
	}
	for _, f := range fws {
		plan = append(plan, fmt.Sprintf("firewall %s (id %d)", f.Name, f.ID))
	}
	for _, k := range keys {
		plan = append(plan, fmt.Sprintf("SSH key %s (id %d) in the project", k.Name, k.ID))
	}
	for _, n := range nets {
		plan = append(plan, fmt.Sprintf("private network %s (id %d)", n.Name, n.ID))
	}
	plan = append(plan, fmt.Sprintf("docker context %s, local keys and state in %s", ContextName(o.Env), d.Paths.EnvDir(o.Env)))
	for _, v := range vols {
		if o.Volumes {
			plan = append(plan, fmt.Sprintf("DATA VOLUME %s (id %d, %d GB) WITH EVERY CONTAINER, IMAGE AND VOLUME ON IT", v.Name, v.ID, v.SizeGB))
		} else {
			res.Kept = append(res.Kept, fmt.Sprintf("data volume %s (id %d, %d GB): `up%s` adopts it again; `destroy --volumes` deletes it", v.Name, v.ID, v.SizeGB, nameFlag(o.Env)))
		}
	}
	for _, v := range pluginVols {
		plan = append(plan, fmt.Sprintf("HETZNER-DRIVER VOLUME %s (id %d, %d GB, docker volume %q) WITH ITS DATA", v.Name, v.ID, v.SizeGB, v.Labels[labelPluginVolume]))
	}
	fmt.Fprintf(d.Stderr, "This deletes, for environment %q:\n", o.Env)
	for _, p := range plan {
		fmt.Fprintf(d.Stderr, "  - %s\n", p)
	}
	for _, k := range res.Kept {
		fmt.Fprintf(d.Stderr, "and keeps the %s\n", k)
	}
	if err := confirm(d, o, (len(vols) > 0 || len(pluginVols) > 0) && o.Volumes); err != nil {
		return res, err
	}

	if len(servers) > 0 {
		StopControlMaster(ctx, d.Paths, o.Env)
	}
	for _, s := range servers {
		if !ours(s.Labels, o.Env, RoleServer) {
			continue
		}
		stop, err := stopAndDelete(ctx, d, o.Env, s, stopOptions{Force: o.Force, Command: "destroy"})
		if err != nil {
			return res, err
		}
		res.Servers = append(res.Servers, stop)
		res.Deleted = append(res.Deleted, fmt.Sprintf("server %s (id %d), stopped: %s", s.Name, s.ID, stop.Stop))
	}
	StopControlMaster(ctx, d.Paths, o.Env)
	for _, f := range fws {
		if !ours(f.Labels, o.Env, RoleFirewall) {
			continue
		}
		step := d.Progress.Start(fmt.Sprintf("Deleting firewall %s (id %d)", f.Name, f.ID))
		err := d.API.DeleteFirewall(ctx, f.ID)
		step.End(&err)
		if err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, fmt.Sprintf("firewall %s (id %d)", f.Name, f.ID))
	}
	for _, n := range nets {
		if !ours(n.Labels, o.Env, RoleNetwork) {
			continue
		}
		step := d.Progress.Start(fmt.Sprintf("Deleting private network %s (id %d)", n.Name, n.ID))
		err := d.API.DeleteNetwork(ctx, n.ID)
		if errors.Is(err, hetzner.ErrNotFound) {
			err = nil
		}
		step.End(&err)
		if err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, fmt.Sprintf("private network %s (id %d)", n.Name, n.ID))
	}
	for _, k := range keys {
		if !ours(k.Labels, o.Env, "") {
			continue
		}
		step := d.Progress.Start(fmt.Sprintf("Deleting SSH key %s (id %d)", k.Name, k.ID))
		err := d.API.DeleteSSHKey(ctx, k.ID)
		step.End(&err)
		if err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, fmt.Sprintf("SSH key %s (id %d)", k.Name, k.ID))
	}
	if o.Volumes && len(res.Deleted) > 0 && (len(vols) > 0 || len(pluginVols) > 0) {
		// Deleting the server detached its volumes: read them again, so no stale attachment
		// makes us detach a detached volume.
		if vols, err = refresh(ctx, d, vols, selector(o.Env, RoleDataRoot)); err != nil {
			return res, err
		}
		if pluginVols, err = refresh(ctx, d, pluginVols, LabelManagedBy+"="+ManagedBy+","+labelPluginVolume); err != nil {
			return res, err
		}
	}
	if o.Volumes {
		for _, v := range vols {
			if !ours(v.Labels, o.Env, RoleDataRoot) {
				continue
			}
			step := d.Progress.Start(fmt.Sprintf("Deleting data volume %s (id %d)", v.Name, v.ID))
			err := deleteVolume(ctx, d, v)
			step.End(&err)
			if err != nil {
				return res, err
			}
			res.Deleted = append(res.Deleted, fmt.Sprintf("data volume %s (id %d)", v.Name, v.ID))
		}
	}
	for _, v := range pluginVols {
		step := d.Progress.Start(fmt.Sprintf("Deleting hetzner-driver volume %s (id %d)", v.Name, v.ID))
		err := deleteVolume(ctx, d, v)
		step.End(&err)
		if err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, fmt.Sprintf("hetzner-driver volume %s (id %d)", v.Name, v.ID))
	}
	if d.Contexts != nil {
		removed, err := RemoveContext(d.Contexts, o.Env)
		if err != nil {
			return res, err
		}
		if removed {
			res.Deleted = append(res.Deleted, "docker context "+ContextName(o.Env))
		}
	}
	if err := os.RemoveAll(d.Paths.EnvDir(o.Env)); err != nil {
		return res, fmt.Errorf("remove %s: %w", d.Paths.EnvDir(o.Env), err)
	}
	res.Deleted = append(res.Deleted, "local keys and state "+d.Paths.EnvDir(o.Env))
	return res, nil
}

func deleteVolume(ctx context.Context, d *Deps, v *hetzner.Volume) error {
	if v.ServerID != 0 {
		if err := d.API.DetachVolume(ctx, v.ID); err != nil && !errors.Is(err, hetzner.ErrNotFound) {
			return err
		}
	}
	err := d.API.DeleteVolume(ctx, v.ID)
	if errors.Is(err, hetzner.ErrProtected) {
		return fmt.Errorf("%w\nThe volume has delete protection: turn it off in the Hetzner console first if you really mean to delete it", err)
	}
	return err
}

func confirm(d *Deps, o DestroyOptions, volumes bool) error {
	if o.Yes {
		return nil
	}
	if !d.Interactive || d.Stdin == nil {
		return fmt.Errorf("%w: destroy needs a confirmation and there is no terminal to ask on: pass --yes", ErrNotConfirmed)
	}
	in := bufio.NewReader(d.Stdin)
	if volumes {
		fmt.Fprintf(d.Stderr, "The data on the volume will be lost. Type the environment name (%s) to confirm: ", o.Env)
		line, _ := in.ReadString('\n')
		if strings.TrimSpace(line) != o.Env {
			return fmt.Errorf("%w: nothing was deleted", ErrNotConfirmed)
		}
		return nil
	}
	fmt.Fprint(d.Stderr, "Continue? [y/N] ")
	line, _ := in.ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%w: nothing was deleted", ErrNotConfirmed)
}

// Labels the hetzner volume plugin puts on the volumes it creates and attaches
// (internal/volumedriver): the Docker volume name and the server holding it.
const (
	labelPluginVolume   = "dockbridge/volume"
	labelPluginHolder   = "dockbridge/holder"
	labelPluginReleased = "dockbridge/released"
)

// pluginVolumes lists the volumes the hetzner plugin made that were last attached by one of
// serverIDs and are not attached to any other server now.
func pluginVolumes(ctx context.Context, d *Deps, serverIDs []int64) ([]*hetzner.Volume, error) {
	if len(serverIDs) == 0 {
		return nil, nil
	}
	vols, err := d.API.Volumes(ctx, LabelManagedBy+"="+ManagedBy+","+labelPluginVolume)
	if err != nil {
		return nil, err
	}
	mine := func(s string) bool {
		id, err := strconv.ParseInt(s, 10, 64)
		return err == nil && slices.Contains(serverIDs, id)
	}
	var out []*hetzner.Volume
	for _, v := range vols {
		if v.Labels[LabelManagedBy] != ManagedBy || v.Labels[labelPluginVolume] == "" || v.Labels[LabelRole] != "" {
			continue
		}
		if !mine(v.Labels[labelPluginHolder]) && !mine(v.Labels[labelPluginReleased]) {
			continue
		}
		if v.ServerID != 0 && !slices.Contains(serverIDs, v.ServerID) {
			continue // in use by a server of another environment now
		}
		out = append(out, v)
	}
	return out, nil
}

// refresh reads vols again (one list request on sel), keeping only those still there.
func refresh(ctx context.Context, d *Deps, vols []*hetzner.Volume, sel string) ([]*hetzner.Volume, error) {
	if len(vols) == 0 {
		return vols, nil
	}
	cur, err := d.API.Volumes(ctx, sel)
	if err != nil {
		return nil, err
	}
	out := vols[:0]
	for _, v := range vols {
		for _, c := range cur {
			if c.ID == v.ID {
				out = append(out, c)
			}
		}
	}
	return out, nil
}
