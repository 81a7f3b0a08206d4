package hcloudsim

import (
	"fmt"
	"net/http"
	"strings"
)

// serveMetadata answers the server metadata service (/hetzner/v1/metadata[/key] and
// /hetzner/v1/userdata) for the server the request stands for. It returns the endpoint
// template for the statistics.
func (s *Sim) serveMetadata(w http.ResponseWriter, r *http.Request) string {
	endpoint := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return endpoint
	}
	id, ok := s.metadataServer(r)
	s.mu.Lock()
	sv, found := s.st.Servers[id]
	var vals map[string]string
	var userData, privNets string
	if ok && found {
		privNets = s.privateNetworksYAMLLocked(sv)
		loc, _ := locationByName(sv.Location)
		ip := sv.IPv4
		vals = map[string]string{
			"availability-zone": catalogDatacenterNames[sv.Location],
			"hostname":          sv.Name,
			"instance-id":       itoa(sv.ID),
			"public-ipv4":       ip,
			"region":            loc.NetworkZone,
		}
		userData = sv.UserData
	}
	s.mu.Unlock()
	if vals == nil {
		http.Error(w, "no server is known for this request (start hcloud-sim with --local-server NAME)", http.StatusNotFound)
		return endpoint
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	key := strings.TrimPrefix(strings.TrimPrefix(endpoint, "/hetzner/v1/metadata"), "/")
	switch {
	case endpoint == "/hetzner/v1/userdata" || key == "userdata":
		fmt.Fprint(w, userData)
	case key == "":
		// The summary is YAML, keys sorted like the real service.
		for _, k := range []string{"availability-zone", "hostname", "instance-id", "public-ipv4", "region"} {
			fmt.Fprintf(w, "%s: %s\n", k, vals[k])
		}
	case key == "private-networks":
		fmt.Fprint(w, privNets)
	default:
		v, ok := vals[key]
		if !ok {
			http.Error(w, "unknown metadata key "+key, http.StatusNotFound)
			return "/hetzner/v1/metadata/{unknown}"
		}
		fmt.Fprint(w, v)
	}
	return endpoint
}

// metadataServer resolves the server a metadata request stands for: the configured
// resolver, then the backend (e.g. a container backend mapping source IPs), then the
// --local-server.
func (s *Sim) metadataServer(r *http.Request) (int64, bool) {
	if s.cfg.MetadataResolver != nil {
		if id, ok := s.cfg.MetadataResolver(r); ok {
			return id, true
		}
	}
	if id, ok := s.backend.ServerForRequest(r); ok {
		return id, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.LocalServerID, s.st.LocalServerID != 0
}
