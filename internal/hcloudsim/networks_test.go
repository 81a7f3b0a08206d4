package hcloudsim_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

func mustNetwork(t *testing.T, c *hcloud.Client, name, ipRange string, subnets ...string) *hcloud.Network {
	t.Helper()
	_, r, err := net.ParseCIDR(ipRange)
	if err != nil {
		t.Fatal(err)
	}
	opts := hcloud.NetworkCreateOpts{Name: name, IPRange: r, Labels: map[string]string{"managed-by": "dockbridge"}}
	for _, s := range subnets {
		_, sr, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		opts.Subnets = append(opts.Subnets, hcloud.NetworkSubnet{Type: hcloud.NetworkSubnetTypeCloud, NetworkZone: hcloud.NetworkZoneEUCentral, IPRange: sr})
	}
	n, _, err := c.Network.Create(t.Context(), opts)
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	return n
}

func attach(t *testing.T, c *hcloud.Client, s *hcloud.Server, n *hcloud.Network, ip string) error {
	t.Helper()
	opts := hcloud.ServerAttachToNetworkOpts{Network: n}
	if ip != "" {
		opts.IP = net.ParseIP(ip)
	}
	a, _, err := c.Server.AttachToNetwork(t.Context(), s, opts)
	if err != nil {
		return err
	}
	return c.Action.WaitFor(t.Context(), a)
}

func TestNetworkLifecycle(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()

	n := mustNetwork(t, c, "swarm", "10.0.0.0/16", "10.0.1.0/24")
	if len(n.Subnets) != 1 || n.Subnets[0].Gateway.String() != "10.0.0.1" || n.Subnets[0].NetworkZone != hcloud.NetworkZoneEUCentral {
		t.Fatalf("subnets = %+v; want 10.0.1.0/24 in eu-central with the network's gateway 10.0.0.1", n.Subnets)
	}
	a := mustServer(t, c, "a", "fsn1", nil)
	b := mustServer(t, c, "b", "nbg1", nil)
	if err := attach(t, c, a, n, "10.0.1.10"); err != nil {
		t.Fatalf("attach a with 10.0.1.10: %v", err)
	}
	if err := attach(t, c, b, n, ""); err != nil {
		t.Fatalf("attach b: %v", err)
	}
	a, _, _ = c.Server.GetByID(ctx, a.ID)
	b, _, _ = c.Server.GetByID(ctx, b.ID)
	if len(a.PrivateNet) != 1 || a.PrivateNet[0].IP.String() != "10.0.1.10" || a.PrivateNet[0].Network.ID != n.ID || !strings.HasPrefix(a.PrivateNet[0].MACAddress, "86:00:00:") {
		t.Fatalf("a.private_net = %+v; want 10.0.1.10 on network %d", a.PrivateNet, n.ID)
	}
	// The first free address of the subnet: not its network address .0, not its .1 (the
	// network's gateway is 10.0.0.1, but .1 of a subnet is a subnet's first host: taken as is).
	if len(b.PrivateNet) != 1 || b.PrivateNet[0].IP.String() != "10.0.1.1" {
		t.Fatalf("b.private_net = %+v; want the first free address 10.0.1.1", b.PrivateNet)
	}
	got, _, err := c.Network.GetByID(ctx, n.ID)
	if err != nil || len(got.Servers) != 2 {
		t.Fatalf("network servers = %v, %v; want a and b", got.Servers, err)
	}

	// The real errors.
	wantAPIError(t, attach(t, c, a, n, "10.0.1.20"), hcloud.ErrorCodeServerAlreadyAttached)
	cc := mustServer(t, c, "c", "fsn1", nil)
	wantAPIError(t, attach(t, c, cc, n, "10.0.1.10"), hcloud.ErrorCodeIPNotAvailable)
	wantAPIError(t, attach(t, c, cc, n, "10.0.1.255"), hcloud.ErrorCodeIPNotAvailable) // the subnet's broadcast
	wantAPIError(t, attach(t, c, cc, n, "10.0.9.5"), hcloud.ErrorCodeInvalidInput)     // in the network, in no subnet
	_, usRange, _ := net.ParseCIDR("172.16.0.0/16")
	_, usSub, _ := net.ParseCIDR("172.16.0.0/24")
	us, _, err := c.Network.Create(ctx, hcloud.NetworkCreateOpts{Name: "us", IPRange: usRange,
		Subnets: []hcloud.NetworkSubnet{{Type: hcloud.NetworkSubnetTypeCloud, NetworkZone: hcloud.NetworkZoneUSEast, IPRange: usSub}}})
	if err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, attach(t, c, cc, us, ""), hcloud.ErrorCodeNoSubnetAvailable) // no subnet in fsn1's eu-central
	other := mustNetwork(t, c, "overlap", "10.0.0.0/8", "10.200.0.0/24")
	wantAPIError(t, attach(t, c, a, other, ""), hcloud.ErrorCodeNetworksOverlap)
	_, _, err = c.Network.Create(ctx, hcloud.NetworkCreateOpts{Name: "swarm", IPRange: n.IPRange})
	wantAPIError(t, err, hcloud.ErrorCodeUniquenessError)
	_, pub, _ := net.ParseCIDR("8.8.0.0/16")
	_, err2 := createNet(t, c, "public", pub)
	wantAPIError(t, err2, hcloud.ErrorCodeInvalidInput)
	_, _, err = c.Network.DeleteSubnet(ctx, n, hcloud.NetworkDeleteSubnetOpts{Subnet: n.Subnets[0]})
	wantAPIError(t, err, hcloud.ErrorCodeServiceError)
	if err == nil || !strings.Contains(err.Error(), "cannot remove subnet because servers are attached to it") {
		t.Errorf("delete subnet in use: %v; want the real message", err)
	}

	// Detach frees the address; detaching again is an error.
	act, _, err := c.Server.DetachFromNetwork(ctx, a, hcloud.ServerDetachFromNetworkOpts{Network: n})
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatalf("detach a: %v", err)
	}
	_, _, err = c.Server.DetachFromNetwork(ctx, a, hcloud.ServerDetachFromNetworkOpts{Network: n})
	wantAPIError(t, err, hcloud.ErrorCodeServiceError)
	if err := attach(t, c, cc, n, "10.0.1.10"); err != nil {
		t.Fatalf("the address a left is free again: %v", err)
	}

	// A server created in the network gets an address there; deleting it frees the address.
	res, _, err := c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "d", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "debian-12"}, Location: &hcloud.Location{Name: "fsn1"}, Networks: []*hcloud.Network{n}})
	if err != nil || c.Action.WaitFor(ctx, append([]*hcloud.Action{res.Action}, res.NextActions...)...) != nil {
		t.Fatalf("create d in the network: %v", err)
	}
	d, _, _ := c.Server.GetByID(ctx, res.Server.ID)
	if len(d.PrivateNet) != 1 || d.PrivateNet[0].Network.ID != n.ID {
		t.Fatalf("d.private_net = %+v", d.PrivateNet)
	}

	// Protection, then delete: servers still attached are detached.
	act, _, err = c.Network.ChangeProtection(ctx, n, hcloud.NetworkChangeProtectionOpts{Delete: hcloud.Ptr(true)})
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatal(err)
	}
	_, err = c.Network.Delete(ctx, n)
	wantAPIError(t, err, hcloud.ErrorCodeProtected)
	act, _, _ = c.Network.ChangeProtection(ctx, n, hcloud.NetworkChangeProtectionOpts{Delete: hcloud.Ptr(false)})
	_ = c.Action.WaitFor(ctx, act)
	if _, err := c.Network.Delete(ctx, n); err != nil {
		t.Fatalf("delete network with servers: %v", err)
	}
	b, _, _ = c.Server.GetByID(ctx, b.ID)
	if len(b.PrivateNet) != 0 {
		t.Errorf("b still shows %+v after its network was deleted", b.PrivateNet)
	}
}

func createNet(t *testing.T, c *hcloud.Client, name string, r *net.IPNet) (*hcloud.Network, error) {
	n, _, err := c.Network.Create(t.Context(), hcloud.NetworkCreateOpts{Name: name, IPRange: r})
	return n, err
}

func TestNetworkSubnetsAndRoutes(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	n := mustNetwork(t, c, "net", "10.1.0.0/16")
	// add_subnet without a range takes the first free /24.
	act, _, err := c.Network.AddSubnet(ctx, n, hcloud.NetworkAddSubnetOpts{Subnet: hcloud.NetworkSubnet{Type: hcloud.NetworkSubnetTypeCloud, NetworkZone: hcloud.NetworkZoneEUCentral}})
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatalf("add subnet: %v", err)
	}
	_, outside, _ := net.ParseCIDR("10.2.0.0/24")
	_, _, err = c.Network.AddSubnet(ctx, n, hcloud.NetworkAddSubnetOpts{Subnet: hcloud.NetworkSubnet{Type: hcloud.NetworkSubnetTypeCloud, NetworkZone: hcloud.NetworkZoneEUCentral, IPRange: outside}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
	_, dst, _ := net.ParseCIDR("192.168.0.0/24")
	act, _, err = c.Network.AddRoute(ctx, n, hcloud.NetworkAddRouteOpts{Route: hcloud.NetworkRoute{Destination: dst, Gateway: net.ParseIP("10.1.0.5")}})
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatalf("add route: %v", err)
	}
	_, wider, _ := net.ParseCIDR("10.0.0.0/8")
	act, _, err = c.Network.ChangeIPRange(ctx, n, hcloud.NetworkChangeIPRangeOpts{IPRange: wider})
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatalf("change ip range: %v", err)
	}
	_, narrower, _ := net.ParseCIDR("10.1.0.0/20")
	_, _, err = c.Network.ChangeIPRange(ctx, n, hcloud.NetworkChangeIPRangeOpts{IPRange: narrower})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
	got, _, _ := c.Network.GetByID(ctx, n.ID)
	if len(got.Subnets) != 1 || got.Subnets[0].IPRange.String() != "10.1.0.0/24" || len(got.Routes) != 1 || got.IPRange.String() != "10.0.0.0/8" {
		t.Fatalf("network = %+v %+v %v", got.Subnets, got.Routes, got.IPRange)
	}
	list, err := c.Network.AllWithOpts(ctx, hcloud.NetworkListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "managed-by=dockbridge"}})
	if err != nil || len(list) != 1 {
		t.Fatalf("list by label: %d %v", len(list), err)
	}
}

func TestMetadataPrivateNetworks(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithLocalServer("me"))
	c := sim.Client()
	n := mustNetwork(t, c, "net", "10.0.0.0/16", "10.0.0.0/24")
	me, _, err := c.Server.GetByName(t.Context(), "me")
	if err != nil || me == nil {
		t.Fatal(err)
	}
	if err := attach(t, c, me, n, "10.0.0.7"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(strings.TrimSuffix(sim.MetadataEndpoint, "/") + "/private-networks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"- ip: 10.0.0.7", "network: 10.0.0.0/16", "subnet: 10.0.0.0/24", "gateway: 10.0.0.1", "interface_num: 1"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("private-networks = %q; want %q", b, want)
		}
	}
}
