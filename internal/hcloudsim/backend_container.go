package hcloudsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockbridge/dockbridge/internal/mount/loopdev"
	"github.com/dockbridge/dockbridge/internal/simhost"
)

// ContainerBackendConfig configures the container backend.
type ContainerBackendConfig struct {
	// ImageDir keeps the sparse volume images (volume-<id>.img). Required.
	ImageDir string
	// ByIDDir is where the host-side scsi-0HC_Volume_<id> links go (default
	// <ImageDir>/by-id: the devices belong to the servers, not to this machine).
	ByIDDir string
	// Network is the Docker network of the servers (default simhost.DefaultNetwork). It is
	// created when missing. One simulator per network: servers are found by their address
	// on it.
	Network string
	// APIAddr is where the simulator serves, as seen from the servers: the network's gateway
	// (an address of this machine) and the simulator's port. 169.254.169.254:80 asked from a
	// server is routed there (the metadata service), and processes in a server reach the API
	// at http://APIAddr/v1. The zero value routes nothing: servers then have no metadata
	// service (cloud-init still runs from the NoCloud seed).
	APIAddr netip.AddrPort
	// PublicIPs is the loopback range the servers' public IPv4 addresses come from (their
	// SSH port 22 is published there). Default 127.0.0.0/24; .0, .1 and .255 are never used.
	PublicIPs netip.Prefix
	// Datasource is how cloud-init in a server finds its user_data:
	// simhost.DatasourceNoCloud (default: a seed written before the first boot) or
	// simhost.DatasourceHetzner (cloud-init's Hetzner datasource asking the metadata service).
	Datasource string
	Logger     *slog.Logger
}

// ContainerBackend makes every server created through the API a real host: a container on
// the local Docker engine running systemd, sshd, cloud-init and (image docker-ce) Docker,
// made by internal/simhost. Volumes are loop devices (as in the local backend) hot-plugged
// into the server they are attached to, at /dev/disk/by-id/scsi-0HC_Volume_<id>.
type ContainerBackend struct {
	cfg     ContainerBackendConfig
	vols    *loopVolumes
	net     *simhost.Network
	log     *slog.Logger
	unroute func(context.Context) error

	mu        sync.Mutex
	servers   map[int64]*containerServer
	byPrivate map[netip.Addr]int64
	attached  map[int64]int64                // volume -> server
	nets      map[int64]map[int64]PrivateNet // server -> network -> its interface there
}

type containerServer struct {
	host    *simhost.Host
	public  netip.Addr
	private netip.Addr
}

var (
	_ Backend      = (*ContainerBackend)(nil)
	_ GuestBackend = (*ContainerBackend)(nil)
)

// NewContainerBackend ensures the servers' Docker network and the metadata route. It needs
// root, the Docker engine, loop devices and the simulated-server images
// (simhost.EnsureImages, `make sim-image`); a server whose image is missing fails to create.
func NewContainerBackend(ctx context.Context, cfg ContainerBackendConfig) (*ContainerBackend, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ImageDir == "" {
		return nil, fmt.Errorf("container backend: the volume image directory is required")
	}
	if cfg.ByIDDir == "" {
		cfg.ByIDDir = filepath.Join(cfg.ImageDir, "by-id")
	}
	if cfg.Network == "" {
		cfg.Network = simhost.DefaultNetwork
	}
	if !cfg.PublicIPs.IsValid() {
		cfg.PublicIPs = netip.MustParsePrefix("127.0.0.0/24")
	}
	if !cfg.PublicIPs.Addr().Is4() || !cfg.PublicIPs.Addr().IsLoopback() || cfg.PublicIPs.Bits() > 30 {
		return nil, fmt.Errorf("container backend: public address range %s must be a loopback IPv4 range such as 127.0.0.0/24 (servers' SSH ports are published there, on this machine only)", cfg.PublicIPs)
	}
	cfg.PublicIPs = cfg.PublicIPs.Masked()
	switch cfg.Datasource {
	case "":
		cfg.Datasource = simhost.DatasourceNoCloud
	case simhost.DatasourceNoCloud, simhost.DatasourceHetzner:
	default:
		return nil, fmt.Errorf("container backend: datasource %q is unknown (use %s or %s)", cfg.Datasource, simhost.DatasourceNoCloud, simhost.DatasourceHetzner)
	}
	if cfg.Datasource == simhost.DatasourceHetzner && !cfg.APIAddr.IsValid() {
		return nil, fmt.Errorf("container backend: datasource %s needs the metadata service: set the API address the servers reach", cfg.Datasource)
	}
	vols, err := newLoopVolumes(cfg.ImageDir, cfg.ByIDDir, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("container backend: %w", err)
	}
	n, err := simhost.EnsureNetwork(ctx, cfg.Network)
	if err != nil {
		return nil, fmt.Errorf("container backend: %w", err)
	}
	b := &ContainerBackend{
		cfg: cfg, vols: vols, net: n, log: cfg.Logger,
		servers: map[int64]*containerServer{}, byPrivate: map[netip.Addr]int64{}, attached: map[int64]int64{},
		nets: map[int64]map[int64]PrivateNet{},
	}
	if cfg.APIAddr.IsValid() {
		if cfg.APIAddr.Addr() != n.Gateway {
			return nil, fmt.Errorf("container backend: the simulator must serve on the network's gateway %s (an address of this machine only) for servers to reach it, not on %s", n.Gateway, cfg.APIAddr.Addr())
		}
		if b.unroute, err = n.RouteMetadata(ctx, cfg.APIAddr); err != nil {
			return nil, fmt.Errorf("container backend: %w", err)
		}
	}
	return b, nil
}

// Name is the backend's flag value.
func (b *ContainerBackend) Name() string { return "container" }

// Network is the servers' Docker network: its Gateway is this machine as seen from a server.
func (b *ContainerBackend) Network() *simhost.Network { return b.net }

// ServerEndpoint is the API endpoint a process inside a server uses, e.g.
// "http://172.18.0.1:8080/v1" ("" when the backend was made without APIAddr).
func (b *ContainerBackend) ServerEndpoint() string {
	if !b.cfg.APIAddr.IsValid() {
		return ""
	}
	return "http://" + b.cfg.APIAddr.String() + "/v1"
}

// Host returns the simulated host of server id (nil when it has none).
func (b *ContainerBackend) Host(id int64) *simhost.Host {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.servers[id]; ok {
		return s.host
	}
	return nil
}

// PrivateIP returns server id's address on the network (the source of its requests).
func (b *ContainerBackend) PrivateIP(id int64) (netip.Addr, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.servers[id]; ok {
		return s.private, true
	}
	return netip.Addr{}, false
}

func imageKind(image string) (string, error) {
	switch image {
	case "docker-ce":
		return simhost.KindDockerCE, nil
	case "debian-12":
		return simhost.KindDebian12, nil
	}
	return "", fmt.Errorf("image %q is not available with the container backend: use docker-ce (Docker preinstalled) or debian-12 (Docker installed by user_data)", image)
}

// CreateServer creates and boots the server's container. Volumes given at create are
// passed as devices, so they exist on the first boot, before cloud-init runs.
func (b *ContainerBackend) CreateServer(ctx context.Context, s ServerSpec) (string, error) {
	kind, err := imageKind(s.Image)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	if _, ok := b.servers[s.ID]; ok {
		b.mu.Unlock()
		return "", fmt.Errorf("server %d already has a container", s.ID)
	}
	public, private, err := b.allocLocked()
	if err != nil {
		b.mu.Unlock()
		return "", err
	}
	h := &simhost.Host{ID: s.ID, Container: simhost.ContainerName(b.cfg.Network, s.ID)}
	// Registered before the container exists: the metadata service must answer for the
	// server from its first second.
	b.servers[s.ID] = &containerServer{host: h, public: public, private: private}
	b.byPrivate[private] = s.ID
	b.mu.Unlock()

	spec := simhost.Spec{ID: s.ID, Name: s.Name, ImageKind: kind, IPv4: public, Network: b.cfg.Network,
		PrivateIP: private, Datasource: b.cfg.Datasource, Arch: simArch(s.Architecture)}
	if b.cfg.Datasource == simhost.DatasourceNoCloud {
		spec.UserData = []byte(s.UserData)
		spec.PublicKeys = s.SSHKeys
	}
	for _, vid := range s.Volumes {
		dev, err := b.vols.attach(ctx, vid)
		if err != nil {
			b.forget(s.ID)
			return "", fmt.Errorf("attach volume %d: %w", vid, err)
		}
		spec.Devices = append(spec.Devices, simhost.Device{HostPath: dev, Path: volumeDevicePath(vid)})
	}
	if _, err := simhost.Create(ctx, spec); err != nil {
		b.forget(s.ID)
		return "", err
	}
	b.log.Info("server container created", "server", s.ID, "container", h.Container, "ipv4", public, "private_ip", private, "image", kind, "arch", spec.Arch)
	return public.String(), nil
}

// simArch is the simulated-server image's architecture for a server type's: an arm type boots
// on the arm64 image, whose programs run under qemu-user.
func simArch(typeArch string) string {
	if typeArch == "arm" {
		return simhost.ArchARM64
	}
	return simhost.ArchAMD64
}

func volumeDevicePath(vid int64) string { return loopdev.DevicePath("/dev/disk/by-id", vid) }

func (b *ContainerBackend) forget(id int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.servers[id]; ok {
		delete(b.byPrivate, s.private)
		delete(b.servers, id)
	}
}

// allocLocked picks a free public (loopback) and private address.
func (b *ContainerBackend) allocLocked() (public, private netip.Addr, err error) {
	usedPub := map[netip.Addr]bool{}
	for _, s := range b.servers {
		usedPub[s.public] = true
	}
	for a := b.cfg.PublicIPs.Addr(); b.cfg.PublicIPs.Contains(a); a = a.Next() {
		last := a.As4()[3]
		if last == 0 || last == 255 || a == netip.MustParseAddr("127.0.0.1") || usedPub[a] {
			continue
		}
		public = a
		break
	}
	if !public.IsValid() {
		return public, private, fmt.Errorf("no free public address left in %s (one per server): delete servers or widen the range", b.cfg.PublicIPs)
	}
	// Private addresses from the top of the subnet: Docker hands out dynamic ones from the
	// bottom, so other containers on the network do not collide with ours.
	n := b.net.Subnet
	last := lastAddr(n)
	for a := last.Prev(); n.Contains(a) && a != n.Addr(); a = a.Prev() {
		if _, used := b.byPrivate[a]; used || a == b.net.Gateway {
			continue
		}
		private = a
		break
	}
	if !private.IsValid() {
		return public, private, fmt.Errorf("no free address left in the servers' network %s", n)
	}
	return public, private, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (b *ContainerBackend) server(id int64) (*containerServer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.servers[id]
	if !ok {
		return nil, fmt.Errorf("server %d has no container on network %s (created by another simulator, or removed behind its back)", id, b.cfg.Network)
	}
	return s, nil
}

// StartServer powers the server on (starts its container; systemd then boots) and plugs its
// private networks' interfaces.
func (b *ContainerBackend) StartServer(ctx context.Context, id int64) error {
	s, err := b.server(id)
	if err != nil {
		return err
	}
	if err := s.host.Start(ctx); err != nil {
		return err
	}
	return b.plugNetworks(ctx, id, false)
}

// StopServer stops the server for poweroff, reboot and reset: systemd gets its shutdown
// signal and up to 30 s before the container is killed.
func (b *ContainerBackend) StopServer(ctx context.Context, id int64) error {
	s, err := b.server(id)
	if err != nil {
		return err
	}
	return s.host.Stop(ctx)
}

// ShutdownServer asks the server's systemd to power off (ACPI): its units stop in order, Docker
// stops its containers with their own stop timeouts, filesystems are unmounted, then the
// container exits. WaitServerOff tells when.
func (b *ContainerBackend) ShutdownServer(ctx context.Context, id int64) error {
	s, err := b.server(id)
	if err != nil {
		return err
	}
	return s.host.Shutdown(ctx)
}

// WaitServerOff returns when the server's container has stopped (or is gone).
func (b *ContainerBackend) WaitServerOff(ctx context.Context, id int64) error {
	s, err := b.server(id)
	if err != nil {
		return nil
	}
	return s.host.WaitOff(ctx)
}

// MountedVolumes reads the server's mount table (/proc/<its init>/mountinfo) for filesystems on
// the devices of the volumes attached to it, and also reports a volume whose loop device is
// held exclusively while the server runs (a filesystem mounted in a namespace of the server
// that its init does not see, e.g. only inside a container).
func (b *ContainerBackend) MountedVolumes(ctx context.Context, id int64) ([]string, error) {
	m, err := b.mountedVolumes(ctx, id)
	var out []string
	for _, vid := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[vid])
	}
	return out, err
}

// MountedVolume is MountedVolumes for volume vid only ("" when the server has not mounted it).
func (b *ContainerBackend) MountedVolume(ctx context.Context, id, vid int64) (string, error) {
	m, err := b.mountedVolumes(ctx, id)
	return m[vid], err
}

// mountedVolumes says, per attached volume of server id that it has mounted, where.
func (b *ContainerBackend) mountedVolumes(ctx context.Context, id int64) (map[int64]string, error) {
	s, err := b.server(id)
	if err != nil {
		return nil, nil // no container: nothing is mounted
	}
	pid, err := s.host.InitPID(ctx)
	if errors.Is(err, simhost.ErrNotFound) || (err == nil && pid == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	var vols []int64
	for vid, sid := range b.attached {
		if sid == id {
			vols = append(vols, vid)
		}
	}
	b.mu.Unlock()
	devs := map[string]int64{} // "major:minor" -> volume
	loops := map[int64]string{}
	for _, vid := range vols {
		dev, ok, err := b.vols.store.LoopDevice(ctx, vid)
		if err != nil || !ok {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(dev, &st); err != nil {
			continue
		}
		devs[fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))] = vid
		loops[vid] = dev
	}
	if len(devs) == 0 {
		return nil, nil
	}
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil // it exited meanwhile
		}
		return nil, fmt.Errorf("read the mount table of server %d: %w", id, err)
	}
	out := map[int64]string{}
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if vid, ok := devs[f[2]]; ok {
			if out[vid] == "" {
				out[vid] = fmt.Sprintf("volume %d at %s", vid, f[4])
			} else {
				out[vid] += ", " + f[4]
			}
		}
	}
	for vid, dev := range loops {
		if out[vid] == "" && busy(dev) {
			out[vid] = fmt.Sprintf("volume %d (its device %s is held: mounted in a namespace of the server)", vid, dev)
		}
	}
	return out, nil
}

// DeleteServer removes the server's container and frees the loop devices of the volumes
// that were attached to it (the API detaches them). A running server is killed, not shut
// down: the power cut of a delete on Hetzner.
func (b *ContainerBackend) DeleteServer(ctx context.Context, id int64) error {
	s, err := b.server(id)
	if err != nil {
		b.log.Warn("delete server without a container", "server", id, "err", err)
		return nil
	}
	if err := s.host.Remove(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	var vols []int64
	for vid, sid := range b.attached {
		if sid == id {
			vols = append(vols, vid)
			delete(b.attached, vid)
		}
	}
	b.mu.Unlock()
	b.forget(id)
	b.mu.Lock()
	delete(b.nets, id)
	b.mu.Unlock()
	for _, vid := range vols {
		b.releaseLoop(ctx, vid)
	}
	return nil
}

// releaseLoop detaches a volume's loop device on this machine, waiting (bounded) for the
// kernel to drop the mounts of a removed container. A device that stays busy is left with
// autoclear: the kernel frees it when its last user closes it.
func (b *ContainerBackend) releaseLoop(ctx context.Context, vid int64) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.vols.store.Detach(ctx, vid)
		if err == nil {
			return
		}
		if !errors.Is(err, loopdev.ErrBusy) || time.Now().After(deadline) {
			b.log.Warn("release volume loop device", "volume", vid, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *ContainerBackend) CreateVolume(ctx context.Context, v VolumeSpec) error {
	return b.vols.create(ctx, v)
}

func (b *ContainerBackend) ResizeVolume(ctx context.Context, id int64, sizeGB int) error {
	return b.vols.resize(ctx, id, sizeGB)
}

func (b *ContainerBackend) DeleteVolume(ctx context.Context, id int64) error {
	return b.vols.delete(ctx, id)
}

// AttachVolume hot-plugs the volume's loop device into the server at
// /dev/disk/by-id/scsi-0HC_Volume_<id> (and records it for the server's later boots).
// automount is accepted and not performed.
func (b *ContainerBackend) AttachVolume(ctx context.Context, volumeID, serverID int64, _ bool) error {
	s, err := b.server(serverID)
	if err != nil {
		return err
	}
	dev, err := b.vols.attach(ctx, volumeID)
	if err != nil {
		return err
	}
	if err := s.host.AttachBlockDevice(ctx, dev, volumeDevicePath(volumeID)); err != nil {
		return err
	}
	b.mu.Lock()
	b.attached[volumeID] = serverID
	b.mu.Unlock()
	return nil
}

// DetachVolume removes the device from the server and frees the loop device. A volume still
// mounted in the server is refused (the kernel cannot take a mounted loop device away as
// Hetzner unplugs a disk): unmount it first.
func (b *ContainerBackend) DetachVolume(ctx context.Context, volumeID, serverID int64) error {
	s, err := b.server(serverID)
	if err != nil {
		return err
	}
	if dev, ok, err := b.vols.store.LoopDevice(ctx, volumeID); err == nil && ok {
		if busy(dev) {
			return fmt.Errorf("its device %s is in use in the server (mounted?): unmount it first", dev)
		}
	}
	if err := s.host.DetachBlockDevice(ctx, volumeDevicePath(volumeID)); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.attached, volumeID)
	b.mu.Unlock()
	if err := b.vols.store.Detach(ctx, volumeID); err != nil {
		return fmt.Errorf("detach volume %d from server %d: %w", volumeID, serverID, err)
	}
	return nil
}

// busy reports whether a block device is held exclusively (mounted, or in use by a
// device-mapper or md device): an O_EXCL open then fails with EBUSY.
func busy(dev string) bool {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return errors.Is(err, unix.EBUSY)
	}
	_ = unix.Close(fd)
	return false
}

// Restore reconnects to the containers of existing servers (their addresses are read back
// from Docker), brings back the loop devices of attached volumes and re-plugs them, and
// starts the containers of servers the state calls running (e.g. after this machine
// rebooted).
func (b *ContainerBackend) Restore(ctx context.Context, rs RestoreState) error {
	errs := []error{b.vols.ensureImages(ctx, rs.Volumes)}
	running := map[int64]bool{}
	for _, sv := range rs.Servers {
		if sv.ID == rs.LocalServerID {
			continue
		}
		h := &simhost.Host{ID: sv.ID, Container: simhost.ContainerName(b.cfg.Network, sv.ID)}
		public, private, err := containerAddrs(ctx, h.Container, b.cfg.Network)
		if err != nil {
			b.log.Warn("server has no usable container; it stays in the API without a host", "server", sv.ID, "err", err)
			continue
		}
		b.mu.Lock()
		b.servers[sv.ID] = &containerServer{host: h, public: public, private: private}
		b.byPrivate[private] = sv.ID
		b.mu.Unlock()
		running[sv.ID] = sv.Status == "running"
	}
	for _, v := range rs.Volumes {
		if v.Server == 0 {
			continue
		}
		if _, ok := running[v.Server]; !ok {
			continue
		}
		if err := b.AttachVolume(ctx, v.ID, v.Server, false); err != nil {
			errs = append(errs, fmt.Errorf("re-attach volume %d to server %d: %w", v.ID, v.Server, err))
		}
	}
	errs = append(errs, b.restoreNetworks(ctx, rs))
	for id, run := range running {
		if !run {
			continue
		}
		st, err := b.Host(id).State(ctx)
		if err == nil && st == simhost.StateOff {
			b.log.Info("starting the container of a running server", "server", id)
			if err := b.StartServer(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// containerAddrs reads a server container's published SSH address and its fixed address
// on network.
func containerAddrs(ctx context.Context, container, network string) (public, private netip.Addr, err error) {
	format := `{{range (index .HostConfig.PortBindings "22/tcp")}}{{.HostIp}}{{end}} ` +
		`{{with index .NetworkSettings.Networks "` + network + `"}}{{with .IPAMConfig}}{{.IPv4Address}}{{end}}{{end}}`
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "container", "inspect", "--format", format, container)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return public, private, fmt.Errorf("docker container inspect %s: %w: %s", container, err, strings.TrimSpace(stderr.String()))
	}
	f := strings.Fields(out.String())
	if len(f) != 2 {
		return public, private, fmt.Errorf("container %s: want a published SSH address and a fixed address on %s, got %q", container, network, out.String())
	}
	if public, err = netip.ParseAddr(f[0]); err != nil {
		return public, private, fmt.Errorf("container %s public address: %w", container, err)
	}
	if private, err = netip.ParseAddr(f[1]); err != nil {
		return public, private, fmt.Errorf("container %s private address: %w", container, err)
	}
	return public, private, nil
}

// ServerForRequest maps a request to the server whose private address it comes from (a
// process in the server asking 169.254.169.254 or the API on the gateway).
func (b *ContainerBackend) ServerForRequest(r *http.Request) (int64, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return 0, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.byPrivate[a.Unmap()]
	return id, ok
}

// Close removes the metadata route. The servers' containers keep running: they are the
// cloud, and the next simulator on the same state reconnects to them (Restore).
func (b *ContainerBackend) Close() error {
	b.mu.Lock()
	unroute := b.unroute
	b.unroute = nil
	b.mu.Unlock()
	if unroute == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return unroute(ctx)
}

// RemoveAll deletes every server container on the backend's network, frees the loop devices
// of every volume image and removes the network: what a test or a demo leaves behind.
// Volume images stay (they live in ImageDir). Call it after Close.
func (b *ContainerBackend) RemoveAll(ctx context.Context) error {
	errs := []error{simhost.RemoveAll(ctx, b.cfg.Network), simhost.RemovePrivateNetworks(ctx, b.cfg.Network)}
	entries, err := os.ReadDir(b.vols.store.Dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range entries {
		var id int64
		if _, err := fmt.Sscanf(e.Name(), "volume-%d.img", &id); err != nil || id <= 0 {
			continue
		}
		b.releaseLoop(ctx, id)
		if dev, ok, _ := b.vols.store.LoopDevice(ctx, id); ok {
			errs = append(errs, fmt.Errorf("volume %d: loop device %s is still in use", id, dev))
		}
	}
	b.mu.Lock()
	b.servers, b.byPrivate, b.attached = map[int64]*containerServer{}, map[netip.Addr]int64{}, map[int64]int64{}
	b.nets = map[int64]map[int64]PrivateNet{}
	b.mu.Unlock()
	if err := b.net.Remove(ctx); err != nil && !strings.Contains(err.Error(), "not found") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
