package sshmux

import (
	"errors"
	"net"
	"os"
)

// sendFD: Windows' OpenSSH has no connection sharing (ControlMaster), so there is no master to
// pass descriptors to.
func sendFD(*net.UnixConn, *os.File) error {
	return errors.New("OpenSSH on Windows has no shared connections (ControlMaster)")
}
