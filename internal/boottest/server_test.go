package boottest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/dockbridge/dockbridge/cloudinit"
)

// bootTimeout bounds one boot (create call to cloud-init done); the install path downloads
// Docker from Debian's mirrors.
const bootTimeout = 6 * time.Minute

// booted is a server created through the API that has finished cloud-init.
type booted struct {
	*hcloud.Server
	ssh  *ssh.Client
	keys Keys
	// cloudInit is the output of `cloud-init status --long` once it has finished; ok tells
	// whether it succeeded.
	cloudInit string
	ok        bool
	toSSH     time.Duration // create call -> SSH answers with the pinned key
	toReady   time.Duration // create call -> cloud-init finished
}

// bootTimes collects create->ready times of successful boots for the report.
var bootTimes struct {
	sync.Mutex
	ssh, ready []time.Duration
}

type bootOpts struct {
	image   string // docker-ce (default) or debian-12
	volumes []*hcloud.Volume
	// edit changes the rendered Params (the data volume is the first of volumes unless set).
	edit func(*cloudinit.Params)
}

// boot renders dockbridge's user-data, creates a server through the API (hcloud-go) with
// it, waits until SSH answers with the pinned host key and cloud-init has finished.
func (e *Env) boot(t testing.TB, name string, o bootOpts) *booted {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	if o.image == "" {
		o.image = "docker-ce"
	}
	keys, err := NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	p := cloudinit.Params{EnvName: "boottest", AuthorizedKeys: []string{keys.ClientAuthorized}, HostKeys: []cloudinit.HostKey{keys.Host}}
	if len(o.volumes) > 0 {
		p.Volume.ID = o.volumes[0].ID
	}
	if o.edit != nil {
		o.edit(&p)
	}
	userData, err := cloudinit.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Client()
	key, _, err := c.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: name + "-key", PublicKey: keys.ClientAuthorized})
	if err != nil {
		t.Fatalf("create ssh key: %v", err)
	}
	start := time.Now()
	res, _, err := c.Server.Create(ctx, hcloud.ServerCreateOpts{
		Name: name, ServerType: &hcloud.ServerType{Name: "cx23"}, Image: &hcloud.Image{Name: o.image},
		Location: &hcloud.Location{Name: "fsn1"}, SSHKeys: []*hcloud.SSHKey{key}, UserData: string(userData),
		Volumes: o.volumes, Labels: map[string]string{"managed-by": "dockbridge"},
	})
	if err != nil {
		t.Fatalf("create server %s: %v", name, err)
	}
	if err := c.Action.WaitFor(ctx, append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatalf("create server %s: %v", name, err)
	}
	sv, _, err := c.Server.GetByID(ctx, res.Server.ID)
	if err != nil || sv == nil {
		t.Fatalf("get server %d: %v", res.Server.ID, err)
	}
	if sv.Status != hcloud.ServerStatusRunning {
		t.Fatalf("server %s is %s after its actions, want running", name, sv.Status)
	}
	ip := sv.PublicNet.IPv4.IP
	if ip == nil || !ip.IsLoopback() {
		t.Fatalf("server %s public IPv4 %v: want the loopback address its SSH port is published on", name, ip)
	}
	b := &booted{Server: sv, keys: keys}
	addr := ip.String() + ":22"
	var lastErr error
	for b.ssh == nil {
		if b.ssh, lastErr = DialSSH(ctx, addr, keys); lastErr == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server %s: SSH on %s never answered with the pinned host key: %v\n%s", name, addr, lastErr, e.diagnose(sv.ID))
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Cleanup(func() { b.ssh.Close() })
	b.toSSH = time.Since(start)
	// Exit 0: done; 1: error (cloud-init 22.4, Debian 12); 2: recoverable errors (newer).
	out, err := Run(b.ssh, "cloud-init status --wait --long")
	b.cloudInit, b.ok = out, err == nil
	b.toReady = time.Since(start)
	if b.ok {
		bootTimes.Lock()
		bootTimes.ssh = append(bootTimes.ssh, b.toSSH)
		bootTimes.ready = append(bootTimes.ready, b.toReady)
		bootTimes.Unlock()
	}
	t.Logf("server %s (%d, %s, %s): SSH after %v, cloud-init finished after %v (ok=%v)", name, sv.ID, o.image, ip,
		b.toSSH.Round(time.Millisecond), b.toReady.Round(time.Millisecond), b.ok)
	return b
}

// diagnose is what a failed boot leaves in its container, for the failure message.
func (e *Env) diagnose(id int64) string {
	h := e.Backend.Host(id)
	if h == nil {
		return "(no container)"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, stderr, _ := h.Exec(ctx, "sh", "-c", "systemctl --failed --no-pager; cloud-init status --long; tail -n 30 /var/log/cloud-init-output.log; journalctl -u ssh -n 20 --no-pager")
	return string(out) + string(stderr)
}

func (b *booted) run(t testing.TB, cmd string) string {
	t.Helper()
	out, err := Run(b.ssh, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// succeeded fails the test unless cloud-init and the setup succeeded.
func (b *booted) succeeded(t testing.TB) {
	t.Helper()
	if !b.ok {
		t.Fatalf("cloud-init on %s failed:\n%s\nfailure marker: %s\nsetup log:\n%s", b.Name, b.cloudInit,
			b.runAny(cloudinit.FailedMarkerPath), b.runAny(cloudinit.SetupLogPath))
	}
	b.run(t, "test -s "+cloudinit.CompleteMarkerPath)
	b.run(t, "test ! -e "+cloudinit.FailedMarkerPath)
}

// runAny reads a file on the server, whatever happens.
func (b *booted) runAny(path string) string {
	out, _ := Run(b.ssh, "cat "+path)
	return out
}

// dockerOnVolume checks that /var/lib/docker is the mount of the volume's device, with
// filesystem fs, and that Docker runs overlay2 with its root dir there. It returns the
// filesystem UUID.
func (b *booted) dockerOnVolume(t *testing.T, volumeID int64, fs string) string {
	t.Helper()
	dev := fmt.Sprintf("%s%d", cloudinit.DeviceByIDPrefix, volumeID)
	mnt := strings.Fields(b.run(t, "findmnt -n -o MAJ:MIN,FSTYPE,UUID /var/lib/docker"))
	devNum := b.run(t, "stat -L -c '%t:%T' "+dev) // hex
	var maj, mnr int
	if _, err := fmt.Sscanf(devNum, "%x:%x", &maj, &mnr); err != nil {
		t.Fatalf("stat %s: %q", dev, devNum)
	}
	if len(mnt) != 3 || mnt[0] != fmt.Sprintf("%d:%d", maj, mnr) || mnt[1] != fs {
		t.Fatalf("/var/lib/docker is %v (MAJ:MIN FSTYPE UUID), want the volume's device %s (%d:%d) with %s", mnt, dev, maj, mnr, fs)
	}
	info := b.run(t, "docker info --format '{{.Driver}} {{.DockerRootDir}}'")
	if info != "overlay2 /var/lib/docker" {
		t.Fatalf("docker info: %q, want overlay2 with root dir /var/lib/docker", info)
	}
	// Docker's own files are on the volume, not under it on the root disk.
	b.run(t, "test \"$(stat -c %d /var/lib/docker/overlay2)\" = \"$(stat -c %d /var/lib/docker)\"")
	return mnt[2]
}

// lastHealth runs the health check now and parses the health log's last line.
func (b *booted) lastHealth(t *testing.T) cloudinit.HealthRecord {
	t.Helper()
	_, _ = Run(b.ssh, cloudinit.HealthCheckPath) // exits non-zero on WARNING/CRITICAL
	line := b.run(t, "tail -n 1 "+cloudinit.HealthLogPath)
	rec, err := cloudinit.ParseHealthLine(line)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// dockerDown checks that Docker is not running at all on the server (so it cannot be
// running on the root disk).
func (b *booted) dockerDown(t *testing.T) {
	t.Helper()
	if out, err := Run(b.ssh, "systemctl is-active docker.service"); err == nil {
		t.Fatalf("docker.service is %s, want it stopped", strings.TrimSpace(out))
	}
	if out, err := Run(b.ssh, "pgrep -a dockerd"); err == nil {
		t.Fatalf("dockerd runs: %s", out)
	}
}

// failedWith checks the failure marker and the setup log name reason, and no completion
// marker exists.
func (b *booted) failedWith(t *testing.T, reason string) {
	t.Helper()
	if b.ok {
		t.Fatalf("cloud-init on %s succeeded, want a failure (%q):\n%s", b.Name, reason, b.cloudInit)
	}
	marker := b.runAny(cloudinit.FailedMarkerPath)
	if !strings.Contains(marker, "REASON=") || !strings.Contains(marker, reason) {
		t.Fatalf("failure marker %s = %q, want a REASON containing %q", cloudinit.FailedMarkerPath, marker, reason)
	}
	if log := b.runAny(cloudinit.SetupLogPath); !strings.Contains(log, "FAILED: ") || !strings.Contains(log, reason) {
		t.Fatalf("setup log does not say why (%q):\n%s", reason, log)
	}
	if _, err := Run(b.ssh, "test -e "+cloudinit.CompleteMarkerPath); err == nil {
		t.Fatalf("%s exists after a failed setup", cloudinit.CompleteMarkerPath)
	}
}

func (e *Env) volume(t testing.TB, name string, format string) *hcloud.Volume {
	t.Helper()
	opts := hcloud.VolumeCreateOpts{Name: name, Size: 10, Location: &hcloud.Location{Name: "fsn1"},
		Labels: map[string]string{"managed-by": "dockbridge"}}
	if format != "" {
		opts.Format = hcloud.Ptr(format)
	}
	res, _, err := e.Client().Volume.Create(t.Context(), opts)
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	if err := e.Client().Action.WaitFor(t.Context(), append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	return res.Volume
}

func (e *Env) deleteServer(t testing.TB, s *booted) {
	t.Helper()
	s.ssh.Close()
	c := e.Client()
	res, _, err := c.Server.DeleteWithResult(t.Context(), s.Server)
	if err != nil {
		t.Fatalf("delete server %s: %v", s.Name, err)
	}
	if err := c.Action.WaitFor(t.Context(), res.Action); err != nil {
		t.Fatalf("delete server %s: %v", s.Name, err)
	}
	if h := e.Backend.Host(s.ID); h != nil {
		t.Fatalf("server %d still has a container after delete", s.ID)
	}
}

// dataHash hashes the non-zero 4 KiB blocks of an image with their offsets: two images hash
// the same exactly when their content does, whatever is allocated; only the allocated
// extents (SEEK_DATA) are read, so a sparse 10 GiB image is quick.
func dataHash(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	h := sha256.New()
	zero := make([]byte, 4096)
	buf := make([]byte, 4096)
	var off int64
	for off < fi.Size() {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data after off
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		for b := data &^ 4095; b < hole; b += 4096 {
			n, err := f.ReadAt(buf, b)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], zero[:n]) {
				fmt.Fprintf(h, "@%d:", b)
				h.Write(buf[:n])
			}
		}
		off = hole
	}
	return hex.EncodeToString(h.Sum(nil))
}

func blkidUUID(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", path).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid -p %s: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

func runInput(c *ssh.Client, stdin []byte, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	s.Stdin = bytes.NewReader(stdin)
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		return string(out), fmt.Errorf("ssh %q: %w: %s", cmd, err, out)
	}
	return string(out), nil
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// notMounted checks that nothing is mounted at /var/lib/docker.
func (b *booted) notMounted(t *testing.T) {
	t.Helper()
	if out, err := Run(b.ssh, "mountpoint /var/lib/docker"); err == nil {
		t.Fatalf("/var/lib/docker is mounted: %s", out)
	}
}

// reconnect dials the server again after a reboot (same pinned host key).
func (b *booted) reconnect(t *testing.T) {
	t.Helper()
	b.ssh.Close()
	ctx, cancel := context.WithTimeout(t.Context(), bootTimeout)
	defer cancel()
	addr := b.PublicNet.IPv4.IP.String() + ":22"
	for {
		c, err := DialSSH(ctx, addr, b.keys)
		if err == nil {
			b.ssh = c
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server %s: SSH after reboot: %v", b.Name, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	// Wait for the boot to settle before looking at services.
	_, _ = Run(b.ssh, "systemctl is-system-running --wait")
}

func shIn(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
