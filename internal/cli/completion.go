package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/host"
)

// Shell completion. Docker completes a plugin's commands by running it as
// `docker-dockbridge __complete dockbridge ARGS... WORD` (docker/cli's plugin stubs), which is
// cobra's own completion protocol: the functions here answer it. They never fail a shell: a
// completion that cannot be computed offers nothing.

// completionTimeout bounds what a completion may spend on the engine or a bucket.
const completionTimeout = 5 * time.Second

// completeEnvs offers the environments that have local state (envs/NAME under the settings dir).
func completeEnvs(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	paths, err := hostPaths()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	des, _ := os.ReadDir(filepath.Join(paths.Root, "envs"))
	var out []cobra.Completion
	for _, de := range des {
		if de.IsDir() && strings.HasPrefix(de.Name(), toComplete) && host.ValidateEnvName(de.Name()) == nil {
			out = append(out, de.Name())
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeVolumes offers the volumes of the current context's engine, each once; with many,
// only those not already on the command line.
func completeVolumes(d deps, many bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if !many && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		e, err := d.engine()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx, cancel := context.WithTimeout(commandContext(cmd), completionTimeout)
		defer cancel()
		vols, err := e.ListVolumes(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, v := range vols {
			if strings.HasPrefix(v.Name, toComplete) && !slices.Contains(args, v.Name) {
				out = append(out, cobra.CompletionWithDesc(v.Name, v.Driver))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeArchives offers the backups that `backup ls` lists for the same --from (with
// their volume and time); a word with a slash in it is a path, completed as files.
func completeArchives(from *string, sf *storeFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if strings.Contains(toComplete, "/") {
			return nil, cobra.ShellCompDirectiveDefault
		}
		ctx, cancel := context.WithTimeout(commandContext(cmd), completionTimeout)
		defer cancel()
		store, err := sf.open(ctx, fromOrEnv(*from))
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		bs, err := backup.List(ctx, store)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, b := range bs {
			if strings.HasPrefix(b.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(b.Name, fmt.Sprintf("%s, %s", b.Volume, b.Time.Format(time.RFC3339))))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	}
}

// completeFiles is for flags that name a file (the plugin's default is no file completion).
func completeFiles(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveDefault
}

// completeDirs is for flags that name a directory (or an s3:// location, typed out).
func completeDirs(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

func commandContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// completeSettingKeys offers the keys of `settings set|unset KEY`.
func completeSettingKeys(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, k := range append(slices.Clone(host.SettingKeys), host.EnvSettingKeys...) {
		if strings.HasPrefix(k, toComplete) {
			out = append(out, k)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeFlag registers a flag's completion (the flag exists: an error is a programming error).
func completeFlag(cmd *cobra.Command, flag string, fn cobra.CompletionFunc) {
	if err := cmd.RegisterFlagCompletionFunc(flag, fn); err != nil {
		panic(err)
	}
}
