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

// forceHelp is the --force of the commands that delete a server.
const forceHelp = "delete a running server without stopping it first (when it will not power off): " + host.ForceRisk

// stopFlags are the flags of the commands that stop and delete a server.
type stopFlags struct {
	force           bool
	shutdownTimeout time.Duration
}

func (f *stopFlags) add(fs *pflag.FlagSet) {
	fs.BoolVar(&f.force, "force", false, forceHelp)
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 0, fmt.Sprintf("how long to wait for the server to power off after the shutdown request (default %s, %s when SSH could not stop it first)", host.DefaultStopOff, host.DefaultStopOffAlone))
}

// apply sets the bound of the wait for off on hd.
func (f *stopFlags) apply(hd *host.Deps) error {
	if f.shutdownTimeout < 0 {
		return fmt.Errorf("--shutdown-timeout %s: want a positive duration such as 5m", f.shutdownTimeout)
	}
	if f.shutdownTimeout > 0 {
		hd.Stop.Off, hd.Stop.OffAlone = f.shutdownTimeout, f.shutdownTimeout
	}
	return nil
}

func downCmd(d deps) *cobra.Command {
	var (
		hf hostFlags
		sf stopFlags
	)
	return spec[*host.DownResult]{
		Use:   "down [OPTIONS]",
		Short: "Stop the server cleanly and delete it (billing stops); keep the data volume, keys, firewall and context",
		Long: `Stop the environment's server cleanly, then delete it: deleting is what stops billing.
Over SSH, Docker stops every container with its own stop timeout and then the volume plugin
(which records the release of its volumes), and the data volume and every hetzner volume are
synced and unmounted; then the server is shut down (ACPI) and deleted once it is off. When SSH
does not answer, the shutdown still comes first: the server's own shutdown does the same.
A server that does not power off is not deleted: it is still running and billed, and the error
says what to do. --force deletes it anyway.
The data volume, the SSH key, the firewall and the docker context stay: ` + "`up`" + ` brings it all back.`,
		Formats: tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			hf.add(cmd)
			sf.add(f)
		},
		Run: onHost(d, &hf, func(ctx context.Context, hd *host.Deps, env string) (*host.DownResult, error) {
			if err := sf.apply(hd); err != nil {
				return nil, err
			}
			// The laptop agent waits for the next server instead of reaching for this one.
			localagent.ServerDown(hd.Paths, env)
			return host.Down(ctx, hd, host.DownOptions{Env: env, Force: sf.force})
		}),
		Print: func(w io.Writer, _ string, res *host.DownResult) error {
			if len(res.Deleted) == 0 {
				fmt.Fprintf(w, "Environment %q has no server: nothing is billed for compute.\n", res.Env)
			}
			for _, s := range res.Deleted {
				fmt.Fprintf(w, "Deleted server %s (id %d), %s: billing for it has stopped (Hetzner bills each started hour until deletion).\n", s.Name, s.ID, stopText(s))
				for _, n := range s.Notes {
					fmt.Fprintf(w, "  note: %s\n", n)
				}
			}
			if len(res.Persisting) == 0 {
				fmt.Fprintln(w, "Nothing of it exists: nothing is kept.")
				return nil
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

// stopText says how a deleted server was stopped.
func stopText(s *host.ServerStop) string {
	switch s.Stop {
	case host.StopClean:
		return fmt.Sprintf("stopped cleanly (%d container(s) stopped, %d volume filesystem(s) unmounted, then shut down)", s.ContainersStopped, len(s.Unmounted))
	case host.StopACPI:
		return "stopped by its own shutdown (SSH could not do it)"
	case host.StopWasOff:
		return "which was off"
	case host.StopForced:
		return "WHILE RUNNING (--force): a power cut"
	}
	return s.Stop
}

func nameFlagText(env string) string {
	if env == host.DefaultEnv {
		return ""
	}
	return " --name " + env
}
