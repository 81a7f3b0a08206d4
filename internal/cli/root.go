// Package cli holds the cobra commands of `docker dockbridge`. Commands are thin: each fills
// in the one shape in shape.go (flags, Run that calls the package doing the work, Print).
package cli

import (
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/version"
)

// NewRootCommand returns the `dockbridge` command tree.
func NewRootCommand(dockerCli command.Cli) *cobra.Command {
	return rootCmd(depsFrom(dockerCli))
}

func rootCmd(d deps) *cobra.Command {
	cmd := group("dockbridge", "Docker on Hetzner Cloud that costs money only while you use it",
		upCmd(d), downCmd(d), statusCmd(d), nodeCmd(d), sshCmd(d), destroyCmd(d), settingsCmd(d),
		volumeCmd(d), backupCmd(d), restoreCmd(d), metricsCmd(d), portsCmd(d), shareCmd(d), agentCmd(d), versionCmd(d), wakeCmd(d))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.Version = version.Get().String()
	cmd.SetVersionTemplate("docker dockbridge version {{.Version}}\n")
	return cmd
}
