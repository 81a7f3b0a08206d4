// Command docker-dockbridge is the Docker CLI plugin: `docker dockbridge ...`. Run directly,
// `docker-dockbridge ARGS` is `docker dockbridge ARGS`.
package main

import (
	"os"

	"github.com/docker/cli/cli-plugins/metadata"
	"github.com/docker/cli/cli-plugins/plugin"
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/cli"
	"github.com/dockbridge/dockbridge/internal/version"
)

func main() {
	if plugin.RunningStandalone() {
		os.Args = cli.StandaloneArgs(os.Args)
	}
	plugin.Run(func(dockerCli command.Cli) *cobra.Command {
		return cli.NewRootCommand(dockerCli)
	}, metadata.Metadata{
		SchemaVersion:    "0.1.0",
		Vendor:           "dockbridge",
		Version:          version.Version,
		ShortDescription: "Docker on Hetzner Cloud that costs money only while you use it",
		URL:              "https://github.com/dockbridge/dockbridge",
	})
}
