package hcloudsim

import (
	"context"
	"net/http"
)

// Backend is what makes simulated resources real (or not). Handlers never talk to a
// backend directly: the action engine calls it while an action runs, without holding
// the simulator's lock, and the action fails (status "error") when the backend fails.
//
// Three implementations are planned: "none" (everything virtual), "local" (this machine
// is one server; its volumes are loop devices) and "container" (each server is a
// systemd container on the local Docker engine).
type Backend interface {
	// Name is the backend's flag value.
	Name() string
	// CreateServer brings a server into existence. It returns the public IPv4 to
	// report, or "" to let the simulator allocate one.
	CreateServer(ctx context.Context, s ServerSpec) (publicIPv4 string, err error)
	StartServer(ctx context.Context, serverID int64) error
	StopServer(ctx context.Context, serverID int64) error
	DeleteServer(ctx context.Context, serverID int64) error

	// CreateVolume creates the volume's storage; format is "", "ext4" or "xfs".
	CreateVolume(ctx context.Context, v VolumeSpec) error
	// ResizeVolume grows the volume to sizeGB.
	ResizeVolume(ctx context.Context, volumeID int64, sizeGB int) error
	DeleteVolume(ctx context.Context, volumeID int64) error
	AttachVolume(ctx context.Context, volumeID, serverID int64, automount bool) error
	DetachVolume(ctx context.Context, volumeID, serverID int64) error

	// Restore is called once at start with the persisted state, so the backend can bring
	// back what must exist (e.g. the loop devices of attached volumes).
	Restore(ctx context.Context, s RestoreState) error

	// ServerForRequest maps a metadata request to the server it stands for.
	ServerForRequest(r *http.Request) (serverID int64, ok bool)

	// Close releases what the backend holds open (not the resources themselves).
	Close() error
}

// GuestBackend is implemented by backends whose servers run an operating system of their own
// (the container backend). Without it, a shutdown is StopServer and the server is off when the
// action ends, and a delete is unclean when the server was not off and had a volume attached.
type GuestBackend interface {
	// ShutdownServer asks the server's OS to shut down, as Hetzner's ACPI request does, and
	// returns once it is asked: the OS stops its services in order and powers off when it is
	// done, or never if it ignores the request.
	ShutdownServer(ctx context.Context, serverID int64) error
	// WaitServerOff returns nil when the server is off (it powered itself off), or ctx's error.
	WaitServerOff(ctx context.Context, serverID int64) error
	// MountedVolumes describes the volume filesystems the server has mounted right now, read
	// from its own mount table (empty when it is off or mounted none). A delete that comes
	// while this is not empty is a power cut under a mounted filesystem.
	MountedVolumes(ctx context.Context, serverID int64) ([]string, error)
	// MountedVolume is MountedVolumes for one volume: where the server has its filesystem
	// mounted, "" when nowhere. A detach that comes while this is not empty is a hot-unplug
	// under a live filesystem.
	MountedVolume(ctx context.Context, serverID, volumeID int64) (string, error)
}

// PowerCutter is implemented by backends whose servers run an OS that a stop would shut down
// (the container backend): the poweroff action cuts the power instead, as on Hetzner.
type PowerCutter interface {
	// PowerCut stops the server at once, without a shutdown, and returns when it is off and
	// its volumes' devices are free.
	PowerCut(ctx context.Context, serverID int64) error
}

// ServerSpec describes a server to create.
type ServerSpec struct {
	ID         int64
	Name       string
	Image      string // image name, e.g. "debian-12" or "docker-ce"
	ServerType string
	// Architecture is the server type's: "x86" or "arm" (the container backend boots an arm
	// server on its arm64 image, under emulation).
	Architecture string
	Location     string
	UserData     string
	Volumes      []int64
	SSHKeys      []string // public keys
}

// VolumeSpec describes a volume to create.
type VolumeSpec struct {
	ID     int64
	Name   string
	SizeGB int
	Format string
}

// RestoreState is the persisted view a backend gets at start.
type RestoreState struct {
	LocalServerID int64
	Servers       []RestoreServer
	Volumes       []RestoreVolume
}

type RestoreServer struct {
	ID      int64
	Name    string
	Status  string
	Volumes []int64
	// PrivateNets are the server's networks (for a NetworkBackend).
	PrivateNets []PrivateNet
}

type RestoreVolume struct {
	ID     int64
	SizeGB int
	Server int64 // 0 if detached
}

// noneBackend keeps everything virtual.
type noneBackend struct{}

var _ Backend = (*noneBackend)(nil)

func (noneBackend) Name() string { return "none" }
func (noneBackend) CreateServer(context.Context, ServerSpec) (string, error) {
	return "", nil
}
func (noneBackend) StartServer(context.Context, int64) error               { return nil }
func (noneBackend) StopServer(context.Context, int64) error                { return nil }
func (noneBackend) DeleteServer(context.Context, int64) error              { return nil }
func (noneBackend) CreateVolume(context.Context, VolumeSpec) error         { return nil }
func (noneBackend) ResizeVolume(context.Context, int64, int) error         { return nil }
func (noneBackend) DeleteVolume(context.Context, int64) error              { return nil }
func (noneBackend) AttachVolume(context.Context, int64, int64, bool) error { return nil }
func (noneBackend) DetachVolume(context.Context, int64, int64) error       { return nil }
func (noneBackend) Restore(context.Context, RestoreState) error            { return nil }
func (noneBackend) Close() error                                           { return nil }
func (noneBackend) ServerForRequest(*http.Request) (int64, bool)           { return 0, false }
