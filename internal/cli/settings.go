package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

func settingsCmd(d deps) *cobra.Command {
	var env string
	nameFlag := func(cmd *cobra.Command, _ *pflag.FlagSet) {
		cmd.Flags().StringVar(&env, "name", host.DefaultEnv, "environment whose own settings (idle_timeout, idle_margin) to show or change")
		completeFlag(cmd, "name", completeEnvs)
	}
	show := func(ctx context.Context, _ *cobra.Command, _ []string) (*[][2]string, error) {
		return settingsShown(env)
	}
	printKV := func(w io.Writer, _ string, kv *[][2]string) error { return ui.KeyValues(w, *kv) }
	cmd := spec[*[][2]string]{
		Use:   "settings",
		Short: "Show or change the settings in ~/.docker/dockbridge/settings.json",
		Long: `Settings are kept in $DOCKER_CONFIG/dockbridge/settings.json (mode 0600).
The environment overrides them, and command-line flags override both:
  token            --token-file, then $HCLOUD_TOKEN, then the file $HCLOUD_TOKEN_FILE names, then the setting
  endpoint         --endpoint, then $HCLOUD_ENDPOINT, then the setting (default ` + hetzner.DefaultEndpoint + `)
  plugin_endpoint  the API endpoint as the server's volume plugin reaches it: $DOCKBRIDGE_PLUGIN_ENDPOINT,
                   then the setting, then the endpoint above
Keys: ` + strings.Join(host.SettingKeys, ", ") + `

Each environment (--name) has its own, in $DOCKER_CONFIG/dockbridge/envs/NAME/settings.json:
  idle_timeout     how long its server may be idle before it deletes itself, shortly before its
                   paid hour ends (default 30m; off: never by itself); also up --idle-timeout
  idle_margin      how long before the paid hour ends it goes down (default 5m)
A change reaches the running server at once.`,
		Args:  unknownCommand,
		Flags: nameFlag,
		Run:   show,
		Print: printKV,
	}.build(d.out)
	cmd.AddCommand(
		spec[*[][2]string]{
			Use:   "show",
			Short: "Show the settings (never the token)",
			Flags: nameFlag,
			Run:   show,
			Print: printKV,
		}.build(d.out),
		spec[*string]{
			Use:   "set KEY [VALUE]",
			Short: "Set a setting; `set token` reads the token from stdin so it stays out of your shell history",
			Example: `  docker dockbridge settings set token < token.txt
  docker dockbridge settings set location nbg1
  docker dockbridge settings set idle_timeout 45m --name dev`,
			Flags:    nameFlag,
			Args:     cli.RequiresRangeArgs(1, 2),
			Complete: completeSettingKeys,
			Run: func(ctx context.Context, _ *cobra.Command, args []string) (*string, error) {
				key := args[0]
				var value string
				switch {
				case key == "token" && len(args) == 2:
					return nil, errors.New("the token is not taken on the command line (it would land in your shell history): run `docker dockbridge settings set token` and paste it, or pipe it in")
				case key == "token":
					line, err := readSecret(ctx, d.cli.In(), d.cli.Err(), "Hetzner Cloud API token (input is hidden): ")
					if err != nil {
						return nil, fmt.Errorf("read the token from stdin: %w", err)
					}
					value = line
					if value == "" {
						return nil, errors.New("no token on stdin: pipe it in, e.g. `docker dockbridge settings set token < token.txt`")
					}
				case len(args) == 2:
					value = args[1]
				default:
					return nil, fmt.Errorf("settings set %s needs a value (use `settings unset %s` to remove it)", key, key)
				}
				if slices.Contains(host.EnvSettingKeys, key) {
					return changeEnvSetting(ctx, d, env, key, value)
				}
				return changeSetting(key, value)
			},
			Print: printChanged,
		}.build(d.out),
		spec[*string]{
			Use:      "unset KEY",
			Short:    "Remove a setting (its default applies again)",
			Flags:    nameFlag,
			Args:     cli.ExactArgs(1),
			Complete: completeSettingKeys,
			Run: func(ctx context.Context, _ *cobra.Command, args []string) (*string, error) {
				if slices.Contains(host.EnvSettingKeys, args[0]) {
					return changeEnvSetting(ctx, d, env, args[0], "")
				}
				return changeSetting(args[0], "")
			},
			Print: printChanged,
		}.build(d.out),
	)
	return cmd
}

func printChanged(w io.Writer, _ string, line *string) error {
	_, err := fmt.Fprintln(w, *line)
	return err
}

// changeSetting sets key (unsets it when value is empty) and returns the line that says so.
func changeSetting(key, value string) (*string, error) {
	paths, s, err := loadSettings()
	if err != nil {
		return nil, err
	}
	if err := s.Set(key, value); err != nil {
		return nil, err
	}
	if err := host.SaveSettings(paths, s); err != nil {
		return nil, err
	}
	shown, _ := s.Get(key)
	if shown == "" {
		shown = "(unset)"
	}
	line := fmt.Sprintf("%s = %s (in %s)", key, shown, paths.SettingsFile())
	return &line, nil
}

// settingsShown is every setting (the token only as "(set)") and the file's path, then the
// environment's own.
func settingsShown(env string) (*[][2]string, error) {
	if err := host.ValidateEnvName(env); err != nil {
		return nil, fmt.Errorf("--name: %w", err)
	}
	paths, s, err := loadSettings()
	if err != nil {
		return nil, err
	}
	var kv [][2]string
	for _, k := range host.SettingKeys {
		v, _ := s.Get(k)
		kv = append(kv, [2]string{k, v})
	}
	kv = append(kv, [2]string{"file", paths.SettingsFile()})
	es, err := host.LoadEnvSettings(paths, env)
	if err != nil {
		return nil, err
	}
	keys := host.EnvSettingKeys
	if es.BillingPeriod != "" {
		keys = append(slices.Clone(keys), "billing_period")
	}
	for _, k := range keys {
		v, err := es.Get(k)
		if err != nil {
			return nil, err
		}
		kv = append(kv, [2]string{k + " (" + env + ")", v})
	}
	kv = append(kv, [2]string{"file (" + env + ")", paths.EnvSettingsFile(env)})
	return &kv, nil
}

// changeEnvSetting sets one of an environment's own settings and tells its running server.
func changeEnvSetting(ctx context.Context, d deps, env, key, value string) (*string, error) {
	hd, err := d.host(hostFlags{env: env}, host.Flags{}, false)
	if err != nil {
		return nil, err
	}
	es, err := host.LoadEnvSettings(hd.Paths, env)
	if err != nil {
		return nil, err
	}
	if err := es.Set(key, value); err != nil {
		return nil, err
	}
	if err := host.SaveEnvSettings(hd.Paths, env, es); err != nil {
		return nil, err
	}
	shown, _ := es.Get(key)
	if value == "" {
		shown += " (the default)"
	}
	applied, err := host.ApplyIdleSettings(ctx, hd, env)
	if err != nil {
		return nil, fmt.Errorf("%s = %s is saved, but the running server did not take it: %w", key, shown, err)
	}
	line := fmt.Sprintf("%s = %s for environment %q (in %s); %s", key, shown, env, hd.Paths.EnvSettingsFile(env), applied)
	return &line, nil
}
