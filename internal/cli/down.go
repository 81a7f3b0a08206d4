package cli

import (
	"fmt"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

func newDownCommand(dockerCli command.Cli) *cobra.Command {
	var (
		hf     hostFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "down [OPTIONS]",
		Short: "Delete the server (billing stops); keep the data volume, keys, firewall and context",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := ui.ParseFormat(output)
			if err != nil {
				return err
			}
			d, err := newDeps(dockerCli, hf, host.Flags{}, true)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			res, err := host.Down(ctx, d, hf.env)
			if err != nil {
				return err
			}
			if format == ui.FormatJSON {
				return ui.JSON(dockerCli.Out(), res)
			}
			w := dockerCli.Out()
			if len(res.Deleted) == 0 {
				fmt.Fprintf(w, "Environment %q has no server: nothing is billed for compute.\n", res.Env)
			}
			for _, s := range res.Deleted {
				fmt.Fprintf(w, "Deleted server %s (id %d): billing for it has stopped (Hetzner bills each started hour until deletion).\n", s.Name, s.ID)
			}
			fmt.Fprintln(w, "Kept:")
			for _, p := range res.Persisting {
				fmt.Fprintf(w, "  - %s\n", p)
			}
			fmt.Fprintf(w, "`docker dockbridge up%s` brings it all back.\n", nameFlagText(res.Env))
			return nil
		},
	}
	hf.add(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: table or json")
	return cmd
}

func nameFlagText(env string) string {
	if env == host.DefaultEnv {
		return ""
	}
	return " --name " + env
}
