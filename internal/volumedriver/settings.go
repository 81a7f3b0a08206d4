package volumedriver

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// Settings are the plugin's settings. In a managed plugin they come from the env section of
// config.json and users change them with `docker plugin set hetzner NAME=value`.
type Settings struct {
	Token     string // HCLOUD_TOKEN or the content of HCLOUD_TOKEN_FILE; never logged
	TokenFile string // HCLOUD_TOKEN_FILE
	// TokenErr says why TokenFile gave no token (missing, unreadable, empty). The plugin still
	// starts (on a new server Docker may start it before `up` has written the file) and every
	// request that needs the API answers with this error.
	TokenErr         error
	Endpoint         string // HCLOUD_ENDPOINT
	MetadataEndpoint string // HCLOUD_METADATA_ENDPOINT

	DefaultSizeGB     int    // DEFAULT_SIZE
	DefaultFSType     string // DEFAULT_FSTYPE
	DefaultProtection bool   // DEFAULT_PROTECTION
	DefaultMountOpts  []string

	LogLevel    string // LOG_LEVEL
	MetricsAddr string // METRICS_ADDR, "" disables metrics

	DeviceWaitTimeout time.Duration // DEVICE_WAIT_TIMEOUT: bound on waiting for /dev/disk/by-id/... after attach
	RequestTimeout    time.Duration // REQUEST_TIMEOUT: bound of a Create or a Mount (others: at most 50s), within Docker's
	DetachOnUnmount   bool          // DETACH_ON_UNMOUNT: release (detach) a volume when its last container stops

	MountRoot string // MOUNT_ROOT: the propagatedMount of config.json
	StateDir  string // STATE_DIR: where the state file lives
	DeviceDir string // DEVICE_DIR: where Hetzner's device links appear (/dev/disk/by-id)
}

// Env names the variables SettingsFromEnv reads, for documentation and config.json.
var Env = []string{
	"HCLOUD_TOKEN", "HCLOUD_TOKEN_FILE", "HCLOUD_ENDPOINT", "HCLOUD_METADATA_ENDPOINT",
	"DEFAULT_SIZE", "DEFAULT_FSTYPE", "DEFAULT_PROTECTION", "DEFAULT_MOUNTOPTS",
	"LOG_LEVEL", "METRICS_ADDR", "DEVICE_WAIT_TIMEOUT", "REQUEST_TIMEOUT", "DETACH_ON_UNMOUNT",
	"MOUNT_ROOT", "STATE_DIR", "DEVICE_DIR",
}

// SettingsFromEnv reads the settings through getenv (os.Getenv in main). A missing token is
// not an error here: the plugin starts and answers every request that needs the API with an
// error saying how to set it.
func SettingsFromEnv(getenv func(string) string) (Settings, error) {
	s := Settings{
		Token:             strings.TrimSpace(getenv("HCLOUD_TOKEN")),
		Endpoint:          strings.TrimSpace(getenv("HCLOUD_ENDPOINT")),
		MetadataEndpoint:  strings.TrimSpace(getenv("HCLOUD_METADATA_ENDPOINT")),
		DefaultSizeGB:     10,
		DefaultFSType:     "ext4",
		LogLevel:          "info",
		MetricsAddr:       strings.TrimSpace(getenv("METRICS_ADDR")),
		DeviceWaitTimeout: time.Minute,
		RequestTimeout:    MaxRequestTimeout,
		MountRoot:         "/mnt/volumes",
		DeviceDir:         "/dev/disk/by-id",
	}
	var errs []string
	bad := func(name, val, want string) {
		errs = append(errs, fmt.Sprintf("%s=%q: %s", name, val, want))
	}
	if f := strings.TrimSpace(getenv("HCLOUD_TOKEN_FILE")); f != "" {
		s.TokenFile = f
		if s.Token != "" {
			errs = append(errs, "both HCLOUD_TOKEN and HCLOUD_TOKEN_FILE are set: set only one")
		} else if b, err := os.ReadFile(f); err != nil {
			s.TokenErr = fmt.Errorf("no Hetzner Cloud API token: read HCLOUD_TOKEN_FILE: %w", err)
		} else if s.Token = strings.TrimSpace(string(b)); s.Token == "" {
			s.TokenErr = fmt.Errorf("no Hetzner Cloud API token: HCLOUD_TOKEN_FILE %s is empty", f)
		}
	}
	if v := strings.TrimSpace(getenv("DEFAULT_SIZE")); v != "" {
		n, err := parseSize(v)
		if err != nil {
			bad("DEFAULT_SIZE", v, err.Error())
		}
		s.DefaultSizeGB = n
	}
	if v := strings.TrimSpace(getenv("DEFAULT_FSTYPE")); v != "" {
		if err := checkFSType(v); err != nil {
			bad("DEFAULT_FSTYPE", v, err.Error())
		}
		s.DefaultFSType = v
	}
	if v := strings.TrimSpace(getenv("DEFAULT_PROTECTION")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("DEFAULT_PROTECTION", v, "want true or false")
		}
		s.DefaultProtection = b
	}
	if v := strings.TrimSpace(getenv("DEFAULT_MOUNTOPTS")); v != "" {
		opts, err := parseMountOpts(s.DefaultFSType, v)
		if err != nil {
			bad("DEFAULT_MOUNTOPTS", v, err.Error())
		}
		s.DefaultMountOpts = opts
	}
	if v := strings.TrimSpace(getenv("DETACH_ON_UNMOUNT")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("DETACH_ON_UNMOUNT", v, "want true or false")
		}
		s.DetachOnUnmount = b
	}
	if v := strings.ToLower(strings.TrimSpace(getenv("LOG_LEVEL"))); v != "" {
		switch v {
		case "debug", "info", "warn", "warning", "error":
			s.LogLevel = v
		default:
			bad("LOG_LEVEL", v, "want debug, info, warn or error")
		}
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"DEVICE_WAIT_TIMEOUT", &s.DeviceWaitTimeout}, {"REQUEST_TIMEOUT", &s.RequestTimeout}} {
		v := strings.TrimSpace(getenv(d.name))
		if v == "" {
			continue
		}
		dur, err := time.ParseDuration(v)
		if err != nil || dur <= 0 {
			bad(d.name, v, "want a positive duration such as 90s or 2m")
			continue
		}
		*d.dst = dur
	}
	if s.RequestTimeout > MaxRequestTimeout {
		bad("REQUEST_TIMEOUT", getenv("REQUEST_TIMEOUT"), fmt.Sprintf("at most %s: Docker gives up on a Create or a Mount after %s and does not tell the plugin, which must answer before", MaxRequestTimeout, dockerLongRequest))
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"MOUNT_ROOT", &s.MountRoot}, {"STATE_DIR", &s.StateDir}, {"DEVICE_DIR", &s.DeviceDir}} {
		if v := strings.TrimSpace(getenv(p.name)); v != "" {
			if !strings.HasPrefix(v, "/") {
				bad(p.name, v, "want an absolute path")
			}
			*p.dst = v
		}
	}
	if s.StateDir == "" {
		s.StateDir = s.MountRoot + "/.dockbridge"
	}
	if s.Endpoint != "" && !strings.HasPrefix(s.Endpoint, "http://") && !strings.HasPrefix(s.Endpoint, "https://") {
		bad("HCLOUD_ENDPOINT", s.Endpoint, "want an http:// or https:// URL such as "+hetzner.DefaultEndpoint)
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("plugin settings: %s (change them with `docker plugin disable hetzner && docker plugin set hetzner NAME=value && docker plugin enable --timeout %d hetzner`)", strings.Join(errs, "; "), dockbridge.PluginEnableTimeout)
	}
	return s, nil
}
