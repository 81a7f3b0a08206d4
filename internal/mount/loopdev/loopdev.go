// Package loopdev keeps volume disks as sparse image files and exposes them as loop devices at
// the path where Hetzner Cloud puts a volume's block device on a server,
// /dev/disk/by-id/scsi-0HC_Volume_<id>. The Hetzner Cloud simulator's "local" backend uses it to
// make the machine it runs on one of its servers.
//
// A Store keeps no state of its own beyond the files: which loop device backs an image is asked
// of the kernel (losetup -j), so a restarted process finds the devices it attached before, and a
// stale or dangling by-id symlink is repaired on the next Attach.
package loopdev

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockbridge/dockbridge/internal/mount/internal/cmdrun"
)

// DefaultByIDDir is where Hetzner's volume device links live on a server.
const DefaultByIDDir = "/dev/disk/by-id"

// ErrBusy is returned by Detach and Delete when the loop device is still open (for example
// mounted): the kernel detaches it once the last user closes it, the symlink is kept until then.
var ErrBusy = errors.New("loop device busy")

// DevicePath returns byIDDir + "/scsi-0HC_Volume_<id>", the path Hetzner gives volume id on a server.
func DevicePath(byIDDir string, volumeID int64) string {
	return filepath.Join(byIDDir, "scsi-0HC_Volume_"+strconv.FormatInt(volumeID, 10))
}

// Store keeps images under Dir as volume-<id>.img and their device symlinks under ByIDDir.
type Store struct {
	Dir     string
	ByIDDir string

	sem chan struct{} // serialises operations of this process; a file lock serialises processes
}

// New returns a Store for images in dir (created with mode 0700 if missing) and device links in
// byIDDir ("" means DefaultByIDDir).
func New(dir, byIDDir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("loopdev: image directory is empty: pass the directory that holds the volume images")
	}
	if byIDDir == "" {
		byIDDir = DefaultByIDDir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("loopdev: image directory %s: %w", dir, err)
	}
	absByID, err := filepath.Abs(byIDDir)
	if err != nil {
		return nil, fmt.Errorf("loopdev: by-id directory %s: %w", byIDDir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("loopdev: create image directory: %w", err)
	}
	return &Store{Dir: abs, ByIDDir: absByID, sem: make(chan struct{}, 1)}, nil
}

// ImagePath is the sparse image file of volume id.
func (s *Store) ImagePath(id int64) string {
	return filepath.Join(s.Dir, "volume-"+strconv.FormatInt(id, 10)+".img")
}

// LinkPath is DevicePath(s.ByIDDir, id).
func (s *Store) LinkPath(id int64) string { return DevicePath(s.ByIDDir, id) }

// Create makes a sparse image of sizeBytes for volume id. It fails if the image exists.
func (s *Store) Create(ctx context.Context, id int64, sizeBytes int64) error {
	if err := checkID(id); err != nil {
		return err
	}
	if sizeBytes <= 0 {
		return fmt.Errorf("create volume %d image: size %d bytes: must be positive", id, sizeBytes)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	path := s.ImagePath(id)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create volume %d image: %w", id, err)
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("create volume %d image: set size %d: %w", id, sizeBytes, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("create volume %d image: %w", id, err)
	}
	return nil
}

// Resize grows the image of volume id to sizeBytes (shrinking is refused) and, if the image is
// attached, makes the kernel see the new size of its loop device (losetup -c).
func (s *Store) Resize(ctx context.Context, id int64, sizeBytes int64) error {
	if err := checkID(id); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	path := s.ImagePath(id)
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("resize volume %d: %w", id, err)
	}
	if sizeBytes < fi.Size() {
		return fmt.Errorf("resize volume %d: new size %d bytes is smaller than the current %d bytes: volumes can only grow", id, sizeBytes, fi.Size())
	}
	if sizeBytes > fi.Size() {
		if err := os.Truncate(path, sizeBytes); err != nil {
			return fmt.Errorf("resize volume %d: %w", id, err)
		}
	}
	devs, err := s.loopDevices(ctx, path)
	if err != nil {
		return fmt.Errorf("resize volume %d: %w", id, err)
	}
	for _, dev := range devs {
		if _, err := cmdrun.Run(ctx, "losetup", "--set-capacity", dev); err != nil {
			return fmt.Errorf("resize volume %d: refresh size of %s: %w", id, dev, err)
		}
	}
	return nil
}

// Attach binds the image of volume id to a loop device and points DevicePath(ByIDDir, id) at
// it. It is idempotent: an image already on a loop device (even one attached by an earlier
// process) keeps that device, and a missing or wrong symlink is repaired.
func (s *Store) Attach(ctx context.Context, id int64) (link string, loopDev string, err error) {
	if err := checkID(id); err != nil {
		return "", "", err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return "", "", err
	}
	defer unlock()
	path := s.ImagePath(id)
	if _, err := os.Stat(path); err != nil {
		return "", "", fmt.Errorf("attach volume %d: %w", id, err)
	}
	devs, err := s.loopDevices(ctx, path)
	if err != nil {
		return "", "", fmt.Errorf("attach volume %d: %w", id, err)
	}
	if len(devs) > 0 {
		loopDev = devs[0]
	} else {
		out, err := cmdrun.Run(ctx, "losetup", "--find", "--show", path)
		if err != nil {
			return "", "", fmt.Errorf("attach volume %d: %w", id, err)
		}
		loopDev = strings.TrimSpace(string(out))
		if !strings.HasPrefix(loopDev, "/dev/loop") {
			return "", "", fmt.Errorf("attach volume %d: losetup printed %q, expected a /dev/loopN path", id, loopDev)
		}
	}
	link = s.LinkPath(id)
	if err := ensureSymlink(link, loopDev); err != nil {
		return "", "", fmt.Errorf("attach volume %d: %w", id, err)
	}
	return link, loopDev, nil
}

// Detach removes the device symlink of volume id and its loop device. It is idempotent. If the
// loop device is still open (mounted), it returns ErrBusy; the kernel then frees the device
// when it is closed.
func (s *Store) Detach(ctx context.Context, id int64) error {
	if err := checkID(id); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return s.detach(ctx, id)
}

func (s *Store) detach(ctx context.Context, id int64) error {
	path := s.ImagePath(id)
	devs, err := s.loopDevices(ctx, path)
	if err != nil {
		return fmt.Errorf("detach volume %d: %w", id, err)
	}
	for _, dev := range devs {
		if _, err := cmdrun.Run(ctx, "losetup", "--detach", dev); err != nil {
			return fmt.Errorf("detach volume %d: %w", id, err)
		}
	}
	// losetup -d on an open device only sets autoclear and succeeds: check it is really gone.
	left, err := s.loopDevices(ctx, path)
	if err != nil {
		return fmt.Errorf("detach volume %d: %w", id, err)
	}
	if len(left) > 0 {
		return fmt.Errorf("detach volume %d: %w: %s is still open (mounted?); it will be freed when closed: unmount it first",
			id, ErrBusy, strings.Join(left, ", "))
	}
	if err := removeSymlink(s.LinkPath(id)); err != nil {
		return fmt.Errorf("detach volume %d: %w", id, err)
	}
	return nil
}

// Delete detaches volume id if needed and removes its image. A missing image is not an error.
func (s *Store) Delete(ctx context.Context, id int64) error {
	if err := checkID(id); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.detach(ctx, id); err != nil {
		return fmt.Errorf("delete volume %d: %w", id, err)
	}
	if err := os.Remove(s.ImagePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete volume %d: %w", id, err)
	}
	return nil
}

// LoopDevice returns the loop device backing the image of volume id, asked of the kernel with
// losetup -j, so the answer survives a restart of this process.
func (s *Store) LoopDevice(ctx context.Context, id int64) (string, bool, error) {
	if err := checkID(id); err != nil {
		return "", false, err
	}
	devs, err := s.loopDevices(ctx, s.ImagePath(id))
	if err != nil {
		return "", false, fmt.Errorf("loop device of volume %d: %w", id, err)
	}
	if len(devs) == 0 {
		return "", false, nil
	}
	return devs[0], true, nil
}

// loopDevices lists the loop devices backed by path, sorted by number.
func (s *Store) loopDevices(ctx context.Context, path string) ([]string, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		// losetup -j matches by path and inode; with no file there is nothing to match.
		return nil, nil
	}
	out, err := cmdrun.Run(ctx, "losetup", "--list", "--noheadings", "--output", "NAME", "--associated", path)
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			devs = append(devs, line)
		}
	}
	sort.Slice(devs, func(i, j int) bool { return loopNumber(devs[i]) < loopNumber(devs[j]) })
	return devs, nil
}

func loopNumber(dev string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(dev, "/dev/loop"))
	if err != nil {
		return 1 << 30
	}
	return n
}

// ensureSymlink makes link point at target, replacing a dangling or wrong link atomically. It
// refuses to replace anything that is not a symlink.
func ensureSymlink(link, target string) error {
	fi, err := os.Lstat(link)
	switch {
	case err == nil && fi.Mode()&os.ModeSymlink == 0:
		return fmt.Errorf("%s exists and is not a symlink (%s): refusing to replace it; remove it if it is stale", link, kind(fi))
	case err == nil:
		if cur, err := os.Readlink(link); err == nil && cur == target {
			if resolved, err := filepath.EvalSymlinks(link); err == nil && resolved == target {
				return nil
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("inspect %s: %w", link, err)
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(link), err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", link, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("create symlink %s -> %s: %w", link, target, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("create symlink %s -> %s: %w", link, target, err)
	}
	return nil
}

func removeSymlink(link string) error {
	fi, err := os.Lstat(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", link, err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s is not a symlink (%s): refusing to remove it", link, kind(fi))
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", link, err)
	}
	return nil
}

// lock serialises Store operations within this process and, through an flock on Dir/.lock,
// with other processes using the same directory (so two never attach one image twice).
func (s *Store) lock(ctx context.Context) (func(), error) {
	if s.sem == nil {
		return nil, errors.New("loopdev: Store not made by loopdev.New")
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("loopdev: wait for lock: %w", ctx.Err())
	}
	release := func() { <-s.sem }
	f, err := os.OpenFile(filepath.Join(s.Dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("loopdev: open lock file: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			release()
			return nil, fmt.Errorf("loopdev: lock %s: %w", f.Name(), err)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			f.Close()
			release()
			return nil, fmt.Errorf("loopdev: wait for lock %s held by another process: %w", f.Name(), ctx.Err())
		}
	}
	return func() {
		f.Close() // releases the flock
		release()
	}, nil
}

func kind(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&os.ModeDevice != 0:
		return "a device node"
	default:
		return m.Type().String()
	}
}

func checkID(id int64) error {
	if id <= 0 {
		return fmt.Errorf("volume id %d: must be a positive number", id)
	}
	return nil
}
