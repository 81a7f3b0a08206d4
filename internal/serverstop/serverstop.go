// Package serverstop is the clean stop of a dockbridge server before it is deleted: one
// script, which `down`, `destroy` and `up` run over SSH and which the server runs before it
// deletes itself, and the reading of its report.
package serverstop

import (
	_ "embed"
	"strconv"
	"strings"
)

// Script is dockbridge-stop.sh: `stop` stops Docker (every container with its own stop signal
// and timeout, then the volume plugins, which record the release of their volumes) and syncs
// and unmounts every filesystem on a Hetzner volume; `start` undoes it.
//
//go:embed dockbridge-stop.sh
var Script string

// Verbs of the script.
const (
	Stop  = "stop"
	Start = "start"
)

// Command is the shell command line that runs the script with verb on the server without
// installing it. The script travels in the command line, not on stdin, so that nothing it runs
// can read the rest of it.
func Command(verb string) string {
	return "bash -c " + shellQuote(Script) + " dockbridge-stop " + verb
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Report is what the script printed (KEY=VALUE lines).
type Report struct {
	// ContainersRunning is how many containers ran before Docker stopped.
	ContainersRunning int
	// Docker is `systemctl is-active docker.service` afterwards: "inactive" (or "failed") once
	// stopped, "active" after a start.
	Docker string
	// DockerSeconds and VolumesSeconds are how long the two parts of a stop took.
	DockerSeconds, VolumesSeconds float64
	// Unmounted are the mount points of volume filesystems the stop unmounted, deepest first.
	Unmounted []string
	// StillMounted are volume filesystems left mounted (the stop is then not complete).
	StillMounted string
	// Errors are what went wrong on the way (Docker's stop, sync, an unmount, a mount).
	Errors []string
	// OK is result=ok: a stop left Docker stopped and nothing of a volume mounted; a start left
	// Docker running.
	OK bool
}

// Parse reads the script's output; lines it does not know are ignored.
func Parse(out []byte) Report {
	var r Report
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "containers_running":
			r.ContainersRunning, _ = strconv.Atoi(v)
		case "docker":
			r.Docker = v
		case "docker_seconds":
			r.DockerSeconds, _ = strconv.ParseFloat(v, 64)
		case "volumes_seconds":
			r.VolumesSeconds, _ = strconv.ParseFloat(v, 64)
		case "unmounted":
			r.Unmounted = strings.Fields(v)
		case "still_mounted":
			r.StillMounted = v
		case "docker_error", "sync_error", "unmount_error", "mount_error":
			r.Errors = append(r.Errors, strings.TrimSuffix(strings.TrimSpace(v), ";"))
		case "result":
			r.OK = v == "ok"
		}
	}
	return r
}
