package hcloudsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

const (
	maxUserDataBytes    = 32 * 1024
	maxVolumesPerServer = 16
)

// serverOut adds the (deprecated, still sent) datacenter to hcloud-go's Server schema so
// older hcloud CLI versions that read it keep working.
type serverOut struct {
	schema.Server
	Datacenter schema.Datacenter `json:"datacenter"`
}

func (s *Sim) serverSchemaLocked(sv *server) serverOut {
	stSchema, st := s.catalog.schemaOf(sv.ServerTypeID)
	loc, _ := locationByName(sv.Location)
	out := schema.Server{
		ID: sv.ID, Name: sv.Name, Status: sv.Status, Created: sv.Created,
		ServerType: stSchema, Location: loc, Locked: s.isLocked("server", sv.ID),
		IncludedTraffic: st.includedTrafficTB << 40, PrimaryDiskSize: st.disk,
		Labels: copyLabels(&sv.Labels), Volumes: append([]int64{}, sv.Volumes...),
		Protection: schema.ServerProtection{Delete: sv.ProtectDelete, Rebuild: sv.ProtectRebuild},
		PrivateNet: privateNetSchema(sv), LoadBalancers: []int64{},
	}
	zero := uint64(0)
	out.OutgoingTraffic, out.IngoingTraffic = &zero, &zero
	if im, ok := imageByID(sv.ImageID); ok {
		is := im.schema()
		out.Image = &is
	}
	out.PublicNet = schema.ServerPublicNet{FloatingIPs: []int64{}, Firewalls: []schema.ServerFirewall{}}
	if sv.IPv4 != "" {
		out.PublicNet.IPv4 = schema.ServerPublicNetIPv4{ID: sv.ID + 10_000_000, IP: sv.IPv4, DNSPtr: "static." + reverseIP(sv.IPv4) + ".clients.your-server.de"}
	}
	if sv.IPv6 != "" {
		out.PublicNet.IPv6 = schema.ServerPublicNetIPv6{ID: sv.ID + 20_000_000, IP: sv.IPv6, DNSPtr: []schema.ServerPublicNetIPv6DNSPtr{}}
	}
	for _, fw := range s.firewallsOfServerLocked(sv) {
		out.PublicNet.Firewalls = append(out.PublicNet.Firewalls, schema.ServerFirewall{ID: fw, Status: "applied"})
	}
	return serverOut{Server: out, Datacenter: s.catalog.datacenterSchema(loc)}
}

func reverseIP(ip string) string {
	p := strings.Split(ip, ".")
	for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
		p[i], p[j] = p[j], p[i]
	}
	return strings.Join(p, ".")
}

func (s *Sim) serverLocked(p params) (*server, *apiError) {
	id, e := pathID(p, "id", "server")
	if e != nil {
		return nil, e
	}
	sv, ok := s.st.Servers[id]
	if !ok {
		return nil, notFound("server", id)
	}
	return sv, nil
}

func (s *Sim) listServers(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name", "created")
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*server
	for _, sv := range s.st.Servers {
		if (lq.name != "" && sv.Name != lq.name) || (len(lq.status) > 0 && !contains(lq.status, sv.Status)) || !lq.sel.matches(sv.Labels) {
			continue
		}
		items = append(items, sv)
	}
	sortItems(items, lq.sort, func(sv *server, f string) (int64, string, bool) {
		switch f {
		case "name":
			return 0, sv.Name, false
		case "created":
			return sv.Created.UnixNano(), "", true
		}
		return sv.ID, "", true
	})
	page, meta := paginate(items, lq)
	out := make([]serverOut, 0, len(page))
	for _, sv := range page {
		out = append(out, s.serverSchemaLocked(sv))
	}
	return 200, listResponse("servers", out, meta), nil
}

func (s *Sim) getServer(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	return 200, map[string]any{"server": s.serverSchemaLocked(sv)}, nil
}

type serverCreateRequest struct {
	schema.ServerCreateRequest
	Datacenter *schema.IDOrName `json:"datacenter,omitempty"`
}

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Sim) createServer(r *http.Request, _ params) (int, any, *apiError) {
	var req serverCreateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if e := validateServerName(req.Name); e != nil {
		return 0, nil, e
	}
	if req.ServerType.ID == 0 && req.ServerType.Name == "" {
		return 0, nil, invalidInput("server_type", "is required")
	}
	st, ok := s.catalog.lookup(req.ServerType)
	if !ok {
		return 0, nil, invalidInput("server_type", fmt.Sprintf("server type %v not found", idOrNameString(req.ServerType)))
	}
	if req.Image.ID == 0 && req.Image.Name == "" {
		return 0, nil, invalidInput("image", "is required")
	}
	var im imageSpec
	if req.Image.ID != 0 {
		im, ok = imageByID(req.Image.ID)
	} else {
		im = imageByName(req.Image.Name, st.arch)
		ok = im.id != 0
	}
	if !ok {
		return 0, nil, invalidInput("image", fmt.Sprintf("image %v not found for architecture %s", idOrNameString(req.Image), st.arch))
	}
	if im.arch != st.arch {
		return 0, nil, invalidInput("image", fmt.Sprintf("image %d is for %s but server type %s is %s", im.id, im.arch, st.name, st.arch))
	}
	locName := ""
	switch {
	case req.Location != "" && req.Datacenter != nil:
		return 0, nil, invalidInput("location", "give either location or datacenter, not both")
	case req.Location != "":
		loc, ok := locationByIDOrName(idOrName(req.Location))
		if !ok {
			return 0, nil, invalidInput("location", fmt.Sprintf("location %q not found", req.Location))
		}
		locName = loc.Name
	case req.Datacenter != nil:
		dc, ok := s.catalog.datacenterByIDOrName(*req.Datacenter)
		if !ok {
			return 0, nil, invalidInput("datacenter", fmt.Sprintf("datacenter %v not found", idOrNameString(*req.Datacenter)))
		}
		locName = dc.Location.Name
	}
	if len(req.UserData) > maxUserDataBytes {
		return 0, nil, invalidInput("user_data", fmt.Sprintf("is too long (%d bytes; at most %d)", len(req.UserData), maxUserDataBytes))
	}
	labels := copyLabels(req.Labels)
	if e := validateLabels(labels); e != nil {
		return 0, nil, e
	}
	if req.Automount != nil && *req.Automount && len(req.Volumes) == 0 {
		return 0, nil, invalidInput("automount", "requires volumes")
	}
	if len(req.Volumes) > maxVolumesPerServer {
		return 0, nil, invalidInput("volumes", fmt.Sprintf("at most %d volumes can be attached to a server", maxVolumesPerServer))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if locName == "" {
		// The API picks a location; we pick the volumes' location, else the first one
		// the server type can be ordered in.
		locName = s.catalog.defaultLocation(st)
		for _, vid := range req.Volumes {
			if v, ok := s.st.Volumes[vid]; ok {
				locName = v.Location
				break
			}
		}
	}
	if e := s.catalog.orderable(st, locName); e != nil {
		return 0, nil, e
	}
	for _, sv := range s.st.Servers {
		if sv.Name == req.Name {
			return 0, nil, uniqueness("name", "server name is already used")
		}
	}
	if len(s.st.Servers) >= s.cfg.ServerLimit {
		return 0, nil, newError("resource_limit_exceeded", "server limit of %d reached for this project", s.cfg.ServerLimit)
	}
	var keys []string
	for _, kid := range req.SSHKeys {
		k, ok := s.st.SSHKeys[kid]
		if !ok {
			return 0, nil, invalidInput("ssh_keys", fmt.Sprintf("SSH key %d not found", kid))
		}
		keys = append(keys, k.PublicKey)
	}
	var fws []int64
	for _, f := range req.Firewalls {
		if _, ok := s.st.Firewalls[f.Firewall]; !ok {
			return 0, nil, invalidInput("firewalls", fmt.Sprintf("firewall %d not found", f.Firewall))
		}
		if !containsID(fws, f.Firewall) {
			fws = append(fws, f.Firewall)
		}
	}
	seen := map[int64]bool{}
	for _, vid := range req.Volumes {
		v, ok := s.st.Volumes[vid]
		switch {
		case !ok:
			return 0, nil, invalidInput("volumes", fmt.Sprintf("volume %d not found", vid))
		case seen[vid]:
			return 0, nil, invalidInput("volumes", fmt.Sprintf("volume %d is given twice", vid))
		case v.Server != nil:
			return 0, nil, newError("volume_already_attached", "volume %d is already attached to server %d, detach it first", vid, *v.Server)
		case s.isLocked("volume", vid):
			return 0, nil, locked("volume", vid)
		case v.Location != locName:
			return 0, nil, invalidInput("volumes", fmt.Sprintf("volume %d is in location %s, the server in %s: volumes attach only to servers in their location", vid, v.Location, locName))
		}
		seen[vid] = true
	}

	for i, nid := range req.Networks {
		if _, ok := s.st.Networks[nid]; !ok {
			return 0, nil, invalidInput("networks", fmt.Sprintf("network %d not found", nid))
		}
		if slices.Contains(req.Networks[:i], nid) {
			return 0, nil, invalidInput("networks", fmt.Sprintf("network %d is given twice", nid))
		}
		if s.isLocked("network", nid) {
			return 0, nil, locked("network", nid)
		}
	}

	id := s.st.newID()
	sv := &server{
		ID: id, Name: req.Name, Status: "initializing", Created: s.clock.Now().UTC(),
		ServerTypeID: st.id, Location: locName, ImageID: im.id, Labels: labels,
		Volumes: []int64{}, Firewalls: fws, SSHKeys: append([]int64{}, req.SSHKeys...),
		UserData: req.UserData,
	}
	// The networks given at create: addresses chosen now, interfaces made by create_server.
	var nets []PrivateNet
	for _, nid := range req.Networks {
		n := s.st.Networks[nid]
		pn, e := s.joinLocked(sv, n, "", nil)
		if e != nil {
			s.st.NextID-- // nothing was created
			return 0, nil, e
		}
		sv.PrivateNets = append(sv.PrivateNets, pn)
		nets = append(nets, pn.backendNet(n))
	}
	if req.PublicNet == nil || req.PublicNet.EnableIPv4 {
		sv.IPv4 = s.st.nextIPv4()
	}
	if req.PublicNet == nil || req.PublicNet.EnableIPv6 {
		sv.IPv6 = fmt.Sprintf("2001:db8:%x::/64", id&0xffff)
	}
	s.st.Servers[id] = sv
	for _, fw := range fws {
		s.st.Firewalls[fw].Servers = append(s.st.Firewalls[fw].Servers, id)
	}

	resources := []schema.ActionResourceReference{ref("server", id)}
	for _, vid := range req.Volumes {
		resources = append(resources, ref("volume", vid))
	}
	spec := ServerSpec{ID: id, Name: req.Name, Image: im.name, ServerType: st.name, Architecture: st.arch, Location: locName,
		UserData: req.UserData, Volumes: append([]int64{}, req.Volumes...), SSHKeys: keys}
	automount := req.Automount != nil && *req.Automount
	start := req.StartAfterCreate == nil || *req.StartAfterCreate
	create := s.startActionLocked(actionSpec{
		command: "create_server", resources: resources, lock: true,
		run: func(ctx context.Context) error {
			ip, err := s.backend.CreateServer(ctx, spec)
			if err != nil {
				return fmt.Errorf("create server %d: %w", id, err)
			}
			for _, vid := range spec.Volumes {
				if err := s.backend.AttachVolume(ctx, vid, id, automount); err != nil {
					return fmt.Errorf("attach volume %d to server %d: %w", vid, id, err)
				}
			}
			if nb, ok := s.backend.(NetworkBackend); ok {
				for _, n := range nets {
					if err := nb.AttachNetwork(ctx, id, n); err != nil {
						return fmt.Errorf("attach server %d to network %d: %w", id, n.Network, err)
					}
				}
			}
			if ip != "" {
				s.mu.Lock()
				if sv, ok := s.st.Servers[id]; ok {
					sv.IPv4 = ip
				}
				s.mu.Unlock()
			}
			return nil
		},
		done: func(err error) {
			sv, ok := s.st.Servers[id]
			if !ok {
				return
			}
			if err != nil || !start {
				sv.Status = "off"
			} else {
				sv.Status = "starting"
			}
			for _, n := range nets {
				s.settlePrivateNetLocked(id, n.Network, err == nil)
			}
			if err != nil {
				return
			}
			// The volumes given at create are attached by create_server.
			for _, vid := range spec.Volumes {
				if v, ok := s.st.Volumes[vid]; ok {
					sid := id
					v.Server = &sid
					sv.Volumes = append(sv.Volumes, vid)
				}
			}
		},
	})
	for _, fw := range fws {
		s.finishedActionLocked("apply_firewall", ref("firewall", fw), ref("server", id))
	}
	resp := map[string]any{
		"server": s.serverSchemaLocked(sv), "action": create.schemaLocked(), "next_actions": []schema.Action{},
		"root_password": nil,
	}
	if len(keys) == 0 {
		resp["root_password"] = randomPassword()
	}
	if start {
		startA := s.startActionLocked(actionSpec{
			command: "start_server", resources: []schema.ActionResourceReference{ref("server", id)}, lock: true, after: create,
			run: func(ctx context.Context) error { return s.backend.StartServer(ctx, id) },
			// A server whose start failed is off; the container backend booted it in
			// create_server already, so it stops it again.
			failed: func(ctx context.Context) { _ = s.backend.StopServer(ctx, id) },
			done: func(err error) {
				if sv, ok := s.st.Servers[id]; ok {
					if err != nil {
						sv.Status = "off"
					} else {
						sv.Status = "running"
					}
				}
			},
		})
		resp["next_actions"] = []schema.Action{startA.schemaLocked()}
	}
	s.persistLocked()
	return http.StatusCreated, resp, nil
}

func idOrNameString(v schema.IDOrName) string {
	if v.ID != 0 {
		return itoa(v.ID)
	}
	return fmt.Sprintf("%q", v.Name)
}

func containsID(list []int64, id int64) bool {
	for _, x := range list {
		if x == id {
			return true
		}
	}
	return false
}

func removeID(list []int64, id int64) []int64 {
	out := list[:0:0]
	for _, x := range list {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

func uniqueness(field, msg string) *apiError {
	e := newError("uniqueness_error", "%s", msg)
	e.Details = map[string]any{"fields": []map[string]string{{"name": field}}}
	return e
}

func (s *Sim) updateServer(r *http.Request, p params) (int, any, *apiError) {
	var req schema.ServerUpdateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if req.Name != "" && req.Name != sv.Name {
		if e := validateServerName(req.Name); e != nil {
			return 0, nil, e
		}
		for _, o := range s.st.Servers {
			if o.Name == req.Name {
				return 0, nil, uniqueness("name", "server name is already used")
			}
		}
	}
	if req.Labels != nil {
		if e := validateLabels(*req.Labels); e != nil {
			return 0, nil, e
		}
		sv.Labels = copyLabels(req.Labels)
	}
	if req.Name != "" {
		sv.Name = req.Name
	}
	s.persistLocked()
	return 200, map[string]any{"server": s.serverSchemaLocked(sv)}, nil
}

func (s *Sim) deleteServer(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	id := sv.ID
	switch {
	case sv.ProtectDelete:
		return 0, nil, newError("protected", "server %d is protected against deletion; disable the protection first", id)
	case s.isLocked("server", id):
		return 0, nil, locked("server", id)
	case id == s.st.LocalServerID:
		return 0, nil, newError("protected", "server %d stands for the machine the simulator runs on (--local-server) and cannot be deleted", id)
	}
	prev := sv.Status
	vols := append([]int64{}, sv.Volumes...)
	sv.Status = "deleting"
	a := s.startActionLocked(actionSpec{
		command: "delete_server", resources: []schema.ActionResourceReference{ref("server", id)}, lock: true,
		run: func(ctx context.Context) error {
			mounted := s.mountedAtDelete(ctx, id, prev, vols)
			if err := s.backend.DeleteServer(ctx, id); err != nil {
				return err
			}
			if mounted != "" {
				s.stats.uncleanDelete()
				s.log.Warn("unclean delete: the server still had a volume's filesystem mounted (on Hetzner a power cut)", "server", id, "mounted", mounted)
			}
			return nil
		},
		done: func(err error) {
			sv, ok := s.st.Servers[id]
			if !ok {
				return
			}
			if err != nil {
				sv.Status = prev
				return
			}
			for _, vid := range sv.Volumes {
				if v, ok := s.st.Volumes[vid]; ok {
					v.Server = nil
				}
			}
			for _, fw := range s.st.Firewalls {
				fw.Servers = removeID(fw.Servers, id)
			}
			delete(s.st.Servers, id)
		},
	})
	s.persistLocked()
	return 200, schema.ServerDeleteResponse{Action: a.schemaLocked()}, nil
}

// mountedAtDelete says which volume filesystems server id still has mounted as it is deleted
// ("" when none): with a GuestBackend from the server's own mount table, otherwise every
// attached volume of a server that was not off.
func (s *Sim) mountedAtDelete(ctx context.Context, id int64, status string, vols []int64) string {
	if g, ok := s.backend.(GuestBackend); ok {
		m, err := g.MountedVolumes(ctx, id)
		if err == nil {
			return strings.Join(m, "; ")
		}
		s.log.Warn("read the mount table of a server being deleted; judging by its status", "server", id, "err", err)
	}
	if status == "off" || len(vols) == 0 {
		return ""
	}
	return fmt.Sprintf("volumes %v attached to a server that was %s", vols, status)
}

// shutdownServer is the shutdown action: Hetzner's ACPI request to the server's OS. The action
// succeeds once the request is delivered. The server is off when its OS has powered off: with
// a GuestBackend when it did (after stopping its services in order), with the other backends
// at once. An OS that ignores the request (fault kind ignore_shutdown, or a guest that does)
// leaves the server running.
func (s *Sim) shutdownServer(r *http.Request, p params) (int, any, *apiError) {
	var req struct{}
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	id := sv.ID
	if s.isLocked("server", id) {
		return 0, nil, locked("server", id)
	}
	guest, isGuest := s.backend.(GuestBackend)
	ignored := false
	a := s.startActionLocked(actionSpec{
		command: "shutdown_server", resources: []schema.ActionResourceReference{ref("server", id)}, lock: true,
		run: func(ctx context.Context) error {
			if s.faults.ignoresShutdown() {
				s.stats.fault()
				ignored = true
				s.log.Info("injected fault: the server's OS ignores the shutdown request", "server", id)
				return nil
			}
			if isGuest {
				return guest.ShutdownServer(ctx, id)
			}
			return s.backend.StopServer(ctx, id)
		},
		done: func(err error) {
			sv, ok := s.st.Servers[id]
			switch {
			case err != nil || ignored || !ok:
			case isGuest:
				s.watchOffLocked(guest, id)
			default:
				sv.Status = "off"
			}
		},
	})
	s.persistLocked()
	return http.StatusCreated, map[string]any{"action": a.schemaLocked()}, nil
}

// watchOffLocked marks server id off when its OS has powered off after a shutdown request.
func (s *Sim) watchOffLocked(g GuestBackend, id int64) {
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		if err := g.WaitServerOff(s.ctx, id); err != nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if sv, ok := s.st.Servers[id]; ok && (sv.Status == "running" || sv.Status == "stopping") {
			sv.Status = "off"
			s.persistLocked()
		}
	}()
}

// serverPowerAction implements poweron, poweroff, reboot and reset.
func (s *Sim) serverPowerAction(command, during, after string, op func(s *Sim) func(ctx context.Context, id int64) error) handlerFunc {
	return func(r *http.Request, p params) (int, any, *apiError) {
		var req struct{}
		if e := decodeBody(r, &req); e != nil {
			return 0, nil, e
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		sv, e := s.serverLocked(p)
		if e != nil {
			return 0, nil, e
		}
		id := sv.ID
		if s.isLocked("server", id) {
			return 0, nil, locked("server", id)
		}
		prev := sv.Status
		if during != "" {
			sv.Status = during
		}
		fn := op(s)
		a := s.startActionLocked(actionSpec{
			command: command, resources: []schema.ActionResourceReference{ref("server", id)}, lock: true,
			run: func(ctx context.Context) error { return fn(ctx, id) },
			done: func(err error) {
				if sv, ok := s.st.Servers[id]; ok {
					if err != nil {
						sv.Status = prev
					} else if after != "" {
						sv.Status = after
					}
				}
			},
		})
		s.persistLocked()
		return http.StatusCreated, map[string]any{"action": a.schemaLocked()}, nil
	}
}

func (s *Sim) changeServerProtection(r *http.Request, p params) (int, any, *apiError) {
	var req schema.ServerActionChangeProtectionRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if s.isLocked("server", sv.ID) {
		return 0, nil, locked("server", sv.ID)
	}
	if req.Delete != nil {
		sv.ProtectDelete = *req.Delete
	}
	if req.Rebuild != nil {
		sv.ProtectRebuild = *req.Rebuild
	}
	a := s.finishedActionLocked("change_protection", ref("server", sv.ID))
	s.persistLocked()
	return http.StatusCreated, schema.ServerActionChangeProtectionResponse{Action: a.schemaLocked()}, nil
}
