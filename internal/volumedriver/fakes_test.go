package volumedriver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/mount"
)

// fakeCloud is a Cloud made of function fields; an unset one panics, so a test sees every API
// call it did not expect. calls counts the calls made.
type fakeCloud struct {
	VolumeFunc              func(ctx context.Context, id int64) (*hetzner.Volume, error)
	VolumeByNameFunc        func(ctx context.Context, name string) (*hetzner.Volume, error)
	VolumesFunc             func(ctx context.Context, selector string) ([]*hetzner.Volume, error)
	CreateVolumeFunc        func(ctx context.Context, spec hetzner.VolumeSpec) (*hetzner.Volume, error)
	AttachVolumeFunc        func(ctx context.Context, volumeID, serverID int64, automount bool) error
	DetachVolumeFunc        func(ctx context.Context, volumeID int64) error
	DetachVolumeFromFunc    func(ctx context.Context, volumeID, serverID int64, allow func(*hetzner.Volume) error) error
	SetVolumeProtectionFunc func(ctx context.Context, volumeID int64, protect bool) error
	SetVolumeLabelsFunc     func(ctx context.Context, volumeID int64, labels map[string]string) (*hetzner.Volume, error)
	DeleteVolumeFunc        func(ctx context.Context, volumeID int64) error
	ServerFunc              func(ctx context.Context, id int64) (*hetzner.Server, error)

	mu    sync.Mutex
	calls []string
}

var _ Cloud = (*fakeCloud)(nil)

func (f *fakeCloud) note(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeCloud) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeCloud) Volume(ctx context.Context, id int64) (*hetzner.Volume, error) {
	f.note("Volume")
	return f.VolumeFunc(ctx, id)
}
func (f *fakeCloud) VolumeByName(ctx context.Context, name string) (*hetzner.Volume, error) {
	f.note("VolumeByName")
	return f.VolumeByNameFunc(ctx, name)
}
func (f *fakeCloud) Volumes(ctx context.Context, selector string) ([]*hetzner.Volume, error) {
	f.note("Volumes")
	return f.VolumesFunc(ctx, selector)
}
func (f *fakeCloud) CreateVolume(ctx context.Context, spec hetzner.VolumeSpec) (*hetzner.Volume, error) {
	f.note("CreateVolume")
	return f.CreateVolumeFunc(ctx, spec)
}
func (f *fakeCloud) AttachVolume(ctx context.Context, volumeID, serverID int64, automount bool) error {
	f.note("AttachVolume")
	return f.AttachVolumeFunc(ctx, volumeID, serverID, automount)
}
func (f *fakeCloud) DetachVolume(ctx context.Context, volumeID int64) error {
	f.note("DetachVolume")
	return f.DetachVolumeFunc(ctx, volumeID)
}
func (f *fakeCloud) DetachVolumeFrom(ctx context.Context, volumeID, serverID int64, allow func(*hetzner.Volume) error) error {
	f.note("DetachVolumeFrom")
	return f.DetachVolumeFromFunc(ctx, volumeID, serverID, allow)
}
func (f *fakeCloud) SetVolumeProtection(ctx context.Context, volumeID int64, protect bool) error {
	f.note("SetVolumeProtection")
	return f.SetVolumeProtectionFunc(ctx, volumeID, protect)
}
func (f *fakeCloud) SetVolumeLabels(ctx context.Context, volumeID int64, labels map[string]string) (*hetzner.Volume, error) {
	f.note("SetVolumeLabels")
	return f.SetVolumeLabelsFunc(ctx, volumeID, labels)
}
func (f *fakeCloud) DeleteVolume(ctx context.Context, volumeID int64) error {
	f.note("DeleteVolume")
	return f.DeleteVolumeFunc(ctx, volumeID)
}
func (f *fakeCloud) Server(ctx context.Context, id int64) (*hetzner.Server, error) {
	f.note("Server")
	return f.ServerFunc(ctx, id)
}
func (f *fakeCloud) Budget() hetzner.Budget { return hetzner.Budget{} }

// project is a tiny in-memory Hetzner project that fills a fakeCloud's functions.
type project struct {
	mu      sync.Mutex
	nextID  int64
	vols    map[int64]*hetzner.Volume
	servers map[int64]*hetzner.Server
	// onAttach runs when a volume is attached to a server (the test makes the device appear).
	onAttach func(volumeID, serverID int64)
	onDetach func(volumeID int64)
	// beforeDetachFrom runs as a conditional detach starts, before it reads the volume: a
	// test changes the world there (another server's plugin acting in between).
	beforeDetachFrom func(volumeID, serverID int64)
	// detachErr, when set, is what detaches answer instead of detaching.
	detachErr error
}

func newProject() *project {
	return &project{nextID: 100, vols: map[int64]*hetzner.Volume{}, servers: map[int64]*hetzner.Server{
		1: {ID: 1, Name: "this-server", Status: "running", Location: "fsn1"},
		2: {ID: 2, Name: "other-server", Status: "running", Location: "fsn1"},
	}}
}

func copyVol(v *hetzner.Volume) *hetzner.Volume {
	c := *v
	c.Labels = cloneMap(v.Labels)
	return &c
}

func notFound(what string) error {
	return fmt.Errorf("%s: %w", what, hetzner.ErrNotFound)
}

func (p *project) cloud() *fakeCloud {
	return &fakeCloud{
		VolumeFunc: func(_ context.Context, id int64) (*hetzner.Volume, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if v := p.vols[id]; v != nil {
				return copyVol(v), nil
			}
			return nil, notFound("get volume")
		},
		VolumeByNameFunc: func(_ context.Context, name string) (*hetzner.Volume, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, v := range p.vols {
				if v.Name == name {
					return copyVol(v), nil
				}
			}
			return nil, notFound("get volume by name")
		},
		VolumesFunc: func(_ context.Context, selector string) ([]*hetzner.Volume, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			k, val, _ := strings.Cut(selector, "=")
			var out []*hetzner.Volume
			for _, v := range p.vols {
				if v.Labels[k] == val {
					out = append(out, copyVol(v))
				}
			}
			return out, nil
		},
		CreateVolumeFunc: func(_ context.Context, spec hetzner.VolumeSpec) (*hetzner.Volume, error) {
			p.mu.Lock()
			for _, v := range p.vols {
				if v.Name == spec.Name {
					p.mu.Unlock()
					return nil, fmt.Errorf("create volume: %w", hetzner.ErrAlreadyExists)
				}
			}
			p.nextID++
			v := &hetzner.Volume{ID: p.nextID, Name: spec.Name, SizeGB: spec.SizeGB, Location: "fsn1", ServerID: spec.ServerID,
				Labels: cloneMap(spec.Labels), Created: time.Now(), Status: "available"}
			p.vols[v.ID] = v
			out := copyVol(v)
			cb := p.onAttach
			p.mu.Unlock()
			if spec.ServerID != 0 && cb != nil {
				cb(v.ID, spec.ServerID)
			}
			return out, nil
		},
		AttachVolumeFunc: func(_ context.Context, id, server int64, _ bool) error {
			p.mu.Lock()
			v := p.vols[id]
			if v == nil {
				p.mu.Unlock()
				return notFound("attach")
			}
			if v.ServerID != 0 {
				p.mu.Unlock()
				return fmt.Errorf("attach: %w", hetzner.ErrAlreadyAttached)
			}
			v.ServerID = server
			cb := p.onAttach
			p.mu.Unlock()
			if cb != nil {
				cb(id, server)
			}
			return nil
		},
		DetachVolumeFunc: func(_ context.Context, id int64) error {
			p.mu.Lock()
			v := p.vols[id]
			if v == nil {
				p.mu.Unlock()
				return notFound("detach")
			}
			v.ServerID = 0
			cb := p.onDetach
			p.mu.Unlock()
			if cb != nil {
				cb(id)
			}
			return nil
		},
		DetachVolumeFromFunc: func(_ context.Context, id, server int64, allow func(*hetzner.Volume) error) error {
			if p.beforeDetachFrom != nil {
				p.beforeDetachFrom(id, server)
			}
			p.mu.Lock()
			v := p.vols[id]
			switch {
			case v == nil:
				p.mu.Unlock()
				return notFound("detach")
			case v.ServerID != server:
				p.mu.Unlock()
				return fmt.Errorf("detach volume %d from server %d: it is attached to %d: %w", id, server, v.ServerID, hetzner.ErrMoved)
			}
			cur := copyVol(v)
			p.mu.Unlock()
			if allow != nil {
				if err := allow(cur); err != nil {
					return err
				}
			}
			p.mu.Lock()
			if p.detachErr != nil {
				p.mu.Unlock()
				return p.detachErr
			}
			v.ServerID = 0
			cb := p.onDetach
			p.mu.Unlock()
			if cb != nil {
				cb(id)
			}
			return nil
		},
		SetVolumeProtectionFunc: func(_ context.Context, id int64, protect bool) error {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.vols[id].Protected = protect
			return nil
		},
		SetVolumeLabelsFunc: func(_ context.Context, id int64, labels map[string]string) (*hetzner.Volume, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			v := p.vols[id]
			if v == nil {
				return nil, notFound("labels")
			}
			v.Labels = cloneMap(labels)
			return copyVol(v), nil
		},
		DeleteVolumeFunc: func(_ context.Context, id int64) error {
			p.mu.Lock()
			defer p.mu.Unlock()
			v := p.vols[id]
			if v == nil {
				return notFound("delete")
			}
			if v.Protected {
				return fmt.Errorf("delete volume: %w", hetzner.ErrProtected)
			}
			if v.ServerID != 0 {
				return fmt.Errorf("delete volume: still attached: %w", hetzner.ErrConflict)
			}
			delete(p.vols, id)
			return nil
		},
		ServerFunc: func(_ context.Context, id int64) (*hetzner.Server, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if s := p.servers[id]; s != nil {
				c := *s
				return &c, nil
			}
			return nil, notFound("get server")
		},
	}
}

// fakeMounter keeps devices and mounts in memory. Devices hold a Signature; Format refuses a
// non-blank one like the real thing, and counts every call, refused or not: a driver that
// asks to format a device holding data is wrong even when the mount layer saves it.
type fakeMounter struct {
	mu      sync.Mutex
	devices map[string]mount.Signature // by path
	mounts  map[string]string          // target -> device
	formats int                        // Format calls, refused ones included
	uuidSeq int
	// devBytes and fsBytes are device and filesystem sizes a test set (default 10 GiB each);
	// grows records every growth, "unmounted DEV" or "mounted DEV".
	devBytes, fsBytes map[string]int64
	grows             []string
}

var _ Mounter = (*fakeMounter)(nil)

func newFakeMounter() *fakeMounter {
	return &fakeMounter{devices: map[string]mount.Signature{}, mounts: map[string]string{}, devBytes: map[string]int64{}, fsBytes: map[string]int64{}}
}

func (m *fakeMounter) exists(path string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.devices[path]
	return ok
}

func (m *fakeMounter) setDevice(path string, sig mount.Signature) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sig.Device = path
	m.devices[path] = sig
}

func (m *fakeMounter) removeDevice(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.devices, path)
}

func (m *fakeMounter) Probe(_ context.Context, device string) (mount.Signature, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sig, ok := m.devices[device]
	if !ok {
		return mount.Signature{}, fmt.Errorf("probe %s: no such device", device)
	}
	return sig, nil
}

func (m *fakeMounter) Format(_ context.Context, device, fstype string, _ mount.FormatOptions) (mount.Signature, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.formats++
	sig := m.devices[device]
	if !sig.Blank() {
		return sig, fmt.Errorf("format %s: %w", device, mount.ErrNotBlank)
	}
	m.uuidSeq++
	sig = mount.Signature{Device: device, Type: fstype, Usage: "filesystem", UUID: fmt.Sprintf("uuid-%d", m.uuidSeq),
		Found: []mount.Found{{Type: fstype}}}
	m.devices[device] = sig
	return sig, nil
}

func (m *fakeMounter) Mount(_ context.Context, device, target, fstype string, _ []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.mounts[target]; ok {
		if cur == device {
			return nil
		}
		return mount.ErrTargetBusy
	}
	m.mounts[target] = device
	return nil
}

func (m *fakeMounter) Unmount(_ context.Context, target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mounts, target)
	return nil
}

func (m *fakeMounter) MountedDevice(target string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.mounts[target]
	return d, ok, nil
}

func (m *fakeMounter) Usage(string) (mount.Usage, error) {
	return mount.Usage{SizeBytes: 10 << 30, UsedBytes: 1 << 20}, nil
}

// GrowUnmounted reports the device's size (growTo, else 10 GiB) and, when it is larger than the
// filesystem, grows an ext4 (counted in grows) and asks for an xfs to be mounted first.
func (m *fakeMounter) GrowUnmounted(_ context.Context, device, fstype string) (mount.Sizes, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dev, fs := m.size(device)
	sizes := mount.Sizes{DeviceBytes: dev, FilesystemBytes: fs}
	if !sizes.NeedsGrow() {
		return sizes, false, nil
	}
	if fstype == "xfs" {
		return sizes, false, mount.ErrNotMounted
	}
	m.fsBytes[device] = dev
	m.grows = append(m.grows, "unmounted "+device)
	return sizes, true, nil
}

func (m *fakeMounter) Grow(_ context.Context, device, target, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mounts[target] != device {
		return mount.ErrNotMounted
	}
	m.fsBytes[device], _ = m.size(device)
	m.grows = append(m.grows, "mounted "+device)
	return nil
}

// size is a device's size and its filesystem's: 10 GiB each unless a test resized the device.
func (m *fakeMounter) size(device string) (dev, fs int64) {
	dev, fs = 10<<30, 10<<30
	if n, ok := m.devBytes[device]; ok {
		dev = n
	}
	if n, ok := m.fsBytes[device]; ok {
		fs = n
	}
	return dev, fs
}

func (m *fakeMounter) mounted(target string) bool {
	_, ok, _ := m.MountedDevice(target)
	return ok
}

// harness is a driver on a project and a fake mounter, as server 1.
type harness struct {
	t       *testing.T
	p       *project
	cloud   *fakeCloud
	m       *fakeMounter
	d       *Driver
	dir     string
	setting Settings
	// disks is what each volume holds while detached; the device shows it after an attach to
	// this server (server 1). A test sets it for a volume made elsewhere.
	disks map[int64]mount.Signature
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, p: newProject(), m: newFakeMounter(), dir: t.TempDir(), disks: map[int64]mount.Signature{}}
	h.cloud = h.p.cloud()
	// A detached volume keeps its content: the device shows it again after the next attach.
	h.p.onAttach = func(id, server int64) {
		if server == 1 {
			h.m.setDevice(h.dev(id), h.disks[id])
		}
	}
	h.p.onDetach = func(id int64) {
		if sig, err := h.m.Probe(context.Background(), h.dev(id)); err == nil {
			h.disks[id] = sig
		}
		h.m.removeDevice(h.dev(id))
	}
	s, err := SettingsFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s.MountRoot = h.dir + "/mnt"
	s.StateDir = h.dir + "/state"
	s.DeviceDir = "/dev/disk/by-id"
	s.DeviceWaitTimeout = 300 * time.Millisecond
	h.setting = s
	h.d = h.newDriver()
	return h
}

// newDriver starts a driver (again) on the same state directory: a plugin restart.
func (h *harness) newDriver() *Driver {
	h.t.Helper()
	store, err := NewStateStore(h.setting.StateDir)
	if err != nil {
		h.t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	d, err := New(Config{
		Settings: h.setting, Cloud: h.cloud, Mounter: h.m, Store: store, Log: log, DeviceExists: h.m.exists,
		Instance: func(context.Context) (hetzner.Instance, error) {
			return hetzner.Instance{ID: 1, Hostname: "this-server", AvailabilityZone: "fsn1-dc14"}, nil
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) dev(id int64) string { return fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", id) }

// apiCalls runs f and returns the API calls it made.
func (h *harness) apiCalls(f func()) []string {
	before := len(h.cloud.Calls())
	f()
	return h.cloud.Calls()[before:]
}
