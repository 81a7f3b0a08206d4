package hcloudsim

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/simhost"
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
	Catalog       string
	Verbose       bool
	// container backend
	Network    string
	PublicIPs  string
	Datasource string
}

// Register defines the flags on fs.
func (o *Options) Register(fs *flag.FlagSet) {
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "address to serve the API on")
	fs.StringVar(&o.Token, "token", "", "the only accepted API token (empty: any non-empty bearer token); prefer --token-file or $HCLOUD_SIM_TOKEN")
	fs.StringVar(&o.TokenFile, "token-file", "", "file holding the accepted API token")
	fs.StringVar(&o.StateDir, "state-dir", "", "directory keeping state across restarts (empty: memory only)")
	fs.StringVar(&o.Backend, "backend", "none", "backend: none (virtual), local (this machine is --local-server; its volumes are loop devices) or container (every server is a systemd container on the local Docker engine)")
	fs.StringVar(&o.LocalServer, "local-server", "", "name of the server that stands for this machine (metadata service answers for it)")
	fs.StringVar(&o.LocalLocation, "local-location", "fsn1", "location of --local-server")
	fs.StringVar(&o.ByIDDir, "by-id-dir", "/dev/disk/by-id", "local backend: directory for the scsi-0HC_Volume_<id> links")
	fs.StringVar(&o.ImageDir, "image-dir", "", "local backend: directory for volume images (default <state-dir>/volumes)")
	fs.StringVar(&o.ActionProfile, "action-profile", "fast", "action durations: fast (20-100 ms) or realistic (seconds)")
	fs.StringVar(&o.ActionDur, "action-duration", "", "per-command overrides, e.g. attach_volume=3s,create_server=15s")
	fs.IntVar(&o.RateLimit, "rate-limit", 3600, "requests per hour (token bucket, refilled gradually)")
	fs.IntVar(&o.ServerLimit, "server-limit", 100, "project server quota")
	fs.Float64Var(&o.FaultRate, "fault-rate", 0, "probability of an injected HTTP fault per matching request")
	fs.StringVar(&o.FaultKinds, "fault-kinds", "500,502,503", "comma-separated HTTP fault kinds: 500,502,503,504,429,locked,timeout")
	fs.StringVar(&o.FaultPath, "fault-path", "", "glob on the route template or path the HTTP faults target (empty: all)")
	fs.StringVar(&o.FaultMethod, "fault-method", "", "HTTP method the faults target (empty: all)")
	fs.Float64Var(&o.ActionFail, "action-fail-rate", 0, "probability that an action ends in status error")
	fs.Uint64Var(&o.FaultSeed, "fault-seed", 1, "seed of the fault injection RNG (deterministic runs)")
	fs.StringVar(&o.Catalog, "catalog", "", "server-type catalog changes, comma-separated TYPE[@LOCATION]=STATE with STATE available, unavailable (out of stock), removed or deprecated:YYYY-MM-DD, e.g. cx23@fsn1=unavailable")
	fs.BoolVar(&o.Verbose, "v", false, "log every request")
	fs.StringVar(&o.Network, "network", "dockbridge-sim", "container backend: Docker network of the servers (created when missing)")
	fs.StringVar(&o.PublicIPs, "public-ips", "127.0.0.0/24", "container backend: loopback range of the servers' public IPv4 (their SSH port is published there)")
	fs.StringVar(&o.Datasource, "datasource", "nocloud", "container backend: how cloud-init finds user_data: nocloud (seed written before boot) or hetzner (cloud-init's Hetzner datasource asks the metadata service)")
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
	if o.Catalog != "" {
		ch, err := ParseCatalogChanges(o.Catalog)
		if err != nil {
			return cfg, err
		}
		cfg.Catalog = ch
	}
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
	case "container":
		b, err := o.containerBackend(ctx, log)
		if err != nil {
			return cfg, err
		}
		cfg.Backend = b
	default:
		return cfg, fmt.Errorf("--backend %q is unknown (use none, local or container)", o.Backend)
	}
	return cfg, nil
}

// containerBackend builds the container backend. Servers reach the simulator on their
// network's gateway, an address of this machine: a loopback --listen (the default) is moved
// there, keeping the port, so the API and the metadata service answer servers and this
// machine alike, and nothing listens on an outside interface. o.Listen is updated.
func (o *Options) containerBackend(ctx context.Context, log *slog.Logger) (*ContainerBackend, error) {
	dir := o.ImageDir
	if dir == "" {
		if o.StateDir == "" {
			return nil, fmt.Errorf("--backend container needs --state-dir (or --image-dir) to keep volume images")
		}
		dir = filepath.Join(o.StateDir, "volumes")
	}
	byID := ""
	if o.ByIDDir != "" && o.ByIDDir != "/dev/disk/by-id" {
		byID = o.ByIDDir
	}
	pub, err := netip.ParsePrefix(o.PublicIPs)
	if err != nil {
		return nil, fmt.Errorf("--public-ips %q: want a loopback range such as 127.0.0.0/24: %w", o.PublicIPs, err)
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil || port == "0" || port == "" {
		return nil, fmt.Errorf("--listen %q: want HOST:PORT with a fixed port (servers are told where the API is)", o.Listen)
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		return nil, fmt.Errorf("--listen %q: with --backend container the simulator serves on the servers' network gateway, an address of this machine only; a wildcard address would expose it beyond this machine (use 127.0.0.1:%s)", o.Listen, port)
	}
	n, err := simhost.EnsureNetwork(ctx, o.Network)
	if err != nil {
		return nil, fmt.Errorf("--backend container: %w", err)
	}
	addr, err := netip.ParseAddr(host)
	if host == "localhost" || (err == nil && addr.IsLoopback()) {
		addr = n.Gateway
		log.Info("container backend: serving on the servers' network gateway (an address of this machine only)", "listen", net.JoinHostPort(addr.String(), port))
	} else if err != nil || addr != n.Gateway {
		return nil, fmt.Errorf("--listen %q: with --backend container the simulator serves on the servers' network gateway %s (use --listen %s:%s, or a loopback address); other addresses would expose it beyond this machine or be unreachable from servers", o.Listen, n.Gateway, n.Gateway, port)
	}
	o.Listen = net.JoinHostPort(addr.String(), port)
	ap, err := netip.ParseAddrPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w", o.Listen, err)
	}
	return NewContainerBackend(ctx, ContainerBackendConfig{ImageDir: dir, ByIDDir: byID, Network: o.Network,
		APIAddr: ap, PublicIPs: pub, Datasource: o.Datasource, Logger: log})
}
