package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
)

func sshCmd(d deps) *cobra.Command {
	var (
		env  string
		node int
	)
	return spec[*struct{}]{
		Use:   "ssh [OPTIONS] [-- COMMAND [ARG...]]",
		Short: "Open a shell on the server, or run a command, with the pinned host key",
		Example: `  docker dockbridge ssh
  docker dockbridge ssh -- docker info
  docker dockbridge ssh --node 2 -- docker ps
  docker dockbridge ssh --name staging -- tail /var/log/docker-volume-health.log`,
		Args: cobra.ArbitraryArgs,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&env, "name", host.DefaultEnv, "environment name")
			f.IntVar(&node, "node", 1, "the node to reach: its position in `docker dockbridge node ls` (1-based)")
			completeFlag(cmd, "name", completeEnvs)
		},
		Run: func(ctx context.Context, cmd *cobra.Command, args []string) (*struct{}, error) {
			if err := host.ValidateEnvName(env); err != nil {
				return nil, fmt.Errorf("--name: %w", err)
			}
			if len(args) > 0 && cmd.ArgsLenAtDash() != 0 {
				return nil, fmt.Errorf("put the command after --, e.g. `docker dockbridge ssh -- %s`", args[0])
			}
			paths, err := hostPaths()
			if err != nil {
				return nil, err
			}
			num := 1
			if node != 1 {
				if num, err = host.NodeNumber(paths, env, node); err != nil {
					return nil, err
				}
			}
			err = host.NodeSSH(ctx, paths, env, num, args, d.cli.In(), d.cli.Out(), d.cli.Err())
			var exit *host.ExitError
			if errors.As(err, &exit) {
				return nil, cli.StatusError{StatusCode: exit.Code, Status: exit.Error()}
			}
			return nil, err
		},
	}.build(d.out)
}
