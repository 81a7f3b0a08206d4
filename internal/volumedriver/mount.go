package volumedriver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/docker/go-plugins-helpers/volume"
	"github.com/sirupsen/logrus"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/mount"
)

// Errors a person can act on; errors.Is works on what the driver returns.
var (
	ErrInUse             = errors.New("volume in use")
	ErrAttachedElsewhere = errors.New("volume attached to another server")
	ErrDeviceMissing     = errors.New("volume device did not appear")
	ErrWrongVolume       = errors.New("device is not this volume")
)

// Mount makes the volume's filesystem available under the propagated mount and counts the
// container (mount ID) using it. A volume already mounted here costs no API request, and
// neither does one attached here: the device link proves the attachment, the recorded
// filesystem UUID proves the identity.
func (d *Driver) Mount(req *volume.MountRequest) (resp *volume.MountResponse, err error) {
	defer d.observe("mount", time.Now(), &err)
	defer outOfTime(&err)
	ctx, cancel := d.ctx(longRequest)
	defer cancel()
	unlock, err := d.lockVolume(ctx, "mount", req.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v := d.get(req.Name)
	if v == nil {
		if v, err = d.discover(ctx, req.Name); err != nil {
			return nil, err
		}
	}
	dev := d.devicePath(v.ID)
	if v.Mountpoint != "" {
		if ok, err := d.mountedHere(v.Mountpoint, dev); err != nil {
			return nil, fmt.Errorf("mount volume %q: %w", v.Name, err)
		} else if ok {
			addRef(v, req.ID)
			if err := d.put(v); err != nil {
				return nil, err
			}
			return &volume.MountResponse{Mountpoint: v.Mountpoint}, nil
		}
	}
	if err := d.ensureAttached(ctx, v); err != nil {
		return nil, err
	}
	fresh, err := d.checkDevice(ctx, v, dev)
	if err != nil {
		return nil, err
	}
	mp := d.mountpoint(v.Name)
	growMounted := false
	if !fresh {
		growMounted = d.growBeforeMount(ctx, v, dev)
	}
	if err := d.m.Mount(ctx, dev, mp, v.FSType(), v.MountOpts()); err != nil {
		return nil, fmt.Errorf("mount volume %q: %w", v.Name, err)
	}
	if growMounted {
		d.growAfterMount(ctx, v, dev, mp)
	}
	if fresh {
		if err := applyOwnership(mp, v.Labels); err != nil {
			_ = d.m.Unmount(ctx, mp)
			return nil, fmt.Errorf("mount volume %q: set up the new filesystem's root directory: %w", v.Name, err)
		}
	}
	v.Mountpoint, v.Device = mp, dev
	addRef(v, req.ID)
	if err := d.put(v); err != nil {
		_ = d.m.Unmount(ctx, mp)
		return nil, err
	}
	d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "server": d.serverField(), "device": dev, "mountpoint": mp}).Info("mounted volume")
	return &volume.MountResponse{Mountpoint: mp}, nil
}

// growBeforeMount grows the filesystem when the volume was resized since it was last grown
// (`docker dockbridge volume resize` while no container used it, or a resize in the console):
// an ext4 now, unmounted (mount.GrowUnmounted: no CAP_SYS_RESOURCE needed); for an xfs, which
// grows only mounted, it returns true and growAfterMount grows it. A failed growth is logged and
// the volume mounts as it is: its data matters more than its new size.
func (d *Driver) growBeforeMount(ctx context.Context, v *VolumeState, dev string) (growMounted bool) {
	log := d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "device": dev})
	sizes, grown, err := d.m.GrowUnmounted(ctx, dev, v.FSType())
	if sizes.DeviceBytes>>30 > int64(v.SizeGB) {
		v.SizeGB = int(sizes.DeviceBytes >> 30) // resized since the state last heard from the API
	}
	switch {
	case errors.Is(err, mount.ErrNotMounted):
		return true
	case err != nil:
		log.WithError(err).Warn("the device is larger than its filesystem, and growing it failed: mounting it as it is")
	case grown:
		log.WithFields(logrus.Fields{"filesystem_bytes": sizes.FilesystemBytes, "device_bytes": sizes.DeviceBytes}).Info("grew the filesystem to the resized volume before mounting it")
	}
	return false
}

// growAfterMount grows a just-mounted xfs to its resized device.
func (d *Driver) growAfterMount(ctx context.Context, v *VolumeState, dev, mp string) {
	log := d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "device": dev})
	if err := d.m.Grow(ctx, dev, mp, v.FSType()); err != nil {
		log.WithError(err).Warn("the device is larger than its filesystem, and growing it failed: it stays mounted as it is")
		return
	}
	log.Info("grew the filesystem to the resized volume after mounting it")
}

// addRef counts a Mount of id: the first in Refs, a repeated one (docker cp of a running
// container) in Again.
func addRef(v *VolumeState, id string) {
	if v.Refs == nil {
		v.Refs = map[string]time.Time{}
	}
	if _, ok := v.Refs[id]; !ok {
		v.Refs[id] = time.Now().UTC()
		return
	}
	if v.Again == nil {
		v.Again = map[string]int{}
	}
	v.Again[id]++
}

// dropRef counts an Unmount of id: a repeated Mount's first, then the ID itself.
func dropRef(v *VolumeState, id string) {
	if v.Again[id] > 0 {
		if v.Again[id]--; v.Again[id] == 0 {
			delete(v.Again, id)
		}
		return
	}
	delete(v.Refs, id)
}

// mountedHere reports whether dev is what is mounted on mp.
func (d *Driver) mountedHere(mp, dev string) (bool, error) {
	cur, mounted, err := d.m.MountedDevice(mp)
	if err != nil || !mounted {
		return false, err
	}
	// The mount table shows /dev/<name>; dev is a by-id link to it.
	want, err := evalSymlinks(dev)
	if err != nil {
		want = dev
	}
	return cur == want || cur == dev, nil
}

// ensureAttached makes sure the volume is attached to this server and its device is there.
// A present device link of a volume this server holds is the kernel saying it is attached: no
// API request then. Otherwise the volume is read, and
//   - attached to another server: taken over only when mayTakeOver allows it (detached from
//     that server, and only from it, then attached here); refused at once otherwise;
//   - attached here but released by this server (its detach failed, or the plugin was
//     stopped): another server may be taking it over right now on the strength of that
//     release, so it is taken back the way another server would take it, by a detach and a new
//     attach (an attach is the one thing two servers cannot both do);
//   - detached: attached here.
//
// This server is recorded as its holder after the attach, so a server that loses a race to
// attach leaves the winner's labels alone.
func (d *Driver) ensureAttached(ctx context.Context, v *VolumeState) error {
	dev := d.devicePath(v.ID)
	inst, err := d.instance(ctx)
	if err != nil {
		return fmt.Errorf("mount volume %q: %w", v.Name, err)
	}
	me := strconv.FormatInt(inst.ID, 10)
	if d.devOK(dev) && v.Labels[labelHolder] == me && v.Labels[labelReleased] == "" {
		return nil
	}
	cloud, err := d.api()
	if err != nil {
		return err
	}
	h, err := cloud.Volume(ctx, v.ID)
	if errors.Is(err, hetzner.ErrNotFound) {
		return fmt.Errorf("mount volume %q: the Hetzner volume %d no longer exists (deleted outside Docker?): remove it with `docker volume rm %s`", v.Name, v.ID, v.Name)
	}
	if err != nil {
		return d.explain(fmt.Errorf("mount volume %q: %w", v.Name, err))
	}
	v.refresh(h)
	if loc := inst.Location(); loc != "" && h.Location != loc && h.ServerID != inst.ID {
		return fmt.Errorf("mount volume %q: the volume is in location %s and this server in %s; Hetzner volumes attach only to servers in their location", v.Name, h.Location, inst.Location())
	}
	switch {
	case h.ServerID == inst.ID && h.Labels[labelReleased] == me:
		d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "server": inst.ID}).Info("taking back a volume this server released: detach, then attach again")
		err := cloud.DetachVolumeFrom(ctx, v.ID, inst.ID, nil)
		if err != nil && !errors.Is(err, hetzner.ErrMoved) {
			_ = d.put(v)
			return d.explain(fmt.Errorf("mount volume %q: take back the volume this server released: %w", v.Name, err))
		}
		h.ServerID = 0
	case h.ServerID != 0 && h.ServerID != inst.ID:
		if err := d.takeOver(ctx, cloud, v, h); err != nil {
			_ = d.put(v)
			return err
		}
		h.ServerID = 0
	}
	if h.ServerID == 0 {
		d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "server": inst.ID}).Info("attaching volume")
		err := cloud.AttachVolume(ctx, v.ID, inst.ID, false)
		if errors.Is(err, hetzner.ErrAlreadyAttached) {
			// A lost answer of our own earlier attach, or another server was faster.
			again, gerr := cloud.Volume(ctx, v.ID)
			switch {
			case gerr != nil:
			case again.ServerID == inst.ID:
				err = nil
			default:
				v.refresh(again)
				_ = d.put(v)
				return fmt.Errorf("mount volume %q: %w: server %d attached it first; it stays there until that server releases it (Swarm retries the task)", v.Name, ErrAttachedElsewhere, again.ServerID)
			}
		}
		if err != nil {
			_ = d.put(v)
			return d.explain(fmt.Errorf("mount volume %q: %w", v.Name, err))
		}
		v.ServerID = inst.ID
	}
	if v.Labels[labelHolder] != me || v.Labels[labelReleased] != "" {
		labels := cloneMap(v.Labels)
		labels[labelHolder] = me
		delete(labels, labelReleased)
		nh, err := cloud.SetVolumeLabels(ctx, v.ID, labels)
		if err != nil {
			_ = d.put(v)
			return d.explain(fmt.Errorf("mount volume %q: record this server as its holder: %w", v.Name, err))
		}
		v.refresh(nh)
	}
	if err := d.put(v); err != nil {
		return err
	}
	return d.waitDevice(ctx, v.Name, dev)
}

// takeOver detaches v from the server it is attached to, if and only if mayTakeOver allows it,
// checked again on the volume as it is just before the detach request.
func (d *Driver) takeOver(ctx context.Context, cloud Cloud, v *VolumeState, h *hetzner.Volume) error {
	if err := mayTakeOver(ctx, cloud, h); err != nil {
		return fmt.Errorf("mount volume %q: %w", v.Name, err)
	}
	d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "from_server": h.ServerID}).Warn("taking the volume over from a server that cannot be using it")
	err := cloud.DetachVolumeFrom(ctx, v.ID, h.ServerID, func(fresh *hetzner.Volume) error { return mayTakeOver(ctx, cloud, fresh) })
	if errors.Is(err, hetzner.ErrMoved) {
		return nil // detached meanwhile (its server released it); if another server has it, the attach says so
	}
	if errors.Is(err, ErrAttachedElsewhere) {
		return fmt.Errorf("mount volume %q: %w", v.Name, err)
	}
	if err != nil {
		return d.explain(fmt.Errorf("mount volume %q: detach it from server %d: %w", v.Name, h.ServerID, err))
	}
	return nil
}

// mayTakeOver is THE fence: the one rule for taking a volume attached to another server (the
// holder). It is allowed only when the holder cannot be using it, according to the API:
//   - the holder released it: its plugin recorded dockbridge/released=<holder id> on the
//     volume (and no dockbridge/holder=<holder id>), after its last container there stopped
//     and its filesystem was unmounted; or
//   - the holder was deleted; or
//   - the holder is off (status "off": powered off, its filesystems gone with it).
//
// Never because the holder is unreachable, slow, or its plugin silent: a server that does
// not answer may still be writing. Any other status (running, starting, stopping, deleting,
// ...), or a failure to ask, refuses with ErrAttachedElsewhere naming the holder and what to
// do. No other code detaches a volume from another server.
func mayTakeOver(ctx context.Context, cloud Cloud, h *hetzner.Volume) error {
	holder := strconv.FormatInt(h.ServerID, 10)
	if h.Labels[labelReleased] == holder && h.Labels[labelHolder] != holder {
		return nil
	}
	srv, err := cloud.Server(ctx, h.ServerID)
	if errors.Is(err, hetzner.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: it is attached to server %d, and asking the API whether that server still uses it failed, so it stays there (retry): %v", ErrAttachedElsewhere, h.ServerID, err)
	}
	if srv.Off() {
		return nil
	}
	return fmt.Errorf("%w: it is attached to server %q (id %d, %s), which has not released it and may be using it. It comes here by itself once the container using it there stops (that server's plugin then releases it; with Swarm the task is retried meanwhile) or once that server is off. To move it now, stop that container (with Swarm: docker node update --availability drain %s), or shut that server down (hcloud server shutdown %d). A server that does not answer is not enough: it may still be writing",
		ErrAttachedElsewhere, srv.Name, srv.ID, srv.Status, srv.Name, srv.ID)
}

// waitDevice waits, with DEVICE_WAIT_TIMEOUT as the bound, for the volume's device link.
func (d *Driver) waitDevice(ctx context.Context, name, dev string) error {
	request := ctx
	ctx, cancel := context.WithTimeout(ctx, d.s.DeviceWaitTimeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !d.devOK(dev) {
		select {
		case <-ctx.Done():
			if request.Err() != nil { // the request's bound came first
				return fmt.Errorf("mount volume %q: the volume is attached, waiting for %s: %w", name, dev, request.Err())
			}
			return fmt.Errorf("mount volume %q: %w: the volume is attached but %s did not appear within %s (DEVICE_WAIT_TIMEOUT); check that the plugin sees the host's /dev and that udev runs, then retry", name, ErrDeviceMissing, dev, d.s.DeviceWaitTimeout)
		case <-t.C:
		}
	}
	return nil
}

func isBlockDevice(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && (fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0)
}

// checkDevice makes sure the device is this volume before anything is mounted:
//   - a filesystem whose UUID matches the one recorded on the volume: mount it;
//   - ext4 or xfs and no UUID recorded yet (first use of a volume with data): adopt it, record it;
//   - no signature of any kind and no UUID recorded: format it (fresh = true), record the UUID;
//   - anything else (another UUID, a blank device where a filesystem was recorded, a partition
//     table, LUKS, ...): refuse, touching nothing.
func (d *Driver) checkDevice(ctx context.Context, v *VolumeState, dev string) (fresh bool, err error) {
	sig, err := d.m.Probe(ctx, dev)
	if err != nil {
		return false, fmt.Errorf("mount volume %q: %w", v.Name, err)
	}
	uuid := v.UUID()
	switch {
	case uuid != "" && sig.Blank():
		return false, fmt.Errorf("mount volume %q: %w: its filesystem was recorded as %s UUID=%s, but %s is blank. Refusing to format: the wrong volume may be at this path", v.Name, ErrWrongVolume, v.FSType(), uuid, dev)
	case uuid != "":
		if err := sig.Expect(v.FSType(), uuid); err != nil {
			return false, fmt.Errorf("mount volume %q: %w: %v. Nothing was changed on the device", v.Name, ErrWrongVolume, err)
		}
		return false, nil
	case sig.Blank():
		d.log.WithFields(logrus.Fields{"volume": v.Name, "device": dev, "fstype": v.FSType()}).Info("device is blank: formatting")
		sig, err = d.m.Format(ctx, dev, v.FSType(), mount.FormatOptions{})
		if err != nil {
			return false, fmt.Errorf("mount volume %q: %w", v.Name, err)
		}
		fresh = true
	case (sig.Type == "ext4" || sig.Type == "xfs") && sig.Expect(sig.Type, "") == nil:
		d.log.WithFields(logrus.Fields{"volume": v.Name, "device": dev, "found": sig.String()}).Info("device holds a filesystem and none was recorded: adopting it")
	default:
		return false, fmt.Errorf("mount volume %q: %w: %s holds %s, not an ext4 or xfs filesystem. Refusing to mount or format it; nothing was changed on the device", v.Name, mount.ErrForeignSignature, dev, sig)
	}
	if err := d.recordFilesystem(ctx, v, sig); err != nil {
		return false, err
	}
	return fresh, nil
}

// recordFilesystem writes the filesystem's type and UUID on the volume, where every server
// checks it before mounting.
func (d *Driver) recordFilesystem(ctx context.Context, v *VolumeState, sig mount.Signature) error {
	cloud, err := d.api()
	if err != nil {
		return err
	}
	labels := cloneMap(v.Labels)
	labels[labelUUID] = sig.UUID
	labels[labelFSType] = sig.Type
	h, err := cloud.SetVolumeLabels(ctx, v.ID, labels)
	if err != nil {
		return d.explain(fmt.Errorf("mount volume %q: record its filesystem UUID %s on the volume: %w", v.Name, sig.UUID, err))
	}
	v.refresh(h)
	return d.put(v)
}

func applyOwnership(mp string, labels map[string]string) error {
	uid, gid := -1, -1
	if s := labels[labelUID]; s != "" {
		uid, _ = strconv.Atoi(s)
	}
	if s := labels[labelGID]; s != "" {
		gid, _ = strconv.Atoi(s)
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(mp, uid, gid); err != nil {
			return err
		}
	}
	if s := labels[labelMode]; s != "" {
		m, err := strconv.ParseUint(s, 8, 32)
		if err != nil {
			return fmt.Errorf("mode label %q: %w", s, err)
		}
		if err := os.Chmod(mp, os.FileMode(m&0o777)|modeBits(m)); err != nil {
			return err
		}
	}
	return nil
}

func modeBits(m uint64) os.FileMode {
	var fm os.FileMode
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// Unmount drops the container's reference; the last one unmounts the filesystem and, with
// DETACH_ON_UNMOUNT, releases the volume (detaches it from this server, so another one may
// take it). The state is saved before the unmount, so a kill in between leaves a mount without
// references that the next start removes, never a reference without a container. An Unmount
// for a container that never mounted the volume here (its Mount failed, e.g. the fence refused
// it) changes nothing.
//
// Unlike every other request, an Unmount waits for its turn on the volume however long another
// operation takes (a slow attach of another container's Mount: at most REQUEST_TIMEOUT), and
// is done even when Docker gave up on it meanwhile: Docker goes on as if it had been (the
// container is stopped, the error only logged) and does not send it again, so an Unmount that
// gave up would leave the volume counted here for a container that is gone: mounted for good,
// never released to another server, refused by `docker volume rm`. Done late, the count is
// right again (the next start of that container Mounts again). Its own work is bounded once it
// has the volume.
func (d *Driver) Unmount(req *volume.UnmountRequest) (err error) {
	defer d.observe("unmount", time.Now(), &err)
	defer outOfTime(&err)
	start := time.Now()
	unlock, _ := d.volLock.lock(context.Background(), req.Name) // never fails without a deadline
	defer unlock()
	if waited := time.Since(start); waited > shortRequestBound {
		d.log.WithFields(logrus.Fields{"volume": req.Name, "container": req.ID, "waited": waited.Round(time.Second).String()}).
			Warn("unmount waited that long for another operation on the volume: Docker may have given up on it and logged an error for the container's stop; it is done now all the same")
	}
	ctx, cancel := d.ctx(shortRequest)
	defer cancel()
	v := d.get(req.Name)
	if v == nil {
		return fmt.Errorf("unmount: no volume %q", req.Name)
	}
	if _, ok := v.Refs[req.ID]; !ok && v.Mountpoint == "" {
		d.log.WithFields(logrus.Fields{"volume": v.Name, "container": req.ID}).Debug("unmount of a volume not mounted here: nothing to do")
		return nil
	}
	dropRef(v, req.ID)
	if len(v.Refs) > 0 {
		return d.put(v)
	}
	mp := v.Mountpoint
	v.Mountpoint, v.Device = "", ""
	if err := d.put(v); err != nil {
		return err
	}
	if mp != "" {
		if err := d.m.Unmount(ctx, mp); err != nil {
			return fmt.Errorf("unmount volume %q: %w", v.Name, err)
		}
		_ = os.Remove(mp)
	}
	d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "server": d.serverField()}).Info("unmounted volume")
	if d.s.DetachOnUnmount {
		return d.release(ctx, v)
	}
	return nil
}

// serverField is this server's id for log lines (0 before the metadata service answered).
func (d *Driver) serverField() int64 {
	if inst := d.cachedInstance(); inst != nil {
		return inst.ID
	}
	return 0
}

// release detaches the volume from this server, if it is attached here, after its last mount
// here ended. A detach that fails is retried (bounded); one that keeps failing records the
// release on the volume (dockbridge/released=<this server>), so another server may still take
// it over.
func (d *Driver) release(ctx context.Context, v *VolumeState) error {
	cloud, err := d.api()
	if err != nil {
		return err
	}
	inst, err := d.instance(ctx)
	if err != nil {
		return err
	}
	var detachErr error
	for attempt, delay := 1, time.Second; ; attempt, delay = attempt+1, 2*delay {
		detachErr = cloud.DetachVolumeFrom(ctx, v.ID, inst.ID, nil)
		if detachErr == nil || errors.Is(detachErr, hetzner.ErrMoved) || errors.Is(detachErr, hetzner.ErrNotFound) {
			// Detached (by us, or meanwhile), or not attached here: nothing of it is here.
			d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID, "server": inst.ID}).Info("released volume: detached from this server")
			v.ServerID = 0
			return d.put(v)
		}
		if attempt == 3 || ctx.Err() != nil || !retryable(detachErr) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	if _, _, err := d.recordRelease(ctx, v); err != nil {
		return errors.Join(d.explain(fmt.Errorf("release volume %q: detach: %w", v.Name, detachErr)), err)
	}
	return d.explain(fmt.Errorf("release volume %q: detach: %w (it is marked released: another server may take it over)", v.Name, detachErr))
}

// retryable: an API failure worth another try (the API did not answer, or answered 5xx, or a
// running action held the volume too long).
func retryable(err error) bool {
	return errors.Is(err, hetzner.ErrUnavailable) || errors.Is(err, hetzner.ErrLocked) || errors.Is(err, hetzner.ErrConflict)
}

// recordRelease writes on the volume, while it is attached to this server, that this server
// released it (dockbridge/released=<its id>, no dockbridge/holder): mayTakeOver then lets
// another server take it. The volume is read first, so a volume already elsewhere keeps its
// labels; h is nil then.
func (d *Driver) recordRelease(ctx context.Context, v *VolumeState) (hetzner.Instance, *hetzner.Volume, error) {
	cloud, err := d.api()
	if err != nil {
		return hetzner.Instance{}, nil, err
	}
	inst, err := d.instance(ctx)
	if err != nil {
		return inst, nil, err
	}
	cur, err := cloud.Volume(ctx, v.ID)
	if err != nil {
		return inst, nil, d.explain(fmt.Errorf("release volume %q: %w", v.Name, err))
	}
	v.refresh(cur)
	if cur.ServerID != inst.ID {
		return inst, nil, d.put(v)
	}
	labels := cloneMap(cur.Labels)
	delete(labels, labelHolder)
	labels[labelReleased] = strconv.FormatInt(inst.ID, 10)
	h, err := cloud.SetVolumeLabels(ctx, v.ID, labels)
	if err != nil {
		return inst, nil, d.explain(fmt.Errorf("release volume %q: %w", v.Name, err))
	}
	v.refresh(h)
	return inst, h, d.put(v)
}

// ReleaseAll records the release of every volume this server holds that no container uses
// and that is not mounted, so another server may take it over at once. The plugin runs it
// when it is stopped: dockerd stops it after every container (their Unmounts came first) when
// Docker stops, as on the clean stop before a server is deleted. A volume still in use stays
// held. It returns the names released and the errors met; ctx bounds it (dockerd kills a
// plugin 10 s after asking it to stop).
func (d *Driver) ReleaseAll(ctx context.Context) (released []string, err error) {
	if _, err := d.api(); err != nil {
		return nil, err
	}
	inst, err := d.instance(ctx)
	if err != nil {
		return nil, fmt.Errorf("release volumes: %w", err)
	}
	me := strconv.FormatInt(inst.ID, 10)
	d.mu.Lock()
	names := make([]string, 0, len(d.vols))
	for n := range d.vols {
		names = append(names, n)
	}
	d.mu.Unlock()
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("release volume %q: %w", name, ctx.Err()))
			continue
		}
		unlock, err := d.lockVolume(ctx, "release", name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v := d.get(name)
		if v != nil && v.Labels[labelHolder] == me && len(v.Refs) == 0 && v.Mountpoint == "" {
			if _, h, err := d.recordRelease(ctx, v); err != nil {
				errs = append(errs, err)
			} else if h != nil {
				released = append(released, name)
				d.log.WithFields(logrus.Fields{"volume": name, "id": v.ID, "server": inst.ID}).Info("released volume: another server may take it over")
			}
		}
		unlock()
	}
	return released, errors.Join(errs...)
}

// ServeUntilStopped runs serve (the plugin's socket) until the process gets SIGTERM or SIGINT,
// as Docker sends when it stops the plugin, then releases the unused volumes (ReleaseAll,
// within 8 s: Docker kills a plugin 10 s after asking it to stop) and returns nil. An error
// of serve is returned at once.
func (d *Driver) ServeUntilStopped(serve func() error) error {
	stopped, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-stopped.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	released, err := d.ReleaseAll(ctx)
	d.log.WithField("released", released).Info("stopping: volumes released for other servers")
	if err != nil {
		d.log.WithError(err).Warn("stopping: not every unused volume could be released")
	}
	return nil
}

// Remove deletes the Hetzner volume. It refuses while a container uses it, while another server
// holds it, and when delete protection is on (saying how to lift it).
func (d *Driver) Remove(req *volume.RemoveRequest) (err error) {
	defer d.observe("remove", time.Now(), &err)
	defer outOfTime(&err)
	ctx, cancel := d.ctx(shortRequest)
	defer cancel()
	unlock, err := d.lockVolume(ctx, "remove", req.Name)
	if err != nil {
		return err
	}
	defer unlock()
	v := d.get(req.Name)
	if v == nil {
		if v, err = d.discover(ctx, req.Name); err != nil {
			return err
		}
	}
	if len(v.Refs) > 0 {
		return fmt.Errorf("remove volume %q: %w by %d container(s): stop and remove them first", v.Name, ErrInUse, len(v.Refs))
	}
	cloud, err := d.api()
	if err != nil {
		return err
	}
	if v.Protected {
		// Protection may have been lifted since: ask before refusing.
		h, err := cloud.Volume(ctx, v.ID)
		if err != nil && !errors.Is(err, hetzner.ErrNotFound) {
			return d.explain(fmt.Errorf("remove volume %q: %w", v.Name, err))
		}
		if err == nil {
			v.refresh(h)
			if h.Protected {
				return protectedError(v)
			}
		}
	}
	inst, err := d.instance(ctx)
	if err != nil {
		return err
	}
	if v.Mountpoint != "" {
		if err := d.m.Unmount(ctx, v.Mountpoint); err != nil {
			return fmt.Errorf("remove volume %q: %w", v.Name, err)
		}
		v.Mountpoint = ""
	}
	attachedHere := d.devOK(d.devicePath(v.ID))
	if !attachedHere {
		h, err := cloud.Volume(ctx, v.ID)
		if errors.Is(err, hetzner.ErrNotFound) {
			return d.del(v.Name)
		}
		if err != nil {
			return d.explain(fmt.Errorf("remove volume %q: %w", v.Name, err))
		}
		v.refresh(h)
		if h.Protected {
			_ = d.put(v)
			return protectedError(v)
		}
		switch h.ServerID {
		case 0:
		case inst.ID:
			attachedHere = true
		default:
			if err := mayTakeOver(ctx, cloud, h); err != nil {
				return fmt.Errorf("remove volume %q: %w", v.Name, err)
			}
			err := cloud.DetachVolumeFrom(ctx, v.ID, h.ServerID, func(fresh *hetzner.Volume) error { return mayTakeOver(ctx, cloud, fresh) })
			if err != nil && !errors.Is(err, hetzner.ErrMoved) {
				return d.explain(fmt.Errorf("remove volume %q: detach it from server %d: %w", v.Name, h.ServerID, err))
			}
		}
	}
	if attachedHere {
		if err := cloud.DetachVolumeFrom(ctx, v.ID, inst.ID, nil); err != nil && !errors.Is(err, hetzner.ErrMoved) {
			return d.explain(fmt.Errorf("remove volume %q: detach: %w", v.Name, err))
		}
	}
	err = cloud.DeleteVolume(ctx, v.ID)
	if errors.Is(err, hetzner.ErrProtected) {
		v.Protected = true
		_ = d.put(v)
		return protectedError(v)
	}
	if err != nil && !errors.Is(err, hetzner.ErrNotFound) {
		return d.explain(fmt.Errorf("remove volume %q: delete Hetzner volume %d: %w", v.Name, v.ID, err))
	}
	d.log.WithFields(logrus.Fields{"volume": v.Name, "id": v.ID}).Info("deleted volume")
	return d.del(v.Name)
}

func protectedError(v *VolumeState) error {
	return fmt.Errorf("remove volume %q: Hetzner volume %d has delete protection (created with protection=true). Lift it first with `hcloud volume disable-protection %d delete` or in the Hetzner Cloud console (Volumes > %s > Protection), then run `docker volume rm %s` again",
		v.Name, v.ID, v.ID, v.Name, v.Name)
}
