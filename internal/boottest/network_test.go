package boottest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/testimage"
)

// TestPrivateNetworkAndVolumeMove: servers attached to a Hetzner network through the API get an
// interface there (enp7s0, the chosen address, MTU 1450) and reach each other on it, also
// after a power cycle; a volume moves from one server to the other (detach, hot-plug) with its
// data, and a detach while the first server still has it mounted is refused and counted in
// detaches_while_mounted.
func TestPrivateNetworkAndVolumeMove(t *testing.T) {
	t.Parallel()
	e := Start(t)
	ctx := t.Context()
	c := e.Client()

	_, r, _ := net.ParseCIDR("10.0.0.0/16")
	_, sub, _ := net.ParseCIDR("10.0.0.0/24")
	n, _, err := c.Network.Create(ctx, hcloud.NetworkCreateOpts{Name: "swarm", IPRange: r,
		Subnets: []hcloud.NetworkSubnet{{Type: hcloud.NetworkSubnetTypeCloud, NetworkZone: hcloud.NetworkZoneEUCentral, IPRange: sub}}})
	if err != nil {
		t.Fatal(err)
	}
	a := e.boot(t, "net-a", bootOpts{volumes: []*hcloud.Volume{e.volume(t, "net-a-data", "")}})
	b := e.boot(t, "net-b", bootOpts{volumes: []*hcloud.Volume{e.volume(t, "net-b-data", "")}})
	a.succeeded(t)
	b.succeeded(t)
	attach := func(s *booted, ip string) {
		t.Helper()
		act, _, err := c.Server.AttachToNetwork(ctx, s.Server, hcloud.ServerAttachToNetworkOpts{Network: n, IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatalf("attach %s to the network: %v", s.Name, err)
		}
		if err := c.Action.WaitFor(ctx, act); err != nil {
			t.Fatalf("attach %s to the network: %v", s.Name, err)
		}
	}
	attach(a, "10.0.0.11")
	attach(b, "10.0.0.12")
	for _, s := range []struct {
		b  *booted
		ip string
	}{{a, "10.0.0.11/16"}, {b, "10.0.0.12/16"}} {
		if got := s.b.run(t, "ip -o -4 addr show dev enp7s0 | awk '{print $4}'; cat /sys/class/net/enp7s0/mtu"); got != s.ip+"\n1450" {
			t.Fatalf("%s: enp7s0 = %q, want %s with MTU 1450", s.b.Name, got, s.ip)
		}
	}
	for _, s := range []*booted{a, b} {
		if out, err := runInput(s.ssh, testimage.BusyboxRootfs(t), "docker import - dockbridge-test/busybox:1"); err != nil {
			t.Fatal(err, out)
		}
	}
	// TCP between the servers on the private network, from containers on the host network.
	b.run(t, "docker run -d --name listen --net host dockbridge-test/busybox:1 sh -c 'while :; do echo pong | nc -l -p 9000; done'")
	reach := func(from *booted, to string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := Run(from.ssh, "docker run --rm --net host dockbridge-test/busybox:1 sh -c 'echo ping | nc -w 2 "+to+" 9000'")
			if err == nil && strings.Contains(out, "pong") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s cannot reach %s:9000 on the private network: %v %s", from.Name, to, err, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	reach(a, "10.0.0.12")

	// Docker Swarm over it: a manager advertising its private address, a worker joining there,
	// and an overlay network (VXLAN between the servers) carrying TCP between containers.
	a.run(t, "docker swarm init --advertise-addr 10.0.0.11 >/dev/null")
	token := a.run(t, "docker swarm join-token -q worker")
	b.run(t, "docker swarm join --advertise-addr 10.0.0.12 --token "+token+" 10.0.0.11:2377 >/dev/null")
	a.run(t, "docker network create -d overlay --attachable over >/dev/null")
	b.run(t, "docker run -d --name olisten --network over dockbridge-test/busybox:1 sh -c 'while :; do echo overlay-pong | nc -l -p 80; done' >/dev/null")
	bOverlay := b.run(t, "docker inspect -f '{{(index .NetworkSettings.Networks \"over\").IPAddress}}' olisten")
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := Run(a.ssh, "docker run --rm --network over dockbridge-test/busybox:1 sh -c 'echo ping | nc -w 2 "+bOverlay+" 80'")
		if err == nil && strings.Contains(out, "overlay-pong") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a container on a cannot reach one on b (%s) over the overlay network: %v %s", bOverlay, err, out)
		}
		time.Sleep(time.Second)
	}
	b.run(t, "docker rm -f olisten >/dev/null; docker swarm leave --force >/dev/null")

	// A power cycle: the interface is back with the same address.
	for _, act := range []func() (*hcloud.Action, error){
		func() (*hcloud.Action, error) { x, _, err := c.Server.Poweroff(ctx, a.Server); return x, err },
		func() (*hcloud.Action, error) { x, _, err := c.Server.Poweron(ctx, a.Server); return x, err },
	} {
		x, err := act()
		if err != nil || c.Action.WaitFor(ctx, x) != nil {
			t.Fatalf("power cycle: %v", err)
		}
	}
	a.reconnect(t)
	// A simulated server does not mount fstab's device entries at boot (see README.md): by hand.
	a.run(t, "mountpoint -q /var/lib/docker || mount /var/lib/docker; systemctl reset-failed docker.service docker.socket; systemctl start docker.service")
	if got := a.run(t, "ip -o -4 addr show dev enp7s0 | awk '{print $4}'"); got != "10.0.0.11/16" {
		t.Fatalf("after a power cycle enp7s0 = %q, want 10.0.0.11/16", got)
	}
	reach(a, "10.0.0.12")

	// A volume moves: made and written on a, refused to detach while mounted (counted), then
	// detached, hot-plugged into b, and read there.
	vol := e.volume(t, "moving", "ext4")
	act, _, err := c.Volume.Attach(ctx, vol, a.Server)
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatalf("attach to a: %v", err)
	}
	dev := fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", vol.ID)
	a.run(t, "mkdir -p /mnt/m && mount "+dev+" /mnt/m && echo moved-intact > /mnt/m/f && sync")
	act, _, err = c.Volume.Detach(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Action.WaitFor(ctx, act); err == nil || !strings.Contains(err.Error(), "unmount it first") {
		t.Fatalf("detach of a mounted volume: %v, want the action to fail (unmount it first)", err)
	}
	if got := e.Stats().DetachesWhileMounted; got != 1 {
		t.Fatalf("detaches_while_mounted = %d after one detach of a mounted volume, want 1", got)
	}
	a.run(t, "umount /mnt/m")
	act, _, err = c.Volume.Detach(ctx, vol)
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatalf("detach the unmounted volume: %v", err)
	}
	if out, err := Run(a.ssh, "test -e "+dev); err == nil {
		t.Fatalf("%s still exists on a after the detach: %s", dev, out)
	}
	act, _, err = c.Volume.Attach(ctx, vol, b.Server)
	if err != nil || c.Action.WaitFor(ctx, act) != nil {
		t.Fatalf("attach to b: %v", err)
	}
	if got := b.run(t, "mkdir -p /mnt/m && mount "+dev+" /mnt/m && cat /mnt/m/f && umount /mnt/m"); got != "moved-intact" {
		t.Fatalf("on b the volume holds %q, want moved-intact", got)
	}
	if got := e.Stats().DetachesWhileMounted; got != 1 {
		t.Fatalf("detaches_while_mounted = %d after a clean move, want still 1", got)
	}

	// Detached from the network, b has no interface there any more.
	x, _, err := c.Server.DetachFromNetwork(ctx, b.Server, hcloud.ServerDetachFromNetworkOpts{Network: n})
	if err != nil || c.Action.WaitFor(ctx, x) != nil {
		t.Fatalf("detach b from the network: %v", err)
	}
	if out, err := Run(b.ssh, "ip link show dev enp7s0"); err == nil {
		t.Fatalf("b still has enp7s0 after its detach: %s", out)
	}
}
