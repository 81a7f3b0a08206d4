package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

func settingsCmd(d deps) *cobra.Command {
	show := func(ctx context.Context, _ *cobra.Command, _ []string) (*[][2]string, error) { return settingsShown() }
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
Keys: ` + strings.Join(host.SettingKeys, ", "),
		Args:  unknownCommand,
		Run:   show,
		Print: printKV,
	}.build(d.out)
	cmd.AddCommand(
		spec[*[][2]string]{
			Use:   "show",
			Short: "Show the settings (never the token)",
			Run:   show,
			Print: printKV,
		}.build(d.out),
		spec[*string]{
			Use:   "set KEY [VALUE]",
			Short: "Set a setting; `set token` reads the token from stdin so it stays out of your shell history",
			Example: `  docker dockbridge settings set token < token.txt
  docker dockbridge settings set location nbg1`,
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
				return changeSetting(key, value)
			},
			Print: printChanged,
		}.build(d.out),
		spec[*string]{
			Use:      "unset KEY",
			Short:    "Remove a setting (its default applies again)",
			Args:     cli.ExactArgs(1),
			Complete: completeSettingKeys,
			Run: func(_ context.Context, _ *cobra.Command, args []string) (*string, error) {
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

// settingsShown is every setting (the token only as "(set)") and the file's path.
func settingsShown() (*[][2]string, error) {
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
	return &kv, nil
}
