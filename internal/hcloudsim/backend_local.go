package hcloudsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/dockbridge/dockbridge/internal/mount/loopdev"
)

// LocalBackendConfig configures the local backend.
type LocalBackendConfig struct {
	// ImageDir keeps the sparse volume images (volume-<id>.img).
	ImageDir string
	// ByIDDir is where the scsi-0HC_Volume_<id> links go (default /dev/disk/by-id).
	ByIDDir string
	Logger  *slog.Logger
}

// localBackend makes the machine the simulator runs on the --local-server: every volume
// has a sparse image file, and a volume attached to the local server is a loop device
// linked at <by-id-dir>/scsi-0HC_Volume_<id>. Other servers stay virtual.
type localBackend struct {
	vols *loopVolumes
	log  *slog.Logger

	mu      sync.Mutex
	localID int64
}

var _ Backend = (*localBackend)(nil)

// NewLocalBackend returns the local backend. It needs root and loop devices to attach.
func NewLocalBackend(cfg LocalBackendConfig) (Backend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	vols, err := newLoopVolumes(cfg.ImageDir, cfg.ByIDDir, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	return &localBackend{vols: vols, log: cfg.Logger}, nil
}

func (b *localBackend) Name() string { return "local" }

func (b *localBackend) isLocal(serverID int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return serverID != 0 && serverID == b.localID
}

func (b *localBackend) CreateServer(context.Context, ServerSpec) (string, error) { return "", nil }
func (b *localBackend) StartServer(context.Context, int64) error                 { return nil }
func (b *localBackend) StopServer(context.Context, int64) error                  { return nil }
func (b *localBackend) DeleteServer(ctx context.Context, id int64) error {
	if b.isLocal(id) {
		return fmt.Errorf("server %d is this machine and cannot be deleted", id)
	}
	return nil
}

func (b *localBackend) CreateVolume(ctx context.Context, v VolumeSpec) error {
	return b.vols.create(ctx, v)
}

func (b *localBackend) ResizeVolume(ctx context.Context, id int64, sizeGB int) error {
	return b.vols.resize(ctx, id, sizeGB)
}

func (b *localBackend) DeleteVolume(ctx context.Context, id int64) error {
	return b.vols.delete(ctx, id)
}

// AttachVolume gives the local server a real device; other servers are virtual.
// automount is not implemented for the local backend (see README).
func (b *localBackend) AttachVolume(ctx context.Context, volumeID, serverID int64, _ bool) error {
	if !b.isLocal(serverID) {
		return nil
	}
	_, err := b.vols.attach(ctx, volumeID)
	return err
}

func (b *localBackend) DetachVolume(ctx context.Context, volumeID, serverID int64) error {
	if !b.isLocal(serverID) {
		return nil
	}
	err := b.vols.store.Detach(ctx, volumeID)
	if errors.Is(err, loopdev.ErrBusy) {
		return fmt.Errorf("the device of volume %d is still in use on this machine (mounted?): unmount it first: %w", volumeID, err)
	}
	return err
}

// Restore re-attaches the loop devices of volumes attached to the local server (after a
// reboot or a simulator restart) and creates missing images of other volumes.
func (b *localBackend) Restore(ctx context.Context, s RestoreState) error {
	b.mu.Lock()
	b.localID = s.LocalServerID
	b.mu.Unlock()
	errs := []error{b.vols.ensureImages(ctx, s.Volumes)}
	for _, v := range s.Volumes {
		if v.Server != 0 && v.Server == s.LocalServerID {
			if _, err := b.vols.attach(ctx, v.ID); err != nil {
				errs = append(errs, fmt.Errorf("re-attach volume %d: %w", v.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (b *localBackend) ServerForRequest(*http.Request) (int64, bool) { return 0, false }
func (b *localBackend) Close() error                                 { return nil }
