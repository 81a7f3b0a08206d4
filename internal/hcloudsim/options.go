package hcloudsim

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options are the command-line settings of hcloud-sim; Config turns them into a Config.
type Options struct {
	Listen        string
	Token         string
	TokenFile     string
	StateDir      string
	Backend       string
	LocalServer   string
	LocalLocation string
	ByIDDir       string
	ImageDir      string
	ActionProfile string
	ActionDur     string
	RateLimit     int
	ServerLimit   int
	FaultRate     float64
	FaultKinds    string
	FaultPath     string
	FaultMethod   string
	ActionFail    float64
	FaultSeed     uint64
	Verbose       bool
}

// Register defines the flags on fs.
func (o *Options) Register(fs *flag.FlagSet) {
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "address to serve the API on")
	fs.StringVar(&o.Token, "token", "", "the only accepted API token (empty: any non-empty bearer token); prefer --token-file or $HCLOUD_SIM_TOKEN")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the accepted API token")
	fs.StringVar(&o.StateDir, "state-dir", "", "directory keeping state across restarts (empty: memory only)")
	fs.StringVar(&o.Backend, "backend", "none", "backend: none (virtual) or local (this machine is --local-server; its volumes are loop devices)")
	fs.StringVar(&o.LocalServer, "local-server", "", "name of the server that stands for this machine (metadata service answers for it)")
	fs.StringVar(&o.LocalLocation, "local-location", "fsn1", "location of --local-server")
	fs.StringVar(&o.ByIDDir, "by-id-dir", "/dev/disk/by-id", "local backend: directory for the scsi-0HC_Volume_<id> links")
	fs.StringVar(&o.ImageDir, "image-dir", "", "local backend: directory for volume images (default <state-dir>/volumes)")
	fs.StringVar(&o.ActionProfile, "action-profile", "fast", "action durations: fast (20-100 ms) or realistic (seconds)")
	fs.StringVar(&o.ActionDur, "action-duration", "", "per-command overrides, e.g. attach_volume=3s,create_server=15s")
	fs.IntVar(&o.RateLimit, "rate-limit", 3600, "requests per hour (token bucket, refilled gradually)")
	fs.IntVar(&o.ServerLimit, "server-limit", 100, "project server quota")
	fs.Float64Var(&o.FaultRate, "fault-rate", 0, "probability of an injected HTTP fault per matching request")
	fs.StringVar(&o.FaultKinds, "fault-kinds", "500,502,503", "comma-separated HTTP fault kinds: 500,502,503,504,429,timeout")
	fs.StringVar(&o.FaultPath, "fault-path", "", "glob on the route template or path the HTTP faults target (empty: all)")
	fs.StringVar(&o.FaultMethod, "fault-method", "", "HTTP method the faults target (empty: all)")
	fs.Float64Var(&o.ActionFail, "action-fail-rate", 0, "probability that an action ends in status error")
	fs.Uint64Var(&o.FaultSeed, "fault-seed", 1, "seed of the fault injection RNG (deterministic runs)")
	fs.BoolVar(&o.Verbose, "v", false, "log every request")
}

// Config builds the simulator configuration, including the backend.
func (o *Options) Config(ctx context.Context, log *slog.Logger) (Config, error) {
	cfg := Config{
		StateDir: o.StateDir, LocalServer: o.LocalServer, LocalLocation: o.LocalLocation,
		ActionProfile: o.ActionProfile, RateLimit: o.RateLimit, ServerLimit: o.ServerLimit, Logger: log,
	}
	cfg.Token = o.Token
	if cfg.Token == "" {
		cfg.Token = os.Getenv("HCLOUD_SIM_TOKEN")
	}
	if o.TokenFile != "" {
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return cfg, fmt.Errorf("read --token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	if o.ActionDur != "" {
		cfg.ActionDurations = map[string]time.Duration{}
		for _, kv := range strings.Split(o.ActionDur, ",") {
			k, v, ok := strings.Cut(kv, "=")
			d, err := time.ParseDuration(v)
			if !ok || err != nil {
				return cfg, fmt.Errorf("--action-duration %q: want command=duration, e.g. attach_volume=3s", kv)
			}
			cfg.ActionDurations[strings.TrimSpace(k)] = d
		}
	}
	if o.FaultRate > 0 {
		for _, k := range strings.Split(o.FaultKinds, ",") {
			cfg.Faults.Rules = append(cfg.Faults.Rules, FaultRule{Kind: strings.TrimSpace(k), Rate: o.FaultRate, Path: o.FaultPath, Method: o.FaultMethod})
		}
	}
	if o.ActionFail > 0 {
		cfg.Faults.Rules = append(cfg.Faults.Rules, FaultRule{Kind: "action_error", Rate: o.ActionFail})
	}
	cfg.Faults.Seed = o.FaultSeed
	if err := cfg.Faults.validate(); err != nil {
		return cfg, fmt.Errorf("fault flags: %w", err)
	}
	switch o.Backend {
	case "", "none":
	case "local":
		if o.LocalServer == "" {
			return cfg, fmt.Errorf("--backend local needs --local-server NAME (the server that stands for this machine)")
		}
		dir := o.ImageDir
		if dir == "" {
			if o.StateDir == "" {
				return cfg, fmt.Errorf("--backend local needs --state-dir (or --image-dir) to keep volume images")
			}
			dir = filepath.Join(o.StateDir, "volumes")
		}
		b, err := NewLocalBackend(LocalBackendConfig{ImageDir: dir, ByIDDir: o.ByIDDir, Logger: log})
		if err != nil {
			return cfg, err
		}
		cfg.Backend = b
	default:
		return cfg, fmt.Errorf("--backend %q is unknown (use none or local)", o.Backend)
	}
	_ = ctx
	return cfg, nil
}
