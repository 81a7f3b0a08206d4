package mount

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dockbridge/dockbridge/internal/mount/internal/cmdrun"
)

// growSlack is how much larger than its filesystem a device may be and still count as filled:
// resize2fs leaves out a last block group too small for its own metadata (a few MiB at most)
// and xfs_growfs a last allocation group under 64 blocks. Hetzner grows volumes in whole GB.
const growSlack = 64 << 20

// Sizes are a device's size and the part of it its filesystem covers.
type Sizes struct {
	DeviceBytes     int64 `json:"device_bytes"`
	FilesystemBytes int64 `json:"filesystem_bytes"`
}

// NeedsGrow reports whether the device is larger than its filesystem by more than the tools
// would leave unused (the volume was resized and the filesystem not yet grown).
func (s Sizes) NeedsGrow() bool { return s.DeviceBytes-s.FilesystemBytes > growSlack }

// DeviceSize returns the size in bytes of a block device or image file.
func DeviceSize(device string) (int64, error) {
	f, err := os.Open(device)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", device, err)
	}
	return n, nil
}

// Sizes reads the device's size and, from the filesystem's superblock on the device, how much
// of it the filesystem covers. The superblock is read past the page cache, so an xfs grown
// while mounted may show its old size until it is unmounted: use it on unmounted devices, and
// Usage on a mounted filesystem. fstype "" means probe it.
func (l *Linux) Sizes(ctx context.Context, device, fstype string) (Sizes, error) {
	if fstype == "" {
		sig, err := l.Probe(ctx, device)
		if err != nil {
			return Sizes{}, err
		}
		fstype = sig.Type
	}
	dev, err := DeviceSize(device)
	if err != nil {
		return Sizes{}, err
	}
	fs, err := filesystemBytes(device, fstype)
	if err != nil {
		return Sizes{}, fmt.Errorf("filesystem size on %s: %w", device, err)
	}
	return Sizes{DeviceBytes: dev, FilesystemBytes: fs}, nil
}

// filesystemBytes reads the block count and block size from an ext4 or xfs superblock.
func filesystemBytes(device, fstype string) (int64, error) {
	if !supported(fstype) {
		return 0, fmt.Errorf("%w: %q: supported are %s", ErrUnsupportedFilesystem, fstype, strings.Join(supportedFS, ", "))
	}
	f, err := openUncached(device)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := alignedBuffer(4096)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read superblock: %w", err)
	}
	switch fstype {
	case "ext4":
		sb := buf[1024:2048]
		if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
			return 0, errors.New("no ext4 superblock (bad magic)")
		}
		blocks := uint64(binary.LittleEndian.Uint32(sb[0x04:]))
		const incompat64bit = 0x80
		if binary.LittleEndian.Uint32(sb[0x60:])&incompat64bit != 0 {
			blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
		}
		logBlock := binary.LittleEndian.Uint32(sb[0x18:])
		if logBlock > 6 {
			return 0, fmt.Errorf("implausible ext4 block size 2^%d KiB", logBlock)
		}
		return int64(blocks * (1024 << logBlock)), nil
	default: // xfs: big-endian, at offset 0
		if string(buf[0:4]) != "XFSB" {
			return 0, errors.New("no xfs superblock (bad magic)")
		}
		bs := uint64(binary.BigEndian.Uint32(buf[4:]))
		dblocks := binary.BigEndian.Uint64(buf[8:])
		if bs < 512 || bs > 65536 {
			return 0, fmt.Errorf("implausible xfs block size %d", bs)
		}
		return int64(dblocks * bs), nil
	}
}

// GrowUnmounted grows an ext4 filesystem that is not mounted anywhere to fill its device, when
// the device is larger (Sizes.NeedsGrow): e2fsck -f -p first (resize2fs requires a fresh check;
// preen fixes only what is safe to fix unattended, as every boot does), then resize2fs. This
// needs no CAP_SYS_RESOURCE, unlike growing it mounted. It returns the sizes before and whether
// it grew. An xfs filesystem grows only mounted: it returns ErrNotMounted for one that needs
// growing (mount it, then Grow).
func (l *Linux) GrowUnmounted(ctx context.Context, device, fstype string) (Sizes, bool, error) {
	dev, err := blockDevice(device)
	if err != nil {
		return Sizes{}, false, fmt.Errorf("grow %s: %w", device, err)
	}
	if at, err := mountedAt(dev); err != nil {
		return Sizes{}, false, fmt.Errorf("grow %s: %w", device, err)
	} else if at != "" {
		return Sizes{}, false, fmt.Errorf("grow %s: %w at %s: grow it there online (Grow)", device, ErrMounted, at)
	}
	sizes, err := l.Sizes(ctx, dev.node, fstype)
	if err != nil {
		return Sizes{}, false, fmt.Errorf("grow %s: %w", device, err)
	}
	if !sizes.NeedsGrow() {
		return sizes, false, nil
	}
	if fstype != "ext4" {
		return sizes, false, fmt.Errorf("grow %s: %w: an %s filesystem grows only mounted; mount it, then grow it", device, ErrNotMounted, fstype)
	}
	// Once started, the check and the growth run to their end: a request's bound (a plugin's
	// Mount answers before Docker gives up) must not SIGKILL an offline resize2fs half-way,
	// which can leave the filesystem damaged. A caller out of time starts neither.
	if err := ctx.Err(); err != nil {
		return sizes, false, fmt.Errorf("grow %s: not started: %w", device, err)
	}
	ctx = context.WithoutCancel(ctx)
	if _, err := cmdrun.Run(ctx, "e2fsck", "-f", "-p", dev.node); err != nil && cmdrun.ExitCode(err) != 1 {
		return sizes, false, fmt.Errorf("grow %s: the filesystem check before growing found problems it may not fix unattended, so it was not grown (run `docker dockbridge volume fsck`): %w", device, err)
	}
	if _, err := cmdrun.Run(ctx, "resize2fs", dev.node); err != nil {
		return sizes, false, fmt.Errorf("grow ext4 filesystem on %s: %w", device, err)
	}
	return sizes, true, nil
}
