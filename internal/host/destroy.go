package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// DestroyOptions are the choices of `destroy`.
type DestroyOptions struct {
	Env     string
	Volumes bool // also delete the data volume (its data is lost)
	Yes     bool // do not ask
}

// DestroyResult lists what was deleted and kept.
type DestroyResult struct {
	Env     string   `json:"env"`
	Deleted []string `json:"deleted"`
	Kept    []string `json:"kept"`
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
	res = &DestroyResult{Env: o.Env}
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

	var plan []string
	for _, s := range servers {
		plan = append(plan, fmt.Sprintf("server %s (id %d)", s.Name, s.ID))
	}
	for _, f := range fws {
		plan = append(plan, fmt.Sprintf("firewall %s (id %d)", f.Name, f.ID))
	}
	for _, k := range keys {
		plan = append(plan, fmt.Sprintf("SSH key %s (id %d) in the project", k.Name, k.ID))
	}
	plan = append(plan, fmt.Sprintf("docker context %s, local keys and state in %s", ContextName(o.Env), d.Paths.EnvDir(o.Env)))
	for _, v := range vols {
		if o.Volumes {
			plan = append(plan, fmt.Sprintf("DATA VOLUME %s (id %d, %d GB) WITH EVERY CONTAINER, IMAGE AND VOLUME ON IT", v.Name, v.ID, v.SizeGB))
		} else {
			res.Kept = append(res.Kept, fmt.Sprintf("data volume %s (id %d, %d GB): `up%s` adopts it again; `destroy --volumes` deletes it", v.Name, v.ID, v.SizeGB, nameFlag(o.Env)))
		}
	}
	fmt.Fprintf(d.Stderr, "This deletes, for environment %q:\n", o.Env)
	for _, p := range plan {
		fmt.Fprintf(d.Stderr, "  - %s\n", p)
	}
	for _, k := range res.Kept {
		fmt.Fprintf(d.Stderr, "and keeps the %s\n", k)
	}
	if err := confirm(d, o, len(vols) > 0 && o.Volumes); err != nil {
		return res, err
	}

	for _, s := range servers {
		if !ours(s.Labels, o.Env, RoleServer) {
			continue
		}
		step := d.Progress.Start(fmt.Sprintf("Deleting server %s (id %d)", s.Name, s.ID))
		err := d.API.DeleteServer(ctx, s.ID)
		step.End(&err)
		if err != nil {
			return res, err
		}
		res.Deleted = append(res.Deleted, fmt.Sprintf("server %s (id %d)", s.Name, s.ID))
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
