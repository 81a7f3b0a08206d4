package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/config"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// hostFlags are the flags every host command takes.
type hostFlags struct {
	env       string
	endpoint  string
	tokenFile string
}

func (f *hostFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.env, "name", host.DefaultEnv, "environment name: each has its own server, data volume and context")
	fs.StringVar(&f.endpoint, "endpoint", "", "Hetzner Cloud API endpoint (default: settings, $HCLOUD_ENDPOINT, then "+hetzner.DefaultEndpoint+")")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the API token from this file (default: $HCLOUD_TOKEN, then the settings)")
}

// testDepsHook lets tests adjust the dependencies (SSH dialer, port, timeouts).
var testDepsHook func(*host.Deps)

// signalContext cancels on Ctrl-C / SIGTERM, so `up` stops at a point the next run resumes from.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// hostPaths: $DOCKER_CONFIG/dockbridge, else docker's config dir (--config, ~/.docker).
// The environment is read here because docker/cli caches config.Dir() per process.
func hostPaths() (host.Paths, error) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		dir = config.Dir()
	}
	return host.NewPaths(dir)
}

// newDeps resolves settings and builds the API client; needAPI false skips the token check.
func newDeps(dockerCli command.Cli, f hostFlags, extra host.Flags, needAPI bool) (*host.Deps, error) {
	if err := host.ValidateEnvName(f.env); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	paths, err := hostPaths()
	if err != nil {
		return nil, err
	}
	s, err := host.LoadSettings(paths)
	if err != nil {
		return nil, err
	}
	extra.Endpoint, extra.TokenFile = f.endpoint, f.tokenFile
	cfg, err := host.Resolve(s, os.Getenv, extra)
	if err != nil {
		return nil, err
	}
	d := &host.Deps{
		Paths:       paths,
		Config:      cfg,
		Progress:    ui.NewProgress(dockerCli.Err(), dockerCli.Err().IsTerminal()),
		Stdin:       dockerCli.In(),
		Interactive: dockerCli.In().IsTerminal(),
		Stdout:      dockerCli.Out(),
		Stderr:      dockerCli.Err(),
	}
	if cs := dockerCli.ContextStore(); cs != nil {
		d.Contexts = cs
	}
	d.UseContext = func(name string) error {
		cf := dockerCli.ConfigFile()
		cf.CurrentContext = name
		return cf.Save()
	}
	if needAPI {
		if cfg.Token == "" {
			return nil, host.NoTokenError()
		}
		api, err := hetzner.New(hetzner.Config{Endpoint: cfg.Endpoint, Token: cfg.Token, Application: "dockbridge-cli"})
		if err != nil {
			return nil, err
		}
		d.API = api
	}
	if testDepsHook != nil {
		testDepsHook(d)
	}
	return d, nil
}

// pluginDir finds the `docker plugin create` folder of the hetzner volume plugin.
func pluginDir(flag string, paths host.Paths) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv("DOCKBRIDGE_PLUGIN_DIR"); v != "" {
		return v
	}
	candidates := []string{filepath.Join(paths.Root, "volume-plugin")}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "build", "plugin"))
	}
	candidates = append(candidates, filepath.Join("build", "plugin"))
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "config.json")); err == nil {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	return ""
}
