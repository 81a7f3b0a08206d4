package hcloudsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// CatalogChange changes where a server type can be ordered: what a test needs to play a
// catalog in which yesterday's default is gone. Location "" means every location the type
// is offered in.
//
//	State "available"    offered and in stock (clears a deprecation)
//	State "unavailable"  out of stock: locations[].available is false and an order
//	                     answers resource_unavailable "error during placement"
//	State "deprecated"   locations[].deprecation is set; ordering works until
//	                     UnavailableAfter, then answers invalid_input
//	                     "unsupported location for server type"
//	State "removed"      (whole type only) gone from the API like cx22 in 2026: not
//	                     listed, not orderable, still shown on servers that have it
type CatalogChange struct {
	ServerType       string    `json:"server_type"`
	Location         string    `json:"location,omitempty"`
	State            string    `json:"state"`
	UnavailableAfter time.Time `json:"unavailable_after,omitzero"`
}

// typeLocation is the state of one server type in one location.
type typeLocation struct {
	available   bool
	deprecation *schema.DeprecationInfo
}

// serverCatalog is the server-type part of the catalog: the static specs plus the changes
// made by Config.Catalog and POST /_sim/catalog. It has its own lock, taken after Sim.mu
// when both are held, never before.
type serverCatalog struct {
	now     func() time.Time
	mu      sync.RWMutex
	at      map[string]map[string]typeLocation // type -> location -> state
	removed map[string]bool
	changes []CatalogChange // applied since the start, for GET /_sim/catalog
}

func newServerCatalog(now func() time.Time) *serverCatalog {
	c := &serverCatalog{now: now}
	c.reset()
	return c
}

func (c *serverCatalog) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.removed, c.changes = map[string]map[string]typeLocation{}, map[string]bool{}, nil
	for _, st := range catalogServerTypeSpecs {
		m := map[string]typeLocation{}
		for _, l := range st.locations {
			tl := typeLocation{available: true}
			if contains(st.deprecatedIn, l) {
				d := gen1Deprecation
				tl.deprecation = &d
			}
			m[l] = tl
		}
		c.at[st.name] = m
		c.removed[st.name] = st.removed
	}
}

// apply validates and applies changes, all or none.
func (c *serverCatalog) apply(changes []CatalogChange) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range changes {
		if _, ok := specByName(ch.ServerType); !ok {
			return fmt.Errorf("catalog change %+v: unknown server type %q", ch, ch.ServerType)
		}
		if ch.Location != "" {
			if _, ok := c.at[ch.ServerType][ch.Location]; !ok {
				return fmt.Errorf("catalog change %+v: server type %s is not offered in %q (it is in %s)", ch, ch.ServerType, ch.Location, strings.Join(sortedKeys(c.at[ch.ServerType]), ", "))
			}
		}
		switch ch.State {
		case "available", "unavailable", "removed":
		case "deprecated":
			if ch.UnavailableAfter.IsZero() {
				return fmt.Errorf("catalog change %+v: deprecated needs unavailable_after", ch)
			}
		default:
			return fmt.Errorf("catalog change %+v: state must be available, unavailable, deprecated or removed", ch)
		}
		if ch.State == "removed" && ch.Location != "" {
			return fmt.Errorf("catalog change %+v: removed applies to a whole server type, without location", ch)
		}
	}
	for _, ch := range changes {
		c.changes = append(c.changes, ch)
		if ch.State == "removed" {
			c.removed[ch.ServerType] = true
			continue
		}
		c.removed[ch.ServerType] = false
		for l, tl := range c.at[ch.ServerType] {
			if ch.Location != "" && l != ch.Location {
				continue
			}
			switch ch.State {
			case "available":
				tl = typeLocation{available: true}
			case "unavailable":
				tl.available = false
			case "deprecated":
				announced := c.now().UTC().Truncate(time.Second)
				if announced.After(ch.UnavailableAfter) {
					announced = ch.UnavailableAfter.Add(-90 * 24 * time.Hour)
				}
				tl.deprecation = &schema.DeprecationInfo{Announced: announced, UnavailableAfter: ch.UnavailableAfter.UTC()}
			}
			c.at[ch.ServerType][l] = tl
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func specByName(name string) (serverTypeSpec, bool) {
	for _, st := range catalogServerTypeSpecs {
		if st.name == name {
			return st, true
		}
	}
	return serverTypeSpec{}, false
}

func specByID(id int64) (serverTypeSpec, bool) {
	for _, st := range catalogServerTypeSpecs {
		if st.id == id {
			return st, true
		}
	}
	return serverTypeSpec{}, false
}

// listed returns the specs the API lists (not removed), in catalog order.
func (c *serverCatalog) listed() []serverTypeSpec {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []serverTypeSpec
	for _, st := range catalogServerTypeSpecs {
		if !c.removed[st.name] {
			out = append(out, st)
		}
	}
	return out
}

// lookup finds a listed type by id or name (what GET and POST /servers see).
func (c *serverCatalog) lookup(v schema.IDOrName) (serverTypeSpec, bool) {
	for _, st := range c.listed() {
		if (v.ID != 0 && st.id == v.ID) || (v.Name != "" && st.name == v.Name) {
			return st, true
		}
	}
	return serverTypeSpec{}, false
}

// unavailableAt says whether a deprecation's date has passed.
func (c *serverCatalog) past(d *schema.DeprecationInfo) bool {
	return d != nil && !c.now().Before(d.UnavailableAfter)
}

// schema renders a server type with its per-location availability and deprecation. The
// deprecated top-level fields (deprecated, deprecation) are set when the type is deprecated
// in every location it is offered in, as the API still sends them for such types.
func (c *serverCatalog) schema(st serverTypeSpec) schema.ServerType {
	out := schema.ServerType{
		ID: st.id, Name: st.name, Description: st.desc, Category: st.category, Cores: st.cores,
		Memory: st.memory, Disk: st.disk, StorageType: "local", CPUType: st.cpu, Architecture: st.arch,
		Prices: st.prices(), Locations: []schema.ServerTypeLocation{},
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	all := len(st.locations) > 0
	var last *schema.DeprecationInfo
	for _, l := range st.locations {
		loc, _ := locationByName(l)
		tl := c.at[st.name][l]
		sl := schema.ServerTypeLocation{ID: loc.ID, Name: loc.Name, Available: tl.available && !c.past(tl.deprecation)}
		sl.Recommended = sl.Available && tl.deprecation == nil
		if tl.deprecation != nil {
			d := *tl.deprecation
			sl.Deprecation = &d
			if last == nil || d.UnavailableAfter.After(last.UnavailableAfter) {
				last = &d
			}
		} else {
			all = false
		}
		out.Locations = append(out.Locations, sl)
	}
	if all && last != nil {
		out.Deprecated, out.Deprecation = true, last
	}
	return out
}

// schemaOf renders the type of an existing server, removed or not.
func (c *serverCatalog) schemaOf(id int64) (schema.ServerType, serverTypeSpec) {
	st, _ := specByID(id)
	return c.schema(st), st
}

// orderable checks that st can be ordered in location, with the API's own errors: a
// location the type is not offered in, or whose deprecation date has passed, is
// invalid_input "unsupported location for server type"; a type out of stock there is
// resource_unavailable "error during placement".
func (c *serverCatalog) orderable(st serverTypeSpec, location string) *apiError {
	c.mu.RLock()
	tl, offered := c.at[st.name][location]
	c.mu.RUnlock()
	if !offered || c.past(tl.deprecation) {
		return newError("invalid_input", "unsupported location for server type")
	}
	if !tl.available {
		return newError("resource_unavailable", "error during placement")
	}
	return nil
}

// defaultLocation is where the API puts a server when the request names none: the first
// location the type can be ordered in.
func (c *serverCatalog) defaultLocation(st serverTypeSpec) string {
	for _, l := range st.locations {
		if c.orderable(st, l) == nil {
			return l
		}
	}
	return st.locations[0]
}

// datacenterSchema lists the types supported and available in a location (the datacenter
// object is deprecated by Hetzner since 2026-06 but still sent).
func (c *serverCatalog) datacenterSchema(loc schema.Location) schema.Datacenter {
	supported, available := []int64{}, []int64{}
	for _, st := range c.listed() {
		c.mu.RLock()
		tl, ok := c.at[st.name][loc.Name]
		c.mu.RUnlock()
		if !ok {
			continue
		}
		supported = append(supported, st.id)
		if tl.available && !c.past(tl.deprecation) {
			available = append(available, st.id)
		}
	}
	return schema.Datacenter{
		ID: loc.ID, Name: catalogDatacenterNames[loc.Name], Description: loc.City + " DC", Location: loc,
		ServerTypes: &schema.DatacenterServerTypes{Supported: supported, Available: available, AvailableForMigration: available},
	}
}

func (c *serverCatalog) datacenterByIDOrName(v schema.IDOrName) (schema.Datacenter, bool) {
	for _, l := range catalogLocations {
		dc := c.datacenterSchema(l)
		if (v.ID != 0 && dc.ID == v.ID) || (v.Name != "" && dc.Name == v.Name) {
			return dc, true
		}
	}
	return schema.Datacenter{}, false
}

// CatalogStatus is the body of GET /_sim/catalog.
type CatalogStatus struct {
	Changes []CatalogChange `json:"changes"`
}

// CatalogRequest is the body of POST /_sim/catalog: Reset restores the static catalog
// first, then Changes are applied (all or none).
type CatalogRequest struct {
	Reset   bool            `json:"reset,omitempty"`
	Changes []CatalogChange `json:"changes"`
}

// ChangeCatalog applies catalog changes (all or none).
func (s *Sim) ChangeCatalog(changes ...CatalogChange) error { return s.catalog.apply(changes) }

// ResetCatalog restores the static catalog.
func (s *Sim) ResetCatalog() { s.catalog.reset() }

// serveCatalogControl answers GET and POST /_sim/catalog.
func (s *Sim) serveCatalogControl(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		s.catalog.mu.RLock()
		st := CatalogStatus{Changes: append([]CatalogChange{}, s.catalog.changes...)}
		s.catalog.mu.RUnlock()
		writeJSON(w, 200, st)
		return
	}
	var req CatalogRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
		writeError(w, newError("invalid_input", "catalog request: %v", err))
		return
	}
	if req.Reset {
		s.catalog.reset()
	}
	if err := s.catalog.apply(req.Changes); err != nil {
		writeError(w, newError("invalid_input", "%v", err))
		return
	}
	s.catalog.mu.RLock()
	st := CatalogStatus{Changes: append([]CatalogChange{}, s.catalog.changes...)}
	s.catalog.mu.RUnlock()
	writeJSON(w, 200, st)
}

// ParseCatalogChanges parses --catalog: comma-separated TYPE[@LOCATION]=STATE, where
// STATE is available, unavailable, removed or deprecated:YYYY-MM-DD (the date after which
// it can no longer be ordered), e.g. "cx23@fsn1=unavailable,cpx22=deprecated:2026-12-31".
func ParseCatalogChanges(s string) ([]CatalogChange, error) {
	var out []CatalogChange
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		lhs, state, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("--catalog %q: want TYPE[@LOCATION]=STATE, e.g. cx23@fsn1=unavailable", item)
		}
		ch := CatalogChange{State: state}
		ch.ServerType, ch.Location, _ = strings.Cut(lhs, "@")
		if st, date, ok := strings.Cut(state, ":"); ok {
			d, err := time.Parse(time.DateOnly, date)
			if err != nil || st != "deprecated" {
				return nil, fmt.Errorf("--catalog %q: want deprecated:YYYY-MM-DD", item)
			}
			ch.State, ch.UnavailableAfter = st, d
		}
		out = append(out, ch)
	}
	return out, nil
}
