package hcloudsim_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

// TestServerTypeCatalog2026: the types Hetzner sells in 2026, with architecture, per-location
// deprecation and prices; the removed CX gen 2 types are gone from the listing.
func TestServerTypeCatalog2026(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	all, err := c.ServerType.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*hcloud.ServerType{}
	for _, st := range all {
		byName[st.Name] = st
	}
	for name, arch := range map[string]hcloud.Architecture{"cx23": "x86", "cx33": "x86", "cpx12": "x86", "cpx22": "x86", "cpx32": "x86", "ccx13": "x86", "cax11": "arm", "cax21": "arm"} {
		st := byName[name]
		if st == nil {
			t.Errorf("%s is not listed", name)
			continue
		}
		if st.Architecture != arch {
			t.Errorf("%s: architecture %q, want %q", name, st.Architecture, arch)
		}
		if st.IsDeprecated() {
			t.Errorf("%s is deprecated", name)
		}
	}
	for _, gone := range []string{"cx22", "cx32", "cx42", "cx52"} {
		if byName[gone] != nil {
			t.Errorf("%s is listed; it was removed from the API in January 2026", gone)
		}
		if st, _, err := c.ServerType.GetByName(ctx, gone); err != nil || st != nil {
			t.Errorf("GetByName(%s) = %v, %v; want nothing", gone, st, err)
		}
	}
	cx23 := byName["cx23"]
	if cx23.Memory != 4 || cx23.Cores != 2 || cx23.CPUType != hcloud.CPUTypeShared {
		t.Errorf("cx23 = %+v", cx23)
	}
	if len(cx23.Locations) != 3 {
		t.Errorf("cx23 locations = %d, want fsn1, nbg1, hel1", len(cx23.Locations))
	}
	for _, p := range cx23.Pricings {
		if p.Monthly.Net != "5.4900000000" || p.Hourly.Net != "0.0088000000" {
			t.Errorf("cx23 in %s: %s/month, %s/hour; want 5.49 and 0.0088 (net, 2026-06-15 prices)", p.Location.Name, p.Monthly.Net, p.Hourly.Net)
		}
	}
	// CPX gen 1: deprecated (and past its date) in the EU and Singapore, still sold in the US.
	cpx11 := byName["cpx11"]
	for _, l := range cpx11.Locations {
		eu := l.Location.Name != "ash" && l.Location.Name != "hil"
		if eu != l.IsDeprecated() || eu == l.Available {
			t.Errorf("cpx11 in %s: deprecated %v, available %v", l.Location.Name, l.IsDeprecated(), l.Available)
		}
		if eu && !l.UnavailableAfter().Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("cpx11 in %s: unavailable after %v", l.Location.Name, l.UnavailableAfter())
		}
	}
	if cpx11.IsDeprecated() {
		t.Error("cpx11 carries the type-wide deprecation, though it is sold in the US")
	}
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "old", ServerType: &hcloud.ServerType{Name: "cpx11"}, Image: &hcloud.Image{Name: "debian-12"}, Location: &hcloud.Location{Name: "fsn1"}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
	if !strings.Contains(err.Error(), "unsupported location for server type") {
		t.Errorf("cpx11 in fsn1: %v; want the API's 'unsupported location for server type'", err)
	}
	mustServerOfType(t, c, "us", "cpx11", "ash")
	// cx23 is not sold in the US.
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "x", ServerType: &hcloud.ServerType{Name: "cx23"}, Image: &hcloud.Image{Name: "debian-12"}, Location: &hcloud.Location{Name: "ash"}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)

	pr, _, err := c.Pricing.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Volume.PerGBMonthly.Net != "0.0572000000" {
		t.Errorf("volume price %s/GB-month, want 0.0572", pr.Volume.PerGBMonthly.Net)
	}
	for _, st := range pr.ServerTypes {
		if st.ServerType.Name == "cx22" {
			t.Error("pricing lists the removed cx22")
		}
	}
}

func mustServerOfType(t *testing.T, c *hcloud.Client, name, typ, location string) *hcloud.Server {
	t.Helper()
	res, _, err := c.Server.Create(t.Context(), hcloud.ServerCreateOpts{Name: name, ServerType: &hcloud.ServerType{Name: typ},
		Image: &hcloud.Image{Name: "debian-12"}, Location: &hcloud.Location{Name: location}})
	if err != nil {
		t.Fatalf("create %s server in %s: %v", typ, location, err)
	}
	if err := c.Action.WaitFor(t.Context(), append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatal(err)
	}
	return res.Server
}

// TestCatalogChanges: a catalog in which yesterday's default is gone, per location, with the
// API's own errors, changed through Config.Catalog, ChangeCatalog and POST /_sim/catalog.
func TestCatalogChanges(t *testing.T) {
	soon := time.Now().UTC().Add(30 * 24 * time.Hour).Truncate(time.Second)
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithConfig(func(cfg *hcloudsim.Config) {
		cfg.Catalog = []hcloudsim.CatalogChange{{ServerType: "cx23", Location: "fsn1", State: "unavailable"}}
	}))
	c := sim.Client()
	ctx := t.Context()
	loc := func(st *hcloud.ServerType, name string) hcloud.ServerTypeLocation {
		for _, l := range st.Locations {
			if l.Location.Name == name {
				return l
			}
		}
		t.Fatalf("%s is not offered in %s", st.Name, name)
		return hcloud.ServerTypeLocation{}
	}

	// Out of stock in fsn1: listed, available false, an order fails with resource_unavailable.
	cx23, _, _ := c.ServerType.GetByName(ctx, "cx23")
	if loc(cx23, "fsn1").Available || !loc(cx23, "nbg1").Available {
		t.Errorf("cx23 available in fsn1 %v, nbg1 %v", loc(cx23, "fsn1").Available, loc(cx23, "nbg1").Available)
	}
	r := raw(t, sim, "POST", "/v1/servers", sim.Token, []byte(`{"name":"a","server_type":"cx23","image":"debian-12","location":"fsn1"}`))
	if r.status != http.StatusPreconditionFailed || r.err.Error.Code != "resource_unavailable" || r.err.Error.Message != "error during placement" {
		t.Errorf("cx23 in fsn1 out of stock: %d %s %q", r.status, r.err.Error.Code, r.err.Error.Message)
	}
	mustServerOfType(t, c, "b", "cx23", "nbg1")
	dc, _, _ := c.Datacenter.GetByName(ctx, "fsn1-dc14")
	for _, st := range dc.ServerTypes.Available {
		if st.Name == "cx23" || st.ID == cx23.ID {
			t.Error("fsn1-dc14 lists cx23 as available")
		}
	}

	// Deprecated with a date ahead: still orderable, the deprecation is shown.
	if err := sim.ChangeCatalog(hcloudsim.CatalogChange{ServerType: "cx33", Location: "nbg1", State: "deprecated", UnavailableAfter: soon}); err != nil {
		t.Fatal(err)
	}
	cx33, _, _ := c.ServerType.GetByName(ctx, "cx33")
	if l := loc(cx33, "nbg1"); !l.IsDeprecated() || !l.UnavailableAfter().Equal(soon) || !l.Available {
		t.Errorf("cx33 in nbg1: deprecated %v until %v, available %v", l.IsDeprecated(), l.UnavailableAfter(), l.Available)
	}
	if cx33.IsDeprecated() {
		t.Error("cx33 is deprecated type-wide though only nbg1 was changed")
	}
	srv := mustServerOfType(t, c, "c", "cx33", "nbg1")
	got, _, _ := c.Server.GetByID(ctx, srv.ID)
	if !loc(got.ServerType, "nbg1").IsDeprecated() {
		t.Error("the server's type does not show the deprecation of its location")
	}

	// Past its date: not orderable, invalid_input as the API answers.
	resp, err := http.Post(sim.BaseURL+"/_sim/catalog", "application/json", strings.NewReader(`{"changes":[{"server_type":"cx33","state":"deprecated","unavailable_after":"2026-01-01T00:00:00Z"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /_sim/catalog: %v %v", resp, err)
	}
	resp.Body.Close()
	cx33, _, _ = c.ServerType.GetByName(ctx, "cx33")
	if !cx33.IsDeprecated() || loc(cx33, "hel1").Available {
		t.Errorf("cx33 deprecated everywhere: type-wide %v, available in hel1 %v", cx33.IsDeprecated(), loc(cx33, "hel1").Available)
	}
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "d", ServerType: &hcloud.ServerType{Name: "cx33"}, Image: &hcloud.Image{Name: "debian-12"}, Location: &hcloud.Location{Name: "hel1"}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)

	// Removed: gone from the listing, still shown on its servers.
	if err := sim.ChangeCatalog(hcloudsim.CatalogChange{ServerType: "cx33", State: "removed"}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := c.ServerType.GetByName(ctx, "cx33"); st != nil {
		t.Error("removed cx33 is still listed")
	}
	if got, _, _ := c.Server.GetByID(ctx, srv.ID); got.ServerType.Name != "cx33" {
		t.Errorf("the server of a removed type shows type %q", got.ServerType.Name)
	}

	// Bad changes are refused, all or none; the control endpoint says why.
	for _, bad := range []hcloudsim.CatalogChange{
		{ServerType: "cx9000", State: "unavailable"},
		{ServerType: "cx23", Location: "ash", State: "unavailable"},
		{ServerType: "cx23", State: "deprecated"},
		{ServerType: "cx23", Location: "fsn1", State: "removed"},
		{ServerType: "cx23", State: "sold-out"},
	} {
		if err := sim.ChangeCatalog(hcloudsim.CatalogChange{ServerType: "cx43", State: "unavailable"}, bad); err == nil {
			t.Errorf("change %+v accepted", bad)
		}
	}
	if st, _, _ := c.ServerType.GetByName(ctx, "cx43"); !loc(st, "fsn1").Available {
		t.Error("a refused batch of changes was partly applied")
	}
	resp, err = http.Post(sim.BaseURL+"/_sim/catalog", "application/json", strings.NewReader(`{"changes":[{"server_type":"cx9000","state":"unavailable"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), "cx9000") {
		t.Errorf("bad catalog change: %d %s", resp.StatusCode, body)
	}

	// Reset restores the static catalog.
	resp, err = http.Post(sim.BaseURL+"/_sim/catalog", "application/json", strings.NewReader(`{"reset":true}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reset: %v %v", resp, err)
	}
	resp.Body.Close()
	if cx33, _, _ := c.ServerType.GetByName(ctx, "cx33"); cx33 == nil || cx33.IsDeprecated() {
		t.Errorf("after reset cx33 = %+v", cx33)
	}
}

func TestParseCatalogChanges(t *testing.T) {
	got, err := hcloudsim.ParseCatalogChanges("cx23@fsn1=unavailable, cpx22=deprecated:2026-12-31,cx33=removed")
	if err != nil {
		t.Fatal(err)
	}
	want := []hcloudsim.CatalogChange{
		{ServerType: "cx23", Location: "fsn1", State: "unavailable"},
		{ServerType: "cpx22", State: "deprecated", UnavailableAfter: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)},
		{ServerType: "cx33", State: "removed"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"cx23", "cx23=deprecated:soon", "cx23=unavailable:2026-01-01"} {
		if _, err := hcloudsim.ParseCatalogChanges(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
