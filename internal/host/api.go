package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// API is the part of the Hetzner Cloud client the lifecycle uses (*hetzner.Client).
type API interface {
	SSHKeyByFingerprint(ctx context.Context, fingerprint string) (*hetzner.SSHKey, error)
	CreateSSHKey(ctx context.Context, name, publicKey string, labels map[string]string) (*hetzner.SSHKey, error)
	SSHKeys(ctx context.Context, selector string) ([]*hetzner.SSHKey, error)
	DeleteSSHKey(ctx context.Context, id int64) error

	Firewalls(ctx context.Context, selector string) ([]*hetzner.Firewall, error)
	CreateFirewall(ctx context.Context, name string, rules []hetzner.FirewallRule, labels map[string]string) (*hetzner.Firewall, error)
	SetFirewallRules(ctx context.Context, id int64, rules []hetzner.FirewallRule) error
	DeleteFirewall(ctx context.Context, id int64) error

	Volumes(ctx context.Context, selector string) ([]*hetzner.Volume, error)
	Volume(ctx context.Context, id int64) (*hetzner.Volume, error)
	ResizeVolume(ctx context.Context, volumeID int64, sizeGB int) error
	VolumePricing(ctx context.Context) (hetzner.VolumePricing, error)
	CreateVolume(ctx context.Context, spec hetzner.VolumeSpec) (*hetzner.Volume, error)
	SetVolumeLabels(ctx context.Context, volumeID int64, labels map[string]string) (*hetzner.Volume, error)
	DetachVolume(ctx context.Context, volumeID int64) error
	DeleteVolume(ctx context.Context, volumeID int64) error

	Servers(ctx context.Context, selector string) ([]*hetzner.Server, error)
	Server(ctx context.Context, id int64) (*hetzner.Server, error)
	CreateServer(ctx context.Context, spec hetzner.ServerSpec) (*hetzner.Server, error)
	DeleteServer(ctx context.Context, id int64) error
	Shutdown(ctx context.Context, id int64) error
	PowerOn(ctx context.Context, id int64) error

	Networks(ctx context.Context, selector string) ([]*hetzner.Network, error)
	CreateNetwork(ctx context.Context, spec hetzner.NetworkSpec) (*hetzner.Network, error)
	DeleteNetwork(ctx context.Context, id int64) error
	AttachToNetwork(ctx context.Context, serverID, networkID int64, ip string) error

	Prices(ctx context.Context, serverType, location string) (hetzner.Prices, error)
	ServerTypes(ctx context.Context) ([]*hetzner.ServerType, error)
	ImageArchitectures(ctx context.Context, nameOrID string) ([]string, error)
}

var _ API = (*hetzner.Client)(nil)

// Labels dockbridge puts on what it creates. Nothing without LabelManagedBy=ManagedBy
// and this environment's LabelEnv is ever changed or deleted.
const (
	LabelManagedBy = "managed-by"
	ManagedBy      = "dockbridge"
	LabelEnv       = "dockbridge/env"
	LabelRole      = "dockbridge/role"
	LabelHostKey   = "dockbridge/hostkey" // server: HostKeyLabel of its pinned host key
	LabelFSUUID    = "dockbridge/fs-uuid" // data volume: filesystem UUID seen after the first boot
	// LabelNode numbers a node of a multi-server environment (servers and data volumes; absent
	// means node 1), LabelSwarm says its Swarm role (data volumes: "manager" or "worker"; absent
	// in a single-server environment). They are on the data volumes, which outlive the
	// servers, so the environment's nodes and roles survive `down` and a lost local state.
	LabelNode  = "dockbridge/node"
	LabelSwarm = "dockbridge/swarm"

	RoleServer   = "server"
	RoleDataRoot = "data-root" // the volume holding /var/lib/docker
	RoleFirewall = "firewall"
	RoleSSHKey   = "ssh-key"
	RoleNetwork  = "network" // the private network of a multi-server environment
)

func labels(env, role string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelEnv: env, LabelRole: role}
}

func selector(env, role string) string {
	s := fmt.Sprintf("%s=%s,%s=%s", LabelManagedBy, ManagedBy, LabelEnv, env)
	if role != "" {
		s += fmt.Sprintf(",%s=%s", LabelRole, role)
	}
	return s
}

// ours double-checks labels the API selected on: never touch anything else.
func ours(l map[string]string, env, role string) bool {
	return l[LabelManagedBy] == ManagedBy && l[LabelEnv] == env && (role == "" || l[LabelRole] == role)
}

// Resource names (Hetzner names are unique per project and type).
func serverName(env string) string   { return "dockbridge-" + env }
func volumeName(env string) string   { return "dockbridge-" + env + "-data" }
func firewallName(env string) string { return "dockbridge-" + env }
func sshKeyName(env string) string   { return "dockbridge-" + env }

// envState is what the client remembers about an environment between runs
// (envs/<env>/state.json, 0600). The API stays the source of truth; this holds what the
// API can't: the pinned host keys (the private halves are never written anywhere). Node 1 (the
// only node of a single-server environment) is kept at the top level, as before nodes existed.
type envState struct {
	nodeState
	// Nodes are the other nodes of a multi-server environment (Swarm), by number.
	Nodes []nodeState `json:"nodes,omitempty"`
	// Swarm says the environment is a Docker Swarm (its last up made it one), even of one node:
	// its nodes do not go down by themselves.
	Swarm bool `json:"swarm,omitempty"`
	// Paused are the Swarm nodes (by number) `down` set to availability pause, so that the
	// managers did not move the tasks of the nodes stopped first; `up` makes them active again.
	Paused []int `json:"swarm_paused,omitempty"`
	// ServerIDs are every server this environment ever had: the hetzner volume plugin
	// labels the volumes it attaches with the server's id, which is how `destroy --volumes`
	// finds the environment's plugin volumes after `down`.
	ServerIDs []int64   `json:"server_ids,omitempty"`
	Updated   time.Time `json:"updated"`
}

// nodeState is what the client remembers about one node's server.
type nodeState struct {
	// Node is the node's number (0 at the top level: node 1).
	Node int `json:"node,omitempty"`
	// HostKey is the authorized_keys form of the pinned host key: the one the server was (or
	// is about to be) created with, written BEFORE the create request, so a server whose
	// create answer was lost (Ctrl-C, timeout) can still be adopted and verified; after the
	// first contact, the one the server made to replace it (rotateHostKey).
	HostKey string `json:"host_key,omitempty"`
	// CreatedHostKey is the key of the user-data, which the server's LabelHostKey names, once
	// HostKey has replaced it; "" before.
	CreatedHostKey string `json:"created_host_key,omitempty"`
	// NextHostKey is a key the server made to replace HostKey, pinned alongside it until a
	// connection has shown the server uses it (an interrupted rotation).
	NextHostKey string `json:"next_host_key,omitempty"`

	ServerID   int64  `json:"server_id,omitempty"`
	ServerIPv4 string `json:"server_ipv4,omitempty"`
	SSHPort    int    `json:"ssh_port,omitempty"`
}

// node returns the state of node n (1 is the top level), made when missing.
func (s *envState) node(n int) *nodeState {
	if n <= 1 {
		return &s.nodeState
	}
	for i := range s.Nodes {
		if s.Nodes[i].Node == n {
			return &s.Nodes[i]
		}
	}
	s.Nodes = append(s.Nodes, nodeState{Node: n})
	return &s.Nodes[len(s.Nodes)-1]
}

// all returns every node's state with its number, node 1 first.
func (s *envState) all() []*nodeState {
	out := []*nodeState{&s.nodeState}
	for i := range s.Nodes {
		out = append(out, &s.Nodes[i])
	}
	return out
}

// pins are the host keys a connection to the server may present: the pinned one and, while a
// rotation is unfinished, the next one (nil when none). An unreadable key is an error.
func (s *nodeState) pins() (pinned, next ssh.PublicKey, err error) {
	if pinned, err = ParseAuthorizedKey(s.HostKey); err != nil {
		return nil, nil, fmt.Errorf("the pinned host key in the state: %w", err)
	}
	if s.NextHostKey != "" {
		if next, err = ParseAuthorizedKey(s.NextHostKey); err != nil {
			return nil, nil, fmt.Errorf("the next host key in the state: %w", err)
		}
	}
	return pinned, next, nil
}

// createdWith is the host key the server was created with, which its LabelHostKey names.
func (s *nodeState) createdWith() string {
	if s.CreatedHostKey != "" {
		return s.CreatedHostKey
	}
	return s.HostKey
}

// pinnedFor is the state of the node whose pinned keys are server s's (its LabelHostKey names
// the key it was created with), or nil.
func (s *envState) pinnedFor(srv *hetzner.Server) *nodeState {
	for _, n := range s.all() {
		if n.HostKey == "" {
			continue
		}
		if created, err := ParseAuthorizedKey(n.createdWith()); err == nil && srv.Labels[LabelHostKey] == HostKeyLabel(created) {
			return n
		}
	}
	return nil
}

// forgetServer drops what is known of a server that is gone (down), its host keys included.
func (s *nodeState) forgetServer() {
	s.ServerID, s.ServerIPv4 = 0, ""
	s.HostKey, s.CreatedHostKey, s.NextHostKey = "", "", ""
}

// forgetServers does forgetServer for every node.
func (s *envState) forgetServers() {
	for _, n := range s.all() {
		n.forgetServer()
	}
}

// addServer remembers a server id of the environment; it reports whether it was new.
func (s *envState) addServer(id int64) bool {
	if id == 0 || slices.Contains(s.ServerIDs, id) {
		return false
	}
	s.ServerIDs = append(s.ServerIDs, id)
	return true
}

func (p Paths) stateFile(env string) string { return filepath.Join(p.EnvDir(env), "state.json") }

func loadState(p Paths, env string) (envState, error) {
	var s envState
	b, err := os.ReadFile(p.stateFile(env))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read state of environment %q: %w", env, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read state %s: %w", p.stateFile(env), err)
	}
	return s, nil
}

func saveState(p Paths, env string, s envState) error {
	s.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(p.stateFile(env), append(b, '\n'))
}
