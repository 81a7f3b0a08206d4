package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
)

func downCmd(d deps) *cobra.Command {
	var hf hostFlags
	return spec[*host.DownResult]{
		Use:     "down [OPTIONS]",
		Short:   "Delete the server (billing stops); keep the data volume, keys, firewall and context",
		Formats: tableOrJSON,
		Flags:   func(cmd *cobra.Command, _ *pflag.FlagSet) { hf.add(cmd) },
		Run:     onHost(d, &hf, host.Down),
		Print: func(w io.Writer, _ string, res *host.DownResult) error {
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
	}.build(d.out)
}

func nameFlagText(env string) string {
	if env == host.DefaultEnv {
		return ""
	}
	return " --name " + env
}
