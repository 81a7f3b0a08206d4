package linkserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Shared folders on the server. A laptop folder P is synchronized into Root/files/P on the data
// volume (so it outlives the server, like every container and volume) and shown at P itself by a
// bind mount, so that `docker run -v "$PWD":/app` and compose's `.:/app`, which send the laptop's
// absolute path, find it. The registry (Root/shares.json) lists the folders; Root/boot.sh,
// rewritten with it, makes the mounts again before Docker starts on a new server (the user-data's
// docker.service drop-in runs it), so that containers with a restart policy never start on an
// empty directory.

// Root is where shared folders live on the server.
const Root = "/var/lib/docker/dockbridge-shares"

// Share is one registered folder.
type Share struct {
	Path string `json:"path"`
	// State is "syncing" until the laptop says the first synchronization is complete, then "ready".
	State      string    `json:"state"`
	Registered time.Time `json:"registered"`
	Ready      time.Time `json:"ready,omitzero"`
}

// Share states.
const (
	StateSyncing = "syncing"
	StateReady   = "ready"
)

// Registry is the list of shared folders (Root/shares.json).
type Registry struct {
	Shares []Share `json:"shares"`
}

// Shares manages the folders of one server: registry, copies, mounts.
type Shares struct {
	// Root is normally Root; tests give a directory of their own.
	Root string
	// Mounter binds a folder's copy at its path (Bind), and undoes it; tests give a fake.
	Mounter Mounter
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Mounter makes and removes the bind mount that shows a copy at the laptop's path.
// internal/mount's Linux is one.
type Mounter interface {
	Bind(ctx context.Context, src, dst string) error
	Unbind(ctx context.Context, dst string) error
	IsMountPoint(dst string) (bool, error)
}

func (s *Shares) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// CopyPath is where P's synchronized copy lives.
func (s *Shares) CopyPath(p string) string { return filepath.Join(s.Root, "files", p) }

// MutagenDir is the synchronization endpoint's own data (staging, caches): on the data volume,
// beside the copies, so that a staged file is renamed into place on one filesystem.
func (s *Shares) MutagenDir() string { return filepath.Join(s.Root, "mutagen") }

func (s *Shares) registryPath() string { return filepath.Join(s.Root, "shares.json") }

// BootScript is the script the docker.service drop-in runs before dockerd.
func (s *Shares) BootScript() string { return filepath.Join(s.Root, "boot.sh") }

// Load reads the registry; a missing one is empty.
func (s *Shares) Load() (Registry, error) {
	var r Registry
	b, err := os.ReadFile(s.registryPath())
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", s.registryPath(), err)
	}
	return r, nil
}

func (s *Shares) save(r Registry) error {
	slices.SortFunc(r.Shares, func(a, b Share) int { return strings.Compare(a.Path, b.Path) })
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.registryPath(), append(b, '\n'), 0o600); err != nil {
		return err
	}
	return writeAtomic(s.BootScript(), []byte(bootScript(s.Root, r)), 0o700)
}

// bootScript makes the mounts of r again (idempotent: a path already mounted is left alone).
func bootScript(root string, r Registry) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Written by dockbridge-server (internal/linkserver): shows each shared folder's copy at its\n# laptop path before Docker starts, so that no container starts on an empty directory.\n")
	for _, sh := range r.Shares {
		src, dst := shellQuote(filepath.Join(root, "files", sh.Path)), shellQuote(sh.Path)
		fmt.Fprintf(&b, "mkdir -p %s %s && { mountpoint -q %s || mount --bind %s %s; }\n", src, dst, dst, src, dst)
	}
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Find returns the share that holds path (the share itself or a folder in it).
func (r Registry) Find(path string) (Share, bool) {
	path = filepath.Clean(path)
	for _, sh := range r.Shares {
		if path == sh.Path || strings.HasPrefix(path, sh.Path+"/") {
			return sh, true
		}
	}
	return Share{}, false
}

// reservedPaths are the server's own directories: a laptop folder is never shown there.
var reservedPaths = []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
	"/run", "/sbin", "/sys", "/usr", "/var"}

// ValidatePath checks that p can be a shared folder's path on the server.
func ValidatePath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%q: a shared folder is named by its clean absolute path", p)
	}
	if p == "/" {
		return errors.New("/ cannot be shared: share the project's folder")
	}
	if strings.ContainsAny(p, "\n\x00") {
		return fmt.Errorf("%q: a path with a newline cannot be shared", p)
	}
	for _, r := range reservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") {
			return fmt.Errorf("%s is under %s, which the server itself uses: share a folder outside %s (for instance under your home directory)", p, r, strings.Join(reservedPaths, ", "))
		}
	}
	return nil
}

// Register adds p (state syncing) unless it is there, makes its copy's folder and shows it at p.
// A folder inside or around another share is refused; so is a path where the server has a
// directory of its own with content.
func (s *Shares) Register(p string) (Share, error) {
	if err := ValidatePath(p); err != nil {
		return Share{}, err
	}
	r, err := s.Load()
	if err != nil {
		return Share{}, err
	}
	var sh Share
	found := false
	for _, x := range r.Shares {
		switch {
		case x.Path == p:
			sh, found = x, true
		case strings.HasPrefix(p, x.Path+"/"):
			return Share{}, fmt.Errorf("%s is inside the shared folder %s already: its content is shared with it", p, x.Path)
		case strings.HasPrefix(x.Path, p+"/"):
			return Share{}, fmt.Errorf("%s holds the shared folder %s: stop sharing that one first (docker dockbridge share rm %s)", p, x.Path, x.Path)
		}
	}
	if err := os.MkdirAll(s.CopyPath(p), 0o755); err != nil {
		return Share{}, fmt.Errorf("make the copy of %s: %w", p, err)
	}
	if err := s.show(p); err != nil {
		return Share{}, err
	}
	if !found {
		sh = Share{Path: p, State: StateSyncing, Registered: s.now().UTC()}
		r.Shares = append(r.Shares, sh)
		if err := s.save(r); err != nil {
			return Share{}, err
		}
	}
	return sh, nil
}

// show bind-mounts p's copy at p, unless it is mounted already.
func (s *Shares) show(p string) error {
	mounted, err := s.Mounter.IsMountPoint(p)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	if ents, err := os.ReadDir(p); err == nil && len(ents) > 0 {
		return fmt.Errorf("the server has a folder of its own at %s, with content: a laptop folder cannot be shown there", p)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s on the server: %w", p, err)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("make %s on the server: %w", p, err)
	}
	if err := s.Mounter.Bind(context.Background(), s.CopyPath(p), p); err != nil {
		return fmt.Errorf("show the copy of %s at %s: %w", p, p, err)
	}
	return nil
}

// ShowAll makes the mounts of every registered share (after a boot that had no boot script).
func (s *Shares) ShowAll() error {
	r, err := s.Load()
	if err != nil {
		return err
	}
	var errs []error
	for _, sh := range r.Shares {
		errs = append(errs, s.show(sh.Path))
	}
	return errors.Join(errs...)
}

// MarkReady records that p's first synchronization is complete.
func (s *Shares) MarkReady(p string) error {
	r, err := s.Load()
	if err != nil {
		return err
	}
	for i := range r.Shares {
		if r.Shares[i].Path == p {
			if r.Shares[i].State != StateReady {
				r.Shares[i].State, r.Shares[i].Ready = StateReady, s.now().UTC()
				return s.save(r)
			}
			return nil
		}
	}
	return fmt.Errorf("%s is not a shared folder on this server", p)
}

// Unregister removes p from the registry and its mount at p. Its copy is left on the volume when
// keepCopy (it may hold what the laptop does not have yet), else removed. A folder a running
// container uses is refused (inUse names them).
func (s *Shares) Unregister(p string, keepCopy bool, inUse []string) error {
	if len(inUse) > 0 {
		return fmt.Errorf("%s is used by running containers (%s): stop them first", p, strings.Join(inUse, ", "))
	}
	r, err := s.Load()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(r.Shares, func(x Share) bool { return x.Path == p })
	if i < 0 {
		return nil
	}
	if mounted, err := s.Mounter.IsMountPoint(p); err == nil && mounted {
		if err := s.Mounter.Unbind(context.Background(), p); err != nil {
			return fmt.Errorf("remove the mount at %s: %w", p, err)
		}
	}
	r.Shares = slices.Delete(r.Shares, i, i+1)
	if err := s.save(r); err != nil {
		return err
	}
	_ = os.Remove(p) // the empty mount point
	if !keepCopy {
		return os.RemoveAll(s.CopyPath(p))
	}
	return nil
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
