package cli

import (
	"errors"
	"fmt"

	"github.com/docker/cli/cli"
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/host"
)

func newSSHCommand(dockerCli command.Cli) *cobra.Command {
	var env string
	cmd := &cobra.Command{
		Use:   "ssh [OPTIONS] [-- COMMAND [ARG...]]",
		Short: "Open a shell on the server, or run a command, with the pinned host key",
		Example: `  docker dockbridge ssh
  docker dockbridge ssh -- docker info
  docker dockbridge ssh --name staging -- tail /var/log/docker-volume-health.log`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := host.ValidateEnvName(env); err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if len(args) > 0 && cmd.ArgsLenAtDash() != 0 {
				return fmt.Errorf("put the command after --, e.g. `docker dockbridge ssh -- %s`", args[0])
			}
			paths, err := hostPaths()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			err = host.SSH(ctx, paths, env, args, dockerCli.In(), dockerCli.Out(), dockerCli.Err())
			var exit *host.ExitError
			if errors.As(err, &exit) {
				return cli.StatusError{StatusCode: exit.Code, Status: exit.Error()}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&env, "name", host.DefaultEnv, "environment name")
	return cmd
}
