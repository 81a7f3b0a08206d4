package hcloudsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/dockbridge/dockbridge/internal/mount"
	"github.com/dockbridge/dockbridge/internal/mount/loopdev"
)

// loopVolumes is the volume storage of the backends that make volumes real (local,
// container): a sparse image per volume (volume-<id>.img) that is put on a loop device
// when the volume is attached, with a link at <by-id-dir>/scsi-0HC_Volume_<id>.
type loopVolumes struct {
	store *loopdev.Store
	fs    *mount.Linux
	log   *slog.Logger
}

func newLoopVolumes(imageDir, byIDDir string, log *slog.Logger) (*loopVolumes, error) {
	if imageDir == "" {
		return nil, fmt.Errorf("the volume image directory is required")
	}
	if byIDDir == "" {
		byIDDir = loopdev.DefaultByIDDir
	}
	if err := os.MkdirAll(byIDDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", byIDDir, err)
	}
	st, err := loopdev.New(imageDir, byIDDir)
	if err != nil {
		return nil, err
	}
	return &loopVolumes{store: st, fs: mount.New(), log: log}, nil
}

func gib(sizeGB int) int64 { return int64(sizeGB) << 30 }

// create makes the volume's image and, with a format, a real filesystem on it (mount.Format
// refuses a device that carries any signature).
func (lv *loopVolumes) create(ctx context.Context, v VolumeSpec) error {
	if err := lv.store.Create(ctx, v.ID, gib(v.SizeGB)); err != nil {
		return err
	}
	if v.Format != "" {
		if _, err := lv.fs.Format(ctx, lv.store.ImagePath(v.ID), v.Format, mount.FormatOptions{}); err != nil {
			return fmt.Errorf("format volume %d as %s: %w", v.ID, v.Format, err)
		}
	}
	return nil
}

func (lv *loopVolumes) resize(ctx context.Context, id int64, sizeGB int) error {
	return lv.store.Resize(ctx, id, gib(sizeGB))
}

func (lv *loopVolumes) delete(ctx context.Context, id int64) error {
	return lv.store.Delete(ctx, id)
}

// attach puts the volume's image on a loop device (idempotent) and returns the device.
func (lv *loopVolumes) attach(ctx context.Context, id int64) (loopDev string, err error) {
	_, dev, err := lv.store.Attach(ctx, id)
	return dev, err
}

// ensureImages creates a blank image for every volume whose image is missing (it was
// deleted behind the simulator's back), so the state stays usable.
func (lv *loopVolumes) ensureImages(ctx context.Context, vols []RestoreVolume) error {
	var errs []error
	for _, v := range vols {
		if _, err := os.Stat(lv.store.ImagePath(v.ID)); errors.Is(err, os.ErrNotExist) {
			lv.log.Warn("volume image missing; creating a blank one", "volume", v.ID, "path", lv.store.ImagePath(v.ID))
			if err := lv.store.Create(ctx, v.ID, gib(v.SizeGB)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
