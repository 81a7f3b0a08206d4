package volumedriver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// VolumeState is what the plugin knows about one volume without asking the API.
type VolumeState struct {
	Name      string            `json:"name"`
	ID        int64             `json:"id"`
	SizeGB    int               `json:"size_gb"`
	Location  string            `json:"location"`
	ServerID  int64             `json:"server_id"` // server it was attached to when last seen, 0 if none
	Protected bool              `json:"protected"`
	Labels    map[string]string `json:"labels"` // the Hetzner labels as last seen or written
	CreatedAt time.Time         `json:"created_at"`
	// Touched is when this process last created, adopted or changed the entry; the background
	// sync with the API leaves entries touched after it started alone.
	Touched time.Time `json:"touched"`

	// Mountpoint is set while the filesystem is mounted (under MOUNT_ROOT).
	Mountpoint string `json:"mountpoint,omitempty"`
	Device     string `json:"device,omitempty"`
	// Refs holds the Docker mount IDs using the mount, with when each was added.
	Refs map[string]time.Time `json:"refs,omitempty"`
	// Again counts the Mounts of an ID already in Refs: Docker mounts a running container's
	// volumes again with the container's own ID for docker cp (and export), then unmounts
	// once; that Unmount must not end the container's use.
	Again map[string]int `json:"again,omitempty"`
}

// FSType is the filesystem the volume holds (or gets at first format).
func (v *VolumeState) FSType() string {
	if t := v.Labels[labelFSType]; t != "" {
		return t
	}
	return "ext4"
}

// UUID is the filesystem UUID recorded on the volume, "" before its first format.
func (v *VolumeState) UUID() string { return v.Labels[labelUUID] }

// MountOpts are the mount options recorded at create.
func (v *VolumeState) MountOpts() []string { return decodeMountOpts(v.Labels[labelMountOpts]) }

func (v *VolumeState) clone() *VolumeState {
	c := *v
	c.Labels = cloneMap(v.Labels)
	if v.Refs != nil {
		c.Refs = make(map[string]time.Time, len(v.Refs))
		for k, t := range v.Refs {
			c.Refs[k] = t
		}
	}
	if v.Again != nil {
		c.Again = make(map[string]int, len(v.Again))
		for k, n := range v.Again {
			c.Again[k] = n
		}
	}
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// stateFile is the on-disk form of the plugin's state.
type stateFile struct {
	Version int                     `json:"version"`
	Volumes map[string]*VolumeState `json:"volumes"`
}

const stateVersion = 1

// StateStore keeps the state in one JSON file, replaced atomically (write a temporary file,
// fsync, rename, fsync the directory): a kill -9 at any moment leaves the old or the new file.
type StateStore struct {
	path string
}

// NewStateStore returns a store for dir/volumes.json, creating dir (0700).
func NewStateStore(dir string) (*StateStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory %s: %w", dir, err)
	}
	return &StateStore{path: filepath.Join(dir, "volumes.json")}, nil
}

// Path is the state file.
func (s *StateStore) Path() string { return s.path }

// DamagedStateError says that the state file could not be used and where it was moved.
type DamagedStateError struct {
	Path     string // the state file
	SetAside string // where it is now; "" when even moving it failed
	Err      error  // what was wrong with it
}

func (e *DamagedStateError) Error() string {
	if e.SetAside == "" {
		return fmt.Sprintf("state %s is damaged (%v) and could not be set aside", e.Path, e.Err)
	}
	return fmt.Sprintf("state %s was damaged (%v): set it aside as %s", e.Path, e.Err, e.SetAside)
}

func (e *DamagedStateError) Unwrap() error { return e.Err }

// Load reads the state; a missing file is an empty state. A file that can't be used (unreadable,
// truncated, not JSON, another version, an entry without a valid volume name or id) is renamed
// to volumes.json.damaged-<UTC time> next to it, kept for a person to look at, and Load returns
// an empty state with a *DamagedStateError. The map is never nil: a plugin that fails at start
// within Docker's start-up check is disabled by Docker for good, so a damaged file must not
// stop it; the volumes come back from the API (Sync) and on their next Mount.
func (s *StateStore) Load() (map[string]*VolumeState, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*VolumeState{}, nil
	}
	if err == nil {
		var vols map[string]*VolumeState
		if vols, err = parseState(b); err == nil {
			return vols, nil
		}
	}
	dmg := &DamagedStateError{Path: s.path, Err: err}
	aside := fmt.Sprintf("%s.damaged-%s", s.path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if rerr := os.Rename(s.path, aside); rerr == nil {
		dmg.SetAside = aside
	} else {
		dmg.Err = fmt.Errorf("%w; moving it aside failed too: %v", err, rerr)
	}
	return map[string]*VolumeState{}, dmg
}

// parseState decodes and checks the state file's content.
func parseState(b []byte) (map[string]*VolumeState, error) {
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not a state file: %w", err)
	}
	if f.Version != stateVersion {
		return nil, fmt.Errorf("version %d, this plugin reads version %d", f.Version, stateVersion)
	}
	if f.Volumes == nil {
		f.Volumes = map[string]*VolumeState{}
	}
	for name, v := range f.Volumes {
		// The name becomes a path under MOUNT_ROOT that start-up may unmount: only names
		// Create accepts.
		if err := CheckVolumeName(name); err != nil {
			return nil, fmt.Errorf("entry %q: %w", name, err)
		}
		if v == nil || v.ID <= 0 {
			return nil, fmt.Errorf("entry %q has no volume id", name)
		}
		v.Name = name
		if v.Labels == nil {
			v.Labels = map[string]string{}
		}
	}
	return f.Volumes, nil
}

// Save replaces the state file atomically.
func (s *StateStore) Save(vols map[string]*VolumeState) error {
	b, err := json.MarshalIndent(stateFile{Version: stateVersion, Volumes: vols}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, ".volumes-*.json")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func sortedNames(vols map[string]*VolumeState) []string {
	names := make([]string, 0, len(vols))
	for n := range vols {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
