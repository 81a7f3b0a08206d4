package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/cli/cli/context/docker"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idleagent"
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
	st, err := loadState(d.Paths, env)
	if err != nil {
		return res, err
	}
	vols, err := d.API.Volumes(ctx, selector(env, RoleDataRoot))
	if err != nil {
		return res, err
	}
	ordered, swarm := downOrder(env, servers, vols)
	if swarm && len(ordered) > 0 && !o.Force {
		// The nodes stop one after the other: paused first, so that the managers, still up,
		// do not move the tasks of the nodes already stopped onto themselves. up makes them
		// active again.
		step := d.Progress.Start("Pausing the swarm's nodes (no task moves while they stop)")
		paused, err := pauseSwarm(ctx, d, env, servers)
		if err != nil {
			step.Note("not done: %s", shortErr(err))
			step.Fail(err)
		} else {
			step.Note("%d paused", len(paused))
			step.Done()
			for _, n := range paused {
				if !slices.Contains(st.Paused, n) {
					st.Paused = append(st.Paused, n)
				}
			}
			if err := saveState(d.Paths, env, st); err != nil {
				return res, err
			}
		}
	}
	if len(servers) > 0 {
		StopControlMaster(ctx, d.Paths, env)
	}
	for _, s := range ordered {
		stop, err := stopAndDelete(ctx, d, env, s, stopOptions{Force: o.Force, Command: "down"})
		if err != nil {
			if errors.As(err, new(*StillRunningError)) {
				return res, err
			}
			return res, fmt.Errorf("%w\nThe server may still exist and be billed: run `docker dockbridge down%s` again", err, nameFlag(env))
		}
		res.Deleted = append(res.Deleted, stop)
	}
	if st, err := loadState(d.Paths, env); err == nil {
		st.forgetServers()
		if err := saveState(d.Paths, env, st); err != nil {
			return res, err
		}
	}
	return res, keptOf(ctx, d, env, res, vols, swarm)
}

// downOrder is the order down stops an environment's servers in: a single server; the nodes of
// a swarm workers first, then the managers, the first node (the manager the context uses,
// usually the leader) last. swarm says the environment is one.
func downOrder(env string, servers []*hetzner.Server, vols []*hetzner.Volume) (ordered []*hetzner.Server, swarm bool) {
	role := map[int]string{}
	for _, v := range vols {
		if n, err := nodeOf(v.Labels); err == nil && v.Labels[LabelSwarm] != "" {
			role[n] = v.Labels[LabelSwarm]
			swarm = true
		}
	}
	type item struct {
		s *hetzner.Server
		n int
	}
	var items []item
	for _, s := range servers {
		if !ours(s.Labels, env, RoleServer) {
			continue
		}
		n, err := nodeOf(s.Labels)
		if err != nil {
			n = maxNodes + 1
		}
		if s.Labels[LabelNode] != "" {
			swarm = true
		}
		items = append(items, item{s, n})
	}
	// The same order as the idle agent's self-down of a swarm.
	idleagent.SortForStop(items, func(it item) (int, bool) { return it.n, role[it.n] == SwarmManager })
	for _, it := range items {
		ordered = append(ordered, it.s)
	}
	return ordered, swarm
}

// pauseSwarm sets every active node of the environment's swarm to availability pause (labelled
// idleagent.PausedLabel, as the idle agent's self-down does, so that up makes them active again
// whoever paused them), on the first node (a manager), over SSH; it returns the numbers of the
// nodes it paused.
func pauseSwarm(ctx context.Context, d *Deps, env string, servers []*hetzner.Server) ([]int, error) {
	var lead *hetzner.Server
	byName := map[string]int{}
	for _, s := range servers {
		n, err := nodeOf(s.Labels)
		if err != nil {
			continue
		}
		byName[s.Name] = n
		if n == 1 && !s.Off() {
			lead = s
		}
	}
	if lead == nil {
		return nil, errors.New("node 1 (the first manager) is not running")
	}
	t, err := serverTarget(d, env, lead)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := d.Dial(ctx, t)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	members, err := swarmNodes(ctx, r)
	if err != nil {
		return nil, err
	}
	var paused []int
	for _, m := range members {
		n, ok := byName[m.Hostname]
		if !ok || m.Availability != "Active" {
			continue
		}
		if _, err := r.Run(ctx, "docker node update --availability pause --label-add "+idleagent.PausedLabel+"=down "+m.ID+" >/dev/null", nil); err != nil {
			return paused, fmt.Errorf("pause node %d: %w", n, err)
		}
		paused = append(paused, n)
	}
	return paused, nil
}

// keptOf fills in what of the environment exists and stays: the data volume, the SSH key and
// the firewall in the project, and the docker context.
func keptOf(ctx context.Context, d *Deps, env string, res *DownResult, vols []*hetzner.Volume, swarm bool) error {
	slices.SortFunc(vols, func(a, b *hetzner.Volume) int { return strings.Compare(a.Name, b.Name) })
	for i, v := range vols {
		if i == 0 {
			res.Volume = &VolumeRef{ID: v.ID, Name: v.Name, SizeGB: v.SizeGB}
		}
		res.Persisting = append(res.Persisting, fmt.Sprintf("data volume %s (id %d, %d GB): /var/lib/docker with every container, image, network and volume", v.Name, v.ID, v.SizeGB))
	}
	var nets []*hetzner.Network
	if swarm {
		var err error
		if nets, err = d.API.Networks(ctx, selector(env, RoleNetwork)); err != nil {
			return err
		}
	}
	for _, n := range nets {
		res.Persisting = append(res.Persisting, fmt.Sprintf("private network %s (id %d, %s; free of charge): the nodes' Swarm addresses", n.Name, n.ID, n.IPRange))
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
