package hetzner

import (
	"context"
	"fmt"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Server is a Hetzner Cloud server as the rest of dockbridge sees it.
type Server struct {
	ID         int64
	Name       string
	Status     string // initializing, starting, running, stopping, off, deleting, ...
	ServerType string
	Location   string
	Image      string
	IPv4       string
	VolumeIDs  []int64
	// PrivateIPs are its addresses on private networks, by network id.
	PrivateIPs map[int64]string
	Labels     map[string]string
	Created    time.Time
	// TypeUnavailableAfter is set when the server's type is deprecated in its location: new
	// servers of that type can be ordered there until then (this one keeps running).
	TypeUnavailableAfter time.Time
}

// Off reports whether the server is powered off (it cannot be using a volume).
func (s *Server) Off() bool { return s.Status == string(hcloud.ServerStatusOff) }

// ServerSpec describes a server to create.
type ServerSpec struct {
	Name        string
	ServerType  string
	Image       string
	Location    string
	SSHKeyIDs   []int64
	UserData    string
	VolumeIDs   []int64
	FirewallIDs []int64
	Labels      map[string]string
}

func serverFrom(s *hcloud.Server) *Server {
	if s == nil {
		return nil
	}
	out := &Server{ID: s.ID, Name: s.Name, Status: string(s.Status), Labels: s.Labels, Created: s.Created}
	if s.ServerType != nil {
		out.ServerType = s.ServerType.Name
	}
	if s.Location != nil {
		out.Location = s.Location.Name
	}
	if s.ServerType != nil {
		for _, l := range s.ServerType.Locations {
			if l.Location != nil && l.Location.Name == out.Location {
				out.TypeUnavailableAfter = deprecationOf(s.ServerType, l)
			}
		}
	}
	if s.Image != nil {
		out.Image = s.Image.Name
	}
	if s.PublicNet.IPv4.IP != nil {
		out.IPv4 = s.PublicNet.IPv4.IP.String()
	}
	for _, v := range s.Volumes {
		out.VolumeIDs = append(out.VolumeIDs, v.ID)
	}
	for _, pn := range s.PrivateNet {
		if pn.Network != nil && pn.IP != nil {
			if out.PrivateIPs == nil {
				out.PrivateIPs = map[int64]string{}
			}
			out.PrivateIPs[pn.Network.ID] = pn.IP.String()
		}
	}
	return out
}

// Server returns the server with this id, or ErrNotFound.
func (c *Client) Server(ctx context.Context, id int64) (*Server, error) {
	s, _, err := c.api.Server.GetByID(ctx, id)
	if err != nil {
		return nil, wrap(err, "get server %d", id)
	}
	if s == nil {
		return nil, &APIError{Op: fmt.Sprintf("get server %d", id), sentinel: ErrNotFound, Message: "no such server"}
	}
	return serverFrom(s), nil
}

// ServerByName returns the server with this name, or ErrNotFound.
func (c *Client) ServerByName(ctx context.Context, name string) (*Server, error) {
	s, _, err := c.api.Server.GetByName(ctx, name)
	if err != nil {
		return nil, wrap(err, "get server %q", name)
	}
	if s == nil {
		return nil, &APIError{Op: fmt.Sprintf("get server %q", name), sentinel: ErrNotFound, Message: "no such server"}
	}
	return serverFrom(s), nil
}

// Servers lists the servers matching a label selector ("" for all).
func (c *Client) Servers(ctx context.Context, selector string) ([]*Server, error) {
	ss, err := c.api.Server.AllWithOpts(ctx, hcloud.ServerListOpts{ListOpts: hcloud.ListOpts{LabelSelector: selector, PerPage: 50}})
	if err != nil {
		return nil, wrap(err, "list servers (selector %q)", selector)
	}
	out := make([]*Server, 0, len(ss))
	for _, s := range ss {
		out = append(out, serverFrom(s))
	}
	return out, nil
}

// CreateServer creates a server and waits for its create action and the actions that follow
// (volume attachments, firewall application).
func (c *Client) CreateServer(ctx context.Context, spec ServerSpec) (*Server, error) {
	op := fmt.Sprintf("create server %q (%s in %s)", spec.Name, spec.ServerType, spec.Location)
	opts := hcloud.ServerCreateOpts{
		Name:             spec.Name,
		ServerType:       &hcloud.ServerType{Name: spec.ServerType},
		Image:            &hcloud.Image{Name: spec.Image},
		Location:         &hcloud.Location{Name: spec.Location},
		UserData:         spec.UserData,
		Labels:           spec.Labels,
		StartAfterCreate: hcloud.Ptr(true),
		Automount:        hcloud.Ptr(false),
		PublicNet:        &hcloud.ServerCreatePublicNet{EnableIPv4: true, EnableIPv6: true},
	}
	for _, id := range spec.SSHKeyIDs {
		opts.SSHKeys = append(opts.SSHKeys, &hcloud.SSHKey{ID: id})
	}
	for _, id := range spec.VolumeIDs {
		opts.Volumes = append(opts.Volumes, &hcloud.Volume{ID: id})
	}
	for _, id := range spec.FirewallIDs {
		opts.Firewalls = append(opts.Firewalls, &hcloud.ServerCreateFirewall{Firewall: hcloud.Firewall{ID: id}})
	}
	var res hcloud.ServerCreateResult
	err := c.retryLocked(ctx, op, func() error {
		var err error
		res, _, err = c.api.Server.Create(ctx, opts)
		return wrap(err, "%s", op)
	})
	if err != nil {
		return nil, err
	}
	if err := c.wait(ctx, op, append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		return serverFrom(res.Server), err
	}
	return c.Server(ctx, res.Server.ID)
}

// DeleteServer deletes a server and waits until it is gone. Deleting is what stops billing.
func (c *Client) DeleteServer(ctx context.Context, id int64) error {
	op := fmt.Sprintf("delete server %d", id)
	return c.runAction(ctx, op, func() (*hcloud.Action, error) {
		res, _, err := c.api.Server.DeleteWithResult(ctx, &hcloud.Server{ID: id})
		if err != nil {
			return nil, err
		}
		return res.Action, nil
	})
}

// PowerOff cuts a server's power and waits for it (billing continues).
func (c *Client) PowerOff(ctx context.Context, id int64) error {
	return c.runAction(ctx, fmt.Sprintf("power off server %d", id), func() (*hcloud.Action, error) {
		a, _, err := c.api.Server.Poweroff(ctx, &hcloud.Server{ID: id})
		return a, err
	})
}

// Shutdown sends the server an ACPI shutdown request and waits for the action, which ends
// when the request is delivered: the server is off only once its OS has powered off (poll
// Server for that), and an OS that ignores the request keeps it running. Billing continues
// while it exists.
func (c *Client) Shutdown(ctx context.Context, id int64) error {
	return c.runAction(ctx, fmt.Sprintf("shut down server %d", id), func() (*hcloud.Action, error) {
		a, _, err := c.api.Server.Shutdown(ctx, &hcloud.Server{ID: id})
		return a, err
	})
}

// PowerOn starts a server and waits for it.
func (c *Client) PowerOn(ctx context.Context, id int64) error {
	return c.runAction(ctx, fmt.Sprintf("power on server %d", id), func() (*hcloud.Action, error) {
		a, _, err := c.api.Server.Poweron(ctx, &hcloud.Server{ID: id})
		return a, err
	})
}
