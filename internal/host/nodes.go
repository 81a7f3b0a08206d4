package host

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// A multi-server environment is a Docker Swarm of nodes, numbered from 1. Each node is a
// server with its own data volume for /var/lib/docker (so Swarm's own state, raft included,
// survives `down` like everything else), a fixed address on the environment's private network,
// and a Swarm role. Node 1 is named and labelled as a single-server environment's server and
// volume are, so an environment grows into a swarm with `up --nodes N`. The nodes and their roles
// are labels on the data volumes (LabelNode, LabelSwarm): a plain `up` keeps them.

// Swarm roles.
const (
	SwarmManager = "manager"
	SwarmWorker  = "worker"
)

// The private network of a multi-server environment. Swarm's overlay networks take their
// ranges from swarmAddrPool, away from the private network's range (Swarm's default pool,
// 10.0.0.0/8, would overlap it).
var (
	privateRange  = netip.MustParsePrefix("10.0.0.0/16")
	privateSubnet = netip.MustParsePrefix("10.0.0.0/24")
	swarmAddrPool = "10.128.0.0/9"
)

// maxNodes is what privateSubnet holds (.1 is the network's gateway, node n is .n+1).
const maxNodes = 250

// nodeIP is node n's fixed address on the private network: its Swarm address, the same for
// every server the node ever has.
func nodeIP(n int) string {
	a := privateSubnet.Addr().As4()
	a[3] = byte(n + 1)
	return netip.AddrFrom4(a).String()
}

func nodeServerName(env string, n int) string {
	if n <= 1 {
		return serverName(env)
	}
	return fmt.Sprintf("%s-node%d", serverName(env), n)
}

func nodeVolumeName(env string, n int) string {
	if n <= 1 {
		return volumeName(env)
	}
	return fmt.Sprintf("dockbridge-%s-node%d-data", env, n)
}

func networkName(env string) string { return "dockbridge-" + env }

// nodeOf is the node number labels say (absent: 1).
func nodeOf(l map[string]string) (int, error) {
	v, ok := l[LabelNode]
	if !ok {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxNodes {
		return 0, fmt.Errorf("label %s=%q is not a node number", LabelNode, v)
	}
	return n, nil
}

// nodeLabels are the labels of node n's server or data volume (role RoleServer or
// RoleDataRoot); swarmRole is "" for a single-server environment.
func nodeLabels(env, role string, n int, swarmRole string) map[string]string {
	l := labels(env, role)
	if swarmRole != "" {
		l[LabelNode] = strconv.Itoa(n)
		if role == RoleDataRoot {
			l[LabelSwarm] = swarmRole
		}
	}
	return l
}

// plannedNode is one node of the environment as up (or node add) wants it.
type plannedNode struct {
	N    int
	Role string // SwarmManager, SwarmWorker, or "" in a single-server environment
	Vol  *hetzner.Volume
}

// planNodes works out the environment's nodes from its data volumes and the choices of up:
// nodes (0: keep the number) and managers (0: keep, 1 for a new swarm). It never removes a
// node (node rm does). The first managers nodes by number are the managers.
func planNodes(env string, vols []*hetzner.Volume, nodes, managers int) ([]*plannedNode, error) {
	have := map[int]*hetzner.Volume{}
	swarm, haveManagers := false, 0
	for _, v := range vols {
		if !ours(v.Labels, env, RoleDataRoot) {
			return nil, fmt.Errorf("volume %d does not carry our labels: refusing to use it", v.ID)
		}
		n, err := nodeOf(v.Labels)
		if err != nil {
			return nil, fmt.Errorf("data volume %s (id %d): %w", v.Name, v.ID, err)
		}
		if o, dup := have[n]; dup {
			if n == 1 && v.Labels[LabelNode] == "" && o.Labels[LabelNode] == "" {
				return nil, fmt.Errorf("%d volumes carry the labels of environment %q's data volume (ids %v): dockbridge won't guess which one holds your data; remove the label %s from all but one", 2, env, []int64{o.ID, v.ID}, LabelRole)
			}
			return nil, fmt.Errorf("volumes %d and %d both carry the labels of node %d of environment %q: dockbridge won't guess which one holds the node's data; remove the label %s from one", o.ID, v.ID, n, env, LabelRole)
		}
		have[n] = v
		switch v.Labels[LabelSwarm] {
		case SwarmManager:
			swarm = true
			haveManagers++
		case SwarmWorker:
			swarm = true
		}
	}
	if nodes < 0 || nodes > maxNodes {
		return nil, fmt.Errorf("--nodes %d: want 1 to %d", nodes, maxNodes)
	}
	swarm = swarm || nodes > 0 || managers > 0
	count := max(len(have), 1)
	if !swarm {
		count = 1
	}
	if nodes > 0 {
		if nodes < len(have) {
			return nil, fmt.Errorf("environment %q has %d nodes, more than --nodes %d: up never removes a node; remove one with `docker dockbridge node rm%s`", env, len(have), nodes, nameFlag(env))
		}
		count = nodes
	}
	if managers == 0 {
		managers = max(haveManagers, 1)
	}
	if swarm {
		switch {
		case managers%2 == 0:
			return nil, fmt.Errorf("--managers %d: use an odd number (1, 3, 5): Swarm's raft needs a majority of managers, and %d managers tolerate no more failures than %d", managers, managers, managers-1)
		case managers > count:
			return nil, fmt.Errorf("--managers %d needs at least %d nodes (the environment has %d): add --nodes %d", managers, managers, count, managers)
		}
	}
	numbers := slices.Sorted(maps.Keys(have))
	for next := 1; len(numbers) < count; next++ {
		if _, used := have[next]; !used && !slices.Contains(numbers, next) {
			numbers = append(numbers, next)
		}
	}
	slices.Sort(numbers)
	out := make([]*plannedNode, 0, len(numbers))
	for i, n := range numbers {
		p := &plannedNode{N: n, Vol: have[n]}
		if swarm {
			p.Role = SwarmWorker
			if i < managers {
				p.Role = SwarmManager
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// NodeStatus is one node of an environment, as `node ls` and `status` show it.
type NodeStatus struct {
	// Index is the node's position in `node ls` (1-based): what `ssh --node` takes.
	Index int `json:"index"`
	// Node is the node's number (in its server's and data volume's names and labels).
	Node       int        `json:"node"`
	Server     string     `json:"server"`         // the server's name ("" when it has none: down)
	ServerID   int64      `json:"server_id"`      // 0 when it has no server
	Status     string     `json:"status"`         // the server's status, or "none"
	Type       string     `json:"type,omitempty"` // server type
	Location   string     `json:"location"`       // the data volume's location (where the server goes)
	IPv4       string     `json:"ipv4,omitempty"` // public address
	PrivateIP  string     `json:"private_ip"`     // address on the private network ("" single-server)
	Currency   string     `json:"currency,omitempty"`
	PriceHour  float64    `json:"price_per_hour"` // the server's; 0 without one
	Volume     *VolumeRef `json:"volume"`         // its data volume (/var/lib/docker)
	Role       string     `json:"role"`           // Swarm role: manager, worker ("" single-server)
	Leader     bool       `json:"leader"`
	SwarmState string     `json:"swarm_state"` // Docker's view: ready, down, unknown; "" when not asked
	// Availability is Docker's: active, pause, drain ("" when not asked).
	Availability string `json:"availability"`
}

// nodeStatuses lists the environment's nodes (by number) from its data volumes and servers;
// when node 1 runs, its Swarm view (one SSH connection) adds the roles' state. A note says
// what could not be read.
func nodeStatuses(ctx context.Context, d *Deps, env string, servers []*hetzner.Server, vols []*hetzner.Volume) ([]NodeStatus, []string) {
	byNode := map[int]*NodeStatus{}
	get := func(n int) *NodeStatus {
		if byNode[n] == nil {
			byNode[n] = &NodeStatus{Node: n, Status: "none"}
		}
		return byNode[n]
	}
	swarm := false
	for _, v := range vols {
		n, err := nodeOf(v.Labels)
		if err != nil {
			continue
		}
		ns := get(n)
		ns.Volume = &VolumeRef{ID: v.ID, Name: v.Name, SizeGB: v.SizeGB}
		ns.Location, ns.Role = v.Location, v.Labels[LabelSwarm]
		swarm = swarm || ns.Role != ""
	}
	var notes []string
	var lead *hetzner.Server
	prices := map[string]hetzner.Prices{}
	for _, s := range servers {
		n, err := nodeOf(s.Labels)
		if err != nil || !ours(s.Labels, env, RoleServer) {
			continue
		}
		ns := get(n)
		ns.Server, ns.ServerID, ns.Status, ns.Type, ns.IPv4 = s.Name, s.ID, s.Status, s.ServerType, s.IPv4
		if ns.Location == "" {
			ns.Location = s.Location
		}
		key := s.ServerType + "@" + s.Location
		p, ok := prices[key]
		if !ok {
			var err error
			if p, err = d.API.Prices(ctx, s.ServerType, s.Location); err != nil {
				notes = append(notes, fmt.Sprintf("price of %s in %s unknown: %v", s.ServerType, s.Location, err))
			}
			prices[key] = p
		}
		ns.Currency, ns.PriceHour = p.Currency, p.ServerHourly
		if n == 1 && s.Status == "running" {
			lead = s
		}
	}
	if swarm {
		for n, ns := range byNode {
			ns.PrivateIP = nodeIP(n)
		}
		if lead == nil {
			notes = append(notes, "node 1 (the first manager) is not running: the swarm's view is unknown")
		} else if members, err := swarmView(ctx, d, env, lead); err != nil {
			notes = append(notes, "the swarm's view (docker node ls on node 1): "+shortErr(err))
		} else {
			for _, ns := range byNode {
				if m := memberNamed(members, ns.Server); m != nil && ns.Server != "" {
					ns.SwarmState, ns.Availability = strings.ToLower(m.Status), strings.ToLower(m.Availability)
					ns.Leader = m.ManagerStatus == "Leader"
				}
			}
		}
	}
	out := make([]NodeStatus, 0, len(byNode))
	for i, n := range slices.Sorted(maps.Keys(byNode)) {
		ns := *byNode[n]
		ns.Index = i + 1
		out = append(out, ns)
	}
	return out, notes
}

// swarmView asks node 1 (a manager) for `docker node ls`.
func swarmView(ctx context.Context, d *Deps, env string, lead *hetzner.Server) ([]SwarmNode, error) {
	t, err := serverTarget(d, env, lead)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r, err := d.Dial(ctx, t)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return swarmNodes(ctx, r)
}

// ListNodes is `node ls`: the environment's nodes (servers, prices, data volumes, Swarm roles
// and state), by number; a single-server environment has one.
func ListNodes(ctx context.Context, d *Deps, env string) (_ []NodeStatus, err error) {
	d.defaults()
	if err := ValidateEnvName(env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	servers, err := d.API.Servers(ctx, selector(env, RoleServer))
	if err != nil {
		return nil, err
	}
	vols, err := d.API.Volumes(ctx, selector(env, RoleDataRoot))
	if err != nil {
		return nil, err
	}
	nodes, notes := nodeStatuses(ctx, d, env, servers, vols)
	for _, n := range notes {
		fmt.Fprintf(d.Stderr, "note: %s\n", n)
	}
	return nodes, nil
}

// NodeNumber is the number of the node at position index (1-based, the order of `node ls`),
// from what this machine knows of the environment (its state: the nodes up brought up).
func NodeNumber(p Paths, env string, index int) (int, error) {
	st, err := loadState(p, env)
	if err != nil {
		return 0, err
	}
	var numbers []int
	for _, n := range st.all() {
		numbers = append(numbers, max(n.Node, 1))
	}
	slices.Sort(numbers)
	numbers = slices.Compact(numbers)
	if index < 1 || index > len(numbers) {
		return 0, fmt.Errorf("--node %d: environment %q has %d node(s) on this machine (see `docker dockbridge node ls%s`)", index, env, len(numbers), nameFlag(env))
	}
	return numbers[index-1], nil
}
