package host

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idleagent"
)

func dataVol(id int64, node int, role string) *hetzner.Volume {
	l := labels("e", RoleDataRoot)
	if node > 0 {
		l[LabelNode] = fmt.Sprint(node)
	}
	if role != "" {
		l[LabelSwarm] = role
	}
	return &hetzner.Volume{ID: id, Name: nodeVolumeName("e", max(node, 1)), Labels: l, Location: "fsn1"}
}

func describePlan(p []*plannedNode) string {
	var parts []string
	for _, n := range p {
		s := fmt.Sprintf("%d:%s", n.N, n.Role)
		if n.Vol != nil {
			s += fmt.Sprintf("(vol %d)", n.Vol.ID)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestPlanNodes(t *testing.T) {
	for _, c := range []struct {
		name            string
		vols            []*hetzner.Volume
		nodes, managers int
		want            string // or the error's start
	}{
		{"new single server", nil, 0, 0, "1:"},
		{"single server again", []*hetzner.Volume{dataVol(10, 0, "")}, 0, 0, "1:(vol 10)"},
		{"new swarm of 3", nil, 3, 0, "1:manager 2:worker 3:worker"},
		{"a single server grows into a swarm", []*hetzner.Volume{dataVol(10, 0, "")}, 3, 0, "1:manager(vol 10) 2:worker 3:worker"},
		{"plain up keeps the nodes and roles", []*hetzner.Volume{dataVol(10, 1, SwarmManager), dataVol(11, 2, SwarmWorker), dataVol(12, 3, SwarmWorker)}, 0, 0,
			"1:manager(vol 10) 2:worker(vol 11) 3:worker(vol 12)"},
		{"plain up keeps three managers", []*hetzner.Volume{dataVol(10, 1, SwarmManager), dataVol(11, 2, SwarmManager), dataVol(12, 3, SwarmManager)}, 0, 0,
			"1:manager(vol 10) 2:manager(vol 11) 3:manager(vol 12)"},
		{"--managers 3", nil, 3, 3, "1:manager 2:manager 3:manager"},
		{"a hole after node rm is kept, new nodes after it", []*hetzner.Volume{dataVol(10, 1, SwarmManager), dataVol(12, 3, SwarmWorker)}, 4, 0,
			"1:manager(vol 10) 2:worker 3:worker(vol 12) 4:worker"},
		{"fewer nodes than there are", []*hetzner.Volume{dataVol(10, 1, SwarmManager), dataVol(11, 2, SwarmWorker)}, 1, 0, "error: environment \"e\" has 2 nodes, more than --nodes 1"},
		{"even managers", nil, 4, 2, "error: --managers 2: use an odd number"},
		{"more managers than nodes", nil, 1, 3, "error: --managers 3 needs at least 3 nodes"},
		{"two volumes of one node", []*hetzner.Volume{dataVol(10, 2, SwarmWorker), dataVol(11, 2, SwarmWorker), dataVol(12, 1, SwarmManager)}, 0, 0, "error: volumes 10 and 11 both carry the labels of node 2"},
		{"too many nodes", nil, 300, 0, "error: --nodes 300"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := planNodes("e", c.vols, c.nodes, c.managers)
			got := ""
			if err != nil {
				got = "error: " + err.Error()
			} else {
				got = describePlan(p)
			}
			if !strings.HasPrefix(got, c.want) {
				t.Fatalf("planNodes = %q, want %q", got, c.want)
			}
		})
	}
}

func TestNodeNamesAndAddresses(t *testing.T) {
	if got := []string{nodeServerName("e", 1), nodeServerName("e", 2), nodeVolumeName("e", 1), nodeVolumeName("e", 3), NodeAlias("e", 1), NodeAlias("e", 2)}; strings.Join(got, " ") !=
		"dockbridge-e dockbridge-e-node2 dockbridge-e-data dockbridge-e-node3-data dockbridge-e dockbridge-e-node2" {
		t.Fatalf("names: %v", got)
	}
	for n, want := range map[int]string{1: "10.0.0.2", 2: "10.0.0.3", 250: "10.0.0.251"} {
		if got := nodeIP(n); got != want || !privateSubnet.Contains(mustAddr(t, got)) {
			t.Errorf("nodeIP(%d) = %s, want %s in %s", n, got, want, privateSubnet)
		}
	}
}

// TestDownOrder: workers first by number, then managers from the highest number, node 1 last.
func TestDownOrder(t *testing.T) {
	srv := func(id int64, node int) *hetzner.Server {
		l := labels("e", RoleServer)
		l[LabelNode] = fmt.Sprint(node)
		return &hetzner.Server{ID: id, Name: nodeServerName("e", node), Labels: l}
	}
	vols := []*hetzner.Volume{dataVol(1, 1, SwarmManager), dataVol(2, 2, SwarmManager), dataVol(3, 3, SwarmManager), dataVol(4, 4, SwarmWorker), dataVol(5, 5, SwarmWorker)}
	got, swarm := downOrder("e", []*hetzner.Server{srv(101, 1), srv(105, 5), srv(102, 2), srv(104, 4), srv(103, 3)}, vols)
	var ids []int64
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	if !swarm || fmt.Sprint(ids) != "[104 105 103 102 101]" {
		t.Fatalf("down order %v (swarm %v), want workers 4, 5, then managers 3, 2, node 1 last", ids, swarm)
	}
	single := &hetzner.Server{ID: 9, Labels: labels("e", RoleServer)}
	if got, swarm := downOrder("e", []*hetzner.Server{single}, []*hetzner.Volume{dataVol(1, 0, "")}); swarm || len(got) != 1 {
		t.Fatalf("single server: %v, swarm %v", got, swarm)
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSwarmAgentsHaveTheirRoles: up gives every node of a swarm its idle agent: node 1 the
// decider with the members' servers, private addresses and roles, and the API token; the
// others members with no token (removed with --no-volume-plugin); all the same random shared
// secret, 0600, on stdin only (no command line, no output). A second up changes nothing, and
// node rm takes the node out of node 1's list.
func TestSwarmAgentsHaveTheirRoles(t *testing.T) {
	e := newSimEnv(t)
	disks := []*fakeDisk{{uuid: "a"}, {uuid: "b", pluginToken: "old-token"}, {uuid: "c"}}
	var nodes []*upNode
	for i, d := range disks {
		role := SwarmWorker
		if i == 0 || i == 2 {
			role = SwarmManager
		}
		nodes = append(nodes, &upNode{plannedNode: &plannedNode{N: i + 1, Role: role},
			srv: &hetzner.Server{ID: int64(100 + i + 1), Name: nodeServerName("sw", i+1), Created: time.Now()}, remote: &fakeRemote{disk: d}})
	}
	o := UpOptions{Env: "sw", PluginDir: os.Getenv("DOCKBRIDGE_TEST_PLUGIN_DIR"), NoVolumePlugin: true}
	es := EnvSettings{IdleTimeout: "20s", BillingPeriod: "1m0s"}
	must(t, installSwarmAgents(t.Context(), e.deps, o, es, nodes))

	secret := disks[0].swarmSecret
	if b, err := hex.DecodeString(secret); err != nil || len(b) != 32 {
		t.Fatalf("node 1's secret %q: want 32 random bytes in hex", secret)
	}
	for i, d := range disks {
		var cfg idleagent.Config
		if err := json.Unmarshal([]byte(d.agentConfig), &cfg); err != nil || cfg.Swarm == nil || !d.agentActive {
			t.Fatalf("node %d: agent config %q (%v), active %v", i+1, d.agentConfig, err, d.agentActive)
		}
		if d.swarmSecret != secret {
			t.Errorf("node %d has another secret", i+1)
		}
		for _, c := range d.cmds {
			if strings.Contains(c, secret) {
				t.Errorf("node %d: the secret is on a command line: %s", i+1, c)
			}
		}
		sw := cfg.Swarm
		if sw.Node != i+1 || sw.PrivateIP != nodeIP(i+1) || sw.SecretFile != idleagent.SwarmSecretPath || cfg.Timeout != "20s" {
			t.Errorf("node %d: %+v", i+1, sw)
		}
		if i == 0 {
			want := []idleagent.Member{
				{Node: 2, ServerID: 102, ServerName: nodeServerName("sw", 2), PrivateIP: nodeIP(2)},
				{Node: 3, ServerID: 103, ServerName: nodeServerName("sw", 3), PrivateIP: nodeIP(3), Manager: true},
			}
			if sw.Role != idleagent.RoleDecider || !slices.Equal(sw.Members, want) || cfg.TokenFile == "" || d.pluginToken != e.deps.Config.Token {
				t.Errorf("node 1: %+v token file %q token written %v", sw, cfg.TokenFile, d.pluginToken != "")
			}
			continue
		}
		if sw.Role != idleagent.RoleMember || len(sw.Members) != 0 || cfg.TokenFile != "" || d.pluginToken != "" {
			t.Errorf("node %d: %+v token file %q token on the server %q", i+1, sw, cfg.TokenFile, d.pluginToken)
		}
	}
	if strings.Contains(e.stderr.String(), secret) {
		t.Errorf("the secret is in up's output")
	}

	before := e.stderr.Len()
	must(t, installSwarmAgents(t.Context(), e.deps, o, es, nodes))
	if out := e.stderr.String()[before:]; strings.Count(out, "already running") != 3 || disks[2].swarmSecret != secret {
		t.Fatalf("a second up changed something:\n%s", out)
	}
}

// volume resize/fsck --data act on node 1's data volume and server (the docker context's),
// whatever order the API lists a swarm's in; a single server's have no node label.
func TestDataVolumeAndServerAreNodeOnes(t *testing.T) {
	vlabels := func(v *hetzner.Volume) map[string]string { return v.Labels }
	if v := nodeOne([]*hetzner.Volume{dataVol(3, 3, SwarmWorker), dataVol(2, 2, SwarmWorker), dataVol(1, 1, SwarmManager)}, vlabels); v.ID != 1 {
		t.Errorf("a swarm's data volume: %d, want node 1's", v.ID)
	}
	if v := nodeOne([]*hetzner.Volume{dataVol(7, 0, "")}, vlabels); v.ID != 7 {
		t.Errorf("a single server's data volume: %d", v.ID)
	}
	srv := func(id int64, node int) *hetzner.Server {
		return &hetzner.Server{ID: id, Labels: nodeLabels("e", RoleServer, node, SwarmManager)}
	}
	if s := nodeOne([]*hetzner.Server{srv(12, 2), srv(11, 1)}, func(s *hetzner.Server) map[string]string { return s.Labels }); s.ID != 11 {
		t.Errorf("a swarm's server: %d, want node 1's", s.ID)
	}
}

// TestNodeRemoveRefusesAnAttachedVolume: node rm deletes a data volume only after the typed
// environment name (a y is refused), and never detaches it from a server it did not stop
// (here one without the node's labels): it refuses, saying what to do, and the volume stays
// attached. --keep-volume asks a y/N and relabels it.
func TestNodeRemoveRefusesAnAttachedVolume(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	var vols []*hetzner.Volume
	for n, role := range []string{SwarmManager, SwarmWorker} {
		l := labels("sw", RoleDataRoot)
		l[LabelNode], l[LabelSwarm] = fmt.Sprint(n+1), role
		v, err := e.api.CreateVolume(ctx, hetzner.VolumeSpec{Name: nodeVolumeName("sw", n+1), SizeGB: 10, Location: "fsn1", Labels: l, Format: "ext4"})
		must(t, err)
		vols = append(vols, v)
	}
	other, err := e.api.CreateServer(ctx, hetzner.ServerSpec{Name: "other", ServerType: "cx23", Image: "debian-12", Location: "fsn1", VolumeIDs: []int64{vols[1].ID}})
	must(t, err)
	attached := func() int64 {
		t.Helper()
		vs, err := e.api.Volumes(ctx, "")
		must(t, err)
		for _, v := range vs {
			if v.ID == vols[1].ID {
				return v.ServerID
			}
		}
		t.Fatalf("node 2's data volume %d was deleted", vols[1].ID)
		return 0
	}
	if attached() != other.ID {
		t.Fatalf("setup: node 2's volume not attached to server %d", other.ID)
	}
	e.deps.Interactive = true

	e.deps.Stdin = strings.NewReader("y\n")
	_, err = NodeRemove(ctx, e.deps, NodeRemoveOptions{Env: "sw", Index: 2})
	if !errorsIs(err, ErrNotConfirmed) || !strings.Contains(e.stderr.String(), "Type the environment name (sw)") {
		t.Fatalf("node rm answered y: %v; want the typed name asked for and a refusal\n%s", err, e.stderr)
	}

	e.deps.Stdin = strings.NewReader("sw\n")
	_, err = NodeRemove(ctx, e.deps, NodeRemoveOptions{Env: "sw", Index: 2})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("still attached to server %d", other.ID)) || !strings.Contains(err.Error(), "--keep-volume") {
		t.Fatalf("node rm of a volume attached to a server it did not stop: %v; want a refusal saying what to do", err)
	}
	t.Log(err)
	if got := attached(); got != other.ID {
		t.Fatalf("after the refusal node 2's volume is attached to %d, want still %d", got, other.ID)
	}
	if n := e.sim.Stats().ByEndpoint["POST /v1/volumes/{id}/actions/detach"]; n != 0 {
		t.Fatalf("%d detach requests", n)
	}

	e.deps.Stdin = strings.NewReader("y\n")
	res, err := NodeRemove(ctx, e.deps, NodeRemoveOptions{Env: "sw", Index: 2, KeepVolume: true})
	must(t, err)
	vs, err := e.api.Volumes(ctx, "")
	must(t, err)
	for _, v := range vs {
		if v.ID == vols[1].ID && (v.Labels[LabelRole] != removedNodeRole || v.ServerID != other.ID || !res.VolumeKept) {
			t.Fatalf("node rm --keep-volume: %+v", v)
		}
	}
}

// What up writes into each node's state (its server, its pinned host key) is what it saves,
// for a new swarm and for one that grows: no node's state is a copy left behind when
// envState.Nodes grows.
func TestUpNodesStatesAreTheSaved(t *testing.T) {
	for _, c := range []struct {
		name  string
		have  []int // nodes in the state before
		nodes int
	}{
		{"new swarm of 3", nil, 3},
		{"new swarm of 5", nil, 5},
		{"3 nodes grow to 4", []int{2, 3}, 4},
		{"3 nodes grow to 6", []int{2, 3}, 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			var st envState
			for _, n := range c.have {
				st.Nodes = append(st.Nodes[:len(st.Nodes):len(st.Nodes)], nodeState{Node: n, ServerID: int64(100 + n)})
			}
			plan, err := planNodes("e", nil, c.nodes, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range upNodes(&st, plan) {
				n.st.ServerID, n.st.HostKey = int64(100+n.N), fmt.Sprintf("key of node %d", n.N)
			}
			for n := 1; n <= c.nodes; n++ {
				if got := st.node(n); got.ServerID != int64(100+n) || got.HostKey != fmt.Sprintf("key of node %d", n) {
					t.Errorf("node %d's state is %+v: what up wrote into it is lost", n, *got)
				}
			}
			if len(st.Nodes) != c.nodes-1 {
				t.Errorf("%d node states besides node 1, want %d", len(st.Nodes), c.nodes-1)
			}
		})
	}
}
