//go:build unix && !linux

package helper

import "os"

// The helper runs in a Linux container; these only let the package (imported by the CLI
// plugin for its protocol) compile on macOS.

func setPipeSize(*os.File, int) {}

func syncfs(f *os.File) { _ = f.Sync() }
