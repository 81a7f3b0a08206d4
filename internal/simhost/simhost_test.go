package simhost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/testenv"
	"github.com/dockbridge/dockbridge/internal/testimage"

	"github.com/dockbridge/dockbridge/internal/mount/loopdev/loopdevtest"
	"github.com/dockbridge/dockbridge/simimage"
)

// requireHost fails the test (skips it under -short) unless root, a Docker engine and the
// tools the servers need are there.
func requireHost(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		missing = append(missing, "a Docker engine (docker info: "+err.Error()+")")
	}
	for _, tool := range []string{"iptables", "debootstrap", "zstd", "ssh", "ssh-keygen", "ssh-keyscan", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	testenv.Require(t, "simulated servers need", missing)
}

func TestRecipeHashMatchesScript(t *testing.T) {
	out, err := exec.Command("bash", "../../simimage/build.sh", "--print-hash").CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh --print-hash: %v: %s", err, out)
	}
	want, err := simimage.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("build.sh hashes the recipe as %s, simimage.Hash() as %s: a file in simimage/ is missing from the go:embed list, or the two hash functions differ", got, want)
	}
	ref, err := ImageRef(KindDockerCE)
	if err != nil || ref != "dockbridge-sim/docker-ce:"+want {
		t.Fatalf("ImageRef(docker-ce) = %q, %v", ref, err)
	}
	if _, err := ImageRef("ubuntu-24.04"); err == nil || !strings.Contains(err.Error(), `"docker-ce"`) {
		t.Fatalf("ImageRef(ubuntu-24.04) error = %v, want one naming the known kinds", err)
	}
}

// TestBuildScriptMirrorFromApt: the images are built from the Debian mirror apt is
// configured with (deb822 and one-line sources, disabled and deb-src entries skipped), and
// build.sh stops with a clear message when apt has none; no mirror host is built in.
func TestBuildScriptMirrorFromApt(t *testing.T) {
	dir := t.TempDir()
	parts := dir + "/sources.list.d"
	if err := os.MkdirAll(parts, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(parts+"/a.sources", `# a comment
Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Enabled: no

Types: deb
URIs: http://mirror.example/debian/ http://second.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
`)
	write(dir+"/sources.list", "# deb http://commented.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://line.example/debian bookworm main\n")
	run := func(sourcelist, env string) (string, error) {
		conf := dir + "/apt.conf"
		write(conf, fmt.Sprintf("Dir::Etc::sourcelist %q;\nDir::Etc::sourceparts %q;\n", sourcelist, parts))
		cmd := exec.Command("bash", "../../simimage/build.sh", "--print-mirror")
		cmd.Env = append(os.Environ(), "APT_CONFIG="+conf)
		if env != "" {
			cmd.Env = append(cmd.Env, env)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct{ sourcelist, env, want string }{
		{dir + "/sources.list", "", "mirror http://line.example/debian\nsecurity http://security.example/debian-security\n"},
		{dir + "/none", "", "mirror http://mirror.example/debian\nsecurity http://security.example/debian-security\n"},
		{dir + "/none", "DOCKBRIDGE_SIM_MIRROR=http://chosen.example/debian", "mirror http://chosen.example/debian\nsecurity http://security.example/debian-security\n"},
	} {
		out, err := run(tc.sourcelist, tc.env)
		if err != nil || out != tc.want {
			t.Errorf("sources %s %s: %v\n%s\nwant\n%s", tc.sourcelist, tc.env, err, out, tc.want)
		}
	}
	if err := os.Remove(parts + "/a.sources"); err != nil {
		t.Fatal(err)
	}
	out, err := run(dir+"/none", "")
	if err == nil || !strings.Contains(out, "apt has no Debian source for bookworm") || strings.Contains(out, "mirror http") {
		t.Errorf("without any apt source: %v\n%s\nwant a failure saying apt has no Debian source", err, out)
	}
}

func TestSpecValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"no id", Spec{Name: "a", IPv4: netip.MustParseAddr("127.0.0.2")}, "must be positive"},
		{"public address", Spec{ID: 1, Name: "a", IPv4: netip.MustParseAddr("192.0.2.1")}, "loopback"},
		{"no address", Spec{ID: 1, Name: "a"}, "loopback"},
		{"no name", Spec{ID: 1, IPv4: netip.MustParseAddr("127.0.0.2")}, "Name or Hostname"},
		{"device outside /dev", Spec{ID: 1, Name: "a", IPv4: netip.MustParseAddr("127.0.0.2"),
			Devices: []Device{{HostPath: "/dev/loop0", Path: "/mnt/x"}}}, "under /dev/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// testEnv is a private network with a stand-in metadata service routed from it.
type testEnv struct {
	net  *Network
	ipv4 netip.Addr // base of this run's public addresses: 127.<a>.<b>.x

	mu       sync.Mutex
	metaSeen []string                 // remote addresses of metadata requests
	hetzner  map[string]hetznerServer // private IP -> what the metadata service tells it
}

type hetznerServer struct {
	id       int64
	hostname string
	userData string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("boots server containers (about a minute); skipped under -short")
	}
	requireHost(t)
	ctx := t.Context()
	start := time.Now()
	if err := EnsureImages(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("EnsureImages: %v", time.Since(start).Round(time.Millisecond))

	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	name := "dbsimtest-" + hex.EncodeToString(rnd[:])
	n, err := EnsureNetwork(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{net: n, ipv4: netip.AddrFrom4([4]byte{127, 100 + rnd[0]%100, rnd[1], 0}),
		hetzner: map[string]hetznerServer{}}
	t.Cleanup(func() {
		if err := RemoveAll(context.Background(), n.Name); err != nil {
			t.Error(err)
		}
		if err := n.Remove(context.Background()); err != nil {
			t.Error(err)
		}
	})

	// The simulator's stand-in: answers instance-id by the caller's address.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(n.Gateway, 0).String())
	if err != nil {
		t.Fatalf("listen on the network's gateway: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.mu.Lock()
		env.metaSeen = append(env.metaSeen, r.RemoteAddr)
		env.mu.Unlock()
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		env.mu.Lock()
		hs, ok := env.hetzner[host]
		env.mu.Unlock()
		if !ok {
			fmt.Fprintf(w, "%s %s", r.URL.Path, host)
			return
		}
		// Like Hetzner's service, for the server at this address.
		switch r.URL.Path {
		case "/hetzner/v1/metadata":
			// cloud-init's Hetzner datasource fails without network-config.
			fmt.Fprintf(w, "hostname: %s\ninstance-id: %d\npublic-ipv4: 192.0.2.%d\nregion: eu-central\npublic-keys: []\nvendor_data: \"\"\n"+
				"network-config:\n  version: 1\n  config:\n  - type: physical\n    name: eth0\n    subnets:\n    - type: dhcp\n", hs.hostname, hs.id, hs.id)
		case "/hetzner/v1/metadata/instance-id":
			fmt.Fprint(w, hs.id)
		case "/hetzner/v1/userdata":
			fmt.Fprint(w, hs.userData)
		default:
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	remove, err := n.RouteMetadata(ctx, netip.MustParseAddrPort(ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := remove(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return env
}

func (e *testEnv) addr(last byte) netip.Addr {
	a := e.ipv4.As4()
	a[3] = last
	return netip.AddrFrom4(a)
}

func create(t *testing.T, spec Spec) *Host {
	t.Helper()
	h, err := Create(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Remove(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return h
}

func exec1(t *testing.T, h *Host, cmd ...string) string {
	t.Helper()
	out, stderr, err := h.Exec(t.Context(), cmd...)
	if err != nil {
		t.Fatalf("%v (stdout: %s)", err, out)
	}
	_ = stderr
	return strings.TrimSpace(string(out))
}

// TestServer boots a docker-ce server and checks, on that one server: systemd reaches running,
// cloud-init runs user_data from the NoCloud seed, sshd serves the injected host key, a volume
// attached at create is there before cloud-init, Docker inside uses overlay2 on an ext4 volume,
// the metadata address reaches the simulator with the server's address, hot-plug works; then
// the server is replaced and Docker's state on the volume survives.
func TestServer(t *testing.T) {
	env := newTestEnv(t)
	ctx := t.Context()

	keyDir := t.TempDir()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", keyDir+"/host").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", keyDir+"/client").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	priv, _ := os.ReadFile(keyDir + "/host")
	pub, _ := os.ReadFile(keyDir + "/host.pub")
	clientPub, _ := os.ReadFile(keyDir + "/client.pub")
	const volumeID = 4242
	volPath := fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", volumeID)
	userData := "#cloud-config\n" +
		"ssh_keys:\n  ed25519_private: |\n    " + strings.ReplaceAll(strings.TrimSpace(string(priv)), "\n", "\n    ") + "\n" +
		"  ed25519_public: " + strings.TrimSpace(string(pub)) + "\n" +
		"write_files:\n  - path: /root/user-data-ran\n    content: \"hello from user_data\\n\"\n" +
		"bootcmd:\n  - [sh, -c, \"test -b " + volPath + " && echo present > /root/volume-at-boot\"]\n"

	dataDev := loopdevtest.New(t, 2<<30)
	spec := Spec{
		ID: 7, Name: "sim-7", ImageKind: KindDockerCE, UserData: []byte(userData),
		IPv4: env.addr(7), Network: env.net.Name, PublicKeys: []string{string(clientPub)},
		Devices: []Device{{HostPath: dataDev, Path: volPath}},
	}
	// A second server, booting meanwhile: cloud-init's Hetzner datasource against the stand-in.
	hzSpec := Spec{ID: 8, Name: "sim-8", ImageKind: KindDebian12, Datasource: DatasourceHetzner,
		IPv4: env.addr(8), Network: env.net.Name, PrivateIP: addrIn(env.net.Subnet, 108)}
	env.mu.Lock()
	env.hetzner[hzSpec.PrivateIP.String()] = hetznerServer{id: 8, hostname: "sim-8",
		userData: "#cloud-config\nwrite_files:\n  - path: /root/from-metadata-service\n    content: \"hetzner datasource\\n\"\n"}
	env.mu.Unlock()

	start := time.Now()
	h := create(t, spec)
	hz := create(t, hzSpec)
	if err := h.WaitRunning(ctx); err != nil {
		t.Fatal(err)
	}
	toRunning := time.Since(start)
	if err := h.WaitCloudInit(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("boot: systemd running after %v, cloud-init done after %v", toRunning.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	t.Run("state", func(t *testing.T) {
		if st, err := h.State(ctx); err != nil || st != StateRunning {
			t.Fatalf("State() = %q, %v; want running", st, err)
		}
	})
	t.Run("cloud-init ran user_data from NoCloud", func(t *testing.T) {
		if got := exec1(t, h, "cat", "/root/user-data-ran"); got != "hello from user_data" {
			t.Fatalf("/root/user-data-ran = %q", got)
		}
		if got := exec1(t, h, "cloud-init", "query", "v1.instance_id"); got != "7" {
			t.Fatalf("instance id = %q, want 7", got)
		}
		out := exec1(t, h, "cloud-init", "status", "--long")
		if !strings.Contains(out, "status: done") || !strings.Contains(out, "DataSourceNoCloud") {
			t.Fatalf("cloud-init status:\n%s", out)
		}
	})
	t.Run("volume attached at create is there before cloud-init", func(t *testing.T) {
		if got := exec1(t, h, "cat", "/root/volume-at-boot"); got != "present" {
			t.Fatalf("/root/volume-at-boot = %q", got)
		}
	})
	t.Run("sshd serves the injected host key and lets root in with the metadata's key", func(t *testing.T) {
		want := strings.Fields(string(pub))[1]
		var out []byte
		for i := 0; i < 50; i++ {
			out, _ = exec.CommandContext(ctx, "ssh-keyscan", "-T", "5", "-t", "ed25519", spec.IPv4.String()).Output()
			if len(out) > 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if f := strings.Fields(string(out)); len(f) < 3 || f[2] != want {
			t.Fatalf("ssh-keyscan %s = %q, want key %s", spec.IPv4, out, want)
		}
		// Log in as root with the metadata's public key, trusting only the injected host key.
		knownHosts := keyDir + "/known_hosts"
		if err := os.WriteFile(knownHosts, []byte(spec.IPv4.String()+" "+strings.TrimSpace(string(pub))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		login, err := exec.CommandContext(ctx, "ssh", "-i", keyDir+"/client", "-F", "/dev/null",
			"-o", "UserKnownHostsFile="+knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
			"root@"+spec.IPv4.String(), "cat /root/user-data-ran").CombinedOutput()
		if err != nil || strings.TrimSpace(string(login)) != "hello from user_data" {
			t.Fatalf("ssh root@%s: %v: %s", spec.IPv4, err, login)
		}
	})
	t.Run("a nested cgroup may allow all devices (managed plugins with allowAllDevices)", func(t *testing.T) {
		// What runc does for a Docker plugin whose config says allowAllDevices: a new devices
		// cgroup under the server's own, then "a *:* rwm". cgroup v1 refuses it (EPERM) unless
		// every ancestor allows all devices.
		script := `set -e; own=$(awk -F: '$2 ~ /(^|,)devices(,|$)/ {print $3}' /proc/self/cgroup)
d=/sys/fs/cgroup/devices$own/dockbridge-probe; mkdir -p "$d"; trap 'rmdir "$d"' EXIT
echo 'a *:* rwm' > "$d/devices.allow"; cat "$d/devices.list"`
		if _, err := os.Stat("/sys/fs/cgroup/devices"); err != nil {
			t.Skip("cgroup v2 host: no devices controller to check")
		}
		got := exec1(t, h, "sh", "-c", script)
		if got != "a *:* rwm" {
			t.Fatalf("devices.list of a nested cgroup after allowing all = %q, want \"a *:* rwm\"", got)
		}
	})
	t.Run("metadata reaches the simulator with the server's address", func(t *testing.T) {
		ip, err := h.PrivateIP(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := exec1(t, h, "curl", "-sSf", "--max-time", "10", "http://169.254.169.254/hetzner/v1/metadata/instance-id")
		if want := "/hetzner/v1/metadata/instance-id " + ip.String(); got != want {
			t.Fatalf("metadata answered %q, want %q", got, want)
		}
	})
	t.Run("cloud-init's Hetzner datasource reads the metadata service", func(t *testing.T) {
		if err := hz.WaitRunning(ctx); err != nil {
			log, _, _ := hz.Exec(ctx, "sh", "-c", "grep -B2 -A25 Traceback /var/log/cloud-init.log | head -60")
			t.Fatalf("%v\ncloud-init.log:\n%s", err, log)
		}
		if err := hz.WaitCloudInit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := exec1(t, hz, "cat", "/root/from-metadata-service"); got != "hetzner datasource" {
			t.Fatalf("/root/from-metadata-service = %q", got)
		}
		if got := exec1(t, hz, "cloud-init", "query", "--format", "{{ v1.platform }} {{ v1.instance_id }} {{ v1.local_hostname }}"); got != "hetzner 8 sim-8" {
			t.Fatalf("cloud-init platform, instance id, hostname = %q, want hetzner 8 sim-8", got)
		}
		if err := hz.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	})
	hotDev := loopdevtest.New(t, 320<<20) // mkfs.xfs needs 300 MiB
	const hotPath = "/dev/disk/by-id/scsi-0HC_Volume_99"
	t.Run("hot-plug a volume", func(t *testing.T) {
		if err := h.AttachBlockDevice(ctx, hotDev, hotPath); err != nil {
			t.Fatal(err)
		}
		exec1(t, h, "mkfs.xfs", "-q", hotPath)
		if got := exec1(t, h, "blkid", "-p", "-s", "TYPE", "-o", "value", hotPath); got != "xfs" {
			t.Fatalf("blkid in the server = %q, want xfs", got)
		}
	})
	t.Run("stop and start again, the volume stays attached", func(t *testing.T) {
		if err := h.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := h.State(ctx); err != nil || st != StateOff {
			t.Fatalf("State() after Stop = %q, %v; want off", st, err)
		}
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.WaitRunning(ctx); err != nil {
			t.Fatal(err)
		}
		if got := exec1(t, h, "cloud-init", "query", "v1.instance_id"); got != "7" {
			t.Fatalf("instance id after restart = %q, want 7", got)
		}
		if got := exec1(t, h, "blkid", "-p", "-s", "TYPE", "-o", "value", hotPath); got != "xfs" {
			t.Fatalf("blkid of the hot-plugged volume after restart = %q, want xfs", got)
		}
	})
	t.Run("unplug a volume", func(t *testing.T) {
		if err := h.DetachBlockDevice(ctx, hotPath); err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.Exec(ctx, "test", "-e", hotPath); err == nil {
			t.Fatalf("%s still exists after detach", hotPath)
		}
	})

	// Docker inside, its state on the volume: ext4, overlay2, a container made there.
	startDocker := func(t *testing.T, h *Host) {
		t.Helper()
		exec1(t, h, "sh", "-c", "systemctl stop docker.service docker.socket && mount "+volPath+" /var/lib/docker && systemctl start docker.service")
		got := exec1(t, h, "docker", "info", "--format", "{{.Driver}} {{.DockerRootDir}}")
		if got != "overlay2 /var/lib/docker" {
			t.Fatalf("docker info in the server: %q, want overlay2 /var/lib/docker", got)
		}
		if fs := exec1(t, h, "findmnt", "-n", "-o", "FSTYPE", "/var/lib/docker"); fs != "ext4" {
			t.Fatalf("/var/lib/docker is %q, want ext4", fs)
		}
	}
	t.Run("docker inside on an ext4 volume uses overlay2", func(t *testing.T) {
		exec1(t, h, "mkfs.ext4", "-q", volPath)
		startDocker(t, h)
		if _, _, err := h.ExecInput(ctx, testimage.BusyboxRootfs(t), "docker", "import", "-", "tiny:1"); err != nil {
			t.Fatal(err)
		}
		if got := exec1(t, h, "docker", "run", "--rm", "tiny:1", "/bin/busybox", "echo", "inner container ran"); got != "inner container ran" {
			t.Fatalf("inner container printed %q", got)
		}
		exec1(t, h, "docker", "create", "--name", "keep-me", "tiny:1", "/bin/busybox", "true")
	})
	if t.Failed() {
		return
	}

	t.Run("docker state survives replacing the server", func(t *testing.T) {
		if err := h.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		spec2 := spec
		spec2.Devices = nil // re-attached by hot-plug this time
		spec2.UserData = nil
		h2 := create(t, spec2)
		if err := h2.WaitRunning(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h2.AttachBlockDevice(ctx, dataDev, volPath); err != nil {
			t.Fatal(err)
		}
		startDocker(t, h2)
		if got := exec1(t, h2, "docker", "ps", "-a", "--format", "{{.Names}}"); got != "keep-me" {
			t.Fatalf("containers after replacing the server: %q, want keep-me", got)
		}
		// Unmount before the loop device is released by the test's cleanup.
		exec1(t, h2, "sh", "-c", "systemctl stop docker.service docker.socket && umount /var/lib/docker")
	})
}

// BenchmarkBoot measures a debian-12 server's boot: create to systemd running and to
// cloud-init done, as medians over b.N boots (go test -run XXX -bench Boot -benchtime 5x).
func BenchmarkBoot(b *testing.B) {
	ctx := b.Context()
	if err := EnsureImages(ctx); err != nil {
		b.Fatal(err)
	}
	n, err := EnsureNetwork(ctx, "dbsimbench")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = n.Remove(context.Background()) }()
	var running, done []time.Duration
	for i := 0; i < b.N; i++ {
		spec := Spec{ID: int64(100 + i), Name: fmt.Sprintf("bench-%d", i), ImageKind: KindDebian12,
			UserData: []byte("#cloud-config\nwrite_files:\n  - path: /root/x\n    content: x\n"),
			IPv4:     netip.AddrFrom4([4]byte{127, 99, 0, byte(2 + i)}), Network: n.Name}
		start := time.Now()
		h, err := Create(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := h.WaitRunning(ctx); err != nil {
			b.Fatal(err)
		}
		running = append(running, time.Since(start))
		if err := h.WaitCloudInit(ctx); err != nil {
			b.Fatal(err)
		}
		done = append(done, time.Since(start))
		if err := h.Remove(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(median(running).Milliseconds()), "ms-to-running")
	b.ReportMetric(float64(median(done).Milliseconds()), "ms-to-cloud-init-done")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// addrIn is the n-th address of an IPv4 prefix.
func addrIn(p netip.Prefix, n byte) netip.Addr {
	a := p.Masked().Addr().As4()
	a[3] += n
	return netip.AddrFrom4(a)
}

func TestRouteMetadataRefusesUnreachableTargets(t *testing.T) {
	n := &Network{Name: "x", Bridge: "dbsim-x", Gateway: netip.MustParseAddr("172.30.0.1")}
	for target, want := range map[string]string{
		"127.0.0.1:8080": "loopback",
		"0.0.0.0:8080":   "172.30.0.1:8080",
	} {
		_, err := n.RouteMetadata(t.Context(), netip.MustParseAddrPort(target))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("RouteMetadata(%s) = %v, want an error mentioning %q", target, err, want)
		}
	}
}
