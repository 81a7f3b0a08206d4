package hetzner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Volume limits of the Hetzner Cloud API.
const (
	MinVolumeSizeGB     = 10
	MaxVolumeSizeGB     = 10240
	MaxVolumesPerServer = 16
)

// Volume is a Hetzner Cloud volume as the rest of dockbridge sees it.
type Volume struct {
	ID          int64
	Name        string
	SizeGB      int
	Location    string
	ServerID    int64 // 0 when detached
	LinuxDevice string
	Status      string // "creating" or "available"
	Format      string // filesystem the API made at creation, "" if none
	Protected   bool   // delete protection
	Labels      map[string]string
	Created     time.Time
}

// VolumeSpec describes a volume to create.
type VolumeSpec struct {
	Name      string
	SizeGB    int
	Location  string // either Location or ServerID
	ServerID  int64  // attach to this server at creation
	Automount bool
	Format    string // "ext4", "xfs" or "" for none
	Labels    map[string]string
}

func volumeFrom(v *hcloud.Volume) *Volume {
	if v == nil {
		return nil
	}
	out := &Volume{
		ID:          v.ID,
		Name:        v.Name,
		SizeGB:      v.Size,
		LinuxDevice: v.LinuxDevice,
		Status:      string(v.Status),
		Protected:   v.Protection.Delete,
		Labels:      v.Labels,
		Created:     v.Created,
	}
	if v.Location != nil {
		out.Location = v.Location.Name
	}
	if v.Server != nil {
		out.ServerID = v.Server.ID
	}
	if v.Format != nil {
		out.Format = *v.Format
	}
	return out
}

// Volume returns the volume with this id, or ErrNotFound.
func (c *Client) Volume(ctx context.Context, id int64) (*Volume, error) {
	v, _, err := c.api.Volume.GetByID(ctx, id)
	if err != nil {
		return nil, wrap(err, "get volume %d", id)
	}
	if v == nil {
		return nil, &APIError{Op: fmt.Sprintf("get volume %d", id), sentinel: ErrNotFound, Message: "no such volume"}
	}
	return volumeFrom(v), nil
}

// VolumeByName returns the volume with this name, or ErrNotFound.
func (c *Client) VolumeByName(ctx context.Context, name string) (*Volume, error) {
	v, _, err := c.api.Volume.GetByName(ctx, name)
	if err != nil {
		return nil, wrap(err, "get volume %q", name)
	}
	if v == nil {
		return nil, &APIError{Op: fmt.Sprintf("get volume %q", name), sentinel: ErrNotFound, Message: "no such volume"}
	}
	return volumeFrom(v), nil
}

// Volumes lists the volumes matching a label selector ("" for all), walking every page.
func (c *Client) Volumes(ctx context.Context, selector string) ([]*Volume, error) {
	vs, err := c.api.Volume.AllWithOpts(ctx, hcloud.VolumeListOpts{ListOpts: hcloud.ListOpts{LabelSelector: selector, PerPage: 50}})
	if err != nil {
		return nil, wrap(err, "list volumes (selector %q)", selector)
	}
	out := make([]*Volume, 0, len(vs))
	for _, v := range vs {
		out = append(out, volumeFrom(v))
	}
	return out, nil
}

// CreateVolume creates a volume and waits until it (and an attachment to spec.ServerID) is done.
// A name that exists already is ErrAlreadyExists: the caller decides whether to adopt it.
func (c *Client) CreateVolume(ctx context.Context, spec VolumeSpec) (*Volume, error) {
	op := fmt.Sprintf("create volume %q (%d GB)", spec.Name, spec.SizeGB)
	opts := hcloud.VolumeCreateOpts{Name: spec.Name, Size: spec.SizeGB, Labels: spec.Labels}
	if spec.ServerID != 0 {
		opts.Server = &hcloud.Server{ID: spec.ServerID}
		opts.Automount = hcloud.Ptr(spec.Automount)
	} else {
		opts.Location = &hcloud.Location{Name: spec.Location}
	}
	if spec.Format != "" {
		opts.Format = hcloud.Ptr(spec.Format)
	}
	var res hcloud.VolumeCreateResult
	err := c.retryLocked(ctx, op, func() error {
		var err error
		res, _, err = c.api.Volume.Create(ctx, opts)
		return wrap(err, "%s", op)
	})
	if err != nil {
		return nil, err
	}
	if err := c.wait(ctx, op, append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		return nil, err
	}
	return c.Volume(ctx, res.Volume.ID)
}

// AttachVolume attaches a volume to a server and waits for it.
func (c *Client) AttachVolume(ctx context.Context, volumeID, serverID int64, automount bool) error {
	op := fmt.Sprintf("attach volume %d to server %d", volumeID, serverID)
	return c.runAction(ctx, op, func() (*hcloud.Action, error) {
		a, _, err := c.api.Volume.AttachWithOpts(ctx, &hcloud.Volume{ID: volumeID}, hcloud.VolumeAttachOpts{
			Server: &hcloud.Server{ID: serverID}, Automount: hcloud.Ptr(automount),
		})
		return a, err
	})
}

// DetachVolume detaches a volume from its server and waits for it.
func (c *Client) DetachVolume(ctx context.Context, volumeID int64) error {
	op := fmt.Sprintf("detach volume %d", volumeID)
	return c.runAction(ctx, op, func() (*hcloud.Action, error) {
		a, _, err := c.api.Volume.Detach(ctx, &hcloud.Volume{ID: volumeID})
		return a, err
	})
}

// DetachVolumeFrom detaches a volume from serverID, and only from it: the volume is read just
// before the request, and when it is no longer attached to serverID (detached meanwhile, or
// attached elsewhere) nothing is sent and the error is ErrMoved. allow, when set, sees that
// fresh volume and may refuse (its error is returned). A locked answer is not retried blindly,
// as DetachVolume does: the volume is read again first, so a detach decided on an old view
// never lands on a newer attachment. Retries of locked answers are bounded by LockedTimeout.
func (c *Client) DetachVolumeFrom(ctx context.Context, volumeID, serverID int64, allow func(*Volume) error) error {
	op := fmt.Sprintf("detach volume %d from server %d", volumeID, serverID)
	deadline := c.transport.now().Add(c.cfg.LockedTimeout)
	delay := time.Second
	for attempt := 1; ; attempt++ {
		v, err := c.Volume(ctx, volumeID)
		if err != nil {
			return err
		}
		if v.ServerID != serverID {
			where := "detached"
			if v.ServerID != 0 {
				where = fmt.Sprintf("attached to server %d", v.ServerID)
			}
			return fmt.Errorf("%s: it is %s now: %w", op, where, ErrMoved)
		}
		if allow != nil {
			if err := allow(v); err != nil {
				return err
			}
		}
		a, _, err := c.api.Volume.Detach(ctx, &hcloud.Volume{ID: volumeID})
		err = wrap(err, "%s", op)
		if err == nil {
			return c.wait(ctx, op, a)
		}
		if !(errors.Is(err, ErrLocked) || errors.Is(err, ErrConflict)) {
			return err
		}
		if c.transport.now().Add(delay).After(deadline) {
			return fmt.Errorf("%w (still locked after %d attempts over %s; another action is running on it, retry later)", err, attempt, c.cfg.LockedTimeout)
		}
		c.log.WithField("op", op).WithField("attempt", attempt).Infof("volume locked by a running action, reading it again in %s", delay)
		if err := c.transport.sleep(ctx, delay); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// ResizeVolume grows a volume to sizeGB and waits for it.
func (c *Client) ResizeVolume(ctx context.Context, volumeID int64, sizeGB int) error {
	op := fmt.Sprintf("resize volume %d to %d GB", volumeID, sizeGB)
	return c.runAction(ctx, op, func() (*hcloud.Action, error) {
		a, _, err := c.api.Volume.Resize(ctx, &hcloud.Volume{ID: volumeID}, sizeGB)
		return a, err
	})
}

// SetVolumeProtection turns delete protection on or off and waits for it.
func (c *Client) SetVolumeProtection(ctx context.Context, volumeID int64, protect bool) error {
	op := fmt.Sprintf("set delete protection of volume %d to %t", volumeID, protect)
	return c.runAction(ctx, op, func() (*hcloud.Action, error) {
		a, _, err := c.api.Volume.ChangeProtection(ctx, &hcloud.Volume{ID: volumeID}, hcloud.VolumeChangeProtectionOpts{Delete: hcloud.Ptr(protect)})
		return a, err
	})
}

// SetVolumeLabels replaces a volume's labels.
func (c *Client) SetVolumeLabels(ctx context.Context, volumeID int64, labels map[string]string) (*Volume, error) {
	op := fmt.Sprintf("update labels of volume %d", volumeID)
	var out *hcloud.Volume
	err := c.retryLocked(ctx, op, func() error {
		var err error
		out, _, err = c.api.Volume.Update(ctx, &hcloud.Volume{ID: volumeID}, hcloud.VolumeUpdateOpts{Labels: labels})
		return wrap(err, "%s", op)
	})
	if err != nil {
		return nil, err
	}
	return volumeFrom(out), nil
}

// DeleteVolume deletes a detached, unprotected volume.
func (c *Client) DeleteVolume(ctx context.Context, volumeID int64) error {
	op := fmt.Sprintf("delete volume %d", volumeID)
	return c.retryLocked(ctx, op, func() error {
		_, err := c.api.Volume.Delete(ctx, &hcloud.Volume{ID: volumeID})
		return wrap(err, "%s", op)
	})
}

// runAction starts an action (retrying while locked) and waits for it.
func (c *Client) runAction(ctx context.Context, op string, start func() (*hcloud.Action, error)) error {
	var action *hcloud.Action
	err := c.retryLocked(ctx, op, func() error {
		var err error
		action, err = start()
		return wrap(err, "%s", op)
	})
	if err != nil {
		return err
	}
	return c.wait(ctx, op, action)
}
