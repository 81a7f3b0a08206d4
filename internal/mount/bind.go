package mount

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dockbridge/dockbridge/internal/mount/internal/cmdrun"
	"github.com/dockbridge/dockbridge/internal/mount/internal/mountinfo"
)

// Bind shows directory src at target too (mount --bind), creating target (0755) if needed. It is
// a no-op when something is mounted at target already (IsMountPoint); src must exist.
func (l *Linux) Bind(ctx context.Context, src, target string) error {
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return fmt.Errorf("bind %s at %s: %s is not a directory (%v)", src, target, src, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("bind %s: create %s: %w", src, target, err)
	}
	if mounted, err := l.IsMountPoint(target); err != nil || mounted {
		return err
	}
	if _, err := cmdrun.Run(ctx, "mount", "--bind", src, target); err != nil {
		return fmt.Errorf("bind %s at %s: %w", src, target, err)
	}
	return nil
}

// IsMountPoint reports whether something is mounted at target (from /proc/self/mountinfo).
func (l *Linux) IsMountPoint(target string) (bool, error) {
	resolved, err := filepath.EvalSymlinks(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", target, err)
	}
	entries, err := mountinfo.Read()
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	for _, e := range entries {
		if e.MountPoint == resolved {
			return true, nil
		}
	}
	return false, nil
}

// Unbind removes what Bind mounted at target (nothing mounted there is not an error).
func (l *Linux) Unbind(ctx context.Context, target string) error {
	mounted, err := l.IsMountPoint(target)
	if err != nil || !mounted {
		return err
	}
	if _, err := cmdrun.Run(ctx, "umount", target); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}
