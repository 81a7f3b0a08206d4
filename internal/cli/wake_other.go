//go:build !unix

package cli

import (
	"context"
	"os"
	"os/exec"
)

// On Windows the wake's commands do not share a connection and the wake runs in the caller:
// no lock between concurrent wakes (up itself never makes two servers of one environment).
func tryLock(*os.File) bool                    { return true }
func waitLock(context.Context, *os.File) error { return nil }
func detach(*exec.Cmd)                         {}
func sshCaller() int                           { return 0 }
