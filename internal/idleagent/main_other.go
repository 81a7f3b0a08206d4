//go:build !linux

package idleagent

import (
	"fmt"
	"io"
)

// Main is `dockbridge-server idle run|status`, which runs on the Linux servers only.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dockbridge-server idle runs on Linux servers only")
	return 2
}

// MarkLink records the laptop agent's connection on a Linux server only.
func MarkLink(string) (string, error) { return "", fmt.Errorf("no SSH connections to mark here") }
