// Package mount is the only place in dockbridge that runs disk tools: blkid and wipefs to see
// what a device holds, mkfs to format a blank one, mount/umount, resize2fs and xfs_growfs to
// grow a filesystem (online, or ext4 before it is mounted), e2fsck and xfs_repair to check and
// repair one, and statfs for usage.
//
// Its first rule is to never destroy data: Format refuses any device on which blkid or wipefs
// sees a signature of any kind, and never forces mkfs.
//
// Binaries are found with exec.LookPath (then /usr/sbin, /sbin), never through a shell, so the
// package works in a managed plugin's minimal rootfs.
package mount

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/dockbridge/dockbridge/internal/mount/internal/cmdrun"
	"github.com/dockbridge/dockbridge/internal/mount/internal/mountinfo"
)

// Sentinel errors; callers branch with errors.Is.
var (
	// ErrNotBlank: Format found a signature on the device and refused to touch it.
	ErrNotBlank = errors.New("device is not blank")
	// ErrForeignSignature: the device does not hold the filesystem it was expected to hold.
	ErrForeignSignature = errors.New("device holds something else than expected")
	// ErrUnsupportedFilesystem: a filesystem type this package does not format, mount or grow.
	ErrUnsupportedFilesystem = errors.New("unsupported filesystem type")
	// ErrInvalidMountOption: a mount option outside the allowlist.
	ErrInvalidMountOption = errors.New("invalid mount option")
	// ErrInvalidLabel: a filesystem label that is too long or has unsafe characters.
	ErrInvalidLabel = errors.New("invalid filesystem label")
	// ErrTargetBusy: something other than the requested device is mounted on the target.
	ErrTargetBusy = errors.New("mount point already in use")
	// ErrNotMounted: Grow needs the filesystem mounted on the given target.
	ErrNotMounted = errors.New("not mounted")
	// ErrMissingCapability: the kernel refused an operation because this process lacks a
	// capability (online ext4 resize needs CAP_SYS_RESOURCE).
	ErrMissingCapability = errors.New("missing capability")
)

// Mounter is what the volume driver, the simulator and the CLI need from the disk layer.
type Mounter interface {
	// Probe reports what is on the device; Signature.Blank() only when nothing is.
	Probe(ctx context.Context, device string) (Signature, error)
	// Format makes a filesystem on a blank device (ErrNotBlank otherwise) and returns its signature.
	Format(ctx context.Context, device, fstype string, opts FormatOptions) (Signature, error)
	// Mount mounts device on target (created if missing); a no-op if already mounted there.
	Mount(ctx context.Context, device, target, fstype string, options []string) error
	// Unmount unmounts target; a no-op if nothing is mounted there.
	Unmount(ctx context.Context, target string) error
	// MountedDevice returns the device mounted on target, from /proc/self/mountinfo.
	MountedDevice(target string) (device string, mounted bool, err error)
	// Grow grows the filesystem mounted from device on target to the size of the device.
	Grow(ctx context.Context, device, target, fstype string) error
	// GrowUnmounted grows an unmounted ext4 filesystem to the size of its device, if smaller.
	GrowUnmounted(ctx context.Context, device, fstype string) (Sizes, bool, error)
	// Sizes reports the device's size and its filesystem's, from the superblock.
	Sizes(ctx context.Context, device, fstype string) (Sizes, error)
	// Check checks (and with repair, repairs) the filesystem on an unmounted device.
	Check(ctx context.Context, device, fstype string, repair bool) (FsckReport, error)
	// MountsOf lists where device is mounted.
	MountsOf(device string) ([]string, error)
	// Usage reports the filesystem's size and use at target.
	Usage(target string) (Usage, error)
}

var _ Mounter = (*Linux)(nil)

// Linux implements Mounter with the util-linux, e2fsprogs and xfsprogs tools.
type Linux struct{}

// New returns the Linux Mounter.
func New() *Linux { return &Linux{} }

// FormatOptions tunes Format.
type FormatOptions struct {
	// Label is the filesystem label: at most 16 bytes for ext4, 12 for xfs; letters, digits,
	// '.', '_' and '-', not starting with '-'.
	Label string
}

// Usage of a mounted filesystem, from statfs.
type Usage struct {
	SizeBytes      uint64 // total data blocks
	UsedBytes      uint64 // size minus free blocks
	AvailableBytes uint64 // free blocks an unprivileged user may use
	Inodes         uint64
	InodesUsed     uint64
	InodesFree     uint64
}

var supportedFS = []string{"ext4", "xfs"}

func supported(fstype string) bool {
	for _, s := range supportedFS {
		if fstype == s {
			return true
		}
	}
	return false
}

var maxLabel = map[string]int{"ext4": 16, "xfs": 12}

// ValidateLabel checks a filesystem label for fstype.
func ValidateLabel(fstype, label string) error {
	if label == "" {
		return nil
	}
	if max, ok := maxLabel[fstype]; ok && len(label) > max {
		return fmt.Errorf("%w: %q is %d bytes, %s labels are at most %d", ErrInvalidLabel, label, len(label), fstype, max)
	}
	if !utf8.ValidString(label) || strings.HasPrefix(label, "-") || strings.IndexFunc(label, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return fmt.Errorf("%w: %q: use letters, digits, '.', '_' and '-' (not first)", ErrInvalidLabel, label)
	}
	return nil
}

// Format makes an fstype ("ext4" or "xfs") filesystem on device, a block device or an image
// file, and returns the new signature with its UUID. It refuses with ErrNotBlank, naming what it
// found, unless Probe finds no signature at all. It never forces mkfs. Once started it runs to
// its end, whatever happens to ctx.
func (l *Linux) Format(ctx context.Context, device, fstype string, opts FormatOptions) (Signature, error) {
	if !supported(fstype) {
		return Signature{}, fmt.Errorf("format %s: %w: %q: supported are %s", device, ErrUnsupportedFilesystem, fstype, strings.Join(supportedFS, ", "))
	}
	if err := ValidateLabel(fstype, opts.Label); err != nil {
		return Signature{}, fmt.Errorf("format %s: %w", device, err)
	}
	// Once started, the format runs to its end: mkfs killed half-way (a plugin's Mount at its
	// request bound, on a large volume) leaves a partial filesystem that the next Mount would
	// refuse, or take for a whole one. A caller out of time starts nothing.
	if err := ctx.Err(); err != nil {
		return Signature{}, fmt.Errorf("format %s: not started: %w", device, err)
	}
	ctx = context.WithoutCancel(ctx)
	sig, err := l.Probe(ctx, device)
	if err != nil {
		return Signature{}, fmt.Errorf("format %s: %w", device, err)
	}
	if !sig.Blank() {
		return sig, fmt.Errorf("refusing to format %s as %s: %w: it holds %s (if that data is really not needed, erase it yourself with wipefs first)",
			device, fstype, ErrNotBlank, sig)
	}
	args := []string{"-q"}
	if opts.Label != "" {
		args = append(args, "-L", opts.Label)
	}
	// No -F / -f: if mkfs itself sees something, it must refuse too. Stdin is empty, so a
	// "Proceed anyway?" question is answered no.
	args = append(args, device)
	if _, err := cmdrun.Run(ctx, "mkfs."+fstype, args...); err != nil {
		return Signature{}, fmt.Errorf("format %s as %s: %w", device, fstype, err)
	}
	sig, err = l.Probe(ctx, device)
	if err != nil {
		return Signature{}, fmt.Errorf("format %s: check the result: %w", device, err)
	}
	if sig.Type != fstype || sig.UUID == "" {
		return sig, fmt.Errorf("format %s: mkfs.%s succeeded but the device now holds %s", device, fstype, sig)
	}
	return sig, nil
}

// Mount mounts the fstype filesystem on device at target, creating target (0755) if needed.
// It is a no-op if device is already mounted at target, and fails with ErrTargetBusy if
// something else is. Options must pass ValidateMountOptionsFor.
func (l *Linux) Mount(ctx context.Context, device, target, fstype string, options []string) error {
	if err := ValidateMountOptionsFor(fstype, options); err != nil {
		return fmt.Errorf("mount %s on %s: %w", device, target, err)
	}
	dev, err := blockDevice(device)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", device, target, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s: create mount point: %w", device, err)
	}
	cur, mounted, err := l.MountedDevice(target)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", device, target, err)
	}
	if mounted {
		if cur == dev.path {
			return nil
		}
		return fmt.Errorf("mount %s on %s: %w: %s is mounted there; unmount it first", device, target, ErrTargetBusy, cur)
	}
	args := []string{"-t", fstype}
	if len(options) > 0 {
		args = append(args, "-o", strings.Join(options, ","))
	}
	args = append(args, dev.node, target)
	if _, err := cmdrun.Run(ctx, "mount", args...); err != nil {
		return fmt.Errorf("mount %s on %s: %w", device, target, err)
	}
	return nil
}

// Unmount unmounts target. Nothing mounted there (or no such directory) is not an error.
func (l *Linux) Unmount(ctx context.Context, target string) error {
	_, mounted, err := l.MountedDevice(target)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if !mounted {
		return nil
	}
	if _, err := cmdrun.Run(ctx, "umount", target); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// MountedDevice returns the device of the topmost mount on target, as /dev/<kernel name>
// (symlinks such as /dev/disk/by-id/... resolved), from /proc/self/mountinfo.
func (l *Linux) MountedDevice(target string) (string, bool, error) {
	resolved, err := filepath.EvalSymlinks(target)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("resolve %s: %w", target, err)
	}
	resolved, err = filepath.Abs(resolved)
	if err != nil {
		return "", false, err
	}
	entries, err := mountinfo.Read()
	if err != nil {
		return "", false, fmt.Errorf("read mount table: %w", err)
	}
	var top *mountinfo.Entry
	for i := range entries {
		if entries[i].MountPoint == resolved {
			top = &entries[i] // later entries are mounted over earlier ones
		}
	}
	if top == nil {
		return "", false, nil
	}
	if name, ok := kernelName(top.Major, top.Minor); ok {
		return "/dev/" + name, true, nil
	}
	// Not a block device number (btrfs uses anonymous ones; tmpfs has none): trust the source.
	if src, err := filepath.EvalSymlinks(top.Source); err == nil {
		return src, true, nil
	}
	return top.Source, true, nil
}

// Grow grows the filesystem on device, mounted at target, to fill the device: resize2fs for
// ext4, xfs_growfs for xfs. fstype "" means probe it. The device must already have its new size
// (loopdev.Store.Resize, or the cloud's resize plus a rescan).
func (l *Linux) Grow(ctx context.Context, device, target, fstype string) error {
	dev, err := blockDevice(device)
	if err != nil {
		return fmt.Errorf("grow %s: %w", device, err)
	}
	if fstype == "" {
		sig, err := l.Probe(ctx, dev.node)
		if err != nil {
			return fmt.Errorf("grow %s: %w", device, err)
		}
		fstype = sig.Type
	}
	if !supported(fstype) {
		return fmt.Errorf("grow %s: %w: %q: supported are %s", device, ErrUnsupportedFilesystem, fstype, strings.Join(supportedFS, ", "))
	}
	cur, mounted, err := l.MountedDevice(target)
	if err != nil {
		return fmt.Errorf("grow %s: %w", device, err)
	}
	if !mounted || cur != dev.path {
		what := "nothing"
		if mounted {
			what = cur
		}
		return fmt.Errorf("grow %s: %w on %s (%s is): mount it first, growing is done online", device, ErrNotMounted, target, what)
	}
	switch fstype {
	case "ext4":
		_, err = cmdrun.Run(ctx, "resize2fs", dev.node)
		if err != nil && !hasCapability(capSysResource) {
			return fmt.Errorf("grow ext4 filesystem on %s: %w: the kernel allows online ext4 resize only with CAP_SYS_RESOURCE, which this process lacks (add it to the plugin's capabilities): %w",
				device, ErrMissingCapability, err)
		}
	case "xfs":
		_, err = cmdrun.Run(ctx, "xfs_growfs", "-d", target)
	}
	if err != nil {
		return fmt.Errorf("grow %s filesystem on %s: %w", fstype, device, err)
	}
	return nil
}

// Usage reports size, use and inodes of the filesystem at target.
func (l *Linux) Usage(target string) (Usage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(target, &st); err != nil {
		return Usage{}, fmt.Errorf("usage of %s: %w", target, err)
	}
	bs := blockSize(&st)
	u := Usage{
		SizeBytes:      st.Blocks * bs,
		UsedBytes:      (st.Blocks - st.Bfree) * bs,
		AvailableBytes: st.Bavail * bs,
		Inodes:         st.Files,
		InodesFree:     st.Ffree,
	}
	if st.Files >= st.Ffree {
		u.InodesUsed = st.Files - st.Ffree
	}
	return u, nil
}

const capSysResource = 24

// hasCapability reports whether capability bit cap is in this process's effective set.
func hasCapability(bit uint) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true // unknown: do not blame capabilities
	}
	for _, line := range strings.Split(string(data), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err != nil || v&(1<<bit) != 0
		}
	}
	return true
}

type blockDev struct {
	path         string // /dev/<kernel name>: how the mount table names it
	node         string // a device node of it that exists here: path, or the one given
	major, minor uint32
}

// blockDevice resolves device (maybe a symlink like /dev/disk/by-id/scsi-0HC_Volume_1) to its
// kernel name and number, and checks it is a block device.
func blockDevice(device string) (blockDev, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(device, &st); err != nil {
		return blockDev{}, &fs.PathError{Op: "stat", Path: device, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFBLK {
		return blockDev{}, fmt.Errorf("%s is not a block device", device)
	}
	major, minor := devNumber(&st)
	resolved, err := filepath.EvalSymlinks(device)
	if err != nil {
		return blockDev{}, err
	}
	if name, ok := kernelName(major, minor); ok {
		path := "/dev/" + name
		return blockDev{path: path, node: nodeFor(path, resolved, major, minor), major: major, minor: minor}, nil
	}
	return blockDev{path: resolved, node: resolved, major: major, minor: minor}, nil
}

// nodeFor returns canonical (/dev/<kernel name>) when it is a node of the device major:minor,
// else given. In a container (a simulated server, a plugin with only some device nodes) the
// volume may exist only as /dev/disk/by-id/scsi-0HC_Volume_<id> and /dev/loopN not at all.
func nodeFor(canonical, given string, major, minor uint32) string {
	var st syscall.Stat_t
	if err := syscall.Stat(canonical, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
		if ma, mi := devNumber(&st); ma == major && mi == minor {
			return canonical
		}
	}
	return given
}

// kernelName maps a block device number to its kernel name (loop3, sdb) through sysfs.
func kernelName(major, minor uint32) (string, bool) {
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return "", false
	}
	return filepath.Base(link), true
}

// UnmountTree unmounts target and every mount below it, deepest first, and returns the mount
// points it unmounted (none if nothing is mounted there).
func (l *Linux) UnmountTree(ctx context.Context, target string) ([]string, error) {
	resolved, err := filepath.EvalSymlinks(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("unmount %s: %w", target, err)
	}
	entries, err := mountinfo.Read()
	if err != nil {
		return nil, fmt.Errorf("unmount %s: read mount table: %w", target, err)
	}
	var below []string
	for i := len(entries) - 1; i >= 0; i-- { // the latest first: mounts stacked later go first
		mp := entries[i].MountPoint
		if (mp == resolved || strings.HasPrefix(mp, resolved+"/")) && !slices.Contains(below, mp) {
			below = append(below, mp)
		}
	}
	sort.SliceStable(below, func(i, j int) bool { return strings.Count(below[i], "/") > strings.Count(below[j], "/") })
	var done []string
	for _, mp := range below {
		for {
			_, mounted, err := l.MountedDevice(mp)
			if err != nil {
				return done, fmt.Errorf("unmount %s: %w", mp, err)
			}
			if !mounted {
				break
			}
			if _, err := cmdrun.Run(ctx, "umount", mp); err != nil {
				return done, fmt.Errorf("unmount %s: %w", mp, err)
			}
		}
		done = append(done, mp)
	}
	return done, nil
}
