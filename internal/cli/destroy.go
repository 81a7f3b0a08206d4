package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/localagent"
)

func destroyCmd(d deps) *cobra.Command {
	var (
		hf      hostFlags
		volumes bool
		yes     bool
		sf      stopFlags
	)
	return spec[*host.DestroyResult]{
		Use:   "destroy [OPTIONS]",
		Short: "Delete everything the environment made (the data volume only with --volumes)",
		Long: `Delete the environment's server, firewall, uploaded SSH key, docker context and local keys.
The server is stopped cleanly first, as by ` + "`down`" + `; one that does not power off is not deleted,
and neither is anything else (--force deletes it anyway).
The data volume (your containers, images and volumes) is kept unless --volumes is given.
Only resources carrying the environment's dockbridge labels are deleted.
It asks for confirmation; without a terminal, --yes is required.`,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			hf.add(cmd)
			f.BoolVar(&volumes, "volumes", false, "also delete the data volume: every container, image and volume on it is lost")
			f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
			sf.add(f)
		},
		Run: onHost(d, &hf, func(ctx context.Context, hd *host.Deps, env string) (*host.DestroyResult, error) {
			if err := sf.apply(hd); err != nil {
				return nil, err
			}
			agent, agentErr := localagent.Query(hd.Paths, env)
			res, err := host.Destroy(ctx, hd, host.DestroyOptions{Env: env, Volumes: volumes, Yes: yes, Force: sf.force})
			if err == nil {
				// Its folder is gone (the agent's socket with it): the laptop agent ends by itself
				// within a second; destroy returns once it has.
				_ = localagent.Stop(hd.Paths, env)
				if agentErr == nil {
					localagent.WaitEnded(agent.PID, 10*time.Second)
				}
			}
			return res, err
		}),
		Print: func(w io.Writer, _ string, res *host.DestroyResult) error {
			fmt.Fprintf(w, "Environment %q destroyed.\n", res.Env)
			for _, x := range res.Deleted {
				fmt.Fprintf(w, "  deleted %s\n", x)
			}
			for _, x := range res.Kept {
				fmt.Fprintf(w, "  kept %s\n", x)
			}
			return nil
		},
	}.build(d.out)
}
