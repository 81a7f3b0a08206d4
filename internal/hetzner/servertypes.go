package hetzner

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// ServerType is a server type of the catalog and where it can be ordered.
type ServerType struct {
	Name         string
	Architecture string // "x86" or "arm"
	Cores        int
	MemoryGB     float64
	CPUType      string // "shared" or "dedicated"
	Locations    []ServerTypeLocation
}

// ServerTypeLocation is a server type in one location.
type ServerTypeLocation struct {
	Location string
	// Available: in stock, an order can succeed now.
	Available bool
	// UnavailableAfter is set when the type is deprecated there: it can be ordered until
	// then (servers that have it keep running).
	UnavailableAfter time.Time
	HourlyGross      float64
	MonthlyGross     float64
}

// Deprecated reports whether the type is deprecated in this location.
func (l ServerTypeLocation) Deprecated() bool { return !l.UnavailableAfter.IsZero() }

// In returns the type's state in a location; ok is false where it is not offered.
func (t *ServerType) In(location string) (ServerTypeLocation, bool) {
	for _, l := range t.Locations {
		if l.Location == location {
			return l, true
		}
	}
	return ServerTypeLocation{}, false
}

// ServerTypes lists the catalog's server types (one or two requests).
func (c *Client) ServerTypes(ctx context.Context) ([]*ServerType, error) {
	sts, err := c.api.ServerType.AllWithOpts(ctx, hcloud.ServerTypeListOpts{ListOpts: hcloud.ListOpts{PerPage: 50}})
	if err != nil {
		return nil, wrap(err, "list server types")
	}
	out := make([]*ServerType, 0, len(sts))
	for _, st := range sts {
		out = append(out, serverTypeFrom(st))
	}
	return out, nil
}

func serverTypeFrom(st *hcloud.ServerType) *ServerType {
	out := &ServerType{Name: st.Name, Architecture: string(st.Architecture), Cores: st.Cores, MemoryGB: float64(st.Memory), CPUType: string(st.CPUType)}
	for _, l := range st.Locations {
		if l.Location == nil {
			continue
		}
		sl := ServerTypeLocation{Location: l.Location.Name, Available: l.Available, UnavailableAfter: deprecationOf(st, l)}
		for _, p := range st.Pricings {
			if p.Location != nil && p.Location.Name == sl.Location {
				sl.HourlyGross, _ = strconv.ParseFloat(p.Hourly.Gross, 64)
				sl.MonthlyGross, _ = strconv.ParseFloat(p.Monthly.Gross, 64)
			}
		}
		out.Locations = append(out.Locations, sl)
	}
	return out
}

// deprecationOf is the date after which the type can no longer be ordered in the location
// (zero when it is not deprecated there): the location's own deprecation, else the older
// type-wide one that the API still sends for some types.
func deprecationOf(st *hcloud.ServerType, l hcloud.ServerTypeLocation) time.Time {
	if l.IsDeprecated() {
		return l.UnavailableAfter()
	}
	if st.IsDeprecated() {
		return st.UnavailableAfter()
	}
	return time.Time{}
}

// ImageArchitectures lists the architectures ("x86", "arm") in which an image exists: every
// image of that name, or the one image of that ID (one request). Hetzner keeps one image per
// architecture under one name; a server gets the one of its type's architecture.
func (c *Client) ImageArchitectures(ctx context.Context, nameOrID string) ([]string, error) {
	if id, err := strconv.ParseInt(nameOrID, 10, 64); err == nil {
		im, _, err := c.api.Image.GetByID(ctx, id)
		if err != nil {
			return nil, wrap(err, "get image %s", nameOrID)
		}
		if im == nil {
			return nil, nil
		}
		return []string{string(im.Architecture)}, nil
	}
	ims, err := c.api.Image.AllWithOpts(ctx, hcloud.ImageListOpts{Name: nameOrID, IncludeDeprecated: true})
	if err != nil {
		return nil, wrap(err, "list images named %s", nameOrID)
	}
	var out []string
	for _, im := range ims {
		if a := string(im.Architecture); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
