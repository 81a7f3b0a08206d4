package localagent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dockbridge/dockbridge/internal/host"
)

// Config is what the agent of one environment does (agent.json in the environment's folder,
// written by `up`, `share add` and `share rm`; the agent reads it again when told to).
type Config struct {
	// Forward: the server's published ports on this laptop (up --no-forward, the setting
	// forward_ports=false turn it off).
	Forward bool `json:"forward"`
	// Address the forwards listen on; "" is loopback (127.0.0.1, and ::1 where it exists).
	Address string `json:"address,omitempty"`
	// Shares are the laptop folders synchronized with the server.
	Shares []ShareConfig `json:"shares,omitempty"`
}

// ShareConfig is one shared folder.
type ShareConfig struct {
	Path string `json:"path"`
	// Ignores are Mutagen ignore patterns (like .gitignore's) for what stays on the laptop.
	Ignores []string `json:"ignores,omitempty"`
}

// Files are the agent's files in an environment's folder.
type Files struct {
	Dir string // the environment's folder (host.Paths.EnvDir)
}

// FilesFor is the agent's files of env.
func FilesFor(p host.Paths, env string) Files { return Files{Dir: p.EnvDir(env)} }

// ConfigFile is agent.json.
func (f Files) ConfigFile() string { return filepath.Join(f.Dir, "agent.json") }

// LogFile is the agent's log (agent.log; the previous one is agent.log.1).
func (f Files) LogFile() string { return filepath.Join(f.Dir, "agent.log") }

// SyncDir holds the synchronization sessions' state (Mutagen's data directory).
func (f Files) SyncDir() string { return filepath.Join(f.Dir, "sync") }

// Socket is the agent's control socket: in the environment's folder, or under the temporary
// directory when that path is too long for a Unix socket (about 104 bytes on macOS).
func (f Files) Socket() string {
	p := filepath.Join(f.Dir, "agent.sock")
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(f.Dir))
	return filepath.Join(os.TempDir(), fmt.Sprintf("dockbridge-%d", os.Getuid()), "agent-"+hex.EncodeToString(sum[:8])+".sock")
}

// LoadConfig reads agent.json; a missing file is forwarding on, no shares.
func LoadConfig(f Files) (Config, error) {
	c := Config{Forward: true}
	b, err := os.ReadFile(f.ConfigFile())
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w (fix or delete it)", f.ConfigFile(), err)
	}
	return c, nil
}

// SaveConfig writes agent.json (0600).
func SaveConfig(f Files, c Config) error {
	slices.SortFunc(c.Shares, func(a, b ShareConfig) int { return strings.Compare(a.Path, b.Path) })
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	tmp := f.ConfigFile() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.ConfigFile())
}

// ValidateAddress checks a forward address: "" (loopback) or an IP address of this machine.
func ValidateAddress(a string) error {
	if a == "" || a == "localhost" {
		return nil
	}
	if net.ParseIP(a) == nil {
		return fmt.Errorf("forward address %q: want an IP address such as 127.0.0.1 (loopback, the default) or 0.0.0.0 (every network of this machine)", a)
	}
	return nil
}

// CleanSharePath makes a folder's path absolute and clean, and checks that it is a folder.
func CleanSharePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("share %s: %w", p, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("share %s: not a folder (a file's folder can be shared)", p)
	}
	return abs, nil
}
