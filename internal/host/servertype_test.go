package host

import (
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
	"github.com/dockbridge/dockbridge/internal/hetzner"
)

func withCatalog(changes ...hcloudsim.CatalogChange) hcloudsimtest.Option {
	return hcloudsimtest.WithConfig(func(c *hcloudsim.Config) { c.Catalog = changes })
}

// TestUpChoosesServerTypeFromCatalog: with no type set, up takes the cheapest x86 type with
// at least 4 GB that is available and not deprecated in the location, from the live catalog:
// cx23 today; cx33 once cx23 is gone (removed from the API as cx22 was); cpx22 when the whole
// cost-optimized line is out of stock there (as hetzner.com showed in September 2026).
func TestUpChoosesServerTypeFromCatalog(t *testing.T) {
	soon := time.Now().Add(60 * 24 * time.Hour)
	for _, tc := range []struct {
		name    string
		catalog []hcloudsim.CatalogChange
		want    string
	}{
		{"today", nil, "cx23"},
		{"yesterday's default removed", []hcloudsim.CatalogChange{{ServerType: "cx23", State: "removed"}}, "cx33"},
		{"cost-optimized out of stock, cx43 deprecated", []hcloudsim.CatalogChange{
			{ServerType: "cx23", Location: "fsn1", State: "unavailable"},
			{ServerType: "cx33", Location: "fsn1", State: "unavailable"},
			{ServerType: "cx43", Location: "fsn1", State: "deprecated", UnavailableAfter: soon},
			{ServerType: "cx53", Location: "fsn1", State: "unavailable"},
		}, "cpx22"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSimEnv(t, withCatalog(tc.catalog...))
			ctx := t.Context()
			res, err := e.up(ctx, "default")
			if err != nil {
				t.Fatalf("up: %v\n%s", err, e.stderr)
			}
			srv, err := e.api.Server(ctx, res.ServerID)
			must(t, err)
			if res.ServerType != tc.want || srv.ServerType != tc.want {
				t.Errorf("up chose %s (server has %s), want %s\n%s", res.ServerType, srv.ServerType, tc.want, e.stderr)
			}
			if !strings.Contains(e.stderr.String(), "Server type ... done ("+tc.want+" (x86") || !strings.Contains(e.stderr.String(), "the cheapest x86 type with at least 4 GB available in fsn1") {
				t.Errorf("progress does not say which type was chosen and why:\n%s", e.stderr)
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings for a default choice: %v", res.Warnings)
			}
		})
	}
}

// TestUpDeprecatedExplicitTypeWarns: a type the user chose that is deprecated in the location
// still works, with a warning naming the date after which it becomes unavailable there.
func TestUpDeprecatedExplicitTypeWarns(t *testing.T) {
	until := time.Date(2099, 3, 31, 0, 0, 0, 0, time.UTC)
	e := newSimEnv(t, withCatalog(hcloudsim.CatalogChange{ServerType: "cx33", Location: "fsn1", State: "deprecated", UnavailableAfter: until}))
	e.deps.Config.ServerType = "cx33"
	res, err := e.up(t.Context(), "default")
	if err != nil {
		t.Fatalf("up with a deprecated type: %v\n%s", err, e.stderr)
	}
	if res.ServerType != "cx33" || !res.ServerCreated {
		t.Errorf("up made %+v, want a cx33 server", res)
	}
	want := "warning: server type cx33 is deprecated in fsn1: it becomes unavailable there after 2099-03-31"
	if !strings.Contains(e.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, e.stderr)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "2099-03-31") {
		t.Errorf("result warnings %v, want the deprecation (for -o json)", res.Warnings)
	}
}

// TestUpUnavailableExplicitTypeFailsBeforeCreating: a type the user chose that cannot be
// ordered in the location (out of stock, past its deprecation date, not offered there, gone
// from the API) fails before anything is created or changed, and the error lists the
// alternatives.
func TestUpUnavailableExplicitTypeFailsBeforeCreating(t *testing.T) {
	for _, tc := range []struct {
		name, serverType string
		catalog          []hcloudsim.CatalogChange
		want             string
	}{
		{"out of stock", "cx33", []hcloudsim.CatalogChange{{ServerType: "cx33", Location: "fsn1", State: "unavailable"}},
			"server type cx33 is not available in fsn1 right now"},
		{"past its deprecation date", "cpx21", nil, "server type cpx21 is deprecated in fsn1 and can no longer be ordered there (since 2026-01-01)"},
		{"not offered in the location", "cax11", []hcloudsim.CatalogChange{}, ""},
		{"removed from the API", "cx22", nil, `server type "cx22" does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSimEnv(t, withCatalog(tc.catalog...))
			e.deps.Config.ServerType = tc.serverType
			if tc.name == "not offered in the location" {
				e.deps.Config.Location = "ash"
				tc.want = "server type cax11 is not offered in ash (it is in fsn1, nbg1, hel1)"
			}
			var err error
			_, by := e.requests(func() { _, err = e.up(t.Context(), "default") })
			if err == nil {
				t.Fatalf("up with %s succeeded", tc.serverType)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q\nwant it to say %q", msg, tc.want)
			}
			if !strings.Contains(msg, "can be ordered in "+e.deps.Config.Location+" now (not deprecated), cheapest first:") {
				t.Errorf("error lists no alternatives:\n%s", msg)
			}
			for k := range by {
				if !strings.HasPrefix(k, "GET ") {
					t.Errorf("up changed something before failing: %s", k)
				}
			}
			if s, v, f, k := e.count(t.Context()); s+v+f+k != 0 {
				t.Errorf("after the refusal: %d servers, %d volumes, %d firewalls, %d keys; want nothing", s, v, f, k)
			}
		})
	}
	// The cheapest alternatives come first, Arm included, what cannot be ordered left out.
	e := newSimEnv(t, withCatalog(hcloudsim.CatalogChange{ServerType: "cx33", Location: "fsn1", State: "unavailable"}))
	e.deps.Config.ServerType = "cx33"
	_, err := e.up(t.Context(), "default")
	alt := err.Error()[strings.Index(err.Error(), "cheapest first:"):]
	if !strings.HasPrefix(alt, "cheapest first:\n  cx23    x86, 2 vCPU, 4 GB, 0.0105/h\n  cax11   arm, 2 vCPU, 4 GB, 0.0114/h") ||
		strings.Contains(alt, "cx33 ") || strings.Contains(alt, "cpx21") {
		t.Errorf("alternatives:\n%s", alt)
	}
}

// TestStatusWarnsDeprecatedServerType: status says when the environment's server type is
// deprecated in its location, and until when it can be ordered; without spending a request.
func TestStatusWarnsDeprecatedServerType(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	st, err := GetStatus(ctx, e.deps, "default")
	must(t, err)
	for _, n := range st.Notes {
		if strings.Contains(n, "deprecated") {
			t.Errorf("status of a current type warns: %s", n)
		}
	}
	until := time.Date(2099, 6, 30, 0, 0, 0, 0, time.UTC)
	must(t, e.sim.ChangeCatalog(hcloudsim.CatalogChange{ServerType: "cx23", Location: "fsn1", State: "deprecated", UnavailableAfter: until}))
	n, _ := e.requests(func() { st, err = GetStatus(ctx, e.deps, "default") })
	must(t, err)
	if n > 3 {
		t.Errorf("status spent %d requests, want 3 (the warning comes with the server)", n)
	}
	want := "server type cx23 is deprecated in fsn1: it becomes unavailable there after 2099-06-30"
	if !strings.Contains(strings.Join(st.Notes, "\n"), want) || !st.Server.TypeUnavailableAfter.Equal(until) {
		t.Errorf("status notes %q, type_unavailable_after %v; want %q", st.Notes, st.Server.TypeUnavailableAfter, want)
	}
}

// TestPickServerType: the choice as a pure function: Arm and small types are not the
// default, ties go by name, a deprecated type is never the default.
func TestPickServerType(t *testing.T) {
	loc := func(price float64, mod func(*hetzner.ServerTypeLocation)) []hetzner.ServerTypeLocation {
		l := hetzner.ServerTypeLocation{Location: "fsn1", Available: true, HourlyGross: price}
		if mod != nil {
			mod(&l)
		}
		return []hetzner.ServerTypeLocation{l}
	}
	now := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	deprecated := func(l *hetzner.ServerTypeLocation) { l.UnavailableAfter = now.Add(time.Hour) }
	types := []*hetzner.ServerType{
		{Name: "arm4", Architecture: "arm", MemoryGB: 4, Locations: loc(0.001, nil)},
		{Name: "small", Architecture: "x86", MemoryGB: 2, Locations: loc(0.002, nil)},
		{Name: "old", Architecture: "x86", MemoryGB: 4, Locations: loc(0.003, deprecated)},
		{Name: "zeta", Architecture: "x86", MemoryGB: 8, Locations: loc(0.004, nil)},
		{Name: "alpha", Architecture: "x86", MemoryGB: 4, Locations: loc(0.004, nil)},
	}
	p, err := pickServerType(types, "", "fsn1", now)
	if err != nil || p.name != "alpha" {
		t.Errorf("default = %q, %v; want alpha (cheapest x86 >= 4 GB, not deprecated, ties by name)", p.name, err)
	}
	if _, err := pickServerType(types, "", "nbg1", now); err == nil || !strings.Contains(err.Error(), "can be ordered in nbg1 right now") {
		t.Errorf("no type in nbg1: %v", err)
	}
	p, err = pickServerType(types, "old", "fsn1", now)
	if err != nil || p.name != "old" || !strings.Contains(p.warning, "after 2026-11-29") {
		t.Errorf("deprecated explicit = %+v, %v", p, err)
	}
	if _, err := pickServerType(types, "old", "fsn1", now.Add(2*time.Hour)); err == nil {
		t.Error("a type past its date was accepted")
	}
}
