package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/localagent"
	"github.com/dockbridge/dockbridge/internal/ui"
)

func upCmd(d deps) *cobra.Command {
	var (
		hf            hostFlags
		extra         host.Flags
		allowFrom     []string
		noPlugin, use bool
		force         bool
		pluginDirFlag string
		noForward     bool
		fwdAddress    string
		nodes         int
		managers      int
		idleTimeout   string
		billingPeriod string
	)
	return spec[*host.UpResult]{
		Use:   "up [OPTIONS]",
		Short: "Create or resume the remote Docker host and its docker context",
		Long: `Create what is missing of the environment, in order: your SSH key, a firewall (port 22
only), the data volume that holds /var/lib/docker, a server with a freshly generated and pinned
SSH host key, the hetzner volume plugin on it, the idle agent, and a docker context over SSH.
Running it again changes nothing; after an interruption it resumes.

The server deletes itself after it has been idle for --idle-timeout (default 30m; the setting
idle_timeout), shortly before its paid hour ends; the next docker command through the context
brings a new one up with the same data volume. A Docker Swarm (up --nodes N) goes down as a
whole: node 1 decides, activity on any node keeps every node up, the nodes stop cleanly (workers
first, managers last) and the next docker command brings them all back.`,
		Formats: tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			hf.add(cmd)
			f.StringVar(&extra.Location, "location", "", "location of a new server and volume (default: settings, then "+host.DefaultLocation+")")
			f.StringVar(&extra.ServerType, "server-type", "", "server type of a new server (default: settings, then "+host.DefaultServerTypeRule+")")
			f.StringVar(&extra.Image, "image", "", "image of a new server (default: settings, then "+host.DefaultImage+")")
			f.IntVar(&extra.VolumeSize, "volume-size", 0, fmt.Sprintf("size in GB of a new data volume (default: settings, then %d)", host.DefaultVolumeSizeGB))
			f.StringVar(&extra.SSHKey, "ssh-key", "", "ed25519 private key to use instead of a generated one")
			f.StringSliceVar(&allowFrom, "allow-from", nil, "CIDR allowed to reach SSH (repeatable; default anywhere)")
			f.BoolVar(&noPlugin, "no-volume-plugin", false, "do not install the hetzner volume plugin on the server")
			f.StringVar(&pluginDirFlag, "plugin-dir", "", "a hetzner volume plugin folder made here (config.json + rootfs: make plugin) to upload instead of the plugin the server assembles from the binary docker-dockbridge carries (default: $DOCKBRIDGE_PLUGIN_DIR)")
			f.BoolVar(&use, "use", false, "make the environment's context the current docker context")
			f.BoolVar(&noForward, "no-forward", false, "do not forward the server's published ports to this machine (the setting forward_ports=false does it for every up)")
			f.StringVar(&fwdAddress, "forward-address", "", "where the forwarded ports listen on this machine (default: the setting forward_address, then loopback; 0.0.0.0: every network)")
			f.IntVar(&nodes, "nodes", 0, "make the environment a Docker Swarm of this many servers (nodes), each with its own data volume; a later plain up keeps the number")
			f.IntVar(&managers, "managers", 0, "Swarm managers among the nodes: 1 (default) or 3 for a raft quorum that survives a node's loss")
			f.BoolVar(&force, "force", false, "when a new server's creation fails, delete it without stopping it first even if it runs: "+host.ForceRisk)
			f.StringVar(&idleTimeout, "idle-timeout", "", "how long the server may be idle before it deletes itself (shortly before its paid hour ends), e.g. 20s, 45m, or off; kept in the environment's settings (default: the setting idle_timeout, then 30m); a Swarm (--nodes) goes down as a whole once every node is idle")
			f.StringVar(&billingPeriod, "billing-period", "", "the billing period the server's idle policy counts in (Hetzner's is 1h; for the simulator and tests); kept in the environment's settings")
			_ = f.MarkHidden("billing-period")
			completeFlag(cmd, "ssh-key", completeFiles)
			completeFlag(cmd, "plugin-dir", completeDirs)
		},
		Run: func(ctx context.Context, cmd *cobra.Command, _ []string) (*host.UpResult, error) {
			hd, err := d.host(hf, extra, true)
			if err != nil {
				return nil, err
			}
			var af []string
			if cmd.Flags().Changed("allow-from") {
				af = allowFrom
			}
			if cmd.Flags().Changed("nodes") && nodes < 1 {
				return nil, fmt.Errorf("--nodes %d: want at least 1", nodes)
			}
			flags := extra
			flags.Endpoint, flags.TokenFile = hf.endpoint, hf.tokenFile
			opts := host.UpOptions{Env: hf.env, AllowFrom: af, NoVolumePlugin: noPlugin, Use: use, Force: force, Nodes: nodes, Managers: managers,
				IdleTimeout: idleTimeout, BillingPeriod: billingPeriod, Flags: flags}
			// A developer's plugin folder also holds the servers' binary the idle agent runs when
			// this build carries none.
			opts.PluginDir = pluginDir(pluginDirFlag)
			if cmd.Flags().Changed("forward-address") {
				if err := localagent.ValidateAddress(fwdAddress); err != nil {
					return nil, fmt.Errorf("--forward-address: %w", err)
				}
			}
			res, err := host.Up(ctx, hd, opts)
			if err == nil && res.SSHInclude && d.errOut != nil {
				fmt.Fprint(d.errOut, includeAdded(hd.Paths, hf.env))
			}
			if err != nil {
				return res, err
			}
			_, s, serr := loadSettings()
			if serr != nil {
				return res, serr
			}
			line, aerr := agentAfterUp(ctx, hd.Paths, s, hf.env, noForward, fwdAddress, cmd.Flags().Changed("forward-address"))
			if aerr != nil {
				return res, fmt.Errorf("the environment is up, but its laptop agent (port forwards, shared folders) is not: %w", aerr)
			}
			res.Agent = line
			return res, nil
		},
		Print: func(w io.Writer, _ string, res *host.UpResult) error { return printUp(w, res) },
	}.build(d.out)
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
	if len(r.Nodes) > 0 {
		fmt.Fprintln(w)
		var rows [][]string
		for _, n := range r.Nodes {
			rows = append(rows, []string{strconv.Itoa(n.Node), n.Role, fmt.Sprintf("%s (id %d)", n.ServerName, n.ServerID), n.IPv4, n.PrivateIP, n.VolumeName})
		}
		if err := ui.Table(w, []string{"node", "role", "server", "ipv4", "private ip", "data volume"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nUse it:  docker --context %s ps\n", r.Context)
	if r.Agent != "" {
		defer fmt.Fprintf(w, "\n%s\n", r.Agent)
	}
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

// includeAdded says exactly what `up` added to the user's ssh config, line by line.
func includeAdded(p host.Paths, env string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Added these lines at the top of %s (docker's ssh finds the %s host through the Include):\n", p.UserSSHConfig, host.SSHAlias(env))
	for _, l := range strings.Split(strings.TrimSuffix(p.IncludeBlock(), "\n"), "\n") {
		fmt.Fprintf(&b, "  | %s\n", l)
	}
	return b.String()
}
