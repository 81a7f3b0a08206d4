// Package volumefs grows and checks the filesystem of a volume on the server that has it: the
// second half of `docker dockbridge volume resize` and all of `volume fsck`. Its procedures run
// where the device is, as root: in this process when the engine is on this machine, or on a
// dockbridge host through the server binary's `disk` command over SSH (Main). So the volume
// plugin needs no CAP_SYS_RESOURCE; it only grows a filesystem at its next mount.
//
// The types here are the JSON contract between the CLI and the server binary, and build on
// every OS; the procedures (Local) are Linux only.
package volumefs

import (
	"context"
	"errors"
)

// DataMountpoint is where a dockbridge host mounts its data volume (Docker's data root).
const DataMountpoint = "/var/lib/docker"

// Server runs the procedures on the server that has the device.
type Server interface {
	// Grow grows the filesystem mounted from req.Device to fill the device. A device that is
	// not mounted is left alone (Mounted false): it grows at its next mount.
	Grow(ctx context.Context, req GrowRequest) (*GrowResult, error)
	// Fsck unmounts the device where it is mounted, checks (and repairs) its filesystem and
	// mounts it again; with Data, Docker is stopped first and started again afterwards.
	Fsck(ctx context.Context, req FsckRequest) (*FsckResult, error)
	// Where names the server for people: "this machine", "server dockbridge-default (SSH)".
	Where() string
}

// ErrUnsupported: this machine cannot run the procedures (not Linux).
var ErrUnsupported = errors.New("growing and checking filesystems runs only on Linux")

// GrowRequest asks to grow the filesystem of one device.
type GrowRequest struct {
	Device string `json:"device"` // e.g. /dev/disk/by-id/scsi-0HC_Volume_42
	// Mountpoint is where the filesystem is mounted on the server, if known; any mount of the
	// device serves when it is not one of them ("" included).
	Mountpoint string `json:"mountpoint,omitempty"`
	FSType     string `json:"fs_type,omitempty"` // "" probes it
}

// GrowResult says what Grow found and did.
type GrowResult struct {
	Device      string `json:"device"`
	Mountpoint  string `json:"mountpoint,omitempty"`
	FSType      string `json:"fs_type,omitempty"`
	DeviceBytes int64  `json:"device_bytes"`
	// Mounted: the filesystem was mounted, so it was grown online. Not mounted: it grows at its
	// next mount (the volume plugin, or a dockbridge host's boot).
	Mounted bool `json:"mounted"`
	Grown   bool `json:"grown"`
	// Filesystem sizes (statfs) before and after, while mounted.
	FilesystemBytesBefore uint64 `json:"filesystem_bytes_before,omitempty"`
	FilesystemBytesAfter  uint64 `json:"filesystem_bytes_after,omitempty"`
	// Deferred says why the filesystem did not grow now although mounted (e.g. online ext4
	// growth needs CAP_SYS_RESOURCE): it grows at its next mount.
	Deferred string `json:"deferred,omitempty"`
}

// FsckRequest asks to check (and repair) the filesystem of one device.
type FsckRequest struct {
	Device string `json:"device"`
	FSType string `json:"fs_type,omitempty"`
	Repair bool   `json:"repair"`
	// Data: the device is a dockbridge host's data volume, mounted at DataMountpoint; Docker
	// is stopped first and started again afterwards.
	Data bool `json:"data,omitempty"`
}

// FsckResult is the report of Fsck.
type FsckResult struct {
	Device string `json:"device"`
	FSType string `json:"fs_type"`
	// Clean: the check found nothing wrong.
	Clean bool `json:"clean"`
	// Findings are the problems the check reported, one per line, in the tool's words.
	Findings []string `json:"findings"`
	Repair   bool     `json:"repair"`
	// Repaired: a repair ran and the check after it found nothing wrong.
	Repaired bool      `json:"repaired"`
	Runs     []ToolRun `json:"runs"`
	// Unmounted lists where the filesystem was mounted before the check; Remounted says it was
	// mounted there again.
	Unmounted []string `json:"unmounted"`
	Remounted bool     `json:"remounted"`
	// Grown: the device was larger than its filesystem (a resize not yet grown into), and the
	// filesystem was grown while it was unmounted (ext4) or right after mounting it again (xfs).
	Grown bool `json:"grown,omitempty"`
	// DockerStopped and DockerStarted: for the data volume.
	DockerStopped bool `json:"docker_stopped,omitempty"`
	DockerStarted bool `json:"docker_started,omitempty"`
}

// ProblemsLeft reports whether the filesystem still has the problems the check found.
func (r FsckResult) ProblemsLeft() bool { return !r.Clean && !r.Repaired }

// ToolRun is one run of a check or repair tool.
type ToolRun struct {
	Command  string `json:"command"`
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output"`
}

// reply is what the server binary prints: one JSON object on stdout.
type reply struct {
	Grow  *GrowResult `json:"grow,omitempty"`
	Fsck  *FsckResult `json:"fsck,omitempty"`
	Error string      `json:"error,omitempty"`
}
