// Package dockbridge holds the hetzner managed plugin's config.json (the config of `docker
// plugin create`), embedded so that `docker dockbridge up` creates the plugin on a server from
// its own copy, and plugin/build.sh and the tests read the same file; and how the plugin is
// enabled.
package dockbridge

import (
	_ "embed"
	"strconv"
)

// PluginConfig is config.json.
//
//go:embed config.json
var PluginConfig []byte

// PluginEnableTimeout is the `docker plugin enable --timeout` (seconds) every enable of the
// hetzner plugin gives. Docker bounds each request to the plugin by this HTTP client timeout
// (30 s when the flag is left out) on top of its own per-request bounds (2 minutes for a volume
// Create or Mount, 1 minute for the others); with 30 s, a Create or Mount the plugin needs 45 s
// for (a slow attach, a 429 back-off, a `locked` retry) fails in Docker while the plugin
// completes it. 120 leaves Docker's own bounds, which the plugin answers within, as the ones
// that count, the same as after a dockerd restart (Docker does not keep the timeout; it
// restarts plugins with none).
const PluginEnableTimeout = 120

// PluginEnableArgs are the arguments of `docker plugin enable` for the plugin name.
func PluginEnableArgs(name string) []string {
	return []string{"plugin", "enable", "--timeout", strconv.Itoa(PluginEnableTimeout), name}
}
