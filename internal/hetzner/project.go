package hetzner

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// SSHKey is an SSH public key stored in the project.
type SSHKey struct {
	ID          int64
	Name        string
	Fingerprint string
	PublicKey   string
	Labels      map[string]string
}

func sshKeyFrom(k *hcloud.SSHKey) *SSHKey {
	return &SSHKey{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint, PublicKey: k.PublicKey, Labels: k.Labels}
}

// SSHKeyByFingerprint returns the key with this MD5 fingerprint ("aa:bb:..."), or ErrNotFound.
func (c *Client) SSHKeyByFingerprint(ctx context.Context, fingerprint string) (*SSHKey, error) {
	k, _, err := c.api.SSHKey.GetByFingerprint(ctx, fingerprint)
	if err != nil {
		return nil, wrap(err, "get SSH key %s", fingerprint)
	}
	if k == nil {
		return nil, &APIError{Op: "get SSH key " + fingerprint, sentinel: ErrNotFound, Message: "no such SSH key"}
	}
	return sshKeyFrom(k), nil
}

// CreateSSHKey uploads a public key.
func (c *Client) CreateSSHKey(ctx context.Context, name, publicKey string, labels map[string]string) (*SSHKey, error) {
	k, _, err := c.api.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: name, PublicKey: publicKey, Labels: labels})
	if err != nil {
		return nil, wrap(err, "upload SSH key %q", name)
	}
	return sshKeyFrom(k), nil
}

// DeleteSSHKey deletes a key.
func (c *Client) DeleteSSHKey(ctx context.Context, id int64) error {
	_, err := c.api.SSHKey.Delete(ctx, &hcloud.SSHKey{ID: id})
	return wrap(err, "delete SSH key %d", id)
}

// SSHKeys lists the keys matching a label selector.
func (c *Client) SSHKeys(ctx context.Context, selector string) ([]*SSHKey, error) {
	ks, err := c.api.SSHKey.AllWithOpts(ctx, hcloud.SSHKeyListOpts{ListOpts: hcloud.ListOpts{LabelSelector: selector, PerPage: 50}})
	if err != nil {
		return nil, wrap(err, "list SSH keys (selector %q)", selector)
	}
	out := make([]*SSHKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, sshKeyFrom(k))
	}
	return out, nil
}

// Firewall is a project firewall; dockbridge only ever makes inbound TCP rules.
type Firewall struct {
	ID     int64
	Name   string
	Labels map[string]string
	Rules  []FirewallRule
}

// FirewallRule allows inbound TCP on Port from Sources.
type FirewallRule struct {
	Port    int
	Sources []string // CIDRs
}

func firewallFrom(f *hcloud.Firewall) *Firewall {
	out := &Firewall{ID: f.ID, Name: f.Name, Labels: f.Labels}
	for _, r := range f.Rules {
		if r.Direction != hcloud.FirewallRuleDirectionIn || r.Protocol != hcloud.FirewallRuleProtocolTCP || r.Port == nil {
			continue
		}
		port, err := strconv.Atoi(*r.Port)
		if err != nil {
			continue
		}
		rule := FirewallRule{Port: port}
		for _, n := range r.SourceIPs {
			rule.Sources = append(rule.Sources, n.String())
		}
		out.Rules = append(out.Rules, rule)
	}
	return out
}

func firewallRules(rules []FirewallRule) ([]hcloud.FirewallRule, error) {
	var out []hcloud.FirewallRule
	for _, r := range rules {
		hr := hcloud.FirewallRule{Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolTCP, Port: hcloud.Ptr(strconv.Itoa(r.Port))}
		for _, s := range r.Sources {
			_, n, err := net.ParseCIDR(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("firewall source %q: want a CIDR such as 203.0.113.7/32 or 0.0.0.0/0", s)
			}
			hr.SourceIPs = append(hr.SourceIPs, *n)
		}
		out = append(out, hr)
	}
	return out, nil
}

// FirewallByName returns the firewall with this name, or ErrNotFound.
func (c *Client) FirewallByName(ctx context.Context, name string) (*Firewall, error) {
	f, _, err := c.api.Firewall.GetByName(ctx, name)
	if err != nil {
		return nil, wrap(err, "get firewall %q", name)
	}
	if f == nil {
		return nil, &APIError{Op: fmt.Sprintf("get firewall %q", name), sentinel: ErrNotFound, Message: "no such firewall"}
	}
	return firewallFrom(f), nil
}

// Firewalls lists the firewalls matching a label selector.
func (c *Client) Firewalls(ctx context.Context, selector string) ([]*Firewall, error) {
	fs, err := c.api.Firewall.AllWithOpts(ctx, hcloud.FirewallListOpts{ListOpts: hcloud.ListOpts{LabelSelector: selector, PerPage: 50}})
	if err != nil {
		return nil, wrap(err, "list firewalls (selector %q)", selector)
	}
	out := make([]*Firewall, 0, len(fs))
	for _, f := range fs {
		out = append(out, firewallFrom(f))
	}
	return out, nil
}

// CreateFirewall creates a firewall with inbound TCP rules.
func (c *Client) CreateFirewall(ctx context.Context, name string, rules []FirewallRule, labels map[string]string) (*Firewall, error) {
	hr, err := firewallRules(rules)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprintf("create firewall %q", name)
	res, _, err := c.api.Firewall.Create(ctx, hcloud.FirewallCreateOpts{Name: name, Rules: hr, Labels: labels})
	if err != nil {
		return nil, wrap(err, "%s", op)
	}
	if err := c.wait(ctx, op, res.Actions...); err != nil {
		return nil, err
	}
	return firewallFrom(res.Firewall), nil
}

// SetFirewallRules replaces a firewall's rules and waits for them to apply.
func (c *Client) SetFirewallRules(ctx context.Context, id int64, rules []FirewallRule) error {
	hr, err := firewallRules(rules)
	if err != nil {
		return err
	}
	op := fmt.Sprintf("set rules of firewall %d", id)
	var actions []*hcloud.Action
	err = c.retryLocked(ctx, op, func() error {
		var err error
		actions, _, err = c.api.Firewall.SetRules(ctx, &hcloud.Firewall{ID: id}, hcloud.FirewallSetRulesOpts{Rules: hr})
		return wrap(err, "%s", op)
	})
	if err != nil {
		return err
	}
	return c.wait(ctx, op, actions...)
}

// DeleteFirewall deletes a firewall (it must not be applied to anything).
func (c *Client) DeleteFirewall(ctx context.Context, id int64) error {
	op := fmt.Sprintf("delete firewall %d", id)
	return c.retryLocked(ctx, op, func() error {
		_, err := c.api.Firewall.Delete(ctx, &hcloud.Firewall{ID: id})
		return wrap(err, "%s", op)
	})
}

// Prices are the hourly/monthly prices dockbridge shows, gross, in Currency.
type Prices struct {
	Currency         string
	ServerHourly     float64 // of the asked server type in the asked location
	ServerMonthly    float64
	VolumePerGBMonth float64
}

// Prices looks up the price of a server type in a location and of volume storage.
func (c *Client) Prices(ctx context.Context, serverType, location string) (Prices, error) {
	p, _, err := c.api.Pricing.Get(ctx)
	if err != nil {
		return Prices{}, wrap(err, "get pricing")
	}
	out := Prices{Currency: p.Currency}
	if out.VolumePerGBMonth, err = strconv.ParseFloat(p.Volume.PerGBMonthly.Gross, 64); err != nil {
		return Prices{}, fmt.Errorf("volume price %q: %w", p.Volume.PerGBMonthly.Gross, err)
	}
	for _, st := range p.ServerTypes {
		if st.ServerType == nil || st.ServerType.Name != serverType {
			continue
		}
		for _, lp := range st.Pricings {
			if lp.Location == nil || lp.Location.Name != location {
				continue
			}
			if out.ServerHourly, err = strconv.ParseFloat(lp.Hourly.Gross, 64); err != nil {
				return Prices{}, fmt.Errorf("hourly price %q: %w", lp.Hourly.Gross, err)
			}
			if out.ServerMonthly, err = strconv.ParseFloat(lp.Monthly.Gross, 64); err != nil {
				return Prices{}, fmt.Errorf("monthly price %q: %w", lp.Monthly.Gross, err)
			}
			return out, nil
		}
	}
	return Prices{}, &APIError{Op: "get pricing", sentinel: ErrNotFound, Message: fmt.Sprintf("no price for server type %q in location %q", serverType, location)}
}
