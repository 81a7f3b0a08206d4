package host

import (
	"fmt"
	"io/fs"
	"runtime"
	"strings"
)

// What differs between the machines the CLI runs on (Linux, macOS, Windows), in one place:
//   - ssh's shared connection is a Unix socket whose path must fit sun_path (104 bytes on
//     macOS, 108 on Linux); Windows' OpenSSH has no ControlMaster at all;
//   - ssh_config on Windows reads a backslash as an escape before a quote, a backslash or a
//     space, so paths are written with forward slashes, which Windows' OpenSSH accepts;
//   - a file's mode bits mean nothing on Windows (Go reports 0666 for every writable file;
//     NTFS ACLs decide, and OpenSSH checks them itself).
// Paths.OS names another operating system in tests; the code takes runtime.GOOS otherwise.

// maxSocketPath is the longest Unix socket path we write (the smallest sun_path, macOS's
// 104 bytes, less a margin).
const maxSocketPath = 100

// socketFallbackDir holds the sockets when Root is too long for them.
const socketFallbackDir = "/tmp"

func (p Paths) goos() string {
	if p.OS != "" {
		return p.OS
	}
	return runtime.GOOS
}

// sharesConnections says whether ssh can share one connection among commands
// (ControlMaster): not on Windows.
func (p Paths) sharesConnections() bool { return p.goos() != "windows" }

// sshPath writes a path as ssh_config wants it: forward slashes on Windows, quoted when it
// holds a space.
func (p Paths) sshPath(path string) string {
	if p.goos() == "windows" {
		path = strings.ReplaceAll(path, `\`, "/")
	}
	return quoteSSH(path)
}

// checkKeyMode refuses a private key that others may read, where modes mean something.
func checkKeyMode(goos, path string, mode fs.FileMode) error {
	if goos == "windows" || mode.Perm()&0o077 == 0 {
		return nil
	}
	return fmt.Errorf("SSH key %s is readable by others (mode %04o): chmod 600 %s", path, mode.Perm(), path)
}
