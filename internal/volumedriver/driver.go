// Package volumedriver implements the `hetzner` Docker volume plugin (volume.Driver): every
// Docker volume is a Hetzner Cloud volume, attached to the server Docker runs on, formatted
// once (only when the device holds no signature at all) and mounted when a container needs it.
//
// Get, List, Path and Capabilities answer from the plugin's own state (state.go), so Docker's
// constant polling costs no API request. Mount of a volume that is attached here costs none
// either: the kernel's /dev/disk/by-id link says it is attached, the filesystem UUID recorded
// on the volume says it is the right one.
package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/mount"
)

// Cloud is what the driver needs from the Hetzner Cloud API (*hetzner.Client).
type Cloud interface {
	Volume(ctx context.Context, id int64) (*hetzner.Volume, error)
	VolumeByName(ctx context.Context, name string) (*hetzner.Volume, error)
	Volumes(ctx context.Context, selector string) ([]*hetzner.Volume, error)
	CreateVolume(ctx context.Context, spec hetzner.VolumeSpec) (*hetzner.Volume, error)
	AttachVolume(ctx context.Context, volumeID, serverID int64, automount bool) error
	DetachVolume(ctx context.Context, volumeID int64) error
	DetachVolumeFrom(ctx context.Context, volumeID, serverID int64, allow func(*hetzner.Volume) error) error
	SetVolumeProtection(ctx context.Context, volumeID int64, protect bool) error
	SetVolumeLabels(ctx context.Context, volumeID int64, labels map[string]string) (*hetzner.Volume, error)
	DeleteVolume(ctx context.Context, volumeID int64) error
	Server(ctx context.Context, id int64) (*hetzner.Server, error)
	Budget() hetzner.Budget
}

var _ Cloud = (*hetzner.Client)(nil)

// Mounter is what the driver needs from the disk layer (*mount.Linux).
type Mounter interface {
	Probe(ctx context.Context, device string) (mount.Signature, error)
	Format(ctx context.Context, device, fstype string, opts mount.FormatOptions) (mount.Signature, error)
	Mount(ctx context.Context, device, target, fstype string, options []string) error
	Unmount(ctx context.Context, target string) error
	MountedDevice(target string) (device string, mounted bool, err error)
	Usage(target string) (mount.Usage, error)
	GrowUnmounted(ctx context.Context, device, fstype string) (mount.Sizes, bool, error)
	Grow(ctx context.Context, device, target, fstype string) error
}

var _ Mounter = (*mount.Linux)(nil)

// Config wires a Driver.
type Config struct {
	Settings Settings
	// Cloud is nil when the client could not be built (no token): CloudErr says why, and every
	// request that needs the API returns it.
	Cloud    Cloud
	CloudErr error
	Mounter  Mounter
	// Instance asks the metadata service which server this is (hetzner.CurrentInstance).
	Instance func(ctx context.Context) (hetzner.Instance, error)
	Store    *StateStore
	// DeviceExists reports whether a volume's block device is present (default: a stat of the
	// path that must show a block device). Tests replace it.
	DeviceExists func(path string) bool
	Log          logrus.FieldLogger
	Metrics      *Metrics // nil: no metrics
}

// Driver implements volume.Driver.
type Driver struct {
	s       Settings
	cloud   Cloud
	noCloud error
	m       Mounter
	store   *StateStore
	log     logrus.FieldLogger
	metrics *Metrics
	lookup  func(ctx context.Context) (hetzner.Instance, error)
	devOK   func(path string) bool

	instMu sync.Mutex
	inst   *hetzner.Instance

	mu      sync.Mutex // guards vols, misses and saving
	vols    map[string]*VolumeState
	misses  map[string]time.Time // names the API did not know, for a short while
	volLock keyedMutex
	// stateLost: the state file was damaged and set aside at start, so a mount the state does
	// not know may still be in use.
	stateLost bool
}

var _ volume.Driver = (*Driver)(nil)

// New loads the state and returns a driver. Call Recover before serving.
func New(cfg Config) (*Driver, error) {
	if cfg.Mounter == nil || cfg.Store == nil || cfg.Instance == nil {
		return nil, errors.New("volumedriver: Mounter, Store and Instance are required")
	}
	if cfg.Log == nil {
		cfg.Log = logrus.New()
	}
	if cfg.Cloud == nil && cfg.CloudErr == nil {
		cfg.CloudErr = errors.New("no Hetzner Cloud API client configured")
	}
	if cfg.DeviceExists == nil {
		cfg.DeviceExists = isBlockDevice
	}
	// A damaged state file never stops the plugin (Load sets it aside): it starts from the
	// API's view, and Recover leaves the mounts it finds alone, since nothing says who uses them.
	vols, err := cfg.Store.Load()
	if err != nil {
		cfg.Log.Errorf("%v. Starting without it: the project's volumes come back from the API, and mounts under %s are kept as they are", err, cfg.Settings.MountRoot)
	}
	return &Driver{
		s: cfg.Settings, cloud: cfg.Cloud, noCloud: cfg.CloudErr, m: cfg.Mounter, store: cfg.Store,
		log: cfg.Log, metrics: cfg.Metrics, lookup: cfg.Instance, devOK: cfg.DeviceExists, vols: vols, misses: map[string]time.Time{},
		stateLost: err != nil,
	}, nil
}

// keyedMutex serialises operations on one volume while others proceed. Waiters are served in
// the order they came (a buffered channel's blocked senders are), so a late Unmount is never
// overtaken by the next Mount of the same container.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	held  chan struct{} // holds one token while locked
	users int
}

// lock waits for key until ctx ends: a request must not wait past its bound for another
// operation on the same volume and then carry on after Docker gave up on it.
func (k *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{held: make(chan struct{}, 1)}
		k.locks[key] = e
	}
	e.users++
	k.mu.Unlock()
	leave := func() {
		k.mu.Lock()
		e.users--
		if e.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.held <- struct{}{}:
		return func() { <-e.held; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}

// errVolumeBusy: a request gave up waiting for another operation on the same volume.
var errVolumeBusy = errors.New("another operation on this volume is still running on this server")

// lockVolume waits, within ctx, for the other operations on volume name here to end. Waiters
// get the volume in the order they came (keyedMutex is first come, first served).
func (d *Driver) lockVolume(ctx context.Context, op, name string) (func(), error) {
	start := time.Now()
	unlock, err := d.volLock.lock(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s volume %q: %w: gave up after %s, before Docker gives up on the request (%w); nothing was done, run the command again once it has ended",
			op, name, errVolumeBusy, time.Since(start).Round(time.Second), err)
	}
	return unlock, nil
}

// Docker's own bounds on one request to a volume plugin (moby's volume/drivers/proxy.go, the
// same from 20.10 to 28): 2 minutes for a Create or a Mount, 1 minute for any other; the
// plugin must be enabled with a --timeout that does not cut them shorter
// (dockbridge.PluginEnableTimeout). Docker does not tell the plugin when it gives up, so the
// plugin answers requestMargin before it does: otherwise it would go on and complete what
// Docker reported as failed (a Mount then stays counted for a container that never unmounts).
const (
	dockerLongRequest  = 2 * time.Minute
	dockerShortRequest = time.Minute
	requestMargin      = 10 * time.Second
	// MaxRequestTimeout is the largest REQUEST_TIMEOUT, the bound of a Create or a Mount.
	MaxRequestTimeout = dockerLongRequest - requestMargin
	// shortRequestBound is the most a Get or a Remove may take, and an Unmount's work once
	// it has the volume (see Unmount for why it waits for the volume without a bound).
	shortRequestBound = dockerShortRequest - requestMargin
)

// request kinds, for ctx.
const (
	longRequest  = true // Create, Mount
	shortRequest = false
)

// ctx makes the context of one Docker request, from its arrival (go-plugins-helpers gives
// none): REQUEST_TIMEOUT for a Create or a Mount, at most shortRequestBound for any other.
func (d *Driver) ctx(long bool) (context.Context, context.CancelFunc) {
	bound := d.s.RequestTimeout
	if !long {
		bound = min(bound, shortRequestBound)
	}
	return context.WithTimeout(context.Background(), bound)
}

// outOfTime says, on a request that ran out of its bound, what that means: the plugin
// stopped waiting, what it asked of Hetzner Cloud may still complete, and a retry picks that
// up (Create adopts the volume, Mount uses the attachment). Deferred by every request that
// does work.
func outOfTime(err *error) {
	if *err != nil && errors.Is(*err, context.DeadlineExceeded) && !errors.Is(*err, errVolumeBusy) {
		*err = fmt.Errorf("%w (the plugin stopped waiting at its bound, before Docker's: what it asked of Hetzner Cloud may still complete; run the command again, which takes up what was done)", *err)
	}
}

func (d *Driver) api() (Cloud, error) {
	if d.cloud == nil {
		return nil, fmt.Errorf("%w. %s", d.noCloud, d.tokenHint())
	}
	return d.cloud, nil
}

// tokenHint says how to give the plugin a (valid) token, the way it is set up.
func (d *Driver) tokenHint() string {
	if f := d.s.TokenFile; f != "" {
		return fmt.Sprintf("On a dockbridge server `docker dockbridge up` writes the token to %s; elsewhere write it there (root, 0600), then restart the plugin: docker plugin disable hetzner && docker plugin enable --timeout %d hetzner", f, dockbridge.PluginEnableTimeout)
	}
	return fmt.Sprintf("Set the token: docker plugin disable hetzner && docker plugin set hetzner HCLOUD_TOKEN=<token> && docker plugin enable --timeout %d hetzner", dockbridge.PluginEnableTimeout)
}

// instance is this server, from the metadata service (cached after the first answer).
func (d *Driver) instance(ctx context.Context) (hetzner.Instance, error) {
	d.instMu.Lock()
	defer d.instMu.Unlock()
	if d.inst != nil {
		return *d.inst, nil
	}
	inst, err := d.lookup(ctx)
	if err != nil {
		return hetzner.Instance{}, err
	}
	d.inst = &inst
	return inst, nil
}

// get returns a copy of the state of name, or nil.
func (d *Driver) get(name string) *VolumeState {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v := d.vols[name]; v != nil {
		return v.clone()
	}
	return nil
}

// put stores v (a copy) and saves the state file; del removes name.
func (d *Driver) put(v *VolumeState) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	v.Touched = time.Now()
	d.vols[v.Name] = v.clone()
	delete(d.misses, v.Name)
	return d.saveLocked()
}

func (d *Driver) del(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.vols, name)
	return d.saveLocked()
}

func (d *Driver) saveLocked() error {
	if err := d.store.Save(d.vols); err != nil {
		return err
	}
	if d.metrics != nil {
		n := 0
		for _, v := range d.vols {
			if v.Mountpoint != "" {
				n++
			}
		}
		d.metrics.mounted.Set(float64(n))
	}
	return nil
}

func stateFrom(name string, v *hetzner.Volume) *VolumeState {
	return &VolumeState{
		Name: name, ID: v.ID, SizeGB: v.SizeGB, Location: v.Location, ServerID: v.ServerID,
		Protected: v.Protected, Labels: cloneMap(v.Labels), CreatedAt: v.Created,
	}
}

func (v *VolumeState) refresh(h *hetzner.Volume) {
	v.SizeGB, v.Location, v.ServerID, v.Protected = h.SizeGB, h.Location, h.ServerID, h.Protected
	v.Labels = cloneMap(h.Labels)
}

func (d *Driver) devicePath(id int64) string {
	return filepath.Join(d.s.DeviceDir, "scsi-0HC_Volume_"+strconv.FormatInt(id, 10))
}

func (d *Driver) mountpoint(name string) string { return filepath.Join(d.s.MountRoot, name) }

// observe times one operation for metrics.
func (d *Driver) observe(op string, start time.Time, err *error) {
	if d.metrics == nil {
		return
	}
	result := "ok"
	if *err != nil {
		result = "error"
	}
	d.metrics.opDuration.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

// Capabilities: a volume can be used from any server of the project.
func (d *Driver) Capabilities() *volume.CapabilitiesResponse {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: "global"}}
}

// List answers from the state: no API request.
func (d *Driver) List() (resp *volume.ListResponse, err error) {
	defer d.observe("list", time.Now(), &err)
	d.mu.Lock()
	defer d.mu.Unlock()
	out := &volume.ListResponse{Volumes: []*volume.Volume{}}
	for _, n := range sortedNames(d.vols) {
		v := d.vols[n]
		out.Volumes = append(out.Volumes, &volume.Volume{Name: n, Mountpoint: v.Mountpoint, CreatedAt: created(v)})
	}
	return out, nil
}

func created(v *VolumeState) string {
	if v.CreatedAt.IsZero() {
		return ""
	}
	return v.CreatedAt.UTC().Format(time.RFC3339)
}

// Get answers from the state. A name the state does not know (a volume created on another
// server since the start sync) is looked up once through the API: answering "no such volume"
// would make `docker run -v NAME:/data` silently create a local volume instead. Misses are
// remembered for a minute.
func (d *Driver) Get(req *volume.GetRequest) (resp *volume.GetResponse, err error) {
	defer d.observe("get", time.Now(), &err)
	defer outOfTime(&err)
	v := d.get(req.Name)
	if v == nil {
		ctx, cancel := d.ctx(shortRequest)
		defer cancel()
		if v, err = d.discover(ctx, req.Name); err != nil {
			return nil, err
		}
	}
	return &volume.GetResponse{Volume: &volume.Volume{Name: v.Name, Mountpoint: v.Mountpoint, CreatedAt: created(v), Status: d.status(v)}}, nil
}

func (d *Driver) status(v *VolumeState) map[string]any {
	st := map[string]any{
		"hetzner_id": v.ID,
		"size_gb":    v.SizeGB,
		"location":   v.Location,
		"fstype":     v.FSType(),
		"protected":  v.Protected,
	}
	if v.ServerID != 0 {
		st["server_id"] = v.ServerID
		if inst := d.cachedInstance(); inst != nil && inst.ID == v.ServerID {
			st["server"] = inst.Hostname + " (this server)"
		}
		st["device"] = d.devicePath(v.ID)
	} else {
		st["server"] = "(detached)"
	}
	if u := v.UUID(); u != "" {
		st["fs_uuid"] = u
	}
	if h := v.Labels[labelHolder]; h != "" {
		st["holder"] = h
	}
	if v.Mountpoint != "" {
		// A volume resized while mounted: its device already shows the new size.
		if n, err := mount.DeviceSize(d.devicePath(v.ID)); err == nil && int(n>>30) > v.SizeGB {
			st["size_gb"] = int(n >> 30)
		}
		st["mounted"] = true
		st["containers"] = len(v.Refs)
		if u, err := d.m.Usage(v.Mountpoint); err == nil {
			st["used_bytes"] = u.UsedBytes
			st["size_bytes"] = u.SizeBytes
		}
	}
	return st
}

func (d *Driver) cachedInstance() *hetzner.Instance {
	d.instMu.Lock()
	defer d.instMu.Unlock()
	return d.inst
}

// discover finds a volume of ours by name through the API and adds it to the state.
func (d *Driver) discover(ctx context.Context, name string) (*VolumeState, error) {
	notFound := fmt.Errorf("no volume %q: create it with `docker volume create -d hetzner %s`", name, name)
	if CheckVolumeName(name) != nil {
		return nil, notFound
	}
	d.mu.Lock()
	missed, ok := d.misses[name]
	d.mu.Unlock()
	if ok && time.Since(missed) < time.Minute {
		return nil, notFound
	}
	cloud, err := d.api()
	if err != nil {
		return nil, err
	}
	h, err := cloud.VolumeByName(ctx, name)
	if errors.Is(err, hetzner.ErrNotFound) || err == nil && !ours(h, name) {
		d.mu.Lock()
		d.misses[name] = time.Now()
		d.mu.Unlock()
		return nil, notFound
	}
	if err != nil {
		return nil, d.explain(fmt.Errorf("look up volume %q: %w", name, err))
	}
	v := stateFrom(name, h)
	if err := d.put(v); err != nil {
		return nil, err
	}
	return v, nil
}

// Path answers from the state: the mount point while mounted, "" otherwise.
func (d *Driver) Path(req *volume.PathRequest) (resp *volume.PathResponse, err error) {
	defer d.observe("path", time.Now(), &err)
	v := d.get(req.Name)
	if v == nil {
		return nil, fmt.Errorf("no volume %q", req.Name)
	}
	return &volume.PathResponse{Mountpoint: v.Mountpoint}, nil
}

// Create creates the Hetzner volume, attached to this server (so the first mount needs no
// attach), in its location, with our labels. It is idempotent: when a retry finds the name
// taken by a volume we created for the same Docker name, it adopts it.
func (d *Driver) Create(req *volume.CreateRequest) (err error) {
	defer d.observe("create", time.Now(), &err)
	defer outOfTime(&err)
	ctx, cancel := d.ctx(longRequest)
	defer cancel()
	if err := CheckVolumeName(req.Name); err != nil {
		return err
	}
	o, err := ParseCreateOptions(req.Options, d.s)
	if err != nil {
		return fmt.Errorf("create volume %q: %w", req.Name, err)
	}
	unlock, err := d.lockVolume(ctx, "create", req.Name)
	if err != nil {
		return err
	}
	defer unlock()
	if d.get(req.Name) != nil {
		return nil
	}
	cloud, err := d.api()
	if err != nil {
		return err
	}
	inst, err := d.instance(ctx)
	if err != nil {
		return fmt.Errorf("create volume %q: %w", req.Name, err)
	}
	// Attached here at once (the first mount needs no attach), unless volumes move between
	// servers (DETACH_ON_UNMOUNT): then it is made detached, in this server's location, so a
	// task that lands on another server can take it (Swarm calls Create on every server).
	spec := hetzner.VolumeSpec{Name: req.Name, SizeGB: o.SizeGB, ServerID: inst.ID}
	if d.s.DetachOnUnmount && inst.Location() != "" {
		spec.ServerID, spec.Location = 0, inst.Location()
	}
	labels, err := createLabels(req.Name, o, spec.ServerID)
	if err != nil {
		return fmt.Errorf("create volume %q: %w", req.Name, err)
	}
	if spec.ServerID == 0 {
		// Made here, held nowhere: the release label names this server, which is how `docker
		// dockbridge destroy --volumes` finds a volume no container ever used.
		labels[labelReleased] = strconv.FormatInt(inst.ID, 10)
	}
	spec.Labels = labels
	h, err := cloud.CreateVolume(ctx, spec)
	if errors.Is(err, hetzner.ErrAlreadyExists) {
		existing, gerr := cloud.VolumeByName(ctx, req.Name)
		if gerr != nil {
			return d.explain(fmt.Errorf("create volume %q: the name is taken, and looking it up failed: %w", req.Name, gerr))
		}
		if !ours(existing, req.Name) {
			return fmt.Errorf("create volume %q: a Hetzner volume with this name exists (id %d) and was not created by this plugin for this Docker volume: choose another name, or label it managed-by=dockbridge and dockbridge/volume=%s to adopt it", req.Name, existing.ID, req.Name)
		}
		d.log.WithField("volume", req.Name).Infof("adopting existing volume %d (a retried create)", existing.ID)
		h, err = existing, nil
	}
	if err != nil && !errors.Is(err, hetzner.ErrAlreadyExists) && ctx.Err() == nil {
		// The volume may exist even though the request failed (the attach action failed, or
		// the answer was lost): adopt it now if it does, or a retry will.
		if existing, gerr := cloud.VolumeByName(ctx, req.Name); gerr == nil && ours(existing, req.Name) {
			d.log.WithField("volume", req.Name).Warnf("create reported %v, but volume %d exists: adopting it", err, existing.ID)
			h, err = existing, nil
		}
	}
	if err != nil {
		return d.explain(fmt.Errorf("create volume %q: %w", req.Name, err))
	}
	v := stateFrom(req.Name, h)
	if err := d.put(v); err != nil {
		return err
	}
	if o.Protection && !h.Protected {
		if err := cloud.SetVolumeProtection(ctx, h.ID, true); err != nil {
			return d.explain(fmt.Errorf("create volume %q: the volume %d exists, but turning on delete protection failed (run the create again): %w", req.Name, h.ID, err))
		}
		v.Protected = true
		if err := d.put(v); err != nil {
			return err
		}
	}
	d.log.WithFields(logrus.Fields{"volume": req.Name, "id": h.ID, "size_gb": h.SizeGB, "location": h.Location}).Info("created volume")
	return nil
}
