// Package version holds the build's version, commit and date, set by the Makefile with -ldflags;
// a plain `go build` in a git checkout falls back to what Go records of the checkout.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time: -X github.com/dockbridge/dockbridge/internal/version.Version=... (and Commit,
// BuildDate). BuildDate is the commit's date (or $SOURCE_DATE_EPOCH), so that the same source
// always builds the same binary.
var (
	Version   = "dev"
	Commit    = ""
	BuildDate = ""
)

// Info is what `docker dockbridge version` shows.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	// ServerBinaries are the servers' binaries the CLI carries (linux/amd64, linux/arm64;
	// none in a plain go build), filled in by the command.
	ServerBinaries []string `json:"server_binaries"`
}

// Get returns the build's Info; what -ldflags did not set comes from Go's build information.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, BuildDate: BuildDate, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Commit == "" && len(s.Value) >= 12 {
					i.Commit = s.Value[:12]
				}
			case "vcs.time":
				if i.BuildDate == "" {
					i.BuildDate = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && Commit == "" && i.Commit != "" {
			i.Commit += "-dirty"
		}
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	if i.BuildDate == "" {
		i.BuildDate = "unknown"
	}
	return i
}

// String is the one line of --version.
func (i Info) String() string {
	return fmt.Sprintf("%s, commit %s, built %s", i.Version, i.Commit, i.BuildDate)
}
