// Package host is the remote Docker host's lifecycle: up, down, status, ssh and destroy
// of one dockbridge environment (a server, its data volume, keys, firewall, SSH
// configuration and docker context). The cobra commands in internal/cli only parse
// flags and call this package.
package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Defaults of a new environment.
const (
	DefaultEnv          = "default"
	DefaultLocation     = "fsn1"
	DefaultImage        = "docker-ce"
	DefaultVolumeSizeGB = 20
)

// Settings are what ~/.docker/dockbridge/settings.json holds. The environment
// (HCLOUD_TOKEN, HCLOUD_ENDPOINT) overrides the file and flags override both.
type Settings struct {
	Token          string `json:"token,omitempty"`
	Endpoint       string `json:"endpoint,omitempty"`
	PluginEndpoint string `json:"plugin_endpoint,omitempty"` // API endpoint as seen from the server
	Location       string `json:"location,omitempty"`
	ServerType     string `json:"server_type,omitempty"` // empty: up chooses (DefaultServerTypeRule)
	Image          string `json:"image,omitempty"`
	VolumeSizeGB   int    `json:"volume_size_gb,omitempty"`
	SSHKey         string `json:"ssh_key,omitempty"` // path of an ed25519 private key to use instead of a generated one
	// ForwardPorts "false" turns the laptop's port forwards off (default on); ForwardAddress is
	// where they listen (default loopback).
	ForwardPorts   string `json:"forward_ports,omitempty"`
	ForwardAddress string `json:"forward_address,omitempty"`
}

// SettingKeys are the names `settings set` accepts, in display order.
var SettingKeys = []string{"token", "endpoint", "plugin_endpoint", "location", "server_type", "image", "volume_size_gb", "ssh_key", "forward_ports", "forward_address"}

// Set sets one setting by name, validating it.
func (s *Settings) Set(key, value string) error {
	value = strings.TrimSpace(value)
	switch key {
	case "token":
		s.Token = value
	case "endpoint":
		if value != "" && !strings.HasPrefix(value, "http://") && !strings.HasPrefix(value, "https://") {
			return fmt.Errorf("endpoint %q: want a URL such as https://api.hetzner.cloud/v1", value)
		}
		s.Endpoint = value
	case "plugin_endpoint":
		if value != "" && !strings.HasPrefix(value, "http://") && !strings.HasPrefix(value, "https://") {
			return fmt.Errorf("plugin_endpoint %q: want a URL such as https://api.hetzner.cloud/v1", value)
		}
		s.PluginEndpoint = value
	case "location":
		s.Location = value
	case "server_type":
		s.ServerType = value
	case "image":
		s.Image = value
	case "volume_size_gb":
		if value == "" {
			s.VolumeSizeGB = 0
			return nil
		}
		var n int
		if _, err := fmt.Sscanf(value, "%d", &n); err != nil || fmt.Sprint(n) != value || n < 10 || n > 10240 {
			return fmt.Errorf("volume_size_gb %q: want a whole number of GB between 10 and 10240", value)
		}
		s.VolumeSizeGB = n
	case "ssh_key":
		if value != "" {
			abs, err := filepath.Abs(value)
			if err != nil {
				return fmt.Errorf("ssh_key %q: %w", value, err)
			}
			value = abs
		}
		s.SSHKey = value
	case "forward_ports":
		switch strings.ToLower(value) {
		case "", "true", "on", "yes":
			value = ""
		case "false", "off", "no":
			value = "false"
		default:
			return fmt.Errorf("forward_ports %q: want true or false", value)
		}
		s.ForwardPorts = value
	case "forward_address":
		if value != "" && value != "localhost" && net.ParseIP(value) == nil {
			return fmt.Errorf("forward_address %q: want an IP address of this machine (default: loopback, 127.0.0.1 and ::1; 0.0.0.0 opens the forwards to every network)", value)
		}
		s.ForwardAddress = value
	default:
		return fmt.Errorf("unknown setting %q: use one of %s", key, strings.Join(SettingKeys, ", "))
	}
	return nil
}

// Get returns one setting for display; the token is never returned, only whether it is set.
func (s Settings) Get(key string) (string, error) {
	switch key {
	case "token":
		if s.Token == "" {
			return "", nil
		}
		return "(set)", nil
	case "endpoint":
		return s.Endpoint, nil
	case "plugin_endpoint":
		return s.PluginEndpoint, nil
	case "location":
		return s.Location, nil
	case "server_type":
		return s.ServerType, nil
	case "image":
		return s.Image, nil
	case "volume_size_gb":
		if s.VolumeSizeGB == 0 {
			return "", nil
		}
		return fmt.Sprint(s.VolumeSizeGB), nil
	case "ssh_key":
		return s.SSHKey, nil
	case "forward_ports":
		if s.ForwardPorts == "false" {
			return "false", nil
		}
		return "true", nil
	case "forward_address":
		return s.ForwardAddress, nil
	}
	return "", fmt.Errorf("unknown setting %q: use one of %s", key, strings.Join(SettingKeys, ", "))
}

// Paths are where dockbridge keeps its files: Root is $DOCKER_CONFIG/dockbridge
// (~/.docker/dockbridge), 0700, every file in it 0600.
type Paths struct {
	Root string
	// UserSSHConfig is the ssh client's own config (~/.ssh/config) into which one
	// Include line is added so that docker's ssh connection helper sees our hosts.
	UserSSHConfig string
	// OS is the operating system the files are written for, as runtime.GOOS names it; empty
	// means this one. Tests set another to check what differs (platform.go).
	OS string
}

// NewPaths returns the paths under dockerConfigDir (docker/cli's config.Dir()).
func NewPaths(dockerConfigDir string) (Paths, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return Paths{}, fmt.Errorf("find the home directory for ~/.ssh/config: %w", err)
	}
	return Paths{Root: filepath.Join(dockerConfigDir, "dockbridge"), UserSSHConfig: filepath.Join(home, ".ssh", "config")}, nil
}

// SettingsFile is settings.json.
func (p Paths) SettingsFile() string { return filepath.Join(p.Root, "settings.json") }

// EnvDir is the directory of one environment's keys, state and SSH configuration.
func (p Paths) EnvDir(env string) string { return filepath.Join(p.Root, "envs", env) }

// SSHConfigGlob is what the Include line in the user's ssh config names.
func (p Paths) SSHConfigGlob() string { return filepath.Join(p.Root, "envs", "*", "ssh_config") }

// LoadSettings reads settings.json; a missing file is empty settings.
func LoadSettings(p Paths) (Settings, error) {
	var s Settings
	b, err := os.ReadFile(p.SettingsFile())
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read settings: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read settings %s: %w (fix or delete the file)", p.SettingsFile(), err)
	}
	return s, nil
}

// SaveSettings writes settings.json with mode 0600 in a 0700 directory.
func SaveSettings(p Paths, s Settings) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(p.SettingsFile(), append(b, '\n'))
}

// writePrivate writes a file atomically with mode 0600, creating its directory 0700.
func writePrivate(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Env is the environment (HCLOUD_TOKEN, HCLOUD_ENDPOINT, ...) as a lookup function.
type Env func(string) string

// Flags are the command-line overrides of the settings; empty means "not given".
type Flags struct {
	Endpoint   string `json:"endpoint,omitempty"`
	TokenFile  string `json:"token_file,omitempty"`
	Location   string `json:"location,omitempty"`
	ServerType string `json:"server_type,omitempty"`
	Image      string `json:"image,omitempty"`
	VolumeSize int    `json:"volume_size,omitempty"`
	SSHKey     string `json:"ssh_key,omitempty"`
}

// Config is the resolved configuration of one command.
type Config struct {
	Settings
	TokenSource string // where the token came from, for messages: "HCLOUD_TOKEN", "settings", ...
}

// Resolve merges settings, the environment and flags (in increasing priority) and fills defaults.
func Resolve(s Settings, env Env, f Flags) (Config, error) {
	c := Config{Settings: s}
	if c.Token != "" {
		c.TokenSource = "settings (docker dockbridge settings set token)"
	}
	if v := env("HCLOUD_TOKEN_FILE"); v != "" {
		b, err := os.ReadFile(v)
		if err != nil {
			return c, fmt.Errorf("HCLOUD_TOKEN_FILE: %w", err)
		}
		c.Token, c.TokenSource = strings.TrimSpace(string(b)), "HCLOUD_TOKEN_FILE"
	}
	if v := env("HCLOUD_TOKEN"); v != "" {
		c.Token, c.TokenSource = strings.TrimSpace(v), "HCLOUD_TOKEN"
	}
	if f.TokenFile != "" {
		b, err := os.ReadFile(f.TokenFile)
		if err != nil {
			return c, fmt.Errorf("--token-file: %w", err)
		}
		c.Token, c.TokenSource = strings.TrimSpace(string(b)), "--token-file"
	}
	if v := env("HCLOUD_ENDPOINT"); v != "" {
		c.Endpoint = v
	}
	if v := env("DOCKBRIDGE_PLUGIN_ENDPOINT"); v != "" {
		c.PluginEndpoint = v
	}
	over := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	over(&c.Endpoint, f.Endpoint)
	over(&c.Location, f.Location)
	over(&c.ServerType, f.ServerType)
	over(&c.Image, f.Image)
	over(&c.SSHKey, f.SSHKey)
	if f.VolumeSize != 0 {
		if f.VolumeSize < 10 || f.VolumeSize > 10240 {
			return c, fmt.Errorf("--volume-size %d: want between 10 and 10240 GB", f.VolumeSize)
		}
		c.VolumeSizeGB = f.VolumeSize
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
		return c, fmt.Errorf("endpoint %q: want a URL such as https://api.hetzner.cloud/v1", c.Endpoint)
	}
	if c.Location == "" {
		c.Location = DefaultLocation
	}
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if c.VolumeSizeGB == 0 {
		c.VolumeSizeGB = DefaultVolumeSizeGB
	}
	if c.PluginEndpoint == "" {
		c.PluginEndpoint = c.Endpoint
	}
	return c, nil
}

// ErrNoToken is returned when no token is configured anywhere.
var ErrNoToken = errors.New("no Hetzner Cloud API token")

// NoTokenError explains how to set a token.
func NoTokenError() error {
	return fmt.Errorf("%w: create a read/write API token in the Hetzner Cloud console (your project > Security > API tokens), then either\n"+
		"  export HCLOUD_TOKEN=<token>    (or HCLOUD_TOKEN_FILE=<file holding it>, or --token-file <file>)\n"+
		"or store it (mode 0600) with\n"+
		"  docker dockbridge settings set token    (reads the token from stdin, without echo)\n"+
		"To try dockbridge without an account, start the simulator with the token it accepts,\n"+
		"  bin/hcloud-sim --token secret    (make build; without --token it accepts any token)\n"+
		"and export HCLOUD_ENDPOINT=http://127.0.0.1:8080/v1 HCLOUD_TOKEN=secret", ErrNoToken)
}

var envNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$`)

// ValidateEnvName checks an environment name (--name).
func ValidateEnvName(name string) error {
	if !envNameRe.MatchString(name) {
		return fmt.Errorf("environment name %q: use 1-30 lower-case letters, digits or '-', starting and ending with a letter or digit (it becomes part of the server's host name)", name)
	}
	return nil
}
