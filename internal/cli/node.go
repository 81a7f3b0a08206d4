package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// nodeCmd is `docker dockbridge node add|rm|ls`: the servers of a multi-server environment
// (a Docker Swarm).
func nodeCmd(d deps) *cobra.Command {
	return group("node", "Add, remove and list the servers (Swarm nodes) of an environment",
		nodeLsCmd(d), nodeAddCmd(d), nodeRmCmd(d))
}

func nodeLsCmd(d deps) *cobra.Command {
	var hf hostFlags
	return spec[[]host.NodeStatus]{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List the nodes: server, price, data volume, Swarm role and state",
		Long: `List the environment's nodes in order (the position is what ssh --node takes): each
node's server and its status and price, its data volume, its private address, and Docker's view
of it from node 1 (Swarm role, leader, state, availability). -o json prints a JSON array with one
object per node.`,
		Formats: tableOrJSON,
		Flags:   func(cmd *cobra.Command, _ *pflag.FlagSet) { hf.add(cmd) },
		Run:     onHost(d, &hf, host.ListNodes),
		Print:   func(w io.Writer, _ string, nodes []host.NodeStatus) error { return printNodes(w, nodes) },
	}.build(d.out)
}

func printNodes(w io.Writer, nodes []host.NodeStatus) error {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		server := "-"
		if n.Server != "" {
			server = fmt.Sprintf("%s (%d)", n.Server, n.ServerID)
		}
		price := "-"
		if n.PriceHour > 0 {
			price = fmt.Sprintf("%.4f %s/h", n.PriceHour, n.Currency)
		}
		vol := "-"
		if n.Volume != nil {
			vol = fmt.Sprintf("%s (%d GB)", n.Volume.Name, n.Volume.SizeGB)
		}
		role := orDash(n.Role)
		if n.Leader {
			role += " (leader)"
		}
		state := orDash(n.SwarmState)
		if n.Availability != "" && n.Availability != "active" {
			state += ", " + n.Availability
		}
		rows = append(rows, []string{strconv.Itoa(n.Index), server, n.Status, orDash(n.Type), price, vol, orDash(n.PrivateIP), role, state})
	}
	return ui.Table(w, []string{"node", "server", "status", "type", "price", "data volume", "private ip", "role", "swarm"}, rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nodeAddCmd(d deps) *cobra.Command {
	var (
		hf    hostFlags
		count int
		force bool
	)
	return spec[*host.UpResult]{
		Use:   "add [OPTIONS]",
		Short: "Add worker nodes to the environment's swarm (a single server becomes its first node)",
		Long: `Add --count worker nodes: each a server with its own data volume, on the environment's
private network at a fixed address, joined to the swarm. The same as up --nodes with that many
more nodes; a later plain up keeps the number.`,
		Formats: tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			hf.add(cmd)
			f.IntVar(&count, "count", 1, "how many nodes to add")
			f.BoolVar(&force, "force", false, "when a new server's creation fails, delete it without stopping it first even if it runs: "+host.ForceRisk)
		},
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) (*host.UpResult, error) {
			hd, err := d.host(hf, host.Flags{}, true)
			if err != nil {
				return nil, err
			}
			return host.NodeAdd(ctx, hd, host.UpOptions{Env: hf.env, PluginDir: pluginDir(""), Force: force}, count)
		},
		Print: func(w io.Writer, _ string, res *host.UpResult) error { return printUp(w, res) },
	}.build(d.out)
}

func nodeRmCmd(d deps) *cobra.Command {
	var (
		hf               hostFlags
		keep, yes, force bool
	)
	return spec[*host.NodeRemoveResult]{
		Use:   "rm [OPTIONS] [NODE]",
		Short: "Remove a worker node: its tasks move away, its server and data volume are deleted",
		Long: `Remove worker node NODE (its position in node ls; default the last one): its tasks move to
the other nodes (drain; their hetzner volumes follow them), it leaves the swarm, its server is
stopped cleanly and deleted, and its data volume (that node's images, containers and
local-driver volumes) is deleted, or kept with --keep-volume. Node 1 and managers stay.`,
		Args:    cobra.MaximumNArgs(1),
		Formats: tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			hf.add(cmd)
			f.BoolVar(&keep, "keep-volume", false, "keep the node's data volume")
			f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
			f.BoolVar(&force, "force", false, "delete the node's server without draining and stopping it: "+host.ForceRisk)
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*host.NodeRemoveResult, error) {
			idx := 0
			if len(args) == 1 {
				n, err := strconv.Atoi(args[0])
				if err != nil || n < 1 {
					return nil, fmt.Errorf("node %q: give its position in `docker dockbridge node ls` (1, 2, ...)", args[0])
				}
				idx = n
			}
			hd, err := d.host(hf, host.Flags{}, true)
			if err != nil {
				return nil, err
			}
			return host.NodeRemove(ctx, hd, host.NodeRemoveOptions{Env: hf.env, Index: idx, KeepVolume: keep, Yes: yes, Force: force})
		},
		Print: func(w io.Writer, _ string, r *host.NodeRemoveResult) error {
			kv := [][2]string{{"node", strconv.Itoa(r.Node)}}
			if r.Server != nil {
				kv = append(kv, [2]string{"server", fmt.Sprintf("%s (id %d) deleted, stop: %s", r.Server.Name, r.Server.ID, r.Server.Stop)})
			}
			if r.Volume != nil {
				what := "deleted"
				if r.VolumeKept {
					what = "kept"
				}
				kv = append(kv, [2]string{"data volume", fmt.Sprintf("%s (id %d) %s", r.Volume.Name, r.Volume.ID, what)})
			}
			for _, n := range r.Notes {
				kv = append(kv, [2]string{"note", n})
			}
			return ui.KeyValues(w, kv)
		},
	}.build(d.out)
}
