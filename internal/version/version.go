// Package version holds the build's version, set by the Makefile with -ldflags.
package version

// Version is overridden at build time: -X github.com/dockbridge/dockbridge/internal/version.Version=...
var Version = "dev"
