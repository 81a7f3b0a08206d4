package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"

	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/config"
	"github.com/docker/go-units"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// deps is what every command is built with: the docker CLI (streams, config, contexts) and
// the engine of the current context. Tests build it around a real engine client and buffers.
type deps struct {
	cli    command.Cli // nil in the tests that only use the engine
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	// interactive: in is a terminal, so questions can be asked
	interactive bool
	engine      func() (*volumeops.Engine, error)
}

func depsFrom(dockerCli command.Cli) deps {
	return deps{
		cli: dockerCli,
		engine: func() (*volumeops.Engine, error) {
			return &volumeops.Engine{API: dockerCli.Client(), Context: dockerCli.CurrentContext(), Progress: dockerCli.Err()}, nil
		},
		in:          dockerCli.In(),
		out:         dockerCli.Out(),
		errOut:      dockerCli.Err(),
		interactive: dockerCli.In().IsTerminal(),
	}
}

// hostFlags are the flags every host command takes.
type hostFlags struct {
	env       string
	endpoint  string
	tokenFile string
}

func (f *hostFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.env, "name", host.DefaultEnv, "environment name: each has its own server, data volume and context")
	fs.StringVar(&f.endpoint, "endpoint", "", "Hetzner Cloud API endpoint (default: $HCLOUD_ENDPOINT, then the settings, then "+hetzner.DefaultEndpoint+")")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the API token from this file (default: $HCLOUD_TOKEN, then the file $HCLOUD_TOKEN_FILE names, then the settings)")
	completeFlag(cmd, "name", completeEnvs)
	completeFlag(cmd, "token-file", completeFiles)
}

// testDepsHook lets tests adjust the dependencies (SSH dialer, port, timeouts).
var testDepsHook func(*host.Deps)

// hostPaths: $DOCKER_CONFIG/dockbridge, else docker's config dir (--config, ~/.docker).
// The environment is read here because docker/cli caches config.Dir() per process.
func hostPaths() (host.Paths, error) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		dir = config.Dir()
	}
	return host.NewPaths(dir)
}

// loadSettings reads the settings file where hostPaths says it is.
func loadSettings() (host.Paths, host.Settings, error) {
	paths, err := hostPaths()
	if err != nil {
		return host.Paths{}, host.Settings{}, err
	}
	s, err := host.LoadSettings(paths)
	return paths, s, err
}

// onHost is the Run of a command about one environment (--name): it builds the host
// dependencies from the flags, then calls fn.
func onHost[R any](d deps, hf *hostFlags, fn func(context.Context, *host.Deps, string) (R, error)) func(context.Context, *cobra.Command, []string) (R, error) {
	return func(ctx context.Context, _ *cobra.Command, _ []string) (R, error) {
		hd, err := d.host(*hf, host.Flags{}, true)
		if err != nil {
			var zero R
			return zero, err
		}
		return fn(ctx, hd, hf.env)
	}
}

// host resolves settings and builds the API client; needAPI false skips the token check.
func (d deps) host(f hostFlags, extra host.Flags, needAPI bool) (*host.Deps, error) {
	if err := host.ValidateEnvName(f.env); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	paths, s, err := loadSettings()
	if err != nil {
		return nil, err
	}
	extra.Endpoint, extra.TokenFile = f.endpoint, f.tokenFile
	cfg, err := host.Resolve(s, os.Getenv, extra)
	if err != nil {
		return nil, err
	}
	dockerCli := d.cli
	hd := &host.Deps{
		Paths:       paths,
		Config:      cfg,
		Progress:    ui.NewProgress(dockerCli.Err(), dockerCli.Err().IsTerminal()),
		Stdin:       dockerCli.In(),
		Interactive: dockerCli.In().IsTerminal(),
		Stdout:      dockerCli.Out(),
		Stderr:      dockerCli.Err(),
	}
	if runtime.GOOS != "windows" {
		// ssh runs the wake with /bin/sh (Windows: no wake yet; the server is brought up by up).
		hd.WakeBinary, _ = os.Executable()
	}
	if cs := dockerCli.ContextStore(); cs != nil {
		hd.Contexts = cs
	}
	hd.UseContext = func(name string) error {
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
		hd.API = api
	}
	if testDepsHook != nil {
		testDepsHook(hd)
	}
	return hd, nil
}

// pluginDir is a developer's `docker plugin create` folder of the hetzner volume plugin
// (make plugin), named by --plugin-dir or $DOCKBRIDGE_PLUGIN_DIR; "" (the normal case): the
// server assembles the plugin from the binary this CLI carries. No folder is looked for: one
// left lying around must not replace what the release carries.
func pluginDir(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv("DOCKBRIDGE_PLUGIN_DIR")
}

func humanBytes(n int64) string {
	if n < 0 {
		return "-"
	}
	return units.BytesSize(float64(n))
}

func sortStrings(s []string) { slices.Sort(s) }

func volumeInspectOpts() client.VolumeInspectOptions { return client.VolumeInspectOptions{} }
