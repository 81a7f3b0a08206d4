package volumedriver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
)

// Recover reconciles the saved state with the kernel after a start: a plugin restart
// (`docker plugin disable -f` unmounts everything under the propagated mount), a kill -9 in the
// middle of Mount or Unmount, or a dockerd restart. It sends no API request, so it can neither
// attach a volume twice nor detach one:
//   - a volume with references (containers still running) whose filesystem is not mounted any
//     more is verified again and mounted again, so Path works and a later Unmount releases it;
//   - a mount without references (a kill between the state save and the unmount, or in the
//     middle of a first Mount) is unmounted;
//   - a mount under MOUNT_ROOT the state does not know is unmounted, unless the state file was
//     damaged and set aside at start: then it is kept (a container may use it) and the next
//     Mount of that volume takes it over.
func (d *Driver) Recover(ctx context.Context) error {
	d.mu.Lock()
	names := sortedNames(d.vols)
	d.mu.Unlock()
	known := map[string]bool{}
	var problems []string
	for _, name := range names {
		known[name] = true
		if err := d.recoverOne(ctx, name); err != nil {
			d.log.WithField("volume", name).Errorf("recover: %v", err)
			problems = append(problems, err.Error())
		}
	}
	entries, err := os.ReadDir(d.s.MountRoot)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("recover: read %s: %w", d.s.MountRoot, err)
	}
	for _, e := range entries {
		if !e.IsDir() || known[e.Name()] {
			continue
		}
		mp := filepath.Join(d.s.MountRoot, e.Name())
		if _, mounted, err := d.m.MountedDevice(mp); err == nil && mounted {
			if d.stateLost {
				d.log.WithField("mountpoint", mp).Warn("recover: keeping a mount the set-aside state may have known")
				continue
			}
			d.log.WithField("mountpoint", mp).Warn("recover: unmounting a mount the state does not know")
			if err := d.m.Unmount(ctx, mp); err != nil {
				problems = append(problems, err.Error())
				continue
			}
			_ = os.Remove(mp)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("recover: %d problem(s); first: %s", len(problems), problems[0])
	}
	return nil
}

func (d *Driver) recoverOne(ctx context.Context, name string) error {
	unlock, err := d.lockVolume(ctx, "recover", name)
	if err != nil {
		return err
	}
	defer unlock()
	v := d.get(name)
	if v == nil {
		return nil
	}
	mp := d.mountpoint(name)
	dev := d.devicePath(v.ID)
	mounted, err := d.mountedHere(mp, dev)
	if err != nil {
		return err
	}
	log := d.log.WithFields(logrus.Fields{"volume": name, "refs": len(v.Refs)})
	switch {
	case len(v.Refs) == 0 && (mounted || v.Mountpoint != ""):
		log.Info("recover: unmounting a mount no container uses")
		if err := d.m.Unmount(ctx, mp); err != nil {
			return err
		}
		_ = os.Remove(mp)
		v.Mountpoint, v.Device = "", ""
		return d.put(v)
	case len(v.Refs) > 0 && mounted:
		if v.Mountpoint != mp {
			v.Mountpoint, v.Device = mp, dev
			return d.put(v)
		}
		return nil
	case len(v.Refs) > 0:
		if !d.devOK(dev) {
			return fmt.Errorf("%d container(s) used volume %q but its device %s is gone; they keep their own mount, a later Unmount will still work", len(v.Refs), name, dev)
		}
		sig, err := d.m.Probe(ctx, dev)
		if err != nil {
			return err
		}
		if v.UUID() == "" {
			return fmt.Errorf("volume %q: no filesystem UUID recorded: not mounting it again until the next Mount verifies it", name)
		}
		if err := sig.Expect(v.FSType(), v.UUID()); err != nil {
			return fmt.Errorf("volume %q: %w: %v", name, ErrWrongVolume, err)
		}
		if err := d.m.Mount(ctx, dev, mp, v.FSType(), v.MountOpts()); err != nil {
			return err
		}
		log.Info("recover: mounted again for the containers still using it")
		v.Mountpoint, v.Device = mp, dev
		return d.put(v)
	}
	return nil
}

// Sync merges the API's list of the project's dockbridge volumes into the state, once after
// start (one or two requests: 50 volumes a page). Volumes created on other servers appear in
// `docker volume ls`; volumes deleted elsewhere disappear unless mounted here.
func (d *Driver) Sync(ctx context.Context) error {
	cloud, err := d.api()
	if err != nil {
		return err
	}
	started := time.Now()
	list, err := cloud.Volumes(ctx, labelManagedBy+"="+managedByValue)
	if err != nil {
		return d.explain(fmt.Errorf("list the project's volumes: %w", err))
	}
	seen := map[string]bool{}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range list {
		name := h.Labels[labelName]
		if name == "" || h.Name != name {
			continue
		}
		seen[name] = true
		cur := d.vols[name]
		switch {
		case cur == nil:
			d.vols[name] = stateFrom(name, h)
		case cur.Touched.Before(started) && cur.ID == h.ID:
			cur.refresh(h)
		}
	}
	for name, v := range d.vols {
		if !seen[name] && v.Touched.Before(started) && len(v.Refs) == 0 && v.Mountpoint == "" {
			delete(d.vols, name)
		}
	}
	return d.saveLocked()
}
