package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/localagent"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// The laptop agent's commands: `ports`, `share add|ls|rm`, and the hidden `agent run|stop`
// (internal/localagent). None asks the API: the agent and its files are on this machine.

// localPaths resolves --name and the dockbridge folder, without settings or token.
func localPaths(hf hostFlags) (host.Paths, error) {
	if err := host.ValidateEnvName(hf.env); err != nil {
		return host.Paths{}, fmt.Errorf("--name: %w", err)
	}
	return hostPaths()
}

// envFlag adds --name alone.
func envFlag(cmd *cobra.Command, hf *hostFlags) {
	cmd.Flags().StringVar(&hf.env, "name", host.DefaultEnv, "environment name")
	completeFlag(cmd, "name", completeEnvs)
}

// agentConfigFromUp writes the agent's configuration from up's flags and the settings, keeping
// its shares, and makes the agent run (or read it again). A --no-forward without shares stops a
// running agent instead. It returns a line for up's output, "" for nothing to say.
func agentAfterUp(ctx context.Context, paths host.Paths, s host.Settings, env string, noForward bool, address string, addressSet bool) (string, error) {
	f := localagent.FilesFor(paths, env)
	cfg, err := localagent.LoadConfig(f)
	if err != nil {
		return "", err
	}
	cfg.Forward = !noForward && s.ForwardPorts != "false"
	cfg.Address = s.ForwardAddress
	if addressSet {
		cfg.Address = address
	}
	if err := localagent.ValidateAddress(cfg.Address); err != nil {
		return "", err
	}
	if err := localagent.SaveConfig(f, cfg); err != nil {
		return "", err
	}
	if runtime.GOOS == "windows" {
		return "Port forwards and shared folders need OpenSSH's shared connections (ControlMaster), which Windows' OpenSSH lacks: not available here.", nil
	}
	if !cfg.Forward && len(cfg.Shares) == 0 {
		if err := localagent.Stop(paths, env); err != nil {
			return "", err
		}
		return "Port forwards are off (--no-forward or the setting forward_ports): no laptop agent runs.", nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	started, err := localagent.Ensure(ctx, paths, env, exe)
	if err != nil {
		return "", err
	}
	what := "forwards the server's published ports to " + addressText(cfg.Address)
	if !cfg.Forward {
		what = "port forwards off"
	}
	if n := len(cfg.Shares); n > 0 {
		what += fmt.Sprintf("; synchronizes %d shared folder(s)", n)
	}
	verb := "runs"
	if started {
		verb = "started"
	}
	return fmt.Sprintf("Laptop agent %s: %s (docker dockbridge ports%s).", verb, what, nameFlagText(env)), nil
}

func addressText(a string) string {
	if a == "" || a == "localhost" {
		return "localhost"
	}
	return a
}

func portsCmd(d deps) *cobra.Command {
	var hf hostFlags
	return spec[*localagent.Status]{
		Use:   "ports [OPTIONS]",
		Short: "List the server's published ports and where they answer on this machine",
		Long: `Every TCP port a container publishes on the server answers on this machine's loopback at the
same number, through the environment's shared SSH connection, while the environment is up
(the laptop agent that up starts keeps them; they follow containers as they start and stop).
A port taken here gets the nearest free one, and the NOTE column says so.
up --no-forward, or ` + "`docker dockbridge settings set forward_ports false`" + `, turn them off;
the setting forward_address listens elsewhere than loopback (0.0.0.0: every network).`,
		Formats: tableOrJSON,
		Flags:   func(cmd *cobra.Command, _ *pflag.FlagSet) { envFlag(cmd, &hf) },
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) (*localagent.Status, error) {
			paths, err := localPaths(hf)
			if err != nil {
				return nil, err
			}
			st, err := localagent.Query(paths, hf.env)
			if errors.Is(err, localagent.ErrNotRunning) {
				return nil, fmt.Errorf("no laptop agent runs for environment %q: `docker dockbridge up%s` starts it", hf.env, nameFlagText(hf.env))
			}
			return &st, err
		},
		Print: func(w io.Writer, _ string, st *localagent.Status) error {
			fmt.Fprintln(w, agentLine(st))
			if !st.Forward {
				fmt.Fprintln(w, "Port forwards are off (up --no-forward, or the setting forward_ports).")
				return nil
			}
			if len(st.Ports) == 0 {
				fmt.Fprintln(w, "No container publishes a port now.")
				return nil
			}
			rows := make([][]string, 0, len(st.Ports))
			for _, p := range st.Ports {
				local := p.Local
				if local == "" {
					local = "-"
				}
				rows = append(rows, []string{local, fmt.Sprint(p.Port), strings.Join(p.Containers, ", "), p.Note})
			}
			return ui.Table(w, []string{"LOCAL", "SERVER PORT", "CONTAINERS", "NOTE"}, rows)
		},
	}.build(d.out)
}

func agentLine(st *localagent.Status) string {
	s := fmt.Sprintf("Laptop agent: %s", st.State)
	switch st.State {
	case localagent.StateAttached:
		s += " to " + st.Server
		if st.Engine != "" && st.Engine != "running" {
			s += " (its Docker is " + st.Engine + ")"
		}
	}
	s += fmt.Sprintf(" since %s", st.Since.Local().Format(time.TimeOnly))
	if st.Error != "" {
		s += ": " + st.Error
	}
	return s
}

func shareCmd(d deps) *cobra.Command {
	return group("share", "Share folders of this machine with the server (bind mounts of them then work)",
		shareAddCmd(d), shareLsCmd(d), shareRmCmd(d))
}

// ShareAdded is share add's result.
type ShareAdded struct {
	Path    string                 `json:"path"`
	Seconds float64                `json:"seconds"`
	Status  localagent.ShareStatus `json:"status"`
	Note    string                 `json:"note,omitempty"`
}

func shareAddCmd(d deps) *cobra.Command {
	var (
		hf      hostFlags
		ignores []string
		noWait  bool
	)
	return spec[*ShareAdded]{
		Use:   "add [OPTIONS] [FOLDER]",
		Short: "Share a folder (default: the current one): docker run -v FOLDER:... and compose binds of it then work",
		Long: `Share a folder of this machine with the environment's server: it is synchronized, both ways,
into a copy on the server's data volume, shown on the server at the same path, so that
docker run -v "$PWD":/app and compose's "- .:/app" find it. Edits on either side reach the
other (about half a second); deletes too; when both sides changed a file, neither version
is overwritten: the conflict stays and ` + "`share ls`" + ` lists it. A bind of a folder that is
not shared is refused with an error that names this command.
It waits for the first synchronization (with --no-wait it returns at once; binds of the folder
are refused until it is ready).`,
		Args:    cli.RequiresMaxArgs(1),
		Formats: tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			envFlag(cmd, &hf)
			f.StringArrayVar(&ignores, "ignore", nil, "a path pattern that stays on this machine (as in .gitignore; repeatable), e.g. --ignore node_modules")
			f.BoolVar(&noWait, "no-wait", false, "return without waiting for the first synchronization")
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*ShareAdded, error) {
			paths, err := localPaths(hf)
			if err != nil {
				return nil, err
			}
			folder := "."
			if len(args) == 1 {
				folder = args[0]
			}
			p, err := localagent.CleanSharePath(folder)
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(paths.SSHConfigFile(hf.env)); err != nil {
				return nil, fmt.Errorf("environment %q has never been up here: run `docker dockbridge up%s` first", hf.env, nameFlagText(hf.env))
			}
			f := localagent.FilesFor(paths, hf.env)
			cfg, err := localagent.LoadConfig(f)
			if err != nil {
				return nil, err
			}
			found := false
			for i, s := range cfg.Shares {
				switch {
				case s.Path == p:
					found = true
					if len(ignores) > 0 {
						cfg.Shares[i].Ignores = ignores
					}
				case strings.HasPrefix(p, s.Path+"/"):
					return nil, fmt.Errorf("%s is inside the shared folder %s already", p, s.Path)
				case strings.HasPrefix(s.Path, p+"/"):
					return nil, fmt.Errorf("%s holds the shared folder %s: `docker dockbridge share rm %s` first", p, s.Path, s.Path)
				}
			}
			if !found {
				cfg.Shares = append(cfg.Shares, localagent.ShareConfig{Path: p, Ignores: ignores})
			}
			if err := localagent.SaveConfig(f, cfg); err != nil {
				return nil, err
			}
			exe, err := os.Executable()
			if err != nil {
				return nil, err
			}
			start := time.Now()
			if _, err := localagent.Ensure(ctx, paths, hf.env, exe); err != nil {
				return nil, err
			}
			res := &ShareAdded{Path: p}
			if noWait {
				res.Note = "not waiting for the first synchronization (--no-wait)"
				return res, nil
			}
			last := ""
			st, err := localagent.WaitShare(ctx, paths, hf.env, p, func(s localagent.ShareStatus) {
				line := fmt.Sprintf("%s: %s", s.State, s.Status)
				if s.Files > 0 {
					line += fmt.Sprintf(" (%d files)", s.Files)
				}
				if line != last && d.errOut != nil {
					fmt.Fprintf(d.errOut, "%s %s\n", p, line)
					last = line
				}
			})
			res.Seconds, res.Status = time.Since(start).Seconds(), st
			if err != nil {
				return nil, fmt.Errorf("share %s: %w", p, err)
			}
			return res, nil
		},
		Print: func(w io.Writer, _ string, r *ShareAdded) error {
			if r.Note != "" {
				fmt.Fprintf(w, "%s is shared: %s.\n", r.Path, r.Note)
				return nil
			}
			fmt.Fprintf(w, "%s is shared and ready (%d files, %s, first synchronization %s).\n", r.Path, r.Status.Files,
				humanBytes(int64(r.Status.Bytes)), (time.Duration(r.Seconds * float64(time.Second))).Round(time.Millisecond))
			fmt.Fprintf(w, "Bind it as you would locally:  docker run -v %s:/app ...\n", r.Path)
			return nil
		},
	}.build(d.out)
}

func shareLsCmd(d deps) *cobra.Command {
	var hf hostFlags
	return spec[*localagent.Status]{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List the shared folders, their state, conflicts and problems",
		Formats: tableOrJSON,
		Flags:   func(cmd *cobra.Command, _ *pflag.FlagSet) { envFlag(cmd, &hf) },
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) (*localagent.Status, error) {
			paths, err := localPaths(hf)
			if err != nil {
				return nil, err
			}
			st, err := localagent.Query(paths, hf.env)
			if errors.Is(err, localagent.ErrNotRunning) {
				cfg, cerr := localagent.LoadConfig(localagent.FilesFor(paths, hf.env))
				if cerr != nil {
					return nil, cerr
				}
				st = localagent.Status{Env: hf.env, State: "not running", Shares: []localagent.ShareStatus{}}
				for _, s := range cfg.Shares {
					st.Shares = append(st.Shares, localagent.ShareStatus{Path: s.Path, State: "offline"})
				}
				return &st, nil
			}
			return &st, err
		},
		Print: func(w io.Writer, _ string, st *localagent.Status) error {
			if len(st.Shares) == 0 {
				fmt.Fprintf(w, "No shared folder: `docker dockbridge share add FOLDER`.\n")
				return nil
			}
			fmt.Fprintln(w, agentLine(st))
			rows := [][]string{}
			for _, s := range st.Shares {
				rows = append(rows, []string{s.Path, s.State, fmt.Sprint(s.Files), humanBytes(int64(s.Bytes)), fmt.Sprint(len(s.Conflicts)), s.Status})
			}
			if err := ui.Table(w, []string{"FOLDER", "STATE", "FILES", "SIZE", "CONFLICTS", "SYNCHRONIZATION"}, rows); err != nil {
				return err
			}
			for _, s := range st.Shares {
				for _, c := range s.Conflicts {
					fmt.Fprintf(w, "conflict in %s: %s changed on both sides; both versions are kept (each side has its own): keep the one you want on one side, and the other side follows\n", s.Path, c)
				}
				for _, p := range s.Problems {
					fmt.Fprintf(w, "problem in %s: %s\n", s.Path, p)
				}
				if s.Error != "" {
					fmt.Fprintf(w, "error in %s: %s\n", s.Path, s.Error)
				}
			}
			return nil
		},
	}.build(d.out)
}

func shareRmCmd(d deps) *cobra.Command {
	var (
		hf   hostFlags
		keep bool
	)
	return spec[*struct{ Note string }]{
		Use:     "rm [OPTIONS] FOLDER",
		Aliases: []string{"remove"},
		Short:   "Stop sharing a folder (the folder on this machine is not touched)",
		Args:    cli.ExactArgs(1),
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			envFlag(cmd, &hf)
			f.BoolVar(&keep, "keep-copy", false, "leave the server's copy on its data volume (it is kept anyway when it holds something this machine does not)")
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*struct{ Note string }, error) {
			paths, err := localPaths(hf)
			if err != nil {
				return nil, err
			}
			p, err := localagent.CleanSharePath(args[0])
			if err != nil {
				return nil, err
			}
			note, err := localagent.Unshare(paths, hf.env, p, keep)
			if errors.Is(err, localagent.ErrNotRunning) {
				return nil, fmt.Errorf("no laptop agent runs for environment %q: `docker dockbridge up%s` first", hf.env, nameFlagText(hf.env))
			}
			if err != nil {
				return nil, err
			}
			if d.out != nil {
				fmt.Fprintf(d.out, "%s is no longer shared: %s.\n", p, note)
			}
			return nil, nil
		},
	}.build(d.out)
}

// agentCmd is the laptop agent's process (`up` starts it) and its stop: hidden, a person uses
// up, down and destroy.
func agentCmd(d deps) *cobra.Command {
	var hf hostFlags
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the environment's laptop agent in this process",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := localPaths(hf)
			if err != nil {
				return err
			}
			ctx, cancel := interruptible(cmd)
			defer cancel()
			return localagent.RunProcess(ctx, paths, hf.env)
		},
	}
	envFlag(run, &hf)
	var hs hostFlags
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the environment's laptop agent (its forwards close, synchronization stops)",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := localPaths(hs)
			if err != nil {
				return err
			}
			return localagent.Stop(paths, hs.env)
		},
	}
	envFlag(stop, &hs)
	g := group("agent", "The laptop agent (port forwards, shared folders): up starts it", run, stop)
	g.Hidden = true
	return g
}
