package simhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PrivateNetwork is a Hetzner private network of simulated servers: a Linux bridge on this
// machine without an address of its own (an isolated layer-2 segment: this machine does not
// route to it, so its range may overlap any other network here), each server's interface on it
// a veth pair. Unlike the servers' Docker network, it is not Docker's: Docker refuses two
// networks with overlapping ranges, and two simulators may both have a 10.0.0.0/16.
type PrivateNetwork struct {
	Bridge string // the bridge's interface name, e.g. "dbn1a2b3c4d"
	Alias  string // its alias: "dockbridge-sim <simulator network> <hetzner network id>"
}

// PrivateNetworkFor names the bridge of Hetzner network id of the simulator whose servers are on
// the Docker network simNetwork.
func PrivateNetworkFor(simNetwork string, id int64) PrivateNetwork {
	if simNetwork == "" {
		simNetwork = DefaultNetwork
	}
	return PrivateNetwork{Bridge: "dbn" + shortHash(simNetwork, strconv.FormatInt(id, 10)),
		Alias: privateAliasPrefix(simNetwork) + strconv.FormatInt(id, 10)}
}

func privateAliasPrefix(simNetwork string) string { return "dockbridge-sim " + simNetwork + " " }

func shortHash(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])[:8]
}

// Ensure creates the bridge unless it exists, brings it up and lets frames between its ports
// through this machine's FORWARD chain (Docker's policy there is DROP, and br_netfilter sends
// bridged frames through it).
func (n PrivateNetwork) Ensure(ctx context.Context) error {
	if _, _, err := run(ctx, nil, "ip", "link", "show", "dev", n.Bridge); err != nil {
		if _, _, err := run(ctx, nil, "ip", "link", "add", "name", n.Bridge, "type", "bridge"); err != nil && !strings.Contains(err.Error(), "File exists") {
			return fmt.Errorf("create bridge %s for private network %q: %w", n.Bridge, n.Alias, err)
		}
	}
	if _, _, err := run(ctx, nil, "ip", "link", "set", "dev", n.Bridge, "alias", n.Alias, "up"); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", n.Bridge, err)
	}
	rule := n.forwardRule()
	if _, _, err := run(ctx, nil, "iptables", append([]string{"-w", "-C", "FORWARD"}, rule...)...); err != nil {
		if _, _, err := run(ctx, nil, "iptables", append([]string{"-w", "-I", "FORWARD", "1"}, rule...)...); err != nil {
			return fmt.Errorf("let frames through bridge %s: %w", n.Bridge, err)
		}
	}
	return nil
}

func (n PrivateNetwork) forwardRule() []string {
	return []string{"-i", n.Bridge, "-o", n.Bridge, "-m", "comment", "--comment", n.Alias, "-j", "ACCEPT"}
}

// Remove deletes the bridge (its servers' interfaces go with it) and its FORWARD rule.
func (n PrivateNetwork) Remove(ctx context.Context) error {
	var errs []error
	for {
		if _, _, err := run(ctx, nil, "iptables", append([]string{"-w", "-D", "FORWARD"}, n.forwardRule()...)...); err != nil {
			break // none (left)
		}
	}
	if _, _, err := run(ctx, nil, "ip", "link", "del", "dev", n.Bridge); err != nil && !strings.Contains(err.Error(), "Cannot find device") && !strings.Contains(err.Error(), "does not exist") {
		errs = append(errs, fmt.Errorf("remove bridge %s: %w", n.Bridge, err))
	}
	return errors.Join(errs...)
}

// RemovePrivateNetworks removes every private-network bridge of the simulator on simNetwork.
func RemovePrivateNetworks(ctx context.Context, simNetwork string) error {
	if simNetwork == "" {
		simNetwork = DefaultNetwork
	}
	out, _, err := run(ctx, nil, "ip", "-o", "link", "show", "type", "bridge")
	if err != nil {
		return fmt.Errorf("list bridges: %w", err)
	}
	prefix := privateAliasPrefix(simNetwork)
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		// "12: dbn1a2b3c4d: <...> ... \    alias dockbridge-sim NET 1234"
		_, rest, ok := strings.Cut(line, "alias "+prefix)
		if !ok {
			continue
		}
		id, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil {
			continue
		}
		errs = append(errs, PrivateNetworkFor(simNetwork, id).Remove(ctx))
	}
	return errors.Join(errs...)
}

// Interface is a server's interface on a private network.
type Interface struct {
	Name string       // in the server, e.g. enp7s0 (Hetzner's name for the first private network)
	MAC  string       // e.g. 86:00:00:12:34:56
	Addr netip.Prefix // the server's address with the network's prefix length, e.g. 10.0.0.2/16
	MTU  int          // 1450 on Hetzner's private networks
}

// hostEnd names the veth end that stays on this machine, plugged into the bridge.
func (h *Host) hostEnd(n PrivateNetwork) string {
	return "dbv" + shortHash(n.Bridge, strconv.FormatInt(h.ID, 10))
}

// PlugInterface gives the running server an interface on n (a veth pair: one end on n's bridge,
// the other in the server's network namespace, renamed, addressed and up). An interface left
// from before (the same server and network) is replaced. The namespace lives as long as the
// container runs: after a Start, plug again.
func (h *Host) PlugInterface(ctx context.Context, n PrivateNetwork, ifc Interface) error {
	pid, err := h.InitPID(ctx)
	if err != nil {
		return err
	}
	if pid == 0 {
		return fmt.Errorf("plug %s into server %d: the server is not running", ifc.Name, h.ID)
	}
	host := h.hostEnd(n)
	peer := "dbp" + shortHash(host)
	_, _, _ = run(ctx, nil, "ip", "link", "del", "dev", host)
	ns := []string{"--net=/proc/" + strconv.Itoa(pid) + "/ns/net", "--"}
	// An interface of that name left in the server (e.g. from a failed plug) goes first.
	_, _, _ = run(ctx, nil, "nsenter", append(ns, "ip", "link", "del", "dev", ifc.Name)...)
	mtu := strconv.Itoa(max(ifc.MTU, 576))
	steps := [][]string{
		{"ip", "link", "add", "name", host, "mtu", mtu, "type", "veth", "peer", "name", peer, "mtu", mtu},
		{"ip", "link", "set", "dev", host, "master", n.Bridge, "up"},
		{"ip", "link", "set", "dev", peer, "netns", strconv.Itoa(pid)},
	}
	for _, s := range steps {
		if _, _, err := run(ctx, nil, s[0], s[1:]...); err != nil {
			_, _, _ = run(ctx, nil, "ip", "link", "del", "dev", host)
			return fmt.Errorf("plug %s into server %d: %w", ifc.Name, h.ID, err)
		}
	}
	inside := [][]string{
		{"ip", "link", "set", "dev", peer, "name", ifc.Name},
		{"ip", "link", "set", "dev", ifc.Name, "address", ifc.MAC},
		{"ip", "addr", "add", ifc.Addr.String(), "dev", ifc.Name},
		{"ip", "link", "set", "dev", ifc.Name, "up"},
	}
	for _, s := range inside {
		if _, _, err := run(ctx, nil, "nsenter", append(ns, s...)...); err != nil {
			_, _, _ = run(ctx, nil, "ip", "link", "del", "dev", host)
			return fmt.Errorf("plug %s into server %d: %w", ifc.Name, h.ID, err)
		}
	}
	return nil
}

// Plugged reports whether the server's interface on n is in place (its end on this machine
// exists; the pair goes away with the server's namespace).
func (h *Host) Plugged(ctx context.Context, n PrivateNetwork) bool {
	_, _, err := run(ctx, nil, "ip", "link", "show", "dev", h.hostEnd(n))
	return err == nil
}

// UnplugInterface removes the server's interface on n (both ends of the pair), if any.
func (h *Host) UnplugInterface(ctx context.Context, n PrivateNetwork) error {
	if _, _, err := run(ctx, nil, "ip", "link", "del", "dev", h.hostEnd(n)); err != nil && !strings.Contains(err.Error(), "Cannot find device") && !strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("unplug server %d from %s: %w", h.ID, n.Alias, err)
	}
	return nil
}
