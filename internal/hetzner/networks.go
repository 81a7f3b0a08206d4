package hetzner

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Network is a Hetzner private network as dockbridge sees it: one range, one subnet.
type Network struct {
	ID      int64
	Name    string
	IPRange string   // e.g. 10.0.0.0/16
	Subnets []string // e.g. 10.0.0.0/24
	Servers []int64
	Labels  map[string]string
	Created time.Time
}

// NetworkSpec describes a network to create: a range with one cloud subnet in the network zone
// of a location.
type NetworkSpec struct {
	Name        string
	IPRange     string // e.g. 10.0.0.0/16
	Subnet      string // e.g. 10.0.0.0/24
	NetworkZone string // e.g. eu-central
	Labels      map[string]string
}

func networkFrom(n *hcloud.Network) *Network {
	if n == nil {
		return nil
	}
	out := &Network{ID: n.ID, Name: n.Name, Labels: n.Labels, Created: n.Created}
	if n.IPRange != nil {
		out.IPRange = n.IPRange.String()
	}
	for _, s := range n.Subnets {
		if s.IPRange != nil {
			out.Subnets = append(out.Subnets, s.IPRange.String())
		}
	}
	for _, s := range n.Servers {
		out.Servers = append(out.Servers, s.ID)
	}
	return out
}

// Networks lists the networks matching a label selector ("" for all).
func (c *Client) Networks(ctx context.Context, selector string) ([]*Network, error) {
	ns, err := c.api.Network.AllWithOpts(ctx, hcloud.NetworkListOpts{ListOpts: hcloud.ListOpts{LabelSelector: selector, PerPage: 50}})
	if err != nil {
		return nil, wrap(err, "list networks (selector %q)", selector)
	}
	out := make([]*Network, 0, len(ns))
	for _, n := range ns {
		out = append(out, networkFrom(n))
	}
	return out, nil
}

// CreateNetwork creates a network with its subnet.
func (c *Client) CreateNetwork(ctx context.Context, spec NetworkSpec) (*Network, error) {
	op := fmt.Sprintf("create network %q (%s)", spec.Name, spec.IPRange)
	_, r, err := net.ParseCIDR(spec.IPRange)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	_, sub, err := net.ParseCIDR(spec.Subnet)
	if err != nil {
		return nil, fmt.Errorf("%s: subnet: %w", op, err)
	}
	n, _, err := c.api.Network.Create(ctx, hcloud.NetworkCreateOpts{Name: spec.Name, IPRange: r, Labels: spec.Labels,
		Subnets: []hcloud.NetworkSubnet{{Type: hcloud.NetworkSubnetTypeCloud, NetworkZone: hcloud.NetworkZone(spec.NetworkZone), IPRange: sub}}})
	if err != nil {
		return nil, wrap(err, "%s", op)
	}
	return networkFrom(n), nil
}

// DeleteNetwork deletes a network (servers still attached are detached by the API).
func (c *Client) DeleteNetwork(ctx context.Context, id int64) error {
	op := fmt.Sprintf("delete network %d", id)
	return c.retryLocked(ctx, op, func() error {
		_, err := c.api.Network.Delete(ctx, &hcloud.Network{ID: id})
		return wrap(err, "%s", op)
	})
}

// AttachToNetwork attaches a server to a network with the address ip and waits for it.
func (c *Client) AttachToNetwork(ctx context.Context, serverID, networkID int64, ip string) error {
	op := fmt.Sprintf("attach server %d to network %d with %s", serverID, networkID, ip)
	addr := net.ParseIP(ip)
	if addr == nil {
		return fmt.Errorf("%s: %q is not an IP address", op, ip)
	}
	return c.runAction(ctx, op, func() (*hcloud.Action, error) {
		a, _, err := c.api.Server.AttachToNetwork(ctx, &hcloud.Server{ID: serverID}, hcloud.ServerAttachToNetworkOpts{Network: &hcloud.Network{ID: networkID}, IP: addr})
		return a, err
	})
}
