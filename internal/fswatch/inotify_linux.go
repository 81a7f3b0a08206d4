package fswatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var errNoNative = errors.New("no native watch")

const mask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_CREATE | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// watchNative watches every directory of root with inotify. When the tree has more directories
// than inotify allows (fs.inotify.max_user_watches), it falls back to walking.
func watchNative(ctx context.Context, root string, o Options, changed func()) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return errNoNative
	}
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	dirs := map[int]string{}
	add := func(dir string) error {
		return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			wd, err := unix.InotifyAddWatch(fd, p, mask)
			if errors.Is(err, unix.ENOSPC) {
				return errNoNative
			}
			if err == nil {
				dirs[wd] = p
			}
			return nil
		})
	}
	if _, err := os.Stat(root); err != nil {
		return fmt.Errorf("watch %s: %w", root, err)
	}
	if err := add(root); err != nil {
		return err
	}
	events := make(chan struct{}, 1)
	overflow := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				overflow <- err
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := ""
				if ev.Len > 0 {
					b := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
					for i, c := range b {
						if c == 0 {
							b = b[:i]
							break
						}
					}
					name = string(b)
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if ev.Mask&unix.IN_ISDIR != 0 && ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
					if dir, ok := dirs[int(ev.Wd)]; ok {
						if err := add(filepath.Join(dir, name)); err != nil {
							overflow <- err
							return
						}
					}
				}
				if ev.Mask&unix.IN_IGNORED != 0 {
					delete(dirs, int(ev.Wd))
				}
				select {
				case events <- struct{}{}:
				default:
				}
			}
		}
	}()
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-overflow:
			if errors.Is(err, errNoNative) {
				changed()
				return errNoNative
			}
			return fmt.Errorf("watch %s: %w", root, err)
		case <-events:
			if timer == nil {
				timer = time.After(o.Debounce)
			}
		case <-timer:
			timer = nil
			changed()
		}
	}
}
