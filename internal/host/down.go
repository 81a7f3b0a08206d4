package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/cli/cli/context/docker"
)

// DownOptions are the choices of `down`.
type DownOptions struct {
	Env string
	// Force deletes a running server without stopping it: a power cut (ForceRisk).
	Force bool
}

// DownResult is what `down` reports.
type DownResult struct {
	Env string `json:"env"`
	// Deleted are the servers deleted, each with how it was stopped first.
	Deleted []*ServerStop `json:"deleted_servers"`
	Volume  *VolumeRef    `json:"volume,omitempty"`
	Context string        `json:"context"`
	// Persisting lists what exists and is kept (nothing that does not exist).
	Persisting []string `json:"persisting"`
}

// VolumeRef names a volume.
type VolumeRef struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	SizeGB int    `json:"size_gb"`
}

// Down stops the environment's server cleanly and deletes it (deleting is what stops billing;
// powering off does not): see stopAndDelete. It keeps the data volume, the keys, the firewall
// and the context, and reports which of them exist.
func Down(ctx context.Context, d *Deps, o DownOptions) (res *DownResult, err error) {
	d.defaults()
	env := o.Env
	if err := ValidateEnvName(env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	res = &DownResult{Env: env, Context: ContextName(env), Deleted: []*ServerStop{}, Persisting: []string{}}
	step := d.Progress.Start("Finding the server")
	servers, err := d.API.Servers(ctx, selector(env, RoleServer))
	if err == nil {
		step.Note("%d", len(servers))
	}
	step.End(&err)
	if err != nil {
		return res, err
	}
	if len(servers) > 0 {
		StopControlMaster(ctx, d.Paths, env)
	}
	for _, s := range servers {
		if !ours(s.Labels, env, RoleServer) {
			continue
		}
		stop, err := stopAndDelete(ctx, d, env, s, stopOptions{Force: o.Force, Command: "down"})
		if err != nil {
			if errors.As(err, new(*StillRunningError)) {
				return res, err
			}
			return res, fmt.Errorf("%w\nThe server may still exist and be billed: run `docker dockbridge down%s` again", err, nameFlag(env))
		}
		res.Deleted = append(res.Deleted, stop)
	}
	if st, err := loadState(d.Paths, env); err == nil && (st.ServerID != 0 || st.HostKey != "") {
		st.forgetServer()
		if err := saveState(d.Paths, env, st); err != nil {
			return res, err
		}
	}
	return res, keptOf(ctx, d, env, res)
}

// keptOf fills in what of the environment exists and stays: the data volume, the SSH key and
// the firewall in the project, and the docker context.
func keptOf(ctx context.Context, d *Deps, env string, res *DownResult) error {
	vols, err := d.API.Volumes(ctx, selector(env, RoleDataRoot))
	if err != nil {
		return err
	}
	if len(vols) == 1 {
		res.Volume = &VolumeRef{ID: vols[0].ID, Name: vols[0].Name, SizeGB: vols[0].SizeGB}
		res.Persisting = append(res.Persisting, fmt.Sprintf("data volume %s (id %d, %d GB): /var/lib/docker with every container, image, network and volume", vols[0].Name, vols[0].ID, vols[0].SizeGB))
	}
	keys, err := d.API.SSHKeys(ctx, selector(env, ""))
	if err != nil {
		return err
	}
	for _, k := range keys {
		if ours(k.Labels, env, "") {
			res.Persisting = append(res.Persisting, fmt.Sprintf("SSH key %s (id %d) in the project", k.Name, k.ID))
		}
	}
	fws, err := d.API.Firewalls(ctx, selector(env, RoleFirewall))
	if err != nil {
		return err
	}
	for _, f := range fws {
		if ours(f.Labels, env, RoleFirewall) {
			res.Persisting = append(res.Persisting, fmt.Sprintf("firewall %s (id %d)", f.Name, f.ID))
		}
	}
	if d.Contexts != nil {
		if meta, err := d.Contexts.GetMetadata(res.Context); err == nil {
			if ep, err := docker.EndpointFromContext(meta); err == nil && ep.Host == ContextHost(env) {
				res.Persisting = append(res.Persisting, "docker context "+res.Context)
			}
		}
	}
	return nil
}
