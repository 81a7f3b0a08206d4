package cli

import (
	"slices"
	"strings"

	cliflags "github.com/docker/cli/cli/flags"
	"github.com/spf13/pflag"
)

// StandaloneArgs makes `docker-dockbridge ARGS`, the binary run directly rather than by the
// docker CLI, mean `docker dockbridge ARGS`: it puts the plugin's name where docker would,
// after any of docker's global options (--context, -H, --config, ...). Without it the plugin
// framework prints docker's generic help and exits 0. args is os.Args.
func StandaloneArgs(args []string) []string {
	if len(args) == 0 {
		return args
	}
	rest := args[1:]
	fs := pflag.NewFlagSet("docker", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.Usage = func() {}
	cliflags.NewClientOptions().InstallFlags(fs)
	at := 0 // where the command starts in rest
	if err := fs.Parse(rest); err == nil {
		at = len(rest) - len(fs.Args())
		if fs.ArgsLenAtDash() == 0 { // "--" ended the global options
			at--
		}
	}
	if at < len(rest) && strings.HasPrefix(rest[at], "__complete") {
		at++ // completion: `__complete dockbridge WORDS...`, as docker asks
	}
	if at < len(rest) && rest[at] == "dockbridge" {
		return args
	}
	out := slices.Concat(args[:1], rest[:at], []string{"dockbridge"}, rest[at:])
	return out
}
