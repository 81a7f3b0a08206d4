package localagent

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"time"
)

// desktopNotify shows msg as a desktop notification where there is a desktop (macOS'
// Notification Center, a Linux session's notify-send); DOCKBRIDGE_NO_NOTIFY=1 turns it off.
func desktopNotify(msg string) {
	if os.Getenv("DOCKBRIDGE_NO_NOTIFY") == "1" {
		return
	}
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("osascript", "-e", "display notification "+strconv.Quote(msg)+` with title "docker dockbridge"`)
	case "linux":
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return
		}
		if _, err := exec.LookPath("notify-send"); err != nil {
			return
		}
		cmd = exec.Command("notify-send", "docker dockbridge", msg)
	default:
		return
	}
	go func() {
		if cmd.Start() != nil {
			return
		}
		t := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
		_ = cmd.Wait()
		t.Stop()
	}()
}
