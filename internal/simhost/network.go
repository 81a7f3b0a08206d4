package simhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultNetwork is the Docker network simulated servers join when Spec.Network is empty.
const DefaultNetwork = "dockbridge-sim"

// MetadataAddr is where a server asks Hetzner's metadata service, as on the real cloud.
var MetadataAddr = netip.MustParseAddrPort("169.254.169.254:80")

// Network is a Docker bridge network of simulated servers. Each simulator instance (each test
// package) may use its own, so their metadata routes do not collide.
type Network struct {
	Name    string
	Bridge  string       // the host's bridge interface, e.g. "dbsim-1a2b3c4d"
	Gateway netip.Addr   // the host's address on the bridge: servers reach host services here
	Subnet  netip.Prefix // servers' private addresses
}

// EnsureNetwork creates the Docker network name (a bridge with a predictable interface name)
// unless it exists, and returns it.
func EnsureNetwork(ctx context.Context, name string) (*Network, error) {
	if name == "" {
		name = DefaultNetwork
	}
	if _, _, err := docker(ctx, "network", "inspect", name); err != nil {
		if err := createNetwork(ctx, name); err != nil {
			return nil, err
		}
	}
	out, _, err := docker(ctx, "network", "inspect", "--format",
		`{{index .Options "com.docker.network.bridge.name"}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}`, name)
	if err != nil {
		return nil, fmt.Errorf("inspect docker network %s: %w", name, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 || f[0] == "" {
		return nil, fmt.Errorf("docker network %s is not a simulated-server network (bridge name, one IPv4 subnet): %q; remove it with `docker network rm %s`", name, out, name)
	}
	n := &Network{Name: name, Bridge: f[0]}
	if n.Subnet, err = netip.ParsePrefix(f[1]); err != nil {
		return nil, fmt.Errorf("docker network %s subnet: %w", name, err)
	}
	if n.Gateway, err = netip.ParseAddr(f[2]); err != nil {
		return nil, fmt.Errorf("docker network %s gateway: %w", name, err)
	}
	return n, nil
}

// createNetwork creates a bridge network with an explicit subnet, so servers may get fixed
// addresses (Spec.PrivateIP, docker's --ip). The subnet is the one Docker picks as free: create,
// read it, recreate with it.
func createNetwork(ctx context.Context, name string) error {
	create := func(extra ...string) error {
		args := append([]string{"network", "create", "--driver", "bridge",
			"--opt", "com.docker.network.bridge.name=" + bridgeName(name),
			"--label", "dockbridge-sim=1"}, extra...)
		_, _, err := docker(ctx, append(args, name)...)
		return err
	}
	if err := create(); err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return nil
		}
		return fmt.Errorf("create docker network %s for simulated servers: %w", name, err)
	}
	out, _, err := docker(ctx, "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", name)
	if err != nil {
		return fmt.Errorf("inspect docker network %s: %w", name, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return fmt.Errorf("docker network %s: want one IPv4 subnet and gateway, got %q", name, out)
	}
	if _, _, err := docker(ctx, "network", "rm", name); err != nil {
		return fmt.Errorf("recreate docker network %s with a fixed subnet: %w", name, err)
	}
	if err := create("--subnet", f[0], "--gateway", f[1]); err != nil {
		return fmt.Errorf("create docker network %s with subnet %s: %w", name, f[0], err)
	}
	return nil
}

// Remove deletes the network; it fails while servers are still attached.
func (n *Network) Remove(ctx context.Context) error {
	if _, _, err := docker(ctx, "network", "rm", n.Name); err != nil {
		return fmt.Errorf("remove docker network %s: %w", n.Name, err)
	}
	return nil
}

func bridgeName(network string) string {
	sum := sha256.Sum256([]byte(network))
	return "dbsim-" + hex.EncodeToString(sum[:])[:8]
}

// RouteMetadata makes 169.254.169.254:80, asked from a server on n, reach target: an iptables
// DNAT rule for TCP from n's bridge. DNAT keeps the source address, so the service at target
// sees the server's private address (Host.PrivateIP) and can answer for that server, like
// Hetzner's metadata service does. target must accept connections on an address the bridge
// reaches: n.Gateway, or a wildcard listener (0.0.0.0), not 127.0.0.1.
//
// The returned function removes the rule.
func (n *Network) RouteMetadata(ctx context.Context, target netip.AddrPort) (remove func(context.Context) error, err error) {
	if target.Addr().IsUnspecified() {
		return nil, fmt.Errorf("route metadata to %s: name the address, e.g. %s, the network's gateway, when the service listens on all addresses", target, netip.AddrPortFrom(n.Gateway, target.Port()))
	}
	if target.Addr().IsLoopback() {
		return nil, fmt.Errorf("route metadata to %s: a loopback address is not reachable from servers; listen on %s (the network's gateway) or 0.0.0.0 instead", target, n.Gateway)
	}
	rule := []string{"PREROUTING", "-i", n.Bridge, "-p", "tcp",
		"-d", MetadataAddr.Addr().String(), "--dport", fmt.Sprint(MetadataAddr.Port()),
		"-m", "comment", "--comment", "dockbridge-sim metadata " + n.Name,
		"-j", "DNAT", "--to-destination", target.String()}
	if _, _, err := run(ctx, nil, "iptables", append([]string{"-w", "-t", "nat", "-I"}, rule...)...); err != nil {
		return nil, fmt.Errorf("route metadata service of network %s to %s: %w", n.Name, target, err)
	}
	return func(ctx context.Context) error {
		if _, _, err := run(ctx, nil, "iptables", append([]string{"-w", "-t", "nat", "-D"}, rule...)...); err != nil {
			return fmt.Errorf("remove metadata route of network %s: %w", n.Name, err)
		}
		return nil
	}, nil
}
