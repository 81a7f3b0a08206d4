package host

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// NodeAdd adds count worker nodes to the environment's swarm (making a single-server
// environment a swarm whose node 1 it is): `up` with that many more nodes.
func NodeAdd(ctx context.Context, d *Deps, o UpOptions, count int) (*UpResult, error) {
	if count < 1 {
		return nil, fmt.Errorf("--count %d: add at least one node", count)
	}
	vols, err := d.API.Volumes(ctx, selector(o.Env, RoleDataRoot))
	if err != nil {
		return nil, d.explainAPI(err)
	}
	o.Nodes = max(len(vols), 1) + count
	return Up(ctx, d, o)
}

// NodeRemoveOptions are the choices of `node rm`.
type NodeRemoveOptions struct {
	Env string
	// Index is the node's position in `node ls` (1-based); 0 is the last node.
	Index int
	// KeepVolume keeps the node's data volume (relabelled, so up does not bring the node back).
	KeepVolume bool
	Yes        bool // do not ask
	Force      bool // delete its server without stopping it: a power cut (ForceRisk)
}

// NodeRemoveResult is what `node rm` did.
type NodeRemoveResult struct {
	Env     string      `json:"env"`
	Node    int         `json:"node"`
	Drained bool        `json:"drained"`
	Server  *ServerStop `json:"server,omitempty"`
	// Volume is the node's data volume, deleted or kept.
	Volume     *VolumeRef `json:"volume,omitempty"`
	VolumeKept bool       `json:"volume_kept"`
	Notes      []string   `json:"notes,omitempty"`
}

// removedNodeRole labels a data volume `node rm --keep-volume` kept: no node of the
// environment any more (up leaves it alone), deleted by nothing but you.
const removedNodeRole = "removed-node-data"

// nodeDrainWait bounds how long node rm waits for the node's tasks to move away.
const nodeDrainWait = 5 * time.Minute

// NodeRemove removes a worker node from the environment's swarm: its tasks are moved away
// (drain; their hetzner volumes follow them, fenced), it leaves the swarm, its server is
// stopped cleanly and deleted, and its data volume (images, containers and local-driver
// volumes of that node) is deleted, or kept with --keep-volume. Node 1 and managers are
// refused.
func NodeRemove(ctx context.Context, d *Deps, o NodeRemoveOptions) (res *NodeRemoveResult, err error) {
	d.defaults()
	if err := ValidateEnvName(o.Env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	servers, err := d.API.Servers(ctx, selector(o.Env, RoleServer))
	if err != nil {
		return nil, err
	}
	vols, err := d.API.Volumes(ctx, selector(o.Env, RoleDataRoot))
	if err != nil {
		return nil, err
	}
	byNode := map[int]*hetzner.Volume{}
	for _, v := range vols {
		if n, err := nodeOf(v.Labels); err == nil && ours(v.Labels, o.Env, RoleDataRoot) {
			byNode[n] = v
		}
	}
	numbers := slices.Sorted(maps.Keys(byNode))
	if len(numbers) < 2 {
		return nil, fmt.Errorf("environment %q has %d node(s): node rm removes a node of a swarm and keeps node 1; `docker dockbridge down%s` stops everything", o.Env, len(numbers), nameFlag(o.Env))
	}
	idx := o.Index
	if idx == 0 {
		idx = len(numbers)
	}
	if idx < 1 || idx > len(numbers) {
		return nil, fmt.Errorf("node %d: environment %q has nodes 1 to %d (see `docker dockbridge node ls%s`)", idx, o.Env, len(numbers), nameFlag(o.Env))
	}
	num := numbers[idx-1]
	vol := byNode[num]
	res = &NodeRemoveResult{Env: o.Env, Node: num, Volume: &VolumeRef{ID: vol.ID, Name: vol.Name, SizeGB: vol.SizeGB}, VolumeKept: o.KeepVolume}
	switch {
	case num == 1:
		return res, fmt.Errorf("node 1 is the manager the docker context uses: it stays while the environment exists")
	case vol.Labels[LabelSwarm] == SwarmManager:
		return res, fmt.Errorf("node %d (position %d) is a Swarm manager: remove a worker, or have fewer managers first (`docker dockbridge up%s --managers N`)", num, idx, nameFlag(o.Env))
	}
	var srv, lead *hetzner.Server
	for _, s := range servers {
		switch n, _ := nodeOf(s.Labels); {
		case n == num:
			srv = s
		case n == 1 && s.Status == "running":
			lead = s
		}
	}
	what := fmt.Sprintf("node %d (position %d in node ls)", num, idx)
	if srv != nil {
		what += fmt.Sprintf(": server %s (id %d), its tasks moved to other nodes first", srv.Name, srv.ID)
	}
	if o.KeepVolume {
		what += fmt.Sprintf("; its data volume %s (id %d) is kept", vol.Name, vol.ID)
	} else {
		what += fmt.Sprintf("; and its DATA VOLUME %s (id %d, %d GB) with the images, containers and local-driver volumes of that node", vol.Name, vol.ID, vol.SizeGB)
	}
	fmt.Fprintf(d.Stderr, "This removes from environment %q %s.\n", o.Env, what)
	if err := confirmNodeRemove(d, o); err != nil {
		return res, err
	}

	// 1. Its tasks move away (drain), while its server still runs.
	if srv != nil && lead != nil && !o.Force {
		step := d.Progress.Start(fmt.Sprintf("Draining node %d (its tasks and their volumes move to the other nodes)", num))
		err := drainNode(ctx, d, o.Env, lead, srv.Name)
		step.End(&err)
		if err != nil {
			return res, fmt.Errorf("%w\nNothing was deleted; the node is drained: `docker --context %s node update --availability active %s` makes it take tasks again", err, ContextName(o.Env), srv.Name)
		}
		res.Drained = true
	}
	// 2. Its server: out of the swarm, stopped cleanly, deleted.
	if srv != nil {
		if !srv.Off() && !o.Force {
			if t, err := serverTarget(d, o.Env, srv); err == nil {
				lctx, cancel := context.WithTimeout(ctx, time.Minute)
				if r, err := d.Dial(lctx, t); err == nil {
					_, _ = r.Run(lctx, "docker swarm leave >/dev/null 2>&1", nil)
					r.Close()
				}
				cancel()
			}
		}
		stop, err := stopAndDelete(ctx, d, o.Env, srv, stopOptions{Force: o.Force, Command: "node rm"})
		res.Server = stop
		if err != nil {
			return res, err
		}
	}
	if lead != nil && srv != nil {
		if t, err := serverTarget(d, o.Env, lead); err == nil {
			lctx, cancel := context.WithTimeout(ctx, time.Minute)
			if r, err := d.Dial(lctx, t); err == nil {
				_, _ = r.Run(lctx, "docker node rm --force "+shellQuote(srv.Name)+" >/dev/null 2>&1", nil)
				r.Close()
			}
			cancel()
		}
	}
	// Node 1's idle agent no longer asks it what it does (deleted, it counted as no activity).
	res.Notes = append(res.Notes, forgetMember(ctx, d, o.Env, num))
	// 3. Its data volume.
	if o.KeepVolume {
		l := maps.Clone(vol.Labels)
		l[LabelRole] = removedNodeRole
		if _, err := d.API.SetVolumeLabels(ctx, vol.ID, l); err != nil {
			return res, fmt.Errorf("relabel node %d's data volume %d as removed: %w", num, vol.ID, err)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("data volume %s (id %d) kept (label %s=%s); it costs what a volume costs until you delete it (hcloud volume delete %d)", vol.Name, vol.ID, LabelRole, removedNodeRole, vol.ID))
	} else {
		step := d.Progress.Start(fmt.Sprintf("Deleting node %d's data volume %s (id %d)", num, vol.Name, vol.ID))
		cur, err := refresh(ctx, d, []*hetzner.Volume{vol}, selector(o.Env, RoleDataRoot))
		if err == nil && len(cur) == 1 && cur[0].ServerID != 0 {
			// Its server was not found, or outlived its delete: a detach would pull the
			// volume from under a mounted /var/lib/docker.
			err = fmt.Errorf("node %d's data volume %s (id %d) is still attached to server %d: nothing was detached or deleted. Stop that server so that nothing mounts the volume (hcloud server shutdown %d), detach it (hcloud volume detach %d) and run node rm again; or keep the volume with --keep-volume",
				num, vol.Name, vol.ID, cur[0].ServerID, cur[0].ServerID, vol.ID)
		}
		if err == nil && len(cur) == 1 {
			err = deleteVolume(ctx, d, cur[0])
		}
		step.End(&err)
		if err != nil {
			return res, err
		}
	}
	// 4. What this machine knows of it.
	st, err := loadState(d.Paths, o.Env)
	if err != nil {
		return res, err
	}
	st.Nodes = slices.DeleteFunc(st.Nodes, func(n nodeState) bool { return n.Node == num })
	st.Paused = slices.DeleteFunc(st.Paused, func(n int) bool { return n == num })
	return res, saveState(d.Paths, o.Env, st)
}

// drainNode sets a node's availability to drain on the manager lead and waits until none of
// its tasks runs there any more.
func drainNode(ctx context.Context, d *Deps, env string, lead *hetzner.Server, hostname string) error {
	t, err := serverTarget(d, env, lead)
	if err != nil {
		return err
	}
	r, err := d.Dial(ctx, t)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := r.Run(ctx, "docker node update --availability drain "+shellQuote(hostname)+" >/dev/null", nil); err != nil {
		return err
	}
	deadline := d.Now().Add(nodeDrainWait)
	for {
		out, err := r.Run(ctx, "docker node ps "+shellQuote(hostname)+" --filter desired-state=running --format '{{.CurrentState}}'", nil)
		if err != nil {
			return err
		}
		left := strings.TrimSpace(string(out))
		if left == "" {
			return nil
		}
		if d.Now().After(deadline) {
			return fmt.Errorf("tasks still on node %s after %s: %s", hostname, nodeDrainWait, strings.ReplaceAll(left, "\n", "; "))
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
}

func confirmNodeRemove(d *Deps, o NodeRemoveOptions) error {
	if o.Yes {
		return nil
	}
	if !d.Interactive || d.Stdin == nil {
		return fmt.Errorf("%w: node rm needs a confirmation and there is no terminal to ask on: pass --yes", ErrNotConfirmed)
	}
	in := bufio.NewReader(d.Stdin)
	if !o.KeepVolume {
		// The node's data volume is deleted: the confirmation destroy --volumes asks.
		fmt.Fprintf(d.Stderr, "The data on the node's data volume will be lost (--keep-volume keeps it). Type the environment name (%s) to confirm: ", o.Env)
		line, _ := in.ReadString('\n')
		if strings.TrimSpace(line) != o.Env {
			return fmt.Errorf("%w: nothing was removed", ErrNotConfirmed)
		}
		return nil
	}
	fmt.Fprint(d.Stderr, "Continue? [y/N] ")
	line, _ := in.ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%w: nothing was removed", ErrNotConfirmed)
}
