package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

func newSettingsCommand(dockerCli command.Cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "settings",
		Short: "Show or change the settings in ~/.docker/dockbridge/settings.json",
		Long: `Settings are kept in $DOCKER_CONFIG/dockbridge/settings.json (mode 0600).
HCLOUD_TOKEN and HCLOUD_ENDPOINT override them; command-line flags override both.
Keys: ` + strings.Join(host.SettingKeys, ", "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return showSettings(dockerCli) },
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "show",
			Short: "Show the settings (never the token)",
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return showSettings(dockerCli) },
		},
		&cobra.Command{
			Use:   "set KEY [VALUE]",
			Short: "Set a setting; `set token` reads the token from stdin so it stays out of your shell history",
			Example: `  docker dockbridge settings set token < token.txt
  docker dockbridge settings set location nbg1`,
			Args: cobra.RangeArgs(1, 2),
			RunE: func(cmd *cobra.Command, args []string) error {
				key := args[0]
				var value string
				switch {
				case key == "token" && len(args) == 2:
					return errors.New("the token is not taken on the command line (it would land in your shell history): run `docker dockbridge settings set token` and paste it, or pipe it in")
				case key == "token":
					if dockerCli.In().IsTerminal() {
						fmt.Fprint(dockerCli.Err(), "Hetzner Cloud API token (input hidden is not supported; it is not echoed anywhere else): ")
					}
					line, err := bufio.NewReader(io.LimitReader(dockerCli.In(), 4096)).ReadString('\n')
					if err != nil && !errors.Is(err, io.EOF) {
						return fmt.Errorf("read the token from stdin: %w", err)
					}
					value = strings.TrimSpace(line)
					if value == "" {
						return errors.New("no token on stdin: pipe it in, e.g. `docker dockbridge settings set token < token.txt`")
					}
				case len(args) == 2:
					value = args[1]
				default:
					return fmt.Errorf("settings set %s needs a value (use `settings unset %s` to remove it)", key, key)
				}
				return changeSetting(dockerCli, key, value)
			},
		},
		&cobra.Command{
			Use:   "unset KEY",
			Short: "Remove a setting (its default applies again)",
			Args:  cobra.ExactArgs(1),
			RunE:  func(cmd *cobra.Command, args []string) error { return changeSetting(dockerCli, args[0], "") },
		},
	)
	return cmd
}

func changeSetting(dockerCli command.Cli, key, value string) error {
	paths, err := hostPaths()
	if err != nil {
		return err
	}
	s, err := host.LoadSettings(paths)
	if err != nil {
		return err
	}
	if err := s.Set(key, value); err != nil {
		return err
	}
	if err := host.SaveSettings(paths, s); err != nil {
		return err
	}
	shown, _ := s.Get(key)
	if shown == "" {
		shown = "(unset)"
	}
	fmt.Fprintf(dockerCli.Out(), "%s = %s (in %s)\n", key, shown, paths.SettingsFile())
	return nil
}

func showSettings(dockerCli command.Cli) error {
	paths, err := hostPaths()
	if err != nil {
		return err
	}
	s, err := host.LoadSettings(paths)
	if err != nil {
		return err
	}
	var kv [][2]string
	for _, k := range host.SettingKeys {
		v, _ := s.Get(k)
		kv = append(kv, [2]string{k, v})
	}
	kv = append(kv, [2]string{"file", paths.SettingsFile()})
	return ui.KeyValues(dockerCli.Out(), kv)
}
