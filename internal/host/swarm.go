package host

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idleagent"
)

// networkZones maps a location to its network zone (a private network's subnet lives in one).
var networkZones = map[string]string{"fsn1": "eu-central", "nbg1": "eu-central", "hel1": "eu-central",
	"ash": "us-east", "hil": "us-west", "sin": "ap-southeast"}

// ensureNetwork finds the environment's private network or creates it (privateRange with
// privateSubnet in location's network zone).
func ensureNetwork(ctx context.Context, d *Deps, env, location string) (_ *hetzner.Network, err error) {
	step := d.Progress.Start("Private network for Swarm")
	defer step.End(&err)
	nets, err := d.API.Networks(ctx, selector(env, RoleNetwork))
	if err != nil {
		return nil, err
	}
	if len(nets) > 1 {
		return nil, fmt.Errorf("%d networks carry the labels of environment %q (ids %v): delete the extra ones in the Hetzner console", len(nets), env, ids(nets, func(n *hetzner.Network) int64 { return n.ID }))
	}
	if len(nets) == 1 {
		n := nets[0]
		if !ours(n.Labels, env, RoleNetwork) {
			return nil, fmt.Errorf("network %d does not carry our labels: refusing to use it", n.ID)
		}
		if n.IPRange != privateRange.String() || !slices.Contains(n.Subnets, privateSubnet.String()) {
			return nil, fmt.Errorf("network %s (id %d) has range %s and subnets %v, not %s with %s: the nodes' fixed addresses would not fit; delete it (hcloud network delete %d) and run up again", n.Name, n.ID, n.IPRange, n.Subnets, privateRange, privateSubnet, n.ID)
		}
		step.Note("%q (id %d, %s)", n.Name, n.ID, n.IPRange)
		return n, nil
	}
	zone, ok := networkZones[location]
	if !ok {
		return nil, fmt.Errorf("location %q: its network zone is unknown to dockbridge (known: fsn1, nbg1, hel1, ash, hil, sin)", location)
	}
	n, err := d.API.CreateNetwork(ctx, hetzner.NetworkSpec{Name: networkName(env), IPRange: privateRange.String(),
		Subnet: privateSubnet.String(), NetworkZone: zone, Labels: labels(env, RoleNetwork)})
	if errors.Is(err, hetzner.ErrAlreadyExists) {
		return nil, fmt.Errorf("a network named %q exists without dockbridge's labels: rename or delete it, or use another --name: %w", networkName(env), err)
	}
	if err != nil {
		return nil, err
	}
	step.Note("created %q (id %d, %s, subnet %s in %s)", n.Name, n.ID, n.IPRange, privateSubnet, zone)
	return n, nil
}

// ensureOnNetwork attaches node n's server to the network at the node's fixed address (its
// Swarm address, the same for every server the node ever has).
func ensureOnNetwork(ctx context.Context, d *Deps, n *upNode, network *hetzner.Network) (err error) {
	want := nodeIP(n.N)
	switch have := n.srv.PrivateIPs[network.ID]; have {
	case want:
		return nil
	case "":
	default:
		return fmt.Errorf("server %s (id %d) is on network %d with address %s, not node %d's %s: detach it (hcloud server detach-from-network %d --network %d) and run up again",
			n.srv.Name, n.srv.ID, network.ID, have, n.N, want, n.srv.ID, network.ID)
	}
	step := d.Progress.Start(fmt.Sprintf("Attaching node %d to the private network at %s", n.N, want))
	defer step.End(&err)
	err = d.API.AttachToNetwork(ctx, n.srv.ID, network.ID, want)
	if err != nil && !errors.Is(err, hetzner.ErrAlreadyAttached) {
		if errors.Is(err, hetzner.ErrAddressTaken) {
			return fmt.Errorf("%w: another server of the project has %s on network %d", err, want, network.ID)
		}
		return err
	}
	srv, gerr := d.API.Server(ctx, n.srv.ID)
	if gerr != nil {
		return gerr
	}
	if srv.PrivateIPs[network.ID] != want {
		return fmt.Errorf("server %d is on network %d with %q, not %s", srv.ID, network.ID, srv.PrivateIPs[network.ID], want)
	}
	n.srv = srv
	return nil
}

// swarmInfo is what `docker info` says about a node's Swarm membership.
type swarmInfo struct {
	NodeID           string `json:"NodeID"`
	NodeAddr         string `json:"NodeAddr"`
	LocalNodeState   string `json:"LocalNodeState"` // inactive, pending, active, error, locked
	ControlAvailable bool   `json:"ControlAvailable"`
	Error            string `json:"Error"`
	Cluster          *struct {
		ID string `json:"ID"`
	} `json:"Cluster"`
}

func getSwarmInfo(ctx context.Context, r Remote) (swarmInfo, error) {
	var si swarmInfo
	out, err := r.Run(ctx, "docker info --format '{{json .Swarm}}'", nil)
	if err != nil {
		return si, fmt.Errorf("docker info: %w", err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &si); err != nil {
		return si, fmt.Errorf("docker info: %q: %w", out, err)
	}
	return si, nil
}

// SwarmNode is one line of `docker node ls` on a manager.
type SwarmNode struct {
	ID            string `json:"ID"`
	Hostname      string `json:"Hostname"`
	Status        string `json:"Status"`        // Ready, Down, Unknown
	Availability  string `json:"Availability"`  // Active, Pause, Drain
	ManagerStatus string `json:"ManagerStatus"` // Leader, Reachable, Unreachable, "" for a worker
	Self          bool   `json:"Self"`
}

func swarmNodes(ctx context.Context, r Remote) ([]SwarmNode, error) {
	out, err := r.Run(ctx, "docker node ls --format '{{json .}}'", nil)
	if err != nil {
		return nil, fmt.Errorf("docker node ls: %w", err)
	}
	var nodes []SwarmNode
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var n SwarmNode
		if err := json.Unmarshal(line, &n); err != nil {
			return nil, fmt.Errorf("docker node ls: %q: %w", line, err)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func memberNamed(nodes []SwarmNode, hostname string) *SwarmNode {
	var found *SwarmNode
	for i := range nodes {
		if nodes[i].Hostname == hostname && (found == nil || nodes[i].Status == "Ready") {
			found = &nodes[i]
		}
	}
	return found
}

// swarmJoinWait bounds how long a node may take to become Ready, and a recreated swarm's
// managers to find their quorum again.
const swarmJoinWait = 3 * time.Minute

// formSwarm makes the nodes one Docker Swarm, whatever they are: the first manager initialises
// it (advertising its private address, overlay ranges from swarmAddrPool) unless it is in one
// already (its data volume keeps Swarm's state across down and up); every other node joins at
// its private address with its role's token, unless it is a member already (a stale membership
// of another swarm is left first); managers and workers are promoted or demoted to the roles
// planned; the nodes `down` paused are made active again; and it waits until every node is
// Ready.
func formSwarm(ctx context.Context, d *Deps, env string, st *envState, nodes []*upNode) (err error) {
	managers := 0
	for _, n := range nodes {
		if n.Role == SwarmManager {
			managers++
		}
	}
	step := d.Progress.Start(fmt.Sprintf("Docker Swarm of %d node(s), %d manager(s)", len(nodes), managers))
	defer step.End(&err)
	lead := nodes[0]
	leadIP := nodeIP(lead.N)
	si, err := getSwarmInfo(ctx, lead.remote)
	if err != nil {
		return fmt.Errorf("node %d: %w", lead.N, err)
	}
	initialised := false
	switch si.LocalNodeState {
	case "inactive":
		if _, err := lead.remote.Run(ctx, fmt.Sprintf("docker swarm init --advertise-addr %[1]s --listen-addr %[1]s:2377 --data-path-addr %[1]s --default-addr-pool %[2]s >/dev/null", leadIP, swarmAddrPool), nil); err != nil {
			return fmt.Errorf("docker swarm init on node %d: %w", lead.N, err)
		}
		initialised = true
	case "locked":
		return fmt.Errorf("the swarm is locked (autolock): unlock it with `docker dockbridge ssh%s -- docker swarm unlock`, then run up again", nameFlag(env))
	}
	// After a down and up every manager starts from its saved state: the manager API answers
	// once a quorum of them is back.
	var members []SwarmNode
	deadline := d.Now().Add(swarmJoinWait)
	for {
		members, err = swarmNodes(ctx, lead.remote)
		if err == nil {
			break
		}
		if d.Now().After(deadline) {
			return fmt.Errorf("node %d, the first manager, does not answer as a manager (is a quorum of managers up?): %w", lead.N, err)
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	token := map[string]string{}
	for _, role := range []string{SwarmWorker, SwarmManager} {
		out, err := lead.remote.Run(ctx, "docker swarm join-token -q "+role, nil)
		if err != nil {
			return fmt.Errorf("the swarm's %s join token: %w", role, err)
		}
		token[role] = strings.TrimSpace(string(out))
	}
	joined := 0
	for _, n := range nodes[1:] {
		ni, err := getSwarmInfo(ctx, n.remote)
		if err != nil {
			return fmt.Errorf("node %d: %w", n.N, err)
		}
		m := memberNamed(members, n.srv.Name)
		if ni.LocalNodeState != "inactive" && m != nil && m.ID == ni.NodeID {
			continue // a member already
		}
		if ni.LocalNodeState != "inactive" {
			// A membership of a swarm that is not this one (its manager's state was lost): left.
			if _, err := n.remote.Run(ctx, "docker swarm leave --force >/dev/null", nil); err != nil {
				return fmt.Errorf("node %d: leave its old swarm: %w", n.N, err)
			}
		}
		ip := nodeIP(n.N)
		// The token goes on stdin, never on the command line: a failed command is quoted in
		// its error (RemoteError), which up prints and saves in wake.json and wake.log.
		cmd := fmt.Sprintf(`docker swarm join --token "$(cat)" --advertise-addr %[1]s --listen-addr %[1]s:2377 --data-path-addr %[1]s %[2]s:2377 >/dev/null`, ip, leadIP)
		if _, err := n.remote.Run(ctx, cmd, strings.NewReader(token[n.Role])); err != nil {
			return fmt.Errorf("node %d: docker swarm join: %w", n.N, err)
		}
		joined++
	}
	// Roles, stale entries, availability: on the manager, until every node is Ready.
	deadline = d.Now().Add(swarmJoinWait)
	names := map[string]*upNode{}
	for _, n := range nodes {
		names[n.srv.Name] = n
	}
	for {
		if members, err = swarmNodes(ctx, lead.remote); err != nil {
			return err
		}
		ready := 0
		for _, m := range members {
			n := names[m.Hostname]
			if n == nil || memberNamed(members, m.Hostname).ID != m.ID {
				// Not a node of this environment any more (node rm), or an old identity of one.
				if m.Status == "Down" {
					_, _ = lead.remote.Run(ctx, "docker node rm --force "+m.ID+" >/dev/null", nil)
				}
				continue
			}
			if m.Status == "Ready" {
				ready++
			}
			isManager := m.ManagerStatus != ""
			switch {
			case n.Role == SwarmManager && !isManager:
				_, err = lead.remote.Run(ctx, "docker node promote "+m.ID+" >/dev/null", nil)
			case n.Role == SwarmWorker && isManager && !m.Self:
				_, err = lead.remote.Run(ctx, "docker node demote "+m.ID+" >/dev/null", nil)
			}
			if err != nil {
				return fmt.Errorf("node %d: set its role to %s: %w", n.N, n.Role, err)
			}
			if m.Availability == "Pause" && (slices.Contains(st.Paused, n.N) || pausedByUs(ctx, lead.remote, m.ID)) {
				if _, err := lead.remote.Run(ctx, "docker node update --availability active --label-rm "+idleagent.PausedLabel+" "+m.ID+" >/dev/null 2>&1 || docker node update --availability active "+m.ID+" >/dev/null", nil); err != nil {
					return fmt.Errorf("node %d: make it active again: %w", n.N, err)
				}
			}
		}
		if ready == len(nodes) {
			break
		}
		if d.Now().After(deadline) {
			var not []string
			for _, n := range nodes {
				if m := memberNamed(members, n.srv.Name); m == nil || m.Status != "Ready" {
					not = append(not, fmt.Sprintf("node %d (%s)", n.N, n.srv.Name))
				}
			}
			return fmt.Errorf("the swarm has %d of %d nodes Ready after %s; not ready: %s (see `docker --context %s node ls`)", ready, len(nodes), swarmJoinWait, strings.Join(not, ", "), ContextName(env))
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	if len(st.Paused) > 0 {
		st.Paused = nil
		if err := saveState(d.Paths, env, *st); err != nil {
			return err
		}
	}
	switch {
	case initialised:
		step.Note("initialised on node %d (%s), %d joined, all Ready", lead.N, leadIP, joined)
	case joined > 0:
		step.Note("%d joined, all Ready", joined)
	default:
		step.Note("all Ready")
	}
	return nil
}

// pausedByUs says whether Swarm node id carries idleagent.PausedLabel: paused by `down` or
// by the idle agent's self-down (whose pause this machine's state does not know), not by a user.
func pausedByUs(ctx context.Context, r Remote, id string) bool {
	out, err := r.Run(ctx, `docker node inspect -f '{{index .Spec.Labels "`+idleagent.PausedLabel+`"}}' `+id, nil)
	return err == nil && strings.TrimSpace(string(out)) != ""
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
