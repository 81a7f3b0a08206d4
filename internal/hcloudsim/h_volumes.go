package hcloudsim

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

const (
	minVolumeGB = 10
	maxVolumeGB = 10240
)

// LinuxDevice is where Hetzner (and the local backend) puts a volume's block device.
func LinuxDevice(volumeID int64) string {
	return fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", volumeID)
}

func (s *Sim) volumeSchemaLocked(v *volume) schema.Volume {
	loc, _ := locationByName(v.Location)
	out := schema.Volume{
		ID: v.ID, Name: v.Name, Status: v.Status, Location: loc, Size: v.Size,
		Protection: schema.VolumeProtection{Delete: v.ProtectDelete}, Labels: copyLabels(&v.Labels),
		LinuxDevice: LinuxDevice(v.ID), Created: v.Created,
	}
	if v.Server != nil {
		id := *v.Server
		out.Server = &id
	}
	if v.Format != nil {
		f := *v.Format
		out.Format = &f
	}
	return out
}

func (s *Sim) volumeLocked(p params) (*volume, *apiError) {
	id, e := pathID(p, "id", "volume")
	if e != nil {
		return nil, e
	}
	v, ok := s.st.Volumes[id]
	if !ok {
		return nil, notFound("volume", id)
	}
	return v, nil
}

func (s *Sim) listVolumes(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name", "created")
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*volume
	for _, v := range s.st.Volumes {
		if (lq.name != "" && v.Name != lq.name) || (len(lq.status) > 0 && !contains(lq.status, v.Status)) || !lq.sel.matches(v.Labels) {
			continue
		}
		items = append(items, v)
	}
	sortItems(items, lq.sort, func(v *volume, f string) (int64, string, bool) {
		switch f {
		case "name":
			return 0, v.Name, false
		case "created":
			return v.Created.UnixNano(), "", true
		}
		return v.ID, "", true
	})
	page, meta := paginate(items, lq)
	out := make([]schema.Volume, 0, len(page))
	for _, v := range page {
		out = append(out, s.volumeSchemaLocked(v))
	}
	return 200, listResponse("volumes", out, meta), nil
}

func (s *Sim) getVolume(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.volumeLocked(p)
	if e != nil {
		return 0, nil, e
	}
	return 200, schema.VolumeGetResponse{Volume: s.volumeSchemaLocked(v)}, nil
}

func validateSize(size int) *apiError {
	if size < minVolumeGB || size > maxVolumeGB {
		return invalidInput("size", fmt.Sprintf("must be between %d and %d (GB), got %d", minVolumeGB, maxVolumeGB, size))
	}
	return nil
}

func (s *Sim) createVolume(r *http.Request, _ params) (int, any, *apiError) {
	var req schema.VolumeCreateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if e := validateVolumeName(req.Name); e != nil {
		return 0, nil, e
	}
	if e := validateSize(req.Size); e != nil {
		return 0, nil, e
	}
	if req.Format != nil && *req.Format != "ext4" && *req.Format != "xfs" {
		return 0, nil, invalidInput("format", fmt.Sprintf("must be ext4 or xfs, got %q", *req.Format))
	}
	automount := req.Automount != nil && *req.Automount
	if automount && req.Server == nil {
		return 0, nil, invalidInput("automount", "requires server")
	}
	if req.Server == nil && req.Location == nil {
		return 0, nil, invalidInput("location", "either location or server is required")
	}
	labels := copyLabels(req.Labels)
	if e := validateLabels(labels); e != nil {
		return 0, nil, e
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	locName := ""
	if req.Location != nil {
		loc, ok := locationByIDOrName(*req.Location)
		if !ok {
			return 0, nil, invalidInput("location", fmt.Sprintf("location %s not found", idOrNameString(*req.Location)))
		}
		locName = loc.Name
	}
	var sv *server
	if req.Server != nil {
		var ok bool
		sv, ok = s.st.Servers[*req.Server]
		switch {
		case !ok:
			return 0, nil, invalidInput("server", fmt.Sprintf("server %d not found", *req.Server))
		case locName != "" && locName != sv.Location:
			return 0, nil, invalidInput("location", fmt.Sprintf("server %d is in %s, not %s: a volume attaches only to servers in its location", sv.ID, sv.Location, locName))
		case s.isLocked("server", sv.ID):
			return 0, nil, locked("server", sv.ID)
		case len(sv.Volumes) >= maxVolumesPerServer:
			return 0, nil, newError("resource_limit_exceeded", "server %d already has %d volumes attached (the maximum)", sv.ID, maxVolumesPerServer)
		}
		locName = sv.Location
	}
	for _, o := range s.st.Volumes {
		if o.Name == req.Name {
			return 0, nil, uniqueness("name", "volume name is already used")
		}
	}
	id := s.st.newID()
	v := &volume{ID: id, Name: req.Name, Size: req.Size, Location: locName, Status: "creating",
		Labels: labels, Created: s.clock.Now().UTC()}
	if req.Format != nil {
		f := *req.Format
		v.Format = &f
	}
	s.st.Volumes[id] = v
	spec := VolumeSpec{ID: id, Name: req.Name, SizeGB: req.Size}
	if req.Format != nil {
		spec.Format = *req.Format
	}
	create := s.startActionLocked(actionSpec{
		command: "create_volume", resources: []schema.ActionResourceReference{ref("volume", id)}, lock: true,
		run: func(ctx context.Context) error { return s.backend.CreateVolume(ctx, spec) },
		done: func(err error) {
			if v, ok := s.st.Volumes[id]; ok {
				v.Status = "available"
			}
		},
	})
	next := []schema.Action{}
	if sv != nil {
		a := s.attachActionLocked(id, sv.ID, automount, create)
		next = append(next, a.schemaLocked())
	}
	s.persistLocked()
	return http.StatusCreated, schema.VolumeCreateResponse{Volume: s.volumeSchemaLocked(v), Action: ptr(create.schemaLocked()), NextActions: next}, nil
}

func ptr[T any](v T) *T { return &v }

// attachActionLocked starts attach_volume. Like the real API, volume.server and
// server.volumes change when the action succeeds; until then the action's locks on the
// volume and the server keep every conflicting request out.
func (s *Sim) attachActionLocked(vid, sid int64, automount bool, after *action) *action {
	return s.startActionLocked(actionSpec{
		command: "attach_volume", resources: []schema.ActionResourceReference{ref("volume", vid), ref("server", sid)},
		lock: true, after: after,
		run: func(ctx context.Context) error {
			if err := s.backend.AttachVolume(ctx, vid, sid, automount); err != nil {
				return fmt.Errorf("attach volume %d to server %d: %w", vid, sid, err)
			}
			return nil
		},
		done: func(err error) {
			if err != nil {
				return
			}
			v, vok := s.st.Volumes[vid]
			sv, sok := s.st.Servers[sid]
			if vok && sok {
				id := sid
				v.Server = &id
				if !containsID(sv.Volumes, vid) {
					sv.Volumes = append(sv.Volumes, vid)
				}
			}
		},
	})
}

func (s *Sim) updateVolume(r *http.Request, p params) (int, any, *apiError) {
	var req schema.VolumeUpdateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.volumeLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if req.Name != "" && req.Name != v.Name {
		if e := validateVolumeName(req.Name); e != nil {
			return 0, nil, e
		}
		for _, o := range s.st.Volumes {
			if o.Name == req.Name {
				return 0, nil, uniqueness("name", "volume name is already used")
			}
		}
	}
	if req.Labels != nil {
		if e := validateLabels(*req.Labels); e != nil {
			return 0, nil, e
		}
		v.Labels = copyLabels(req.Labels)
	}
	if req.Name != "" {
		v.Name = req.Name
	}
	s.persistLocked()
	return 200, schema.VolumeUpdateResponse{Volume: s.volumeSchemaLocked(v)}, nil
}

func (s *Sim) deleteVolume(r *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.volumeLocked(p)
	if e != nil {
		return 0, nil, e
	}
	switch {
	case v.ProtectDelete:
		return 0, nil, newError("protected", "volume %d is protected against deletion; disable the protection first", v.ID)
	case s.isLocked("volume", v.ID):
		return 0, nil, locked("volume", v.ID)
	case v.Server != nil:
		return 0, nil, newError("service_error", "volume with ID '%d' is still attached to a server, detach it first", v.ID)
	}
	if err := s.backend.DeleteVolume(r.Context(), v.ID); err != nil {
		return 0, nil, newError("server_error", "delete volume %d: %v", v.ID, err)
	}
	delete(s.st.Volumes, v.ID)
	s.persistLocked()
	return http.StatusNoContent, nil, nil
}

func (s *Sim) attachVolume(r *http.Request, p params) (int, any, *apiError) {
	var req schema.VolumeActionAttachVolumeRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if req.Server <= 0 {
		return 0, nil, invalidInput("server", "is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.volumeLocked(p)
	if e != nil {
		return 0, nil, e
	}
	sv, ok := s.st.Servers[req.Server]
	switch {
	case !ok:
		return 0, nil, notFound("server", req.Server)
	case s.isLocked("volume", v.ID):
		return 0, nil, locked("volume", v.ID)
	case v.Server != nil:
		return 0, nil, newError("volume_already_attached", "volume %d is already attached to server %d, detach it first", v.ID, *v.Server)
	case v.Location != sv.Location:
		return 0, nil, invalidInput("server", fmt.Sprintf("server %d is in %s, volume %d in %s: a volume attaches only to servers in its location", sv.ID, sv.Location, v.ID, v.Location))
	case s.isLocked("server", sv.ID):
		return 0, nil, locked("server", sv.ID)
	case len(sv.Volumes) >= maxVolumesPerServer:
		return 0, nil, newError("resource_limit_exceeded", "server %d already has %d volumes attached (the maximum)", sv.ID, maxVolumesPerServer)
	case sv.Status == "deleting":
		return 0, nil, notFound("server", sv.ID)
	}
	a := s.attachActionLocked(v.ID, sv.ID, req.Automount != nil && *req.Automount, nil)
	s.persistLocked()
	return http.StatusCreated, schema.VolumeActionAttachVolumeResponse{Action: a.schemaLocked()}, nil
}

func (s *Sim) detachVolume(r *http.Request, p params) (int, any, *apiError) {
	var req schema.VolumeActionDetachVolumeRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.volumeLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if s.isLocked("volume", v.ID) {
		return 0, nil, locked("volume", v.ID)
	}
	if v.Server == nil {
		return 0, nil, newError("service_error", "volume %d is not attached to a server", v.ID)
	}
	vid, sid := v.ID, *v.Server
	if s.isLocked("server", sid) {
		return 0, nil, locked("server", sid)
	}
	a := s.startActionLocked(actionSpec{
		command: "detach_volume", resources: []schema.ActionResourceReference{ref("volume", vid), ref("server", sid)}, lock: true,
		run: func(ctx context.Context) error {
			if g, ok := s.backend.(GuestBackend); ok {
				if where, err := g.MountedVolume(ctx, sid, vid); err != nil {
					s.log.Warn("read the mount table of a server a volume is detached from", "server", sid, "volume", vid, "err", err)
				} else if where != "" {
					s.stats.detachWhileMounted()
					s.log.Warn("detach of a volume the server still has mounted (on Hetzner a hot-unplug under a live filesystem)", "server", sid, "volume", vid, "mounted", where)
				}
			}
			if err := s.backend.DetachVolume(ctx, vid, sid); err != nil {
				return fmt.Errorf("detach volume %d from server %d: %w", vid, sid, err)
			}
			return nil
		},
		done: func(err error) {
			if err != nil {
				return
			}
			if v, ok := s.st.Volumes[vid]; ok {
				v.Server = nil
			}
			if sv, ok := s.st.Servers[sid]; ok {
				sv.Volumes = removeID(sv.Volumes, vid)
			}
		},
	})
	s.persistLocked()
	return http.StatusCreated, schema.VolumeActionDetachVolumeResponse{Action: a.schemaLocked()}, nil
}

func (s *Sim) resizeVolume(r *http.Request, p params) (int, any, *apiError) {
	var req schema.VolumeActionResizeVolumeRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.volumeLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if req.Size <= v.Size {
		return 0, nil, invalidInput("size", fmt.Sprintf("must be larger than the current size of %d GB (volumes only grow)", v.Size))
	}
	if e := validateSize(req.Size); e != nil {
		return 0, nil, e
	}
	if s.isLocked("volume", v.ID) {
		return 0, nil, locked("volume", v.ID)
	}
	vid, size := v.ID, req.Size
	a := s.startActionLocked(actionSpec{
		command: "resize_volume", resources: []schema.ActionResourceReference{ref("volume", vid)}, lock: true,
		run: func(ctx context.Context) error {
			if err := s.backend.ResizeVolume(ctx, vid, size); err != nil {
				return fmt.Errorf("resize volume %d to %d GB: %w", vid, size, err)
			}
			return nil
		},
		done: func(err error) {
			if v, ok := s.st.Volumes[vid]; ok && err == nil {
				v.Size = size
			}
		},
	})
	s.persistLocked()
	return http.StatusCreated, schema.VolumeActionResizeVolumeResponse{Action: a.schemaLocked()}, nil
}

func (s *Sim) changeVolumeProtection(r *http.Request, p params) (int, any, *apiError) {
	var req schema.VolumeActionChangeProtectionRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, e := s.volumeLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if s.isLocked("volume", v.ID) {
		return 0, nil, locked("volume", v.ID)
	}
	if req.Delete != nil {
		v.ProtectDelete = *req.Delete
	}
	a := s.finishedActionLocked("change_protection", ref("volume", v.ID))
	s.persistLocked()
	return http.StatusCreated, schema.VolumeActionChangeProtectionResponse{Action: a.schemaLocked()}, nil
}
