package hcloudsim

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// state is everything the simulator persists. It is guarded by Sim.mu.
type state struct {
	NextID        int64               `json:"next_id"`
	NextActionID  int64               `json:"next_action_id"`
	NextIP        uint32              `json:"next_ip"`
	Servers       map[int64]*server   `json:"servers"`
	Volumes       map[int64]*volume   `json:"volumes"`
	SSHKeys       map[int64]*sshKey   `json:"ssh_keys"`
	Firewalls     map[int64]*firewall `json:"firewalls"`
	Networks      map[int64]*network  `json:"networks,omitempty"`
	Actions       map[int64]*action   `json:"actions"`
	LocalServerID int64               `json:"local_server_id,omitempty"`
}

func newState() *state {
	return &state{
		NextID: 1000, NextActionID: 100000,
		Servers: map[int64]*server{}, Volumes: map[int64]*volume{}, SSHKeys: map[int64]*sshKey{},
		Firewalls: map[int64]*firewall{}, Networks: map[int64]*network{}, Actions: map[int64]*action{},
	}
}

type server struct {
	ID             int64             `json:"id"`
	Name           string            `json:"name"`
	Status         string            `json:"status"`
	Created        time.Time         `json:"created"`
	ServerTypeID   int64             `json:"server_type_id"`
	Location       string            `json:"location"`
	ImageID        int64             `json:"image_id"`
	IPv4           string            `json:"ipv4,omitempty"`
	IPv6           string            `json:"ipv6,omitempty"`
	Labels         map[string]string `json:"labels"`
	Volumes        []int64           `json:"volumes"`
	Firewalls      []int64           `json:"firewalls"`
	SSHKeys        []int64           `json:"ssh_keys"`
	UserData       string            `json:"user_data,omitempty"`
	ProtectDelete  bool              `json:"protect_delete"`
	ProtectRebuild bool              `json:"protect_rebuild"`
	// PrivateNets are the server's networks, in the order they were attached (its interfaces).
	PrivateNets []privateNet `json:"private_nets,omitempty"`
}

type volume struct {
	ID            int64             `json:"id"`
	Name          string            `json:"name"`
	Size          int               `json:"size"`
	Location      string            `json:"location"`
	Server        *int64            `json:"server"`
	Status        string            `json:"status"`
	Format        *string           `json:"format"`
	ProtectDelete bool              `json:"protect_delete"`
	Labels        map[string]string `json:"labels"`
	Created       time.Time         `json:"created"`
}

type sshKey struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	Fingerprint string            `json:"fingerprint"`
	PublicKey   string            `json:"public_key"`
	Labels      map[string]string `json:"labels"`
	Created     time.Time         `json:"created"`
}

type firewall struct {
	ID        int64                 `json:"id"`
	Name      string                `json:"name"`
	Labels    map[string]string     `json:"labels"`
	Created   time.Time             `json:"created"`
	Rules     []schema.FirewallRule `json:"rules"`
	Servers   []int64               `json:"servers"`
	Selectors []string              `json:"selectors"`
}

type action struct {
	schema.Action
	// runtime only
	duration  time.Duration
	startedAt time.Time
	held      bool // a "hold" fault keeps it running: progress 0
	done      chan struct{}
}

func (a *action) MarshalJSON() ([]byte, error) { return json.Marshal(a.Action) }
func (a *action) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &a.Action) }

// nextIPv4 hands out addresses from 198.18.0.0/15 (reserved for benchmarking, never routed).
func (st *state) nextIPv4() string {
	st.NextIP++
	base := netip.MustParseAddr("198.18.0.0").As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += st.NextIP
	if n&0xff == 0 || n&0xff == 255 {
		st.NextIP++
		n++
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
}

func (st *state) newID() int64 {
	st.NextID++
	return st.NextID
}

// save writes the state atomically (temp file + rename), mode 0600.
func (st *state) save(dir string) error {
	if dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode simulator state: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("write simulator state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write simulator state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write simulator state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write simulator state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write simulator state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.json")); err != nil {
		return fmt.Errorf("write simulator state: %w", err)
	}
	return nil
}

func loadState(dir string) (*state, error) {
	st := newState()
	if dir == "" {
		return st, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read simulator state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("read simulator state %s: %w", filepath.Join(dir, "state.json"), err)
	}
	if st.Servers == nil {
		st.Servers = map[int64]*server{}
	}
	if st.Volumes == nil {
		st.Volumes = map[int64]*volume{}
	}
	if st.SSHKeys == nil {
		st.SSHKeys = map[int64]*sshKey{}
	}
	if st.Firewalls == nil {
		st.Firewalls = map[int64]*firewall{}
	}
	if st.Actions == nil {
		st.Actions = map[int64]*action{}
	}
	if st.Networks == nil {
		st.Networks = map[int64]*network{}
	}
	return st, nil
}
