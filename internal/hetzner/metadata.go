package hetzner

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/metadata"
)

// DefaultMetadataEndpoint is the metadata service every Hetzner server reaches.
const DefaultMetadataEndpoint = metadata.Endpoint

// Instance is what the metadata service says about the server we run on.
type Instance struct {
	ID               int64
	Hostname         string
	Region           string
	AvailabilityZone string // e.g. "fsn1-dc14"; the location is the part before the dash
}

// Location returns the location name of the availability zone ("fsn1-dc14" -> "fsn1").
func (i Instance) Location() string {
	loc, _, _ := strings.Cut(i.AvailabilityZone, "-")
	return loc
}

// CurrentInstance asks the metadata service which server this is. The server is found
// by its instance-id, never by hostname: a hostname can be anything.
func CurrentInstance(ctx context.Context, endpoint string) (Instance, error) {
	if endpoint == "" {
		endpoint = DefaultMetadataEndpoint
	}
	mc := metadata.NewClient(metadata.WithEndpoint(endpoint), metadata.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	id, err := mc.InstanceIDWithContext(ctx)
	if err != nil {
		return Instance{}, fmt.Errorf("ask the metadata service %s which server this is: %w. Is this a Hetzner Cloud server? Set HCLOUD_METADATA_ENDPOINT if the service is elsewhere", endpoint, err)
	}
	inst := Instance{ID: id}
	if inst.Hostname, err = mc.HostnameWithContext(ctx); err != nil {
		return Instance{}, fmt.Errorf("metadata hostname: %w", err)
	}
	if inst.Region, err = mc.RegionWithContext(ctx); err != nil {
		return Instance{}, fmt.Errorf("metadata region: %w", err)
	}
	if inst.AvailabilityZone, err = mc.AvailabilityZoneWithContext(ctx); err != nil {
		return Instance{}, fmt.Errorf("metadata availability-zone: %w", err)
	}
	return inst, nil
}
