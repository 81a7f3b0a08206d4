// Package dockbridge holds the hetzner managed plugin's config.json (the config of `docker
// plugin create`), embedded so that `docker dockbridge up` creates the plugin on a server from
// its own copy, and plugin/build.sh and the tests read the same file.
package dockbridge

import _ "embed"

// PluginConfig is config.json.
//
//go:embed config.json
var PluginConfig []byte
