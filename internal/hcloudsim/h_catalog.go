package hcloudsim

import (
	"net/http"
	"strconv"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

func numKey(field string, id int64, name string) (int64, string, bool) {
	if field == "id" {
		return id, "", true
	}
	return 0, name, false
}

func (s *Sim) listLocations(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name")
	if e != nil {
		return 0, nil, e
	}
	var out []schema.Location
	for _, l := range catalogLocations {
		if lq.name == "" || lq.name == l.Name {
			out = append(out, l)
		}
	}
	sortItems(out, lq.sort, func(l schema.Location, f string) (int64, string, bool) { return numKey(f, l.ID, l.Name) })
	page, meta := paginate(out, lq)
	return 200, listResponse("locations", page, meta), nil
}

func (s *Sim) getLocation(_ *http.Request, p params) (int, any, *apiError) {
	id, e := pathID(p, "id", "location")
	if e != nil {
		return 0, nil, e
	}
	l, ok := locationByIDOrName(schema.IDOrName{ID: id})
	if !ok {
		return 0, nil, notFound("location", id)
	}
	return 200, schema.LocationGetResponse{Location: l}, nil
}

func (s *Sim) listDatacenters(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name")
	if e != nil {
		return 0, nil, e
	}
	var out []schema.Datacenter
	for _, l := range catalogLocations {
		dc := s.catalog.datacenterSchema(l)
		if lq.name == "" || lq.name == dc.Name {
			out = append(out, dc)
		}
	}
	sortItems(out, lq.sort, func(d schema.Datacenter, f string) (int64, string, bool) { return numKey(f, d.ID, d.Name) })
	page, meta := paginate(out, lq)
	resp := listResponse("datacenters", page, meta)
	resp["recommendation"] = int64(1)
	return 200, resp, nil
}

func (s *Sim) getDatacenter(_ *http.Request, p params) (int, any, *apiError) {
	id, e := pathID(p, "id", "datacenter")
	if e != nil {
		return 0, nil, e
	}
	dc, ok := s.catalog.datacenterByIDOrName(schema.IDOrName{ID: id})
	if !ok {
		return 0, nil, notFound("datacenter", id)
	}
	return 200, schema.DatacenterGetResponse{Datacenter: dc}, nil
}

func (s *Sim) listServerTypes(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name")
	if e != nil {
		return 0, nil, e
	}
	var out []schema.ServerType
	for _, st := range s.catalog.listed() {
		if lq.name == "" || lq.name == st.name {
			out = append(out, s.catalog.schema(st))
		}
	}
	sortItems(out, lq.sort, func(t schema.ServerType, f string) (int64, string, bool) { return numKey(f, t.ID, t.Name) })
	page, meta := paginate(out, lq)
	return 200, listResponse("server_types", page, meta), nil
}

func (s *Sim) getServerType(_ *http.Request, p params) (int, any, *apiError) {
	id, e := pathID(p, "id", "server_type")
	if e != nil {
		return 0, nil, e
	}
	st, ok := s.catalog.lookup(schema.IDOrName{ID: id})
	if !ok {
		return 0, nil, notFound("server_type", id)
	}
	return 200, schema.ServerTypeGetResponse{ServerType: s.catalog.schema(st)}, nil
}

func imageByName(name, arch string) imageSpec {
	for _, im := range catalogImages {
		if im.name == name && (arch == "" || im.arch == arch) {
			return im
		}
	}
	return imageSpec{}
}

func imageByID(id int64) (imageSpec, bool) {
	for _, im := range catalogImages {
		if im.id == id {
			return im, true
		}
	}
	return imageSpec{}, false
}

func (s *Sim) listImages(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name", "created")
	if e != nil {
		return 0, nil, e
	}
	types := lq.q["type"]
	archs := lq.q["architecture"]
	var out []schema.Image
	for _, im := range catalogImages {
		sc := im.schema()
		switch {
		case lq.name != "" && lq.name != im.name,
			len(types) > 0 && !contains(types, im.typ),
			len(archs) > 0 && !contains(archs, im.arch),
			len(lq.status) > 0 && !contains(lq.status, "available"),
			lq.q.Get("bound_to") != "",
			!lq.sel.matches(sc.Labels):
			continue
		}
		out = append(out, sc)
	}
	sortItems(out, lq.sort, func(im schema.Image, f string) (int64, string, bool) {
		if f == "name" {
			return 0, *im.Name, false
		}
		return im.ID, "", true
	})
	page, meta := paginate(out, lq)
	return 200, listResponse("images", page, meta), nil
}

func (s *Sim) getImage(_ *http.Request, p params) (int, any, *apiError) {
	id, e := pathID(p, "id", "image")
	if e != nil {
		return 0, nil, e
	}
	im, ok := imageByID(id)
	if !ok {
		return 0, nil, notFound("image", id)
	}
	return 200, schema.ImageGetResponse{Image: im.schema()}, nil
}

func (s *Sim) getPricing(*http.Request, params) (int, any, *apiError) {
	return 200, schema.PricingGetResponse{Pricing: s.catalog.pricingSchema()}, nil
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
