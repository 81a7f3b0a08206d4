package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

func newUpCommand(dockerCli command.Cli) *cobra.Command {
	var (
		hf                    hostFlags
		extra                 host.Flags
		allowFrom             []string
		noPlugin, use         bool
		pluginDirFlag, output string
	)
	cmd := &cobra.Command{
		Use:   "up [OPTIONS]",
		Short: "Create or resume the remote Docker host and its docker context",
		Long: `Create what is missing of the environment, in order: your SSH key, a firewall (port 22
only), the data volume that holds /var/lib/docker, a server with a freshly generated and pinned
SSH host key, the hetzner volume plugin on it, and a docker context over SSH.
Running it again changes nothing; after an interruption it resumes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := ui.ParseFormat(output)
			if err != nil {
				return err
			}
			d, err := newDeps(dockerCli, hf, extra, true)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			var af []string
			if cmd.Flags().Changed("allow-from") {
				af = allowFrom
			}
			opts := host.UpOptions{Env: hf.env, AllowFrom: af, NoVolumePlugin: noPlugin, Use: use}
			if !noPlugin {
				opts.PluginDir = pluginDir(pluginDirFlag, d.Paths)
			}
			res, err := host.Up(ctx, d, opts)
			if err != nil {
				return err
			}
			if format == ui.FormatJSON {
				return ui.JSON(dockerCli.Out(), res)
			}
			if res.SSHInclude {
				fmt.Fprintf(dockerCli.Err(), "Added %q at the top of %s: docker's ssh finds the %s host through it.\n", d.Paths.IncludeLine(), d.Paths.UserSSHConfig, host.SSHAlias(hf.env))
			}
			return printUp(dockerCli.Out(), res)
		},
	}
	f := cmd.Flags()
	hf.add(f)
	f.StringVar(&extra.Location, "location", "", "location of a new server and volume (default: settings, then "+host.DefaultLocation+")")
	f.StringVar(&extra.ServerType, "server-type", "", "server type of a new server (default: settings, then "+host.DefaultServerType+")")
	f.StringVar(&extra.Image, "image", "", "image of a new server (default: settings, then "+host.DefaultImage+")")
	f.IntVar(&extra.VolumeSize, "volume-size", 0, fmt.Sprintf("size in GB of a new data volume (default: settings, then %d)", host.DefaultVolumeSizeGB))
	f.StringVar(&extra.SSHKey, "ssh-key", "", "ed25519 private key to use instead of a generated one")
	f.StringSliceVar(&allowFrom, "allow-from", nil, "CIDR allowed to reach SSH (repeatable; default anywhere)")
	f.BoolVar(&noPlugin, "no-volume-plugin", false, "do not install the hetzner volume plugin on the server")
	f.StringVar(&pluginDirFlag, "plugin-dir", "", "folder of the hetzner volume plugin (config.json + rootfs; default: $DOCKBRIDGE_PLUGIN_DIR, ~/.docker/dockbridge/volume-plugin, build/plugin)")
	f.BoolVar(&use, "use", false, "make the environment's context the current docker context")
	f.StringVarP(&output, "output", "o", "", "output format: table or json")
	return cmd
}

func printUp(w io.Writer, r *host.UpResult) error {
	state := "is up"
	if r.ServerCreated {
		state = "is up (new server)"
	}
	fmt.Fprintf(w, "Environment %q %s.\n", r.Env, state)
	if err := ui.KeyValues(w, [][2]string{
		{"server", fmt.Sprintf("%s (id %d, %s, %s in %s)", r.ServerName, r.ServerID, r.IPv4, r.ServerType, r.Location)},
		{"data volume", fmt.Sprintf("%s (id %d, %d GB) holds /var/lib/docker", r.VolumeName, r.VolumeID, r.VolumeSizeGB)},
		{"context", r.Context},
	}); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nUse it:  docker --context %s ps\n", r.Context)
	if r.UsedContext {
		fmt.Fprintf(w, "         (it is now the current context: plain `docker ps` uses it)\n")
	} else {
		fmt.Fprintf(w, "         docker context use %s   (to make it the default)\n", r.Context)
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(r.Steps)+1)
	for _, s := range r.Steps {
		rows = append(rows, []string{s.Title, fmtSeconds(s.Seconds), s.Note})
	}
	rows = append(rows, []string{"total", fmtSeconds(r.Seconds), ""})
	return ui.Table(w, []string{"step", "time", "result"}, rows)
}

func fmtSeconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}
