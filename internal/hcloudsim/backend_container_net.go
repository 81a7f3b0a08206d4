package hcloudsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/dockbridge/dockbridge/internal/simhost"
)

var _ NetworkBackend = (*ContainerBackend)(nil)

// privateNetwork is the bridge of Hetzner network id among this backend's servers.
func (b *ContainerBackend) privateNetwork(id int64) simhost.PrivateNetwork {
	return simhost.PrivateNetworkFor(b.cfg.Network, id)
}

// ifaceName is the name of a server's interface number i on private networks, as on Hetzner's
// current server types: enp7s0 for the first network, then enp8s0, ...
func ifaceName(i int) string { return fmt.Sprintf("enp%ds0", 7+i) }

func (b *ContainerBackend) iface(n PrivateNet) simhost.Interface {
	return simhost.Interface{Name: ifaceName(n.Iface), MAC: n.MAC, Addr: netip.PrefixFrom(n.IP, n.Range.Bits()), MTU: privateNetMTU}
}

// AttachNetwork gives the server an interface on the network's bridge with its address: now
// when the server runs, and at every later start.
func (b *ContainerBackend) AttachNetwork(ctx context.Context, serverID int64, n PrivateNet) error {
	s, err := b.server(serverID)
	if err != nil {
		return err
	}
	pn := b.privateNetwork(n.Network)
	if err := pn.Ensure(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	if b.nets[serverID] == nil {
		b.nets[serverID] = map[int64]PrivateNet{}
	}
	b.nets[serverID][n.Network] = n
	b.mu.Unlock()
	if pid, err := s.host.InitPID(ctx); err != nil || pid == 0 {
		return nil // off: plugged at the next start
	}
	return s.host.PlugInterface(ctx, pn, b.iface(n))
}

// DetachNetwork removes the server's interface on the network.
func (b *ContainerBackend) DetachNetwork(ctx context.Context, serverID, networkID int64) error {
	b.mu.Lock()
	delete(b.nets[serverID], networkID)
	b.mu.Unlock()
	s, err := b.server(serverID)
	if err != nil {
		return nil // no container: no interface
	}
	return s.host.UnplugInterface(ctx, b.privateNetwork(networkID))
}

// DeleteNetwork removes the network's bridge.
func (b *ContainerBackend) DeleteNetwork(ctx context.Context, networkID int64) error {
	return b.privateNetwork(networkID).Remove(ctx)
}

// plugNetworks gives a server that has just started its interfaces (a container's network
// namespace is new at every start). A server's user-data that needs its private address waits
// for it, as on Hetzner, where the interface is configured while the server boots.
func (b *ContainerBackend) plugNetworks(ctx context.Context, serverID int64, onlyMissing bool) error {
	s, err := b.server(serverID)
	if err != nil {
		return err
	}
	b.mu.Lock()
	var nets []PrivateNet
	for _, n := range b.nets[serverID] {
		nets = append(nets, n)
	}
	b.mu.Unlock()
	var errs []error
	for _, n := range nets {
		pn := b.privateNetwork(n.Network)
		if onlyMissing && s.host.Plugged(ctx, pn) {
			continue
		}
		if err := pn.Ensure(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.host.PlugInterface(ctx, pn, b.iface(n)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restoreNetworks records the servers' networks at a restart and plugs the running servers'
// missing interfaces (their bridges are gone after this machine restarted).
func (b *ContainerBackend) restoreNetworks(ctx context.Context, rs RestoreState) error {
	var errs []error
	for _, sv := range rs.Servers {
		if len(sv.PrivateNets) == 0 {
			continue
		}
		b.mu.Lock()
		_, known := b.servers[sv.ID]
		if known {
			b.nets[sv.ID] = map[int64]PrivateNet{}
			for _, n := range sv.PrivateNets {
				b.nets[sv.ID][n.Network] = n
			}
		}
		b.mu.Unlock()
		if !known {
			continue
		}
		if pid, err := b.Host(sv.ID).InitPID(ctx); err == nil && pid != 0 {
			errs = append(errs, b.plugNetworks(ctx, sv.ID, true))
		}
	}
	return errors.Join(errs...)
}

var _ PowerCutter = (*ContainerBackend)(nil)

// powerCutRelease bounds how long PowerCut waits for the kernel to free a killed server's
// volume devices.
const powerCutRelease = 10 * time.Second

// PowerCut is the poweroff action, a power cut as on Hetzner: every process of the server is
// killed, with no shutdown (Docker does not stop its containers, the plugins release nothing,
// filesystems are not unmounted by the server). It returns once the container has exited and
// the devices of its volumes are free (the kernel drops the dead server's mounts).
func (b *ContainerBackend) PowerCut(ctx context.Context, id int64) error {
	s, err := b.server(id)
	if err != nil {
		return err
	}
	if err := s.host.Kill(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	var vols []int64
	for vid, sid := range b.attached {
		if sid == id {
			vols = append(vols, vid)
		}
	}
	b.mu.Unlock()
	deadline := time.Now().Add(powerCutRelease)
	for _, vid := range vols {
		for {
			dev, ok, err := b.vols.store.LoopDevice(ctx, vid)
			if err != nil {
				return fmt.Errorf("power cut of server %d: volume %d's device: %w", id, vid, err)
			}
			if !ok || !busy(dev) {
				break
			}
			if time.Now().After(deadline) {
				// The action fails: what follows a poweroff (a detach, an attach elsewhere)
				// would find the device still in use.
				return fmt.Errorf("power cut of server %d: volume %d's device %s is still busy %s after the server was killed", id, vid, dev, powerCutRelease)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
