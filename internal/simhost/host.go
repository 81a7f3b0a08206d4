// Package simhost runs simulated Hetzner servers as containers on the local Docker engine:
// systemd as PID 1, sshd, cloud-init running the server's user_data from a NoCloud seed,
// Docker inside on a hot-plugged block device, and the metadata address 169.254.169.254
// routed to the simulator. See README.md for how they differ from real servers.
package simhost

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Labels on every server container.
const (
	labelServerID = "dockbridge-sim.server-id"
	labelNetwork  = "dockbridge-sim.network"
)

// capabilities is what a server container gets on top of Docker's default set. --privileged
// is not an option: it asks for every capability, and runc fails where the host's bounding set
// lacks one (CAP_SYS_RESOURCE on some VMs). SYS_ADMIN: systemd's mounts and namespaces, mount
// of volumes, Docker inside; NET_ADMIN: Docker's bridges and iptables inside (without it
// docker.service fails and systemd is degraded).
var capabilities = []string{"SYS_ADMIN", "NET_ADMIN"}

// Device is a host block device present in the server from its first boot.
type Device struct {
	HostPath string // e.g. /dev/loop3
	Path     string // in the server, e.g. /dev/disk/by-id/scsi-0HC_Volume_42
}

// Spec describes a server to create.
type Spec struct {
	ID         int64  // the server's ID; names the container
	Name       string // the server's name (metadata "hostname" when Hostname is empty)
	ImageKind  string // KindDockerCE or KindDebian12
	UserData   []byte // run by cloud-init on the first boot; may be empty
	PublicKeys []string
	// IPv4 is the server's public address: a loopback address (127.0.0.x) where the server's
	// port 22 is published.
	IPv4       netip.Addr
	SSHPort    int    // host port on IPv4 for the server's port 22; 0 means 22
	Hostname   string // defaults to Name
	InstanceID int64  // metadata instance-id; defaults to ID
	Network    string // Docker network; defaults to DefaultNetwork (see EnsureNetwork)
	// PrivateIP is the server's address on the network, chosen by Docker when unset. Set it
	// to know, before the server boots, which source address its metadata requests come from.
	PrivateIP netip.Addr
	Devices   []Device
	// Datasource is how cloud-init finds the server's metadata and user_data:
	// DatasourceNoCloud (the default) or DatasourceHetzner.
	Datasource string
	// Arch is the server's architecture: ArchAMD64 (default) or ArchARM64 (emulated).
	Arch string
}

// Datasources of cloud-init in a server.
const (
	// DatasourceNoCloud: the host writes meta-data (instance-id, local-hostname, public-keys)
	// and UserData into the NoCloud seed directory before the first boot. Needs nothing else.
	DatasourceNoCloud = "nocloud"
	// DatasourceHetzner: cloud-init's Hetzner datasource reads metadata (YAML) and user-data from
	// http://169.254.169.254/hetzner/v1/{metadata,userdata}, as on Hetzner Cloud, so the network's
	// metadata route (Network.RouteMetadata) must lead to a service that answers for this
	// server. Only its DMI check is simulated (vendor Hetzner, serial = InstanceID). UserData and
	// PublicKeys must be empty: the metadata service serves them.
	DatasourceHetzner = "hetzner"
)

// Host is a simulated server: one container.
type Host struct {
	ID        int64
	Container string // the container's name
}

// ContainerName is the container of server id on network.
func ContainerName(network string, id int64) string {
	if network == "" {
		network = DefaultNetwork
	}
	return fmt.Sprintf("%s-server-%d", network, id)
}

func (s *Spec) validate() error {
	if s.ID <= 0 {
		return fmt.Errorf("server ID %d: must be positive", s.ID)
	}
	if !s.IPv4.Is4() || !s.IPv4.IsLoopback() {
		return fmt.Errorf("server %d: IPv4 %q must be a loopback address such as 127.0.0.2, where its SSH port is published", s.ID, s.IPv4)
	}
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	if s.Hostname == "" {
		return fmt.Errorf("server %d: Name or Hostname is required", s.ID)
	}
	if s.InstanceID == 0 {
		s.InstanceID = s.ID
	}
	if s.SSHPort == 0 {
		s.SSHPort = 22
	}
	if s.Network == "" {
		s.Network = DefaultNetwork
	}
	switch s.Datasource {
	case "":
		s.Datasource = DatasourceNoCloud
	case DatasourceNoCloud:
	case DatasourceHetzner:
		if len(s.UserData) > 0 || len(s.PublicKeys) > 0 {
			return fmt.Errorf("server %d: with datasource %q, user_data and SSH keys come from the metadata service; leave Spec.UserData and Spec.PublicKeys empty", s.ID, s.Datasource)
		}
	default:
		return fmt.Errorf("server %d: unknown datasource %q (want %q or %q)", s.ID, s.Datasource, DatasourceNoCloud, DatasourceHetzner)
	}
	for _, d := range s.Devices {
		if err := checkDevicePath(d.Path); err != nil {
			return fmt.Errorf("server %d: %w", s.ID, err)
		}
	}
	return nil
}

// Create creates the server's container on its network (which must exist: EnsureNetwork),
// seeds cloud-init with its user_data and metadata, and starts it. The server then boots:
// State goes initializing -> starting -> running.
func Create(ctx context.Context, spec Spec) (*Host, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	image, err := ImageRefArch(spec.ImageKind, spec.Arch)
	if err != nil {
		return nil, err
	}
	if err := EnsureEmulation(ctx, spec.Arch); err != nil {
		return nil, fmt.Errorf("create server %d: %w", spec.ID, err)
	}
	if spec.Arch == ArchARM64 {
		if _, _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", image); err != nil {
			return nil, fmt.Errorf("create server %d: the simulated arm64 server image %s is missing: build it with `make sim-image-arm64` (about 20 minutes)", spec.ID, image)
		}
	}
	h := &Host{ID: spec.ID, Container: ContainerName(spec.Network, spec.ID)}
	args := []string{"create", "--name", h.Container, "--hostname", spec.Hostname,
		"--label", labelServerID + "=" + strconv.FormatInt(spec.ID, 10),
		"--label", labelNetwork + "=" + spec.Network,
		"--network", spec.Network,
		// systemd halts on SIGRTMIN+3 (docker import cannot set STOPSIGNAL).
		"--stop-signal", rtSignal(spec.Arch, 3),
		"--publish", fmt.Sprintf("%s:%d:22", spec.IPv4, spec.SSHPort),
		// Docker inside needs syscalls the default profile refuses (systemd alone does not).
		"--security-opt", "seccomp=unconfined",
		// Hosts with AppArmor (Ubuntu) would confine mount otherwise.
		"--security-opt", "apparmor=unconfined",
		// systemd needs a writable cgroup tree; it then runs in the container's own cgroup
		// (/docker/<id>). A private cgroup namespace makes it fail. It mounts /run (tmpfs)
		// itself, thanks to SYS_ADMIN.
		"--cgroupns", "host",
		"--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
		// Every device, as on a VM: loop devices (volumes) are hot-plugged later, and a
		// managed Docker plugin with allowAllDevices (the hetzner volume plugin) makes runc
		// write "a *:* rwm" into its nested devices cgroup, which cgroup v1 refuses (EPERM)
		// unless every ancestor allows all devices. The container only sees the device
		// nodes it is given or that are created in it.
		"--device-cgroup-rule", "a *:* rwm",
	}
	for _, c := range capabilities {
		args = append(args, "--cap-add", c)
	}
	for _, d := range spec.Devices {
		args = append(args, "--device", d.HostPath+":"+d.Path+":rwm")
	}
	if spec.PrivateIP.IsValid() {
		args = append(args, "--ip", spec.PrivateIP.String())
	}
	args = append(args, image)
	if _, _, err := docker(ctx, args...); err != nil {
		return nil, fmt.Errorf("create server %d: %w", spec.ID, err)
	}
	if err := h.seed(ctx, spec); err != nil {
		_ = h.Remove(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := h.Start(ctx); err != nil {
		_ = h.Remove(context.WithoutCancel(ctx))
		return nil, err
	}
	return h, nil
}

// seed writes what cloud-init needs to find the server's data into the created container.
func (h *Host) seed(ctx context.Context, spec Spec) error {
	var files []file
	switch spec.Datasource {
	case DatasourceHetzner:
		files = []file{
			{"etc/cloud/cloud.cfg.d/95_dockbridge_datasource.cfg", []byte("datasource_list: [HetznerSim, None]\n")},
			{"etc/dockbridge-sim/dmi/system-manufacturer", []byte("Hetzner\n")},
			{"etc/dockbridge-sim/dmi/system-serial-number", []byte(strconv.FormatInt(spec.InstanceID, 10) + "\n")},
		}
	default:
		var meta strings.Builder
		fmt.Fprintf(&meta, "instance-id: %d\nlocal-hostname: %s\n", spec.InstanceID, spec.Hostname)
		if len(spec.PublicKeys) > 0 {
			meta.WriteString("public-keys:\n")
			for _, k := range spec.PublicKeys {
				fmt.Fprintf(&meta, "  - %s\n", strconv.Quote(strings.TrimSpace(k)))
			}
		}
		files = []file{
			{"var/lib/cloud/seed/nocloud/meta-data", []byte(meta.String())},
			{"var/lib/cloud/seed/nocloud/user-data", spec.UserData},
			{"var/lib/cloud/seed/nocloud/vendor-data", nil},
		}
	}
	if err := h.copyIn(ctx, files...); err != nil {
		return fmt.Errorf("seed cloud-init of server %d: %w", h.ID, err)
	}
	return nil
}

type file struct {
	name string // relative to /
	data []byte
}

// copyIn writes files (mode 0600, parent directories 0755) into the container, running or not.
func (h *Host) copyIn(ctx context.Context, files ...file) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dirs := map[string]bool{}
	for _, f := range files {
		// Parent directories first, each once (docker cp keeps existing ones as they are).
		parts := strings.Split(path.Dir(f.name), "/")
		for i := range parts {
			dir := strings.Join(parts[:i+1], "/") + "/"
			if dirs[dir] {
				continue
			}
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: now}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	_, _, err := dockerIn(ctx, &buf, "cp", "-", h.Container+":/")
	return err
}

// RemoveAll removes every server container on network (a simulator's leftovers).
func RemoveAll(ctx context.Context, network string) error {
	if network == "" {
		network = DefaultNetwork
	}
	out, _, err := docker(ctx, "ps", "--all", "--quiet", "--filter", "label="+labelNetwork+"="+network)
	if err != nil {
		return fmt.Errorf("list servers on network %s: %w", network, err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return nil
	}
	if _, _, err := docker(ctx, append([]string{"rm", "--force", "--volumes"}, ids...)...); err != nil {
		return fmt.Errorf("remove servers on network %s: %w", network, err)
	}
	return nil
}

// ErrNotFound: the server's container does not exist.
var ErrNotFound = errors.New("simulated server container not found")

func (h *Host) inspect(ctx context.Context, format string) (string, error) {
	out, _, err := docker(ctx, "container", "inspect", "--format", format, h.Container)
	if err != nil {
		if strings.Contains(err.Error(), "No such") {
			return "", fmt.Errorf("server %d (%s): %w", h.ID, h.Container, ErrNotFound)
		}
		return "", fmt.Errorf("inspect server %d: %w", h.ID, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Start boots the server (its container).
func (h *Host) Start(ctx context.Context) error {
	if _, _, err := docker(ctx, "start", h.Container); err != nil {
		return fmt.Errorf("start server %d: %w", h.ID, err)
	}
	return nil
}

// Stop shuts the server down: systemd gets SIGRTMIN+3 and up to
// 30s to stop its units, like an ACPI shutdown.
func (h *Host) Stop(ctx context.Context) error {
	if _, _, err := docker(ctx, "stop", "--time", "30", h.Container); err != nil {
		return fmt.Errorf("stop server %d: %w", h.ID, err)
	}
	return nil
}

// rtSignal is the signal to send from this machine for systemd's SIGRTMIN+n on a server of
// arch (3: halt, 4: poweroff). qemu-user keeps the two lowest real-time signals for itself and
// delivers host SIGRTMIN+n as the emulated program's SIGRTMIN+n-2: SIGRTMIN+4 sent to an arm64
// server's systemd arrived as SIGRTMIN+2 (emergency.target), so it never powered off.
func rtSignal(arch string, n int) string {
	if arch == ArchARM64 {
		n += 2
	}
	return fmt.Sprintf("SIGRTMIN+%d", n)
}

// Shutdown asks the server's systemd to power off, as the ACPI power button does on a VM
// (SIGRTMIN+4: poweroff.target, every unit stopped in order, then the container exits), and
// returns at once. A stopped server is left as it is. WaitOff tells when it is off; a system
// that refuses to power off (poweroff.target masked) keeps running.
func (h *Host) Shutdown(ctx context.Context) error {
	if !h.running(ctx) {
		return nil
	}
	sig := rtSignal(ArchAMD64, 4)
	if out, _, err := docker(ctx, "inspect", "-f", "{{.Config.StopSignal}}", h.Container); err == nil && strings.TrimSpace(string(out)) == rtSignal(ArchARM64, 3) {
		sig = rtSignal(ArchARM64, 4) // an emulated server (its stop signal says so)
	}
	if _, _, err := docker(ctx, "kill", "--signal", sig, h.Container); err != nil {
		if !h.running(ctx) {
			return nil // it stopped meanwhile
		}
		return fmt.Errorf("shut down server %d: %w", h.ID, err)
	}
	return nil
}

// WaitOff returns when the server's container is not running (at once if it is not), or
// ctx's error. A removed container counts as off.
func (h *Host) WaitOff(ctx context.Context) error {
	if _, _, err := docker(ctx, "wait", h.Container); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if h.running(ctx) {
			return fmt.Errorf("wait for server %d to power off: %w", h.ID, err)
		}
	}
	return nil
}

// InitPID is the host's process id of the server's init (systemd), 0 when it is not running.
// /proc/<pid>/mountinfo is then the server's own mount table.
func (h *Host) InitPID(ctx context.Context) (int, error) {
	out, err := h.inspect(ctx, "{{.State.Pid}}")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(out)
}

// Remove deletes the server's container (running or not) and its anonymous volumes. A
// running server gets no shutdown: every process in it is killed (SIGKILL), like the power
// cut of a delete on Hetzner. Block devices are the caller's: they are not touched.
func (h *Host) Remove(ctx context.Context) error {
	if _, _, err := docker(ctx, "rm", "--force", "--volumes", h.Container); err != nil {
		if strings.Contains(err.Error(), "No such") {
			return nil
		}
		return fmt.Errorf("remove server %d: %w", h.ID, err)
	}
	return nil
}

// State is a server's state, named like Hetzner's server status.
type State string

const (
	StateInitializing State = "initializing" // container created, never started
	StateStarting     State = "starting"     // container running, systemd still booting
	StateRunning      State = "running"      // systemd reached running (or degraded)
	StateStopping     State = "stopping"     // systemd shutting down
	StateOff          State = "off"          // container stopped
)

// State reports the server's state from its container and, while it runs, systemd.
func (h *Host) State(ctx context.Context) (State, error) {
	out, err := h.inspect(ctx, "{{.State.Status}} {{.State.StartedAt}}")
	if err != nil {
		return "", err
	}
	status, started, _ := strings.Cut(out, " ")
	switch status {
	case "created":
		return StateInitializing, nil
	case "running", "restarting":
	case "paused":
		return StateRunning, nil
	default: // exited, dead, removing
		if status == "exited" && strings.HasPrefix(started, "0001-") {
			return StateInitializing, nil
		}
		return StateOff, nil
	}
	sys, _ := h.systemState(ctx)
	switch sys {
	case "running", "degraded", "maintenance":
		return StateRunning, nil
	case "stopping":
		return StateStopping, nil
	default: // initializing, starting, offline (systemd not answering yet)
		return StateStarting, nil
	}
}

func (h *Host) systemState(ctx context.Context) (string, error) {
	out, _, err := h.Exec(ctx, "systemctl", "is-system-running")
	// is-system-running exits non-zero for every state but "running".
	return strings.TrimSpace(string(out)), err
}

// WaitRunning waits until systemd has booted. It returns an error naming the failed units if
// systemd ends up degraded.
func (h *Host) WaitRunning(ctx context.Context) error {
	for {
		st, err := h.systemState(ctx)
		switch st {
		case "running":
			return nil
		case "degraded":
			out, _, _ := h.Exec(ctx, "systemctl", "--failed", "--no-legend", "--plain")
			return fmt.Errorf("server %d booted degraded; failed units:\n%s", h.ID, out)
		case "maintenance", "stopping":
			return fmt.Errorf("server %d: systemd is %s", h.ID, st)
		}
		if errors.Is(err, ErrNotFound) {
			return err
		}
		var ee *ExecError
		if err != nil && !errors.As(err, &ee) && !h.running(ctx) {
			return fmt.Errorf("wait for server %d to boot: its container is not running", h.ID)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for server %d to boot (systemd %q): %w", h.ID, st, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitCloudInit waits until cloud-init has finished and returns an error with its status if
// it failed.
func (h *Host) WaitCloudInit(ctx context.Context) error {
	for {
		out, _, err := h.Exec(ctx, "cloud-init", "status", "--wait", "--long")
		if err == nil {
			return nil
		}
		var ee *ExecError
		if errors.As(err, &ee) && ee.ExitCode > 0 && strings.Contains(string(out), "status:") &&
			!strings.Contains(string(out), "status: not run") {
			return fmt.Errorf("cloud-init on server %d failed: %s", h.ID, out)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for cloud-init on server %d: %w", h.ID, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PrivateIP is the server's address on its Docker network: the source address of its requests
// to the metadata service and to services on the network's gateway.
func (h *Host) PrivateIP(ctx context.Context) (netip.Addr, error) {
	out, err := h.inspect(ctx, "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}")
	if err != nil {
		return netip.Addr{}, err
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return netip.Addr{}, fmt.Errorf("server %d has no private address (is it running?)", h.ID)
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("server %d private address: %w", h.ID, err)
	}
	return a, nil
}

// ExecError is a command in the server that ran and failed.
type ExecError struct {
	Cmd      []string
	ExitCode int
	Stderr   []byte
}

func (e *ExecError) Error() string {
	return fmt.Sprintf("%s exited %d: %s", strings.Join(e.Cmd, " "), e.ExitCode, bytes.TrimSpace(e.Stderr))
}

// Exec runs cmd as root in the server (docker exec, no TTY) and returns its output. A command
// that exits non-zero gives an *ExecError; a missing server gives ErrNotFound.
func (h *Host) Exec(ctx context.Context, cmd ...string) (stdout, stderr []byte, err error) {
	return h.ExecInput(ctx, nil, cmd...)
}

// ExecInput is Exec with stdin.
func (h *Host) ExecInput(ctx context.Context, stdin []byte, cmd ...string) (stdout, stderr []byte, err error) {
	args := []string{"exec"}
	if stdin != nil {
		args = append(args, "-i")
	}
	args = append(append(args, h.Container), cmd...)
	var in *bytes.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	c := exec.CommandContext(ctx, "docker", args...)
	if in != nil {
		c.Stdin = in
	}
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	if err == nil {
		return o.Bytes(), e.Bytes(), nil
	}
	var xe interface{ ExitCode() int }
	if errors.As(err, &xe) {
		code := xe.ExitCode()
		msg := e.String()
		switch {
		case strings.Contains(msg, "No such container"):
			return o.Bytes(), e.Bytes(), fmt.Errorf("exec in server %d (%s): %w", h.ID, h.Container, ErrNotFound)
		case code == 126 || code == 127 || strings.Contains(msg, "is not running"):
			// docker's own failure (not running, command not found): not the command's.
			return o.Bytes(), e.Bytes(), fmt.Errorf("exec %s in server %d: %s", strings.Join(cmd, " "), h.ID, strings.TrimSpace(msg))
		}
		return o.Bytes(), e.Bytes(), &ExecError{Cmd: cmd, ExitCode: code, Stderr: e.Bytes()}
	}
	return o.Bytes(), e.Bytes(), fmt.Errorf("exec %s in server %d: %w", strings.Join(cmd, " "), h.ID, err)
}

// AttachBlockDevice attaches hostDevice (a loop device) to the server as a block device node at
// pathInHost, e.g. /dev/disk/by-id/scsi-0HC_Volume_42: at once if the server runs (hot-plug),
// and on every later boot before cloud-init, like a Hetzner volume stays attached across
// reboots (the image's dockbridge-sim-devices.service recreates the node from a record in
// /etc/dockbridge-sim/devices.d). The container's device cgroup permits loop devices (major 7);
// other majors are refused.
func (h *Host) AttachBlockDevice(ctx context.Context, hostDevice, pathInHost string) error {
	var st unix.Stat_t
	if err := unix.Stat(hostDevice, &st); err != nil {
		return fmt.Errorf("attach %s to server %d: %w", hostDevice, h.ID, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("attach %s to server %d: not a block device", hostDevice, h.ID)
	}
	major, minor := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)) // dev_t: uint64 on Linux, int32 on macOS
	if major != 7 {
		return fmt.Errorf("attach %s to server %d: major %d is not a loop device (7); servers accept only loop devices", hostDevice, h.ID, major)
	}
	if err := checkDevicePath(pathInHost); err != nil {
		return fmt.Errorf("attach %s to server %d: %w", hostDevice, h.ID, err)
	}
	record := file{deviceRecord(pathInHost), fmt.Appendf(nil, "%s %d %d\n", pathInHost, major, minor)}
	if err := h.copyIn(ctx, record); err != nil {
		return fmt.Errorf("attach %s to server %d: record the attachment: %w", hostDevice, h.ID, err)
	}
	if !h.running(ctx) {
		return nil // the node appears on the next boot
	}
	// The node is made under a temporary name and renamed over the path: the image's boot unit
	// (dockbridge-sim-devices) may be making the same node from the record at this moment.
	script := `set -e; d="$(dirname "$1")"; mkdir -p "$d"; t="$d/.attach.$$"; rm -f "$t"; mknod -m 0660 "$t" b "$2" "$3"; chgrp disk "$t" 2>/dev/null || true; mv -f "$t" "$1"`
	if _, _, err := h.Exec(ctx, "sh", "-c", script, "attach", pathInHost, fmt.Sprint(major), fmt.Sprint(minor)); err != nil {
		return fmt.Errorf("attach %s to server %d at %s: %w", hostDevice, h.ID, pathInHost, err)
	}
	return nil
}

// DetachBlockDevice removes the device node pathInHost from the server, now if it runs and for
// later boots. Like pulling a disk, it does not unmount; unlike on Hetzner, a filesystem still
// mounted stays usable until unmounted (the kernel keeps the loop device open).
func (h *Host) DetachBlockDevice(ctx context.Context, pathInHost string) error {
	if err := checkDevicePath(pathInHost); err != nil {
		return fmt.Errorf("detach from server %d: %w", h.ID, err)
	}
	// An empty record: docker cp cannot delete, and the boot script skips empty records.
	if err := h.copyIn(ctx, file{deviceRecord(pathInHost), nil}); err != nil {
		return fmt.Errorf("detach %s from server %d: %w", pathInHost, h.ID, err)
	}
	if !h.running(ctx) {
		return nil
	}
	if _, _, err := h.Exec(ctx, "rm", "-f", pathInHost); err != nil {
		return fmt.Errorf("detach %s from server %d: %w", pathInHost, h.ID, err)
	}
	return nil
}

func checkDevicePath(p string) error {
	if !strings.HasPrefix(p, "/dev/") || path.Clean(p) != p || strings.ContainsAny(p, " \n") {
		return fmt.Errorf("device path %q must be a clean path under /dev/ without spaces", p)
	}
	return nil
}

// deviceRecord is the file, relative to /, that records an attachment at device path p.
func deviceRecord(p string) string {
	return "etc/dockbridge-sim/devices.d/" + strings.ReplaceAll(strings.TrimPrefix(p, "/dev/"), "/", "-")
}

func (h *Host) running(ctx context.Context) bool {
	st, err := h.inspect(ctx, "{{.State.Running}}")
	return err == nil && st == "true"
}
