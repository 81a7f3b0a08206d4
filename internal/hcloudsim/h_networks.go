package hcloudsim

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// network is a Hetzner private network: a range, subnets per network zone, routes. Which
// servers it has is kept on the servers (server.PrivateNets).
type network struct {
	ID                    int64                  `json:"id"`
	Name                  string                 `json:"name"`
	IPRange               string                 `json:"ip_range"`
	Subnets               []schema.NetworkSubnet `json:"subnets"`
	Routes                []schema.NetworkRoute  `json:"routes"`
	Labels                map[string]string      `json:"labels"`
	Created               time.Time              `json:"created"`
	ProtectDelete         bool                   `json:"protect_delete"`
	ExposeRoutesToVSwitch bool                   `json:"expose_routes_to_vswitch"`
}

// privateNet is a server's attachment to a network.
type privateNet struct {
	Network  int64    `json:"network"`
	IP       string   `json:"ip"`
	AliasIPs []string `json:"alias_ips"`
	MAC      string   `json:"mac_address"`
	// Iface is the interface number in the server (0: enp7s0, 1: enp8s0, ...), kept for the
	// attachment's life.
	Iface int `json:"iface"`
	// Pending: its attach (or create_server) action still runs; not shown yet, but its
	// addresses are taken.
	Pending bool `json:"pending,omitempty"`
}

// PrivateNet is what a NetworkBackend needs to give a server its interface on a network.
type PrivateNet struct {
	Network int64
	Iface   int          // the interface number: 0 is Hetzner's enp7s0, 1 enp8s0, ...
	IP      netip.Addr   // the server's address
	Range   netip.Prefix // the network's ip_range (the interface's prefix length)
	MAC     string
}

// NetworkBackend is implemented by backends whose servers have network interfaces (the
// container backend): a server attached to a network gets an interface on it with its address,
// and servers of one network reach each other there. Without it networks are records only.
type NetworkBackend interface {
	AttachNetwork(ctx context.Context, serverID int64, n PrivateNet) error
	DetachNetwork(ctx context.Context, serverID, networkID int64) error
	// DeleteNetwork removes what the network is made of once no server is on it.
	DeleteNetwork(ctx context.Context, networkID int64) error
}

var rfc1918 = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}

var networkZones = []string{"eu-central", "us-east", "us-west", "ap-southeast"}

// privateNetMTU is the MTU of Hetzner's private networks.
const privateNetMTU = 1450

func (s *Sim) networkSchemaLocked(n *network) schema.Network {
	out := schema.Network{ID: n.ID, Name: n.Name, Created: n.Created, IPRange: n.IPRange,
		Subnets: append([]schema.NetworkSubnet{}, n.Subnets...), Routes: append([]schema.NetworkRoute{}, n.Routes...),
		Servers: s.networkServersLocked(n.ID, false), LoadBalancers: []int64{},
		Protection: schema.NetworkProtection{Delete: n.ProtectDelete}, Labels: copyLabels(&n.Labels),
		ExposeRoutesToVSwitch: n.ExposeRoutesToVSwitch}
	return out
}

// networkServersLocked lists the servers attached to network id (with pending ones: addresses
// taken by running attaches), by id.
func (s *Sim) networkServersLocked(id int64, pending bool) []int64 {
	out := []int64{}
	for _, sv := range s.st.Servers {
		for _, pn := range sv.PrivateNets {
			if pn.Network == id && (pending || !pn.Pending) {
				out = append(out, sv.ID)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (s *Sim) networkLocked(p params) (*network, *apiError) {
	id, e := pathID(p, "id", "network")
	if e != nil {
		return nil, e
	}
	n, ok := s.st.Networks[id]
	if !ok {
		return nil, notFound("network", id)
	}
	return n, nil
}

func (s *Sim) listNetworks(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name", "created")
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*network
	for _, n := range s.st.Networks {
		if (lq.name != "" && n.Name != lq.name) || !lq.sel.matches(n.Labels) {
			continue
		}
		items = append(items, n)
	}
	sortItems(items, lq.sort, func(n *network, f string) (int64, string, bool) {
		if f == "created" {
			return n.Created.UnixNano(), "", true
		}
		return numKey(f, n.ID, n.Name)
	})
	page, meta := paginate(items, lq)
	out := make([]schema.Network, 0, len(page))
	for _, n := range page {
		out = append(out, s.networkSchemaLocked(n))
	}
	return 200, listResponse("networks", out, meta), nil
}

func (s *Sim) getNetwork(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, e := s.networkLocked(p)
	if e != nil {
		return 0, nil, e
	}
	return 200, schema.NetworkGetResponse{Network: s.networkSchemaLocked(n)}, nil
}

// parseRange parses a network or subnet range: an IPv4 CIDR written with its network address.
func parseRange(field, v string) (netip.Prefix, *apiError) {
	p, err := netip.ParsePrefix(v)
	switch {
	case v == "":
		return p, invalidInput(field, "is required")
	case err != nil || !p.Addr().Is4():
		return p, invalidInput(field, fmt.Sprintf("%q is not an IPv4 range in CIDR notation (e.g. 10.0.0.0/16)", v))
	case p.Masked() != p:
		return p, invalidInput(field, fmt.Sprintf("%q is not the start of its range: write %s", v, p.Masked()))
	}
	return p, nil
}

func validateNetworkRange(v string) (netip.Prefix, *apiError) {
	p, e := parseRange("ip_range", v)
	if e != nil {
		return p, e
	}
	private := false
	for _, r := range rfc1918 {
		private = private || (r.Bits() <= p.Bits() && r.Contains(p.Addr()))
	}
	if !private {
		return p, invalidInput("ip_range", fmt.Sprintf("%s must be inside one of the private ranges of RFC 1918 (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)", v))
	}
	if p.Bits() > 24 {
		return p, invalidInput("ip_range", fmt.Sprintf("%s is too small: a network is at least a /24", v))
	}
	return p, nil
}

func overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

// checkSubnetLocked validates a subnet to add to a network of range nr with the subnets have,
// choosing a free /24 when none is given, and fills in its gateway.
func checkSubnet(nr netip.Prefix, have []schema.NetworkSubnet, sn schema.NetworkSubnet, field string) (schema.NetworkSubnet, *apiError) {
	switch sn.Type {
	case "cloud", "server":
		if sn.VSwitchID != 0 {
			return sn, invalidInput(field+".vswitch_id", "is only allowed for subnets of type vswitch")
		}
	case "vswitch":
		if sn.VSwitchID <= 0 {
			return sn, invalidInput(field+".vswitch_id", "is required for subnets of type vswitch")
		}
	case "":
		return sn, invalidInput(field+".type", "is required")
	default:
		return sn, invalidInput(field+".type", "must be cloud, server or vswitch")
	}
	if !slices.Contains(networkZones, sn.NetworkZone) {
		return sn, invalidInput(field+".network_zone", fmt.Sprintf("must be one of %s", strings.Join(networkZones, ", ")))
	}
	var p netip.Prefix
	if sn.IPRange == "" {
		// The first /24 (or the whole range) that no subnet overlaps.
		bits := max(24, nr.Bits())
		for a := nr.Addr(); nr.Contains(a); {
			c := netip.PrefixFrom(a, bits)
			free := true
			for _, o := range have {
				if op, err := netip.ParsePrefix(o.IPRange); err == nil && overlaps(op, c) {
					free = false
				}
			}
			if free {
				p = c
				break
			}
			next, ok := addrAdd(a, uint32(1)<<(32-bits))
			if !ok {
				break
			}
			a = next
		}
		if !p.IsValid() {
			return sn, newError("no_subnet_available", "no subnet or IP available: network %s has no free /%d left", nr, bits)
		}
	} else {
		var e *apiError
		if p, e = parseRange(field+".ip_range", sn.IPRange); e != nil {
			return sn, e
		}
		if p.Bits() < nr.Bits() || !nr.Contains(p.Addr()) {
			return sn, invalidInput(field+".ip_range", fmt.Sprintf("%s is not inside the network's range %s", p, nr))
		}
		for _, o := range have {
			if op, err := netip.ParsePrefix(o.IPRange); err == nil && overlaps(op, p) {
				return sn, invalidInput(field+".ip_range", fmt.Sprintf("%s overlaps the subnet %s", p, o.IPRange))
			}
		}
	}
	out := schema.NetworkSubnet{Type: sn.Type, IPRange: p.String(), NetworkZone: sn.NetworkZone, VSwitchID: sn.VSwitchID}
	if sn.Type != "vswitch" {
		out.Gateway = gatewayOf(nr).String()
	}
	return out, nil
}

// gatewayOf is the gateway of a network: the first address of its range.
func gatewayOf(nr netip.Prefix) netip.Addr { return nr.Addr().Next() }

func addrAdd(a netip.Addr, n uint32) (netip.Addr, bool) {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if v+n < v {
		return a, false
	}
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func checkRoute(nr netip.Prefix, have []schema.NetworkRoute, rt schema.NetworkRoute, field string) (schema.NetworkRoute, *apiError) {
	d, err := netip.ParsePrefix(rt.Destination)
	if err != nil || !d.Addr().Is4() || d.Masked() != d {
		return rt, invalidInput(field+".destination", fmt.Sprintf("%q is not an IPv4 range in CIDR notation", rt.Destination))
	}
	g, err := netip.ParseAddr(rt.Gateway)
	if err != nil || !g.Is4() {
		return rt, invalidInput(field+".gateway", fmt.Sprintf("%q is not an IPv4 address", rt.Gateway))
	}
	if !nr.Contains(g) || g == gatewayOf(nr) || g == nr.Addr() {
		return rt, invalidInput(field+".gateway", fmt.Sprintf("%s must be an address of the network %s other than its network address and gateway", g, nr))
	}
	for _, o := range have {
		if o.Destination == d.String() && o.Gateway == g.String() {
			return rt, invalidInput(field, fmt.Sprintf("the route %s via %s exists already", d, g))
		}
	}
	return schema.NetworkRoute{Destination: d.String(), Gateway: g.String()}, nil
}

func (s *Sim) createNetwork(r *http.Request, _ params) (int, any, *apiError) {
	var req schema.NetworkCreateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if e := validateFreeName(req.Name); e != nil {
		return 0, nil, e
	}
	nr, e := validateNetworkRange(req.IPRange)
	if e != nil {
		return 0, nil, e
	}
	labels := copyLabels(req.Labels)
	if e := validateLabels(labels); e != nil {
		return 0, nil, e
	}
	var subnets []schema.NetworkSubnet
	for i, sn := range req.Subnets {
		out, e := checkSubnet(nr, subnets, sn, fmt.Sprintf("subnets[%d]", i))
		if e != nil {
			return 0, nil, e
		}
		subnets = append(subnets, out)
	}
	var routes []schema.NetworkRoute
	for i, rt := range req.Routes {
		out, e := checkRoute(nr, routes, rt, fmt.Sprintf("routes[%d]", i))
		if e != nil {
			return 0, nil, e
		}
		routes = append(routes, out)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.st.Networks {
		if o.Name == req.Name {
			return 0, nil, uniqueness("name", "network name is already used")
		}
	}
	n := &network{ID: s.st.newID(), Name: req.Name, IPRange: nr.String(), Subnets: subnets, Routes: routes,
		Labels: labels, Created: s.clock.Now().UTC(), ExposeRoutesToVSwitch: req.ExposeRoutesToVSwitch}
	if n.Subnets == nil {
		n.Subnets = []schema.NetworkSubnet{}
	}
	if n.Routes == nil {
		n.Routes = []schema.NetworkRoute{}
	}
	s.st.Networks[n.ID] = n
	s.persistLocked()
	return http.StatusCreated, schema.NetworkCreateResponse{Network: s.networkSchemaLocked(n)}, nil
}

func (s *Sim) updateNetwork(r *http.Request, p params) (int, any, *apiError) {
	var req schema.NetworkUpdateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, e := s.networkLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if req.Name != "" && req.Name != n.Name {
		if e := validateFreeName(req.Name); e != nil {
			return 0, nil, e
		}
		for _, o := range s.st.Networks {
			if o.Name == req.Name {
				return 0, nil, uniqueness("name", "network name is already used")
			}
		}
	}
	if req.Labels != nil {
		if e := validateLabels(*req.Labels); e != nil {
			return 0, nil, e
		}
		n.Labels = copyLabels(req.Labels)
	}
	if req.Name != "" {
		n.Name = req.Name
	}
	if req.ExposeRoutesToVSwitch != nil {
		n.ExposeRoutesToVSwitch = *req.ExposeRoutesToVSwitch
	}
	s.persistLocked()
	return 200, schema.NetworkUpdateResponse{Network: s.networkSchemaLocked(n)}, nil
}

// deleteNetwork deletes a network at once; servers still attached are detached in the
// background, as the API documents.
func (s *Sim) deleteNetwork(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, e := s.networkLocked(p)
	if e != nil {
		return 0, nil, e
	}
	switch {
	case n.ProtectDelete:
		return 0, nil, newError("protected", "network %d is protected against deletion; disable the protection first", n.ID)
	case s.isLocked("network", n.ID):
		return 0, nil, locked("network", n.ID)
	}
	id := n.ID
	servers := s.networkServersLocked(id, true)
	for _, sid := range servers {
		sv := s.st.Servers[sid]
		sv.PrivateNets = slices.DeleteFunc(sv.PrivateNets, func(pn privateNet) bool { return pn.Network == id })
	}
	delete(s.st.Networks, id)
	if nb, ok := s.backend.(NetworkBackend); ok {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for _, sid := range servers {
				if err := nb.DetachNetwork(s.ctx, sid, id); err != nil {
					s.log.Warn("detach a server from a deleted network", "server", sid, "network", id, "err", err)
				}
			}
			if err := nb.DeleteNetwork(s.ctx, id); err != nil {
				s.log.Warn("remove a deleted network", "network", id, "err", err)
			}
		}()
	}
	s.persistLocked()
	return http.StatusNoContent, nil, nil
}

// networkAction starts an action on one network that changes only the state (its backend part,
// if any, is done by the caller's run).
func (s *Sim) networkChange(r *http.Request, p params, req any, command string, apply func(n *network) (func(), *apiError)) (int, any, *apiError) {
	if e := decodeBody(r, req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, e := s.networkLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if s.isLocked("network", n.ID) {
		return 0, nil, locked("network", n.ID)
	}
	commit, e := apply(n)
	if e != nil {
		return 0, nil, e
	}
	id := n.ID
	a := s.startActionLocked(actionSpec{
		command: command, resources: []schema.ActionResourceReference{ref("network", id)}, lock: true,
		done: func(err error) {
			if _, ok := s.st.Networks[id]; ok && err == nil {
				commit()
			}
		},
	})
	s.persistLocked()
	return http.StatusCreated, map[string]any{"action": a.schemaLocked()}, nil
}

func (s *Sim) addSubnet(r *http.Request, p params) (int, any, *apiError) {
	var req schema.NetworkActionAddSubnetRequest
	return s.networkChange(r, p, &req, "add_subnet", func(n *network) (func(), *apiError) {
		nr := netip.MustParsePrefix(n.IPRange)
		sn, e := checkSubnet(nr, n.Subnets, schema.NetworkSubnet{Type: req.Type, IPRange: req.IPRange, NetworkZone: req.NetworkZone, VSwitchID: req.VSwitchID}, "")
		if e != nil {
			return nil, fieldless(e)
		}
		return func() { n.Subnets = append(n.Subnets, sn) }, nil
	})
}

// fieldless drops the leading "." of a field name built for a request's top level.
func fieldless(e *apiError) *apiError {
	if d, ok := e.Details.(map[string]any); ok {
		if fs, ok := d["fields"].([]fieldError); ok {
			for i := range fs {
				fs[i].Name = strings.TrimPrefix(fs[i].Name, ".")
			}
			e.Message = strings.Replace(e.Message, "field '.", "field '", 1)
		}
	}
	return e
}

func (s *Sim) deleteSubnet(r *http.Request, p params) (int, any, *apiError) {
	var req schema.NetworkActionDeleteSubnetRequest
	return s.networkChange(r, p, &req, "delete_subnet", func(n *network) (func(), *apiError) {
		i := slices.IndexFunc(n.Subnets, func(sn schema.NetworkSubnet) bool { return sn.IPRange == req.IPRange })
		if i < 0 {
			return nil, invalidInput("ip_range", fmt.Sprintf("network %d has no subnet %q", n.ID, req.IPRange))
		}
		sp := netip.MustParsePrefix(n.Subnets[i].IPRange)
		for _, sv := range s.st.Servers {
			for _, pn := range sv.PrivateNets {
				if a, err := netip.ParseAddr(pn.IP); pn.Network == n.ID && err == nil && sp.Contains(a) {
					return nil, newError("service_error", "cannot remove subnet because servers are attached to it")
				}
			}
		}
		iprange := req.IPRange
		return func() {
			n.Subnets = slices.DeleteFunc(n.Subnets, func(sn schema.NetworkSubnet) bool { return sn.IPRange == iprange })
		}, nil
	})
}

func (s *Sim) addRoute(r *http.Request, p params) (int, any, *apiError) {
	var req schema.NetworkActionAddRouteRequest
	return s.networkChange(r, p, &req, "add_route", func(n *network) (func(), *apiError) {
		rt, e := checkRoute(netip.MustParsePrefix(n.IPRange), n.Routes, schema.NetworkRoute{Destination: req.Destination, Gateway: req.Gateway}, "")
		if e != nil {
			return nil, fieldless(e)
		}
		return func() { n.Routes = append(n.Routes, rt) }, nil
	})
}

func (s *Sim) deleteRoute(r *http.Request, p params) (int, any, *apiError) {
	var req schema.NetworkActionDeleteRouteRequest
	return s.networkChange(r, p, &req, "delete_route", func(n *network) (func(), *apiError) {
		match := func(rt schema.NetworkRoute) bool {
			return rt.Destination == req.Destination && rt.Gateway == req.Gateway
		}
		if !slices.ContainsFunc(n.Routes, match) {
			return nil, invalidInput("destination", fmt.Sprintf("network %d has no route %s via %s", n.ID, req.Destination, req.Gateway))
		}
		return func() { n.Routes = slices.DeleteFunc(n.Routes, match) }, nil
	})
}

func (s *Sim) changeIPRange(r *http.Request, p params) (int, any, *apiError) {
	var req schema.NetworkActionChangeIPRangeRequest
	return s.networkChange(r, p, &req, "change_ip_range", func(n *network) (func(), *apiError) {
		nr, e := validateNetworkRange(req.IPRange)
		if e != nil {
			return nil, e
		}
		old := netip.MustParsePrefix(n.IPRange)
		if nr.Bits() > old.Bits() || !nr.Contains(old.Addr()) {
			return nil, invalidInput("ip_range", fmt.Sprintf("%s does not contain the current range %s: a network's range can only be extended", nr, old))
		}
		return func() { n.IPRange = nr.String() }, nil
	})
}

func (s *Sim) changeNetworkProtection(r *http.Request, p params) (int, any, *apiError) {
	var req schema.NetworkActionChangeProtectionRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, e := s.networkLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if s.isLocked("network", n.ID) {
		return 0, nil, locked("network", n.ID)
	}
	if req.Delete != nil {
		n.ProtectDelete = *req.Delete
	}
	a := s.finishedActionLocked("change_protection", ref("network", n.ID))
	s.persistLocked()
	return http.StatusCreated, schema.NetworkActionChangeProtectionResponse{Action: a.schemaLocked()}, nil
}

// privateMAC is the MAC address of a server's interface on a network, stable for the pair.
func privateMAC(serverID, networkID int64) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", serverID, networkID))
	return fmt.Sprintf("86:00:00:%02x:%02x:%02x", sum[0], sum[1], sum[2])
}

// takenLocked lists the addresses of network id in use (servers, alias IPs, pending attaches).
func (s *Sim) takenLocked(id int64) map[netip.Addr]int64 {
	out := map[netip.Addr]int64{}
	for _, sv := range s.st.Servers {
		for _, pn := range sv.PrivateNets {
			if pn.Network != id {
				continue
			}
			for _, ip := range append([]string{pn.IP}, pn.AliasIPs...) {
				if a, err := netip.ParseAddr(ip); err == nil {
					out[a] = sv.ID
				}
			}
		}
	}
	return out
}

// reserved says whether a is an address no server may have in subnet sp of network nr: the
// subnet's network and broadcast addresses and the network's gateway.
func reserved(nr, sp netip.Prefix, a netip.Addr) bool {
	return a == sp.Addr() || a == lastAddr(sp) || a == gatewayOf(nr) || a == nr.Addr()
}

// pickIPLocked chooses the address of a server in location loc on network n: want when given
// (it must be free and in a cloud or server subnet of the location's network zone), else the
// first free one of such a subnet.
func (s *Sim) pickIPLocked(n *network, loc, want string) (netip.Addr, *apiError) {
	l, _ := locationByName(loc)
	nr := netip.MustParsePrefix(n.IPRange)
	taken := s.takenLocked(n.ID)
	var subnets []netip.Prefix
	for _, sn := range n.Subnets {
		if (sn.Type == "cloud" || sn.Type == "server") && sn.NetworkZone == l.NetworkZone {
			subnets = append(subnets, netip.MustParsePrefix(sn.IPRange))
		}
	}
	if want != "" {
		a, err := netip.ParseAddr(want)
		if err != nil || !a.Is4() {
			return a, invalidInput("ip", fmt.Sprintf("%q is not an IPv4 address", want))
		}
		for _, sp := range subnets {
			if !sp.Contains(a) {
				continue
			}
			if _, used := taken[a]; used || reserved(nr, sp, a) {
				return a, newError("ip_not_available", "IP not available")
			}
			return a, nil
		}
		return a, invalidInput("ip", fmt.Sprintf("%s is not in a subnet of network %d in network zone %s (subnets: %s)", a, n.ID, l.NetworkZone, subnetList(n)))
	}
	for _, sp := range subnets {
		for a := sp.Addr(); sp.Contains(a); a = a.Next() {
			if _, used := taken[a]; !used && !reserved(nr, sp, a) {
				return a, nil
			}
		}
	}
	return netip.Addr{}, newError("no_subnet_available", "no subnet or IP available")
}

func subnetList(n *network) string {
	var parts []string
	for _, sn := range n.Subnets {
		parts = append(parts, sn.IPRange+" "+sn.NetworkZone)
	}
	if parts == nil {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// joinLocked checks that server sv may join network n with the address want (or one chosen)
// and returns the attachment, not yet recorded.
func (s *Sim) joinLocked(sv *server, n *network, want string, aliases []string) (privateNet, *apiError) {
	for _, pn := range sv.PrivateNets {
		if pn.Network == n.ID {
			return privateNet{}, newError("server_already_attached", "server %d is already attached to network %d", sv.ID, n.ID)
		}
		if o, ok := s.st.Networks[pn.Network]; ok && overlaps(netip.MustParsePrefix(o.IPRange), netip.MustParsePrefix(n.IPRange)) {
			return privateNet{}, newError("networks_overlap", "the range %s of network %d overlaps the range %s of network %d the server is attached to", n.IPRange, n.ID, o.IPRange, o.ID)
		}
	}
	ip, e := s.pickIPLocked(n, sv.Location, want)
	if e != nil {
		return privateNet{}, e
	}
	pn := privateNet{Network: n.ID, IP: ip.String(), AliasIPs: []string{}, MAC: privateMAC(sv.ID, n.ID), Pending: true}
	taken := s.takenLocked(n.ID)
	for _, al := range aliases {
		a, err := netip.ParseAddr(al)
		if err != nil || !a.Is4() || a == ip {
			return privateNet{}, invalidInput("alias_ips", fmt.Sprintf("%q is not an IPv4 address other than the server's", al))
		}
		got, e := s.pickIPLocked(n, sv.Location, al)
		if e != nil {
			return privateNet{}, e
		}
		if _, used := taken[got]; used {
			return privateNet{}, newError("ip_not_available", "IP not available")
		}
		pn.AliasIPs = append(pn.AliasIPs, got.String())
	}
	used := map[int]bool{}
	for _, o := range sv.PrivateNets {
		used[o.Iface] = true
	}
	for used[pn.Iface] {
		pn.Iface++
	}
	return pn, nil
}

func (pn privateNet) backendNet(n *network) PrivateNet {
	return PrivateNet{Network: pn.Network, Iface: pn.Iface, IP: netip.MustParseAddr(pn.IP), Range: netip.MustParsePrefix(n.IPRange), MAC: pn.MAC}
}

// settlePrivateNetLocked ends the pending state of server sid's attachment to network nid:
// shown when ok, forgotten otherwise.
func (s *Sim) settlePrivateNetLocked(sid, nid int64, ok bool) {
	sv, found := s.st.Servers[sid]
	if !found {
		return
	}
	for i := range sv.PrivateNets {
		if sv.PrivateNets[i].Network == nid && sv.PrivateNets[i].Pending {
			if ok {
				sv.PrivateNets[i].Pending = false
			} else {
				sv.PrivateNets = slices.Delete(sv.PrivateNets, i, i+1)
			}
			return
		}
	}
}

func (s *Sim) attachToNetwork(r *http.Request, p params) (int, any, *apiError) {
	var req schema.ServerActionAttachToNetworkRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if req.Network <= 0 {
		return 0, nil, invalidInput("network", "is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	n, ok := s.st.Networks[req.Network]
	switch {
	case !ok:
		return 0, nil, notFound("network", req.Network)
	case sv.Status == "deleting":
		return 0, nil, notFound("server", sv.ID)
	case s.isLocked("server", sv.ID):
		return 0, nil, locked("server", sv.ID)
	case s.isLocked("network", n.ID):
		return 0, nil, locked("network", n.ID)
	}
	want := ""
	if req.IP != nil {
		want = *req.IP
	}
	if req.IPRange != nil && want == "" {
		// A subnet chosen: the first free address of it.
		sp, e := parseRange("ip_range", *req.IPRange)
		if e != nil {
			return 0, nil, e
		}
		nr := netip.MustParsePrefix(n.IPRange)
		taken := s.takenLocked(n.ID)
		for a := sp.Addr(); sp.Contains(a); a = a.Next() {
			if _, used := taken[a]; !used && !reserved(nr, sp, a) {
				want = a.String()
				break
			}
		}
		if want == "" {
			return 0, nil, newError("no_subnet_available", "no subnet or IP available")
		}
	}
	var aliases []string
	for _, a := range req.AliasIPs {
		if a != nil {
			aliases = append(aliases, *a)
		}
	}
	pn, e := s.joinLocked(sv, n, want, aliases)
	if e != nil {
		return 0, nil, e
	}
	sv.PrivateNets = append(sv.PrivateNets, pn)
	sid, nid, bn := sv.ID, n.ID, pn.backendNet(n)
	nb, isNet := s.backend.(NetworkBackend)
	a := s.startActionLocked(actionSpec{
		command: "attach_to_network", resources: []schema.ActionResourceReference{ref("server", sid), ref("network", nid)}, lock: true,
		run: func(ctx context.Context) error {
			if !isNet {
				return nil
			}
			return nb.AttachNetwork(ctx, sid, bn)
		},
		done: func(err error) { s.settlePrivateNetLocked(sid, nid, err == nil) },
	})
	s.persistLocked()
	return http.StatusCreated, schema.ServerActionAttachToNetworkResponse{Action: a.schemaLocked()}, nil
}

func (s *Sim) detachFromNetwork(r *http.Request, p params) (int, any, *apiError) {
	var req schema.ServerActionDetachFromNetworkRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if req.Network <= 0 {
		return 0, nil, invalidInput("network", "is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if _, ok := s.st.Networks[req.Network]; !ok {
		return 0, nil, notFound("network", req.Network)
	}
	if s.isLocked("server", sv.ID) {
		return 0, nil, locked("server", sv.ID)
	}
	if s.isLocked("network", req.Network) {
		return 0, nil, locked("network", req.Network)
	}
	if !slices.ContainsFunc(sv.PrivateNets, func(pn privateNet) bool { return pn.Network == req.Network && !pn.Pending }) {
		return 0, nil, newError("service_error", "server %d is not attached to network %d", sv.ID, req.Network)
	}
	sid, nid := sv.ID, req.Network
	nb, isNet := s.backend.(NetworkBackend)
	a := s.startActionLocked(actionSpec{
		command: "detach_from_network", resources: []schema.ActionResourceReference{ref("server", sid), ref("network", nid)}, lock: true,
		run: func(ctx context.Context) error {
			if !isNet {
				return nil
			}
			return nb.DetachNetwork(ctx, sid, nid)
		},
		done: func(err error) {
			if sv, ok := s.st.Servers[sid]; ok && err == nil {
				sv.PrivateNets = slices.DeleteFunc(sv.PrivateNets, func(pn privateNet) bool { return pn.Network == nid })
			}
		},
	})
	s.persistLocked()
	return http.StatusCreated, schema.ServerActionDetachFromNetworkResponse{Action: a.schemaLocked()}, nil
}

func (s *Sim) changeAliasIPs(r *http.Request, p params) (int, any, *apiError) {
	var req schema.ServerActionChangeAliasIPsRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv, e := s.serverLocked(p)
	if e != nil {
		return 0, nil, e
	}
	n, ok := s.st.Networks[req.Network]
	if !ok {
		return 0, nil, notFound("network", req.Network)
	}
	if s.isLocked("server", sv.ID) {
		return 0, nil, locked("server", sv.ID)
	}
	i := slices.IndexFunc(sv.PrivateNets, func(pn privateNet) bool { return pn.Network == n.ID && !pn.Pending })
	if i < 0 {
		return 0, nil, newError("service_error", "server %d is not attached to network %d", sv.ID, n.ID)
	}
	taken := s.takenLocked(n.ID)
	var aliases []string
	for _, al := range req.AliasIPs {
		a, e := s.pickIPLocked(n, sv.Location, al)
		if e != nil {
			if e.Code != "ip_not_available" || taken[a] != sv.ID {
				return 0, nil, e
			}
		}
		if a.String() == sv.PrivateNets[i].IP {
			return 0, nil, invalidInput("alias_ips", fmt.Sprintf("%s is the server's own address", a))
		}
		aliases = append(aliases, a.String())
	}
	sort.Strings(aliases)
	sid, nid := sv.ID, n.ID
	a := s.startActionLocked(actionSpec{
		command: "change_alias_ips", resources: []schema.ActionResourceReference{ref("server", sid), ref("network", nid)}, lock: true,
		done: func(err error) {
			sv, ok := s.st.Servers[sid]
			if !ok || err != nil {
				return
			}
			for j := range sv.PrivateNets {
				if sv.PrivateNets[j].Network == nid {
					sv.PrivateNets[j].AliasIPs = append([]string{}, aliases...)
				}
			}
		},
	})
	s.persistLocked()
	return http.StatusCreated, schema.ServerActionChangeAliasIPsResponse{Action: a.schemaLocked()}, nil
}

// privateNetSchemaLocked lists server sv's shown attachments.
func privateNetSchema(sv *server) []schema.ServerPrivateNet {
	out := []schema.ServerPrivateNet{}
	for _, pn := range sv.PrivateNets {
		if !pn.Pending {
			out = append(out, schema.ServerPrivateNet{Network: pn.Network, IP: pn.IP, AliasIPs: append([]string{}, pn.AliasIPs...), MACAddress: pn.MAC})
		}
	}
	return out
}

// privateNetworksYAMLLocked is the metadata service's private-networks document for sv.
func (s *Sim) privateNetworksYAMLLocked(sv *server) string {
	var b strings.Builder
	for _, pn := range sv.PrivateNets {
		n, ok := s.st.Networks[pn.Network]
		if pn.Pending || !ok {
			continue
		}
		nr := netip.MustParsePrefix(n.IPRange)
		subnet := ""
		if a, err := netip.ParseAddr(pn.IP); err == nil {
			for _, sn := range n.Subnets {
				if sp, err := netip.ParsePrefix(sn.IPRange); err == nil && sp.Contains(a) {
					subnet = sn.IPRange
				}
			}
		}
		fmt.Fprintf(&b, "- ip: %s\n  alias_ips: [%s]\n  interface_num: %d\n  mac_address: %s\n  network_id: %d\n  network_name: %s\n  network: %s\n  subnet: %s\n  gateway: %s\n",
			pn.IP, strings.Join(pn.AliasIPs, ", "), pn.Iface+1, pn.MAC, n.ID, n.Name, n.IPRange, subnet, gatewayOf(nr))
	}
	if b.Len() == 0 {
		return "[]\n"
	}
	return b.String()
}
