// Package cli holds the cobra commands of `docker dockbridge`. Commands are thin:
// they parse flags and call the package that does the work.
package cli

import (
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

// NewRootCommand returns the `dockbridge` command tree.
func NewRootCommand(dockerCli command.Cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:           "dockbridge",
		Short:         "Docker on Hetzner Cloud that costs money only while you use it",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(newUpCommand(dockerCli))
	cmd.AddCommand(newDownCommand(dockerCli))
	cmd.AddCommand(newStatusCommand(dockerCli))
	cmd.AddCommand(newSSHCommand(dockerCli))
	cmd.AddCommand(newDestroyCommand(dockerCli))
	cmd.AddCommand(newSettingsCommand(dockerCli))
	cmd.AddCommand(newVolumeCommand(dockerCli))
	cmd.AddCommand(newBackupCommand(dockerCli))
	cmd.AddCommand(newRestoreCommand(dockerCli))
	cmd.AddCommand(newMetricsCommand(dockerCli))
	return cmd
}
