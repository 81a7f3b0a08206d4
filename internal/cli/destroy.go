package cli

import (
	"fmt"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/host"
)

func newDestroyCommand(dockerCli command.Cli) *cobra.Command {
	var (
		hf      hostFlags
		volumes bool
		yes     bool
	)
	cmd := &cobra.Command{
		Use:   "destroy [OPTIONS]",
		Short: "Delete everything the environment made (the data volume only with --volumes)",
		Long: `Delete the environment's server, firewall, uploaded SSH key, docker context and local keys.
The data volume (your containers, images and volumes) is kept unless --volumes is given.
Only resources carrying the environment's dockbridge labels are deleted.
It asks for confirmation; without a terminal, --yes is required.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := newDeps(dockerCli, hf, host.Flags{}, true)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			res, err := host.Destroy(ctx, d, host.DestroyOptions{Env: hf.env, Volumes: volumes, Yes: yes})
			if err != nil {
				return err
			}
			w := dockerCli.Out()
			fmt.Fprintf(w, "Environment %q destroyed.\n", res.Env)
			for _, x := range res.Deleted {
				fmt.Fprintf(w, "  deleted %s\n", x)
			}
			for _, x := range res.Kept {
				fmt.Fprintf(w, "  kept %s\n", x)
			}
			return nil
		},
	}
	hf.add(cmd.Flags())
	cmd.Flags().BoolVar(&volumes, "volumes", false, "also delete the data volume: every container, image and volume on it is lost")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
