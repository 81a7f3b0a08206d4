// Package idleagent is the idle mode of the servers' binary (`dockbridge-server idle run`, a
// systemd unit that `docker dockbridge up` installs): it watches the server's own activity,
// asks the policy (internal/idle) every second whether the server should go down, and when it
// should, stops it cleanly and deletes it through the API. `dockbridge-server idle status` is
// the probe `docker dockbridge status` and the wake run over SSH: it prints what the agent
// last decided and is not counted as activity (with OwnConnectionFlag, nor is its connection).
// In a Swarm, node 1's agent decides for every node and the others report to it (swarm.go).
package idleagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dockbridge/dockbridge/internal/idle"
)

// Paths on the server.
const (
	// ServerBinaryName is the servers' binary as installed on the host (BinaryPath).
	ServerBinaryName = "dockbridge-server"
	// BinaryPath is where up installs the servers' binary on the host's root disk: the agent
	// must not run from the data volume, which it unmounts before the delete.
	BinaryPath = "/usr/local/lib/dockbridge/" + ServerBinaryName
	// ConfigPath is the agent's configuration, written by up (0600).
	ConfigPath = "/etc/dockbridge/idle.json"
	// StatePath is what the agent decided last (0600), rewritten every look.
	StatePath = "/run/dockbridge/idle.json"
	// UnitName is the systemd unit that runs the agent.
	UnitName = "dockbridge-idle.service"
	// DefaultProbeDir is where the probe records the connection it runs in.
	DefaultProbeDir = "/run/dockbridge/idle-probes"
	// DefaultLinkDir is where the laptop agent's link sessions record their connection's login
	// (MarkLink).
	DefaultLinkDir = "/run/dockbridge/link-logins"
	// OwnConnectionFlag tells the probe that its SSH connection is dockbridge's own, opened
	// for it alone (status's, the wake's): the probe marks it, and nothing on it counts. Without
	// it the probe marks nothing (a user running it over the shared connection).
	OwnConnectionFlag = "--own-connection"
	// ProbeCommand is the probe as status and the wake run it, each on a connection of its own.
	ProbeCommand = BinaryPath + " idle status " + OwnConnectionFlag
)

// Config is what up tells the agent (ConfigPath). Durations are written as Go durations;
// the timeout also as "off".
type Config struct {
	Env        string    `json:"env"`
	ServerID   int64     `json:"server_id"`
	ServerName string    `json:"server_name"`
	Created    time.Time `json:"created"`
	// Endpoint is the API as the server reaches it; TokenFile holds the token (0600, root).
	Endpoint  string `json:"endpoint"`
	TokenFile string `json:"token_file"`

	Timeout       string `json:"idle_timeout"`
	BillingPeriod string `json:"billing_period,omitempty"`
	Margin        string `json:"idle_margin,omitempty"`
	// Interval is the pause between two looks (default 1s).
	Interval string `json:"interval,omitempty"`
	// DeleteFor bounds the retries of a failed delete before Docker is started again
	// (default 3m).
	DeleteFor string `json:"delete_retry_for,omitempty"`
	// BackupsFor bounds the due backups run before the stop (default 10m).
	BackupsFor string `json:"backups_for,omitempty"`
	// Swarm is this server's part in a multi-server environment (a Docker Swarm); nil on a
	// single server (see swarm.go).
	Swarm *SwarmConfig `json:"swarm,omitempty"`
}

// Settings are the policy's settings this configuration gives.
func (c Config) Settings() (idle.Settings, error) {
	var s idle.Settings
	var err error
	if s.Timeout, err = idle.ParseTimeout(c.Timeout); err != nil {
		return s, err
	}
	if s.BillingPeriod, err = optDuration("billing_period", c.BillingPeriod, 0); err != nil {
		return s, err
	}
	if s.Margin, err = optDuration("idle_margin", c.Margin, 0); err != nil {
		return s, err
	}
	return s.WithDefaults(), nil
}

func optDuration(name, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as 40s or 1h", name, v)
	}
	return d, nil
}

func (c Config) interval() time.Duration {
	d, err := optDuration("interval", c.Interval, time.Second)
	if err != nil {
		return time.Second
	}
	return d
}

func (c Config) deleteFor() time.Duration {
	d, err := optDuration("delete_retry_for", c.DeleteFor, 3*time.Minute)
	if err != nil {
		return 3 * time.Minute
	}
	return d
}

func (c Config) backupsFor() time.Duration {
	d, err := optDuration("backups_for", c.BackupsFor, 10*time.Minute)
	if err != nil {
		return 10 * time.Minute
	}
	return d
}

// Validate checks what the agent cannot work without.
func (c Config) Validate() error {
	if c.ServerID == 0 || c.Created.IsZero() {
		return errors.New("no server id or creation time: run `docker dockbridge up` again")
	}
	if err := c.Swarm.validate(); err != nil {
		return err
	}
	_, err := c.Settings()
	return err
}

// LoadConfig reads the configuration up wrote.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read the idle agent's configuration: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read the idle agent's configuration %s: %w", path, err)
	}
	return c, c.Validate()
}

// State is what the agent decided at its last look (StatePath), and what the probe prints.
type State struct {
	Env      string    `json:"env"`
	ServerID int64     `json:"server_id"`
	Updated  time.Time `json:"updated"`
	Timeout  string    `json:"idle_timeout"`
	// Phase is "watching", or while the server goes down "going down" (due backups, the clean
	// stop), "deleting", "starting docker again".
	Phase string `json:"phase"`
	idle.Decision
	// Recent is the activity the agent remembers: what goes on now and the last that ended.
	Recent idle.Timeline `json:"recent"`
	// Note is the last thing that went wrong (a failed self-delete and what became of Docker).
	Note string `json:"note,omitempty"`
}

// ProbeReport is what `dockbridge-server idle status` prints.
type ProbeReport struct {
	State
	// StateError says why there is no State (the agent has not run).
	StateError   string `json:"state_error,omitempty"`
	AgentRunning bool   `json:"agent_running"`
	// The data volume's filesystem (/var/lib/docker) and the last line of the health log.
	DiskTotalBytes int64  `json:"disk_total_bytes,omitempty"`
	DiskUsedBytes  int64  `json:"disk_used_bytes,omitempty"`
	HealthLastLine string `json:"health_last_line,omitempty"`
}

// Phases of State.
const (
	PhaseWatching  = "watching"
	PhaseGoingDown = "going down"
	PhaseDeleting  = "deleting"
	PhaseRestart   = "starting docker again"
)

// writeJSON writes v to path atomically with mode 0600, creating the directory 0700.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
