package host

import (
	"context"
	"fmt"
)

// DownResult is what `down` reports.
type DownResult struct {
	Env        string      `json:"env"`
	Deleted    []ServerRef `json:"deleted_servers"`
	Volume     *VolumeRef  `json:"volume,omitempty"`
	Context    string      `json:"context"`
	Persisting []string    `json:"persisting"`
}

// ServerRef names a server.
type ServerRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// VolumeRef names a volume.
type VolumeRef struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	SizeGB int    `json:"size_gb"`
}

// Down deletes the environment's server (deleting is what stops billing; powering off
// does not) and keeps the data volume, the keys, the firewall and the context.
func Down(ctx context.Context, d *Deps, env string) (res *DownResult, err error) {
	d.defaults()
	if err := ValidateEnvName(env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	res = &DownResult{Env: env, Context: ContextName(env)}
	step := d.Progress.Start("Finding the server")
	servers, err := d.API.Servers(ctx, selector(env, RoleServer))
	if err == nil {
		step.Note("%d", len(servers))
	}
	step.End(&err)
	if err != nil {
		return res, err
	}
	StopControlMaster(ctx, d.Paths, env)
	for _, s := range servers {
		if !ours(s.Labels, env, RoleServer) {
			continue
		}
		step := d.Progress.Start(fmt.Sprintf("Deleting server %s (id %d)", s.Name, s.ID))
		err := d.API.DeleteServer(ctx, s.ID)
		step.End(&err)
		if err != nil {
			return res, fmt.Errorf("%w\nThe server may still exist and be billed: run `docker dockbridge down%s` again", err, nameFlag(env))
		}
		res.Deleted = append(res.Deleted, ServerRef{ID: s.ID, Name: s.Name})
	}
	if st, err := loadState(d.Paths, env); err == nil && (st.ServerID != 0 || st.HostKey != "") {
		st.forgetServer()
		if err := saveState(d.Paths, env, st); err != nil {
			return res, err
		}
	}
	vols, err := d.API.Volumes(ctx, selector(env, RoleDataRoot))
	if err != nil {
		return res, err
	}
	if len(vols) == 1 {
		res.Volume = &VolumeRef{ID: vols[0].ID, Name: vols[0].Name, SizeGB: vols[0].SizeGB}
		res.Persisting = append(res.Persisting, fmt.Sprintf("data volume %s (id %d, %d GB): /var/lib/docker with every container, image, network and volume", vols[0].Name, vols[0].ID, vols[0].SizeGB))
	}
	res.Persisting = append(res.Persisting,
		fmt.Sprintf("SSH key, firewall %s and docker context %s", firewallName(env), res.Context),
	)
	return res, nil
}
