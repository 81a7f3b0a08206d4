package host

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/context/store"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idleagent"
	"github.com/dockbridge/dockbridge/internal/serverstop"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// fakeDisk is what lives on a data volume in these tests: the volume plugin's marker and its
// token file; and the fake servers' host keys.
type fakeDisk struct {
	mu             sync.Mutex
	marker         string
	pluginEnabled  bool
	pluginToken    string // the token file's content
	pluginSettings string // the last `docker plugin set` command line
	pluginUpload   string // stdin of the last `docker plugin create` command
	arch           string // uname -m (default x86_64)
	uuid           string
	cmds           []string
	// rootDev, when set, is the device number (stat %d) of the filesystem holding Docker's
	// root dir; by default it is the volume's (8:16, 2064).
	rootDev  string
	hostKeys map[int64]*fakeHostKeys
	// fault, when set, may fail a command before (after=false) or after (after=true) the fake
	// server has carried it out: a connection lost at that moment.
	fault func(cmd string, after bool) error
	// verbs are the server-side stop's verbs run (stop, start); stopOut is what a stop prints
	// (default: a complete stop); stopHang makes it hang until its context ends.
	verbs    []string
	stopOut  string
	stopHang bool
	// The idle agent on the host (root disk) and the servers' binary cached on the volume:
	// sha256 of the binary installed and cached, the configuration, whether it runs.
	agentBin, agentCache string
	agentConfig          string
	agentActive          bool
	agentUploads         int
	// swarmSecret is the idle agents' shared secret on this node (idleagent.SwarmSecretPath).
	swarmSecret string
}

// fakeHostKeys is one fake server's sshd: current is the HostKeyLabel of the key it presents
// (the server label's at first), next a key rotate-host-key.sh made and has not put in place.
type fakeHostKeys struct {
	current string
	next    *KeyPair
}

// fakeRemote answers the commands up/status send, like a server booted from our user-data.
type fakeRemote struct {
	disk *fakeDisk
	keys *fakeHostKeys
}

func (f *fakeRemote) Close() error { return nil }

func (f *fakeRemote) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	d := f.disk
	if i := strings.LastIndex(cmd, " dockbridge-stop "); i > 0 && strings.HasPrefix(cmd, "bash -c ") {
		verb := cmd[i+len(" dockbridge-stop "):]
		d.mu.Lock()
		d.verbs = append(d.verbs, verb)
		hang, out := d.stopHang, d.stopOut
		d.mu.Unlock()
		if verb == serverstop.Start {
			return []byte("docker=active\nresult=ok\n"), nil
		}
		if hang {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		if out == "" {
			out = "containers_running=2\ndocker=inactive\ndocker_seconds=1.5\nunmounted=/var/lib/docker/plugins/x/propagated-mount/db /var/lib/docker\nvolumes_seconds=0.1\nresult=ok\n"
		}
		if !strings.Contains(out, "result=ok") {
			return []byte(out), &RemoteError{Cmd: cmd, ExitCode: 1}
		}
		return []byte(out), nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cmds = append(d.cmds, cmd)
	in := ""
	if stdin != nil {
		b, _ := io.ReadAll(stdin)
		in = string(b)
	}
	if d.fault != nil {
		if err := d.fault(cmd, false); err != nil {
			return nil, err
		}
	}
	out, err := f.run(cmd, in)
	if err == nil && d.fault != nil {
		if ferr := d.fault(cmd, true); ferr != nil {
			return nil, ferr
		}
	}
	return out, err
}

func (f *fakeRemote) run(cmd, in string) ([]byte, error) {
	d := f.disk
	switch {
	case strings.HasPrefix(cmd, "bash -s -- prepare "):
		if in != cloudinit.HostKeyRotationScript {
			return nil, &RemoteError{Cmd: cmd, ExitCode: 2, Stderr: "not the rotation script"}
		}
		k := f.keys
		if k.next == nil {
			if want, err := ParseAuthorizedKey(strings.Trim(strings.TrimPrefix(cmd, "bash -s -- prepare "), "'")); err == nil && HostKeyLabel(want) == k.current {
				return []byte(authorizedKey(want) + "\n"), nil
			}
			kp, err := GenerateEd25519("")
			if err != nil {
				return nil, err
			}
			k.next = kp
		}
		return []byte(authorizedKey(k.next.Signer.PublicKey()) + "\n"), nil
	case cmd == "bash -s -- commit":
		if k := f.keys; k.next != nil {
			k.current, k.next = HostKeyLabel(k.next.Signer.PublicKey()), nil
		}
		return nil, nil
	case strings.Contains(cmd, "cloud-init status --wait"):
		return []byte("cloudinit_rc=0\ncomplete=1\nsetup_log=\n"), nil
	case strings.Contains(cmd, "DockerRootDir"):
		// makedev(8,16) = 2064: the root dir's filesystem is /dev/sdb, the volume.
		rootDev := "2064"
		if d.rootDev != "" {
			rootDev = d.rootDev
		}
		return []byte("root=/var/lib/docker\nrootdev=" + rootDev + "\nvoldev=8:10\ndevice=/dev/sdb\nuuid=" + d.uuid + "\n"), nil
	case strings.Contains(cmd, "/run/dockbridge/disk-tool") && strings.Contains(cmd, " disk 'grow' "):
		// The data volume's filesystem fills it: nothing to grow.
		return []byte(`{"grow":{"device":"/dev/sdb","mountpoint":"/var/lib/docker","fs_type":"ext4","device_bytes":21474836480,"mounted":true}}` + "\n"), nil
	case strings.Contains(cmd, "docker plugin set"):
		d.pluginSettings, d.pluginEnabled = cmd, true
		return nil, nil
	case strings.Contains(cmd, "docker plugin inspect"):
		en := ""
		if d.marker != "" {
			en = fmt.Sprint(d.pluginEnabled)
		}
		out := d.marker + "\nenabled=" + en + "\n"
		if d.pluginToken != "" {
			out += "token_file=1\n"
		}
		out += "arch=" + cmp.Or(d.arch, "x86_64") + "\ntools=util-linux=2.38.1-5 e2fsprogs=1.47.0-2 xfsprogs=6.1.0-1\n"
		return []byte(out), nil
	case strings.Contains(cmd, cloudinit.PluginTokenPath) && strings.Contains(cmd, `cat >"$t"`):
		d.pluginToken = in
		return nil, nil
	case strings.Contains(cmd, "docker plugin create"):
		if len(in) == 0 {
			return nil, &RemoteError{Cmd: cmd, ExitCode: 1, Stderr: "empty tar"}
		}
		d.marker, d.pluginEnabled, d.pluginUpload = "created", false, in
		return nil, nil
	case strings.Contains(cmd, "docker plugin disable"):
		d.pluginEnabled = false
		return nil, nil
	case strings.Contains(cmd, "docker plugin enable"):
		d.pluginEnabled = true
		return nil, nil
	case strings.HasPrefix(cmd, "cat > "):
		d.marker = in
		return nil, nil
	case strings.Contains(cmd, "dockbridge/backup/schedules.json"):
		return []byte("0\n"), nil // no backup schedules on the volume
	case strings.Contains(cmd, "backup status -o json"):
		return nil, nil // no server binary: no schedules
	case strings.Contains(cmd, `echo "have=$(sha256sum`):
		arch := d.arch
		if arch == "" {
			arch = "x86_64"
		}
		out := "arch=" + arch + "\nhave=" + d.agentBin + "\n"
		if d.agentCache != "" {
			out += "candidate=" + d.agentCache + " " + agentBinaryCache + "\n"
		}
		if d.agentConfig != "" {
			out += "config=" + sha256Hex(d.agentConfig) + "\n"
		}
		if d.agentBin != "" {
			out += "unit=" + sha256Hex(agentUnit) + "\n"
		}
		if d.agentActive {
			out += "active=active\n"
		}
		if d.pluginToken != "" {
			out += "token=" + sha256Hex(d.pluginToken) + "\n"
		}
		if d.swarmSecret != "" {
			out += "secret=" + sha256Hex(d.swarmSecret) + "\n"
		}
		return []byte(out), nil
	case cmd == "cat "+idleagent.SwarmSecretPath+" 2>/dev/null || true":
		return []byte(d.swarmSecret), nil
	case strings.Contains(cmd, "mv -f \"$t\" "+idleagent.SwarmSecretPath) && strings.Contains(cmd, "chmod 0600"):
		d.swarmSecret = in
		return nil, nil
	case strings.Contains(cmd, "gzip -dc >"):
		zr, err := gzip.NewReader(strings.NewReader(in))
		if err != nil {
			return nil, &RemoteError{Cmd: cmd, ExitCode: 1, Stderr: err.Error()}
		}
		b, _ := io.ReadAll(zr)
		d.agentCache, d.agentUploads = sha256Hex(string(b)), d.agentUploads+1
		return nil, nil
	case strings.Contains(cmd, "systemctl restart "+idleagent.UnitName) && strings.Contains(cmd, "daemon-reload"):
		if strings.Contains(cmd, "install -m 0755 '"+agentBinaryCache+"'") {
			d.agentBin = d.agentCache
		}
		d.agentConfig, d.agentActive = in, true
		return nil, nil
	case cmd == "cat "+idleagent.ConfigPath:
		if d.agentConfig == "" {
			return nil, &RemoteError{Cmd: cmd, ExitCode: 1, Stderr: "no such file"}
		}
		return []byte(d.agentConfig), nil
	case strings.Contains(cmd, "systemctl restart "+idleagent.UnitName):
		d.agentConfig = in
		return nil, nil
	case strings.HasSuffix(cmd, idleagent.BinaryPath+" local install"):
		return []byte("bind check and shared folders set up\n"), nil
	case cmd == "test -s "+cloudinit.PluginTokenPath:
		if d.pluginToken == "" {
			return nil, &RemoteError{Cmd: cmd, ExitCode: 1}
		}
		return nil, nil
	case cmd == "rm -f "+cloudinit.PluginTokenPath:
		d.pluginToken = ""
		return nil, nil
	case cmd == idleagent.ProbeCommand:
		if d.agentBin == "" {
			return nil, &RemoteError{Cmd: cmd, ExitCode: 127, Stderr: "not found"}
		}
		return []byte(`{"idle": true, "idle_since": "2026-01-01T00:00:00Z", "keeping_up": [], "down_at": "2026-01-01T00:55:00Z", "phase": "watching",
"idle_timeout": "30m0s", "agent_running": true, "updated": "` + time.Now().UTC().Format(time.RFC3339) + `",
"disk_total_bytes": 21474836480, "disk_used_bytes": 1073741824, "health_last_line": "2026-01-01T00:00:00Z OK used=5%"}`), nil
	case strings.Contains(cmd, "df -B1"):
		return []byte("df=21474836480 1073741824\nhealth=2026-01-01T00:00:00Z OK used=5%\n"), nil
	}
	return nil, &RemoteError{Cmd: cmd, ExitCode: 127, Stderr: "fake server: unknown command"}
}

type simEnv struct {
	t      *testing.T
	sim    *hcloudsimtest.Sim
	api    *hetzner.Client
	deps   *Deps
	disk   *fakeDisk
	stderr *bytes.Buffer
	ctxs   *store.ContextStore
	dials  int
	// dialGETs counts the test's own API lookups in dial, left out of the figures.
	dialGETs int64
	dialErr  func(n int) error
}

func newSimEnv(t *testing.T, opts ...hcloudsimtest.Option) *simEnv {
	t.Helper()
	sim := hcloudsimtest.Start(t, opts...)
	e := &simEnv{t: t, sim: sim, disk: &fakeDisk{uuid: "0b3e6d4c-1f2a-4b5c-8d9e-0123456789ab", hostKeys: map[int64]*fakeHostKeys{}}, stderr: &bytes.Buffer{}}
	e.api = e.client(sim.Token, nil)
	p := testPaths(t)
	e.ctxs = store.New(filepath.Join(t.TempDir(), "contexts"), command.DefaultContextStoreConfig())
	plugin := t.TempDir()
	must(t, os.WriteFile(filepath.Join(plugin, "config.json"), []byte(`{"interface":{"types":["docker.volumedriver/1.0"]}}`), 0o644))
	must(t, os.MkdirAll(filepath.Join(plugin, "rootfs", "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(plugin, "rootfs", "bin", "hetzner-volume-plugin"), []byte("binary"), 0o755))
	// The servers' binary of a developer's folder, which the idle agent runs.
	must(t, os.WriteFile(filepath.Join(plugin, "rootfs", "hetzner-volume-plugin"), staticELF(t), 0o755))
	cfg, err := Resolve(Settings{}, func(string) string { return "" }, Flags{})
	must(t, err)
	cfg.Token, cfg.TokenSource, cfg.Endpoint, cfg.PluginEndpoint = sim.Token, "HCLOUD_TOKEN", sim.Endpoint, sim.Endpoint
	e.deps = &Deps{
		API: e.api, Paths: p, Config: cfg, Contexts: e.ctxs,
		Progress: ui.NewProgress(e.stderr, false), Stderr: e.stderr, SSHPoll: 5 * time.Millisecond, AttachWait: time.Second,
		BootTimeout: 20 * time.Second,
	}
	e.deps.Dial = e.dial
	t.Setenv("DOCKBRIDGE_TEST_PLUGIN_DIR", plugin)
	return e
}

func (e *simEnv) client(token string, rt http.RoundTripper) *hetzner.Client {
	var hc *http.Client
	if rt != nil {
		hc = &http.Client{Transport: rt}
	}
	c, err := hetzner.New(hetzner.Config{Endpoint: e.sim.Endpoint, Token: token, HTTPClient: hc,
		PollBase: 5 * time.Millisecond, PollMax: 20 * time.Millisecond, RetryBase: 5 * time.Millisecond, LockedTimeout: 5 * time.Second})
	must(e.t, err)
	return c
}

// dial plays the server's sshd: it presents the host key the server was created with (the
// server's hostkey label), like the real server whose user-data installs that key, until
// rotate-host-key.sh replaces it.
func (e *simEnv) dial(ctx context.Context, tg Target) (Remote, error) {
	e.dials++
	if e.dialErr != nil {
		if err := e.dialErr(e.dials); err != nil {
			return nil, err
		}
	}
	host, _, _ := net.SplitHostPort(tg.Addr)
	e.dialGETs++
	servers, err := e.api.Servers(ctx, "managed-by=dockbridge")
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		if s.IPv4 == host {
			e.disk.mu.Lock()
			keys := e.disk.hostKeys[s.ID]
			if keys == nil {
				keys = &fakeHostKeys{current: s.Labels[LabelHostKey]}
				e.disk.hostKeys[s.ID] = keys
			}
			ok := HostKeyLabel(tg.HostKey) == keys.current || tg.NextHostKey != nil && HostKeyLabel(tg.NextHostKey) == keys.current
			e.disk.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("%w: fake server %d has another host key", ErrHostKeyMismatch, s.ID)
			}
			return &fakeRemote{disk: e.disk, keys: keys}, nil
		}
	}
	return nil, fmt.Errorf("dial %s: connection refused (no server)", tg.Addr)
}

func (e *simEnv) up(ctx context.Context, env string) (*UpResult, error) {
	return Up(ctx, e.deps, UpOptions{Env: env, PluginDir: os.Getenv("DOCKBRIDGE_TEST_PLUGIN_DIR")})
}

func (e *simEnv) total() int64 { return e.sim.Stats().Total }

// requests runs f and returns the API requests it spent, by endpoint.
func (e *simEnv) requests(f func()) (int64, map[string]int64) {
	before, dialsBefore := e.sim.Stats(), e.dialGETs
	f()
	after, own := e.sim.Stats(), e.dialGETs-dialsBefore
	after.Total -= own
	after.ByEndpoint["GET /v1/servers"] -= own
	diff := map[string]int64{}
	for k, v := range after.ByEndpoint {
		if d := v - before.ByEndpoint[k]; d != 0 {
			diff[k] = d
		}
	}
	return after.Total - before.Total, diff
}

func (e *simEnv) count(ctx context.Context) (servers, volumes, firewalls, keys int) {
	ss, err := e.api.Servers(ctx, "")
	must(e.t, err)
	vs, err := e.api.Volumes(ctx, "")
	must(e.t, err)
	fs, err := e.api.Firewalls(ctx, "")
	must(e.t, err)
	ks, err := e.api.SSHKeys(ctx, "")
	must(e.t, err)
	return len(ss), len(vs), len(fs), len(ks)
}

func TestUpCreatesLabelledResourcesAndIsIdempotent(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	var res *UpResult
	var err error
	n1, by1 := e.requests(func() { res, err = e.up(ctx, "default") })
	if err != nil {
		t.Fatalf("up: %v\n%s", err, e.stderr)
	}
	t.Logf("first up: %d API requests %v", n1, by1)
	if !res.ServerCreated || res.Context != "dockbridge" {
		t.Fatalf("first up: %+v", res)
	}
	for _, want := range []string{"SSH key ... done", "Firewall (inbound port 22 only) ... done", "Server ... done", "Installing the hetzner volume plugin ... done (installed"} {
		if !strings.Contains(e.stderr.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, e.stderr)
		}
	}
	srv, err := e.api.Servers(ctx, selector("default", RoleServer))
	must(t, err)
	vols, err := e.api.Volumes(ctx, selector("default", RoleDataRoot))
	must(t, err)
	fws, err := e.api.Firewalls(ctx, selector("default", RoleFirewall))
	must(t, err)
	keys, err := e.api.SSHKeys(ctx, selector("default", RoleSSHKey))
	must(t, err)
	if len(srv) != 1 || len(vols) != 1 || len(fws) != 1 || len(keys) != 1 {
		t.Fatalf("labelled resources: %d servers, %d volumes, %d firewalls, %d keys; want one each", len(srv), len(vols), len(fws), len(keys))
	}
	if srv[0].VolumeIDs[0] != vols[0].ID || vols[0].ServerID != srv[0].ID {
		t.Errorf("volume %d not attached to server %d", vols[0].ID, srv[0].ID)
	}
	if len(fws[0].Rules) != 1 || fws[0].Rules[0].Port != 22 {
		t.Errorf("firewall rules %+v, want port 22 only", fws[0].Rules)
	}
	if got := vols[0].Labels[LabelFSUUID]; got != e.disk.uuid {
		t.Errorf("volume fs-uuid label %q, want %q (recorded after the first boot)", got, e.disk.uuid)
	}
	if e.disk.pluginToken != e.sim.Token {
		t.Errorf("the volume plugin's token file did not get the token on stdin")
	}
	if set := e.disk.pluginSettings; !strings.Contains(set, "HCLOUD_TOKEN= HCLOUD_TOKEN_FILE="+cloudinit.PluginTokenPath+" ") || strings.Contains(set, e.sim.Token) {
		t.Errorf("plugin settings: %q, want the token file and no token", set)
	}
	// Enabled with Docker's default client timeout (30 s), a slow Create or Mount would fail in
	// Docker while the plugin completes it.
	if set, want := e.disk.pluginSettings, "docker plugin enable --timeout "+fmt.Sprint(dockbridge.PluginEnableTimeout)+" $p"; !strings.Contains(set, want) {
		t.Errorf("plugin set-up: %q, want %q", set, want)
	}
	for _, c := range e.disk.cmds {
		if strings.Contains(c, e.sim.Token) {
			t.Errorf("the token is on a command line: %q", c)
		}
	}
	if strings.Contains(e.stderr.String(), e.sim.Token) {
		t.Errorf("the token was printed")
	}
	if _, err := e.ctxs.GetMetadata("dockbridge"); err != nil {
		t.Errorf("docker context: %v", err)
	}
	cfg, err := os.ReadFile(e.deps.Paths.SSHConfigFile("default"))
	must(t, err)
	server, err := os.ReadFile(e.deps.Paths.SSHServerFile("default"))
	must(t, err)
	if !strings.Contains(string(server), "HostName "+srv[0].IPv4) || !strings.Contains(string(cfg), "StrictHostKeyChecking yes") ||
		!strings.Contains(string(cfg), "Include "+e.deps.Paths.SSHServerFile("default")) {
		t.Errorf("ssh_config:\n%s\nssh_server.conf:\n%s", cfg, server)
	}
	for _, f := range []string{e.deps.Paths.UserKeyFile("default"), e.deps.Paths.stateFile("default"), e.deps.Paths.SSHConfigFile("default")} {
		fi, err := os.Stat(f)
		must(t, err)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}

	e.stderr.Reset()
	var res2 *UpResult
	n2, by2 := e.requests(func() { res2, err = e.up(ctx, "default") })
	if err != nil {
		t.Fatalf("second up: %v", err)
	}
	t.Logf("second up: %d API requests %v in %.3fs", n2, by2, res2.Seconds)
	for k := range by2 {
		if !strings.HasPrefix(k, "GET ") {
			t.Errorf("second up changed something: %s", k)
		}
	}
	if n2 > 4 || res2.ServerCreated || res2.ServerID != res.ServerID {
		t.Errorf("second up: %d requests (want <= 4), created=%v, server %d vs %d", n2, res2.ServerCreated, res2.ServerID, res.ServerID)
	}
	if !strings.Contains(e.stderr.String(), "already installed") {
		t.Errorf("second up reinstalled the plugin:\n%s", e.stderr)
	}
}

func TestDownKeepsVolumeAndUpAdoptsIt(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	first, err := e.up(ctx, "default")
	must(t, err)

	var down *DownResult
	n, by := e.requests(func() { down, err = Down(ctx, e.deps, DownOptions{Env: "default"}) })
	if err != nil {
		t.Fatalf("down: %v", err)
	}
	t.Logf("down: %d API requests %v", n, by)
	if len(down.Deleted) != 1 || down.Deleted[0].ID != first.ServerID || down.Volume == nil || down.Volume.ID != first.VolumeID {
		t.Fatalf("down: %+v", down)
	}
	s, v, f, k := e.count(ctx)
	if s != 0 || v != 1 || f != 1 || k != 1 {
		t.Fatalf("after down: %d servers %d volumes %d firewalls %d keys; want 0 1 1 1", s, v, f, k)
	}
	var st *Status
	n, by = e.requests(func() { st, err = GetStatus(ctx, e.deps, "default") })
	must(t, err)
	t.Logf("status (down): %d API requests %v", n, by)
	if st.Server != nil || st.Volume == nil || st.Volume.AttachedTo != 0 {
		t.Errorf("status after down: %+v", st)
	}

	second, err := e.up(ctx, "default")
	if err != nil {
		t.Fatalf("up after down: %v", err)
	}
	if !second.ServerCreated || second.ServerID == first.ServerID || second.VolumeID != first.VolumeID {
		t.Fatalf("up after down: %+v (first %+v)", second, first)
	}
	if !strings.Contains(e.stderr.String(), "already installed") {
		t.Errorf("the plugin on the volume should have survived down/up:\n%s", e.stderr)
	}
}

// When cloud-init left Docker's root dir on the server's own disk (the volume did not mount,
// Docker started anyway), up stops and says so: containers made there would not survive down.
// Nothing is installed on that Docker, no context points at it, and the volume's filesystem
// is not recorded from it.
func TestUpStopsWhenDockerRootIsNotOnTheVolume(t *testing.T) {
	e := newSimEnv(t)
	e.disk.rootDev = "2049" // makedev(8,1): /dev/sda1, the server's root disk
	res, err := e.up(t.Context(), "default")
	if err == nil {
		t.Fatalf("up finished with Docker's root dir on the server's own disk:\n%s", e.stderr)
	}
	var running *ServerRunningError
	msg := err.Error()
	if !errors.As(err, &running) || !strings.Contains(msg, "is NOT on the data volume") ||
		!strings.Contains(msg, fmt.Sprintf("data volume %d", res.VolumeID)) || !strings.Contains(msg, "device 8:1") ||
		!strings.Contains(msg, "EXISTS AND IS BILLED") {
		t.Fatalf("up: %v\nwant: Docker's root dir is NOT on the data volume %d (device 8:1), and the server is billed", err, res.VolumeID)
	}
	if !strings.Contains(e.stderr.String(), "Checking that Docker's root dir is on the data volume ... failed") {
		t.Errorf("progress does not show the check failing:\n%s", e.stderr)
	}
	if e.disk.marker != "" {
		t.Errorf("the volume plugin was installed on a Docker whose data is not on the volume (%q)", e.disk.marker)
	}
	if _, cerr := e.ctxs.GetMetadata("dockbridge"); cerr == nil {
		t.Error("a docker context points at the server")
	}
	vol, verr := e.api.Volume(t.Context(), res.VolumeID)
	must(t, verr)
	if got := vol.Labels[LabelFSUUID]; got != "" {
		t.Errorf("recorded fs-uuid %q from a Docker not on the volume", got)
	}
}

func TestStatusReportsPriceUsageAndHealth(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	var st *Status
	n, by := e.requests(func() { st, err = GetStatus(ctx, e.deps, "default") })
	must(t, err)
	t.Logf("status (up): %d API requests %v", n, by)
	if st.Server == nil || st.Server.PricePerHour <= 0 || st.Server.Currency == "" || st.Server.BilledHours != 1 || st.Server.CostSoFar != st.Server.PricePerHour {
		t.Fatalf("server status: %+v", st.Server)
	}
	if st.Volume == nil || st.Volume.TotalBytes != 21474836480 || st.Volume.UsedPct != 5 || !strings.Contains(st.Health, "OK") {
		t.Fatalf("volume status %+v, health %q, notes %v", st.Volume, st.Health, st.Notes)
	}
}

func TestEnvironmentsLiveSideBySide(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	a, err := e.up(ctx, "default")
	must(t, err)
	b, err := e.up(ctx, "staging")
	must(t, err)
	if a.ServerID == b.ServerID || a.VolumeID == b.VolumeID || b.Context != "dockbridge-staging" {
		t.Fatalf("environments share resources: %+v %+v", a, b)
	}
	if _, err := Down(ctx, e.deps, DownOptions{Env: "staging"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.Server(ctx, a.ServerID); err != nil {
		t.Fatalf("down --name staging touched the default server: %v", err)
	}
}

func TestDestroyRemovesOnlyOurs(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	_, err = e.up(ctx, "other")
	must(t, err)
	// Things that are not ours: no labels, or a look-alike label without the env.
	foreignVol, err := e.api.CreateVolume(ctx, hetzner.VolumeSpec{Name: "precious", SizeGB: 10, Location: "fsn1"})
	must(t, err)
	fakeOurs, err := e.api.CreateVolume(ctx, hetzner.VolumeSpec{Name: "lookalike", SizeGB: 10, Location: "fsn1", Labels: map[string]string{LabelRole: RoleDataRoot, LabelEnv: "default"}})
	must(t, err)
	other, err := GenerateEd25519("someone")
	must(t, err)
	foreignKey, err := e.api.CreateSSHKey(ctx, "someone", other.Public, nil)
	must(t, err)

	// Without a terminal and without --yes nothing happens.
	_, err = Destroy(ctx, e.deps, DestroyOptions{Env: "default"})
	if !errors.Is(err, ErrNotConfirmed) || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("destroy without --yes: %v", err)
	}
	if s, _, _, _ := e.count(ctx); s != 2 {
		t.Fatalf("destroy without confirmation deleted something")
	}
	// A person who answers "n" keeps everything.
	e.deps.Interactive, e.deps.Stdin = true, strings.NewReader("n\n")
	if _, err := Destroy(ctx, e.deps, DestroyOptions{Env: "default"}); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("destroy answered n: %v", err)
	}
	e.deps.Interactive, e.deps.Stdin = false, nil

	res, err := Destroy(ctx, e.deps, DestroyOptions{Env: "default", Yes: true})
	must(t, err)
	if len(res.Kept) != 1 {
		t.Fatalf("destroy without --volumes must keep the data volume: %+v", res)
	}
	res, err = Destroy(ctx, e.deps, DestroyOptions{Env: "default", Volumes: true, Yes: true})
	must(t, err)
	t.Logf("destroy --volumes: %v", res.Deleted)
	for _, id := range []int64{foreignVol.ID, fakeOurs.ID} {
		if _, err := e.api.Volume(ctx, id); err != nil {
			t.Errorf("destroy deleted volume %d that is not ours: %v", id, err)
		}
	}
	if _, err := e.api.SSHKeyByFingerprint(ctx, MD5Fingerprint(other.Signer.PublicKey())); err != nil {
		t.Errorf("destroy deleted SSH key %d that is not ours: %v", foreignKey.ID, err)
	}
	left, _ := e.api.Servers(ctx, selector("other", RoleServer))
	if len(left) != 1 {
		t.Errorf("destroy of default touched environment other's server")
	}
	s, _ := e.api.Servers(ctx, selector("default", ""))
	v, _ := e.api.Volumes(ctx, selector("default", RoleDataRoot))
	f, _ := e.api.Firewalls(ctx, selector("default", ""))
	k, _ := e.api.SSHKeys(ctx, selector("default", ""))
	if len(s)+len(v)+len(f)+len(k) != 0 {
		t.Errorf("destroy left %d servers %d volumes %d firewalls %d keys of default", len(s), len(v), len(f), len(k))
	}
	if _, err := os.Stat(e.deps.Paths.EnvDir("default")); !os.IsNotExist(err) {
		t.Errorf("local env dir still there: %v", err)
	}
	if _, err := e.ctxs.GetMetadata("dockbridge"); err == nil {
		t.Errorf("context dockbridge still there")
	}
}

func TestRejectedTokenSaysHowToFixIt(t *testing.T) {
	e := newSimEnv(t)
	const bad = "not-the-token-1234"
	e.deps.API = e.client(bad, nil)
	e.deps.Config.Token = bad
	_, err := e.up(t.Context(), "default")
	if err == nil || !errors.Is(err, hetzner.ErrUnauthorized) || !strings.Contains(err.Error(), "HCLOUD_TOKEN") || !strings.Contains(err.Error(), "settings set token") {
		t.Fatalf("want a rejected-token error that says how to set it, got %v", err)
	}
	if strings.Contains(err.Error(), bad) || strings.Contains(e.stderr.String(), bad) {
		t.Fatalf("the token was printed: %v\n%s", err, e.stderr)
	}
}

// After a fault, up either finished or failed with a clear error; nothing is left that the
// next up can't adopt, and no server is left without saying so. Every case fails when the
// simulator counted no injected fault: a fault that never fires proves nothing.
func TestUpUnderInjectedFaults(t *testing.T) {
	cases := []struct {
		name string
		rule hcloudsim.FaultRule
		// afterDown: the fault hits the up after a first up and a down, when the data volume
		// exists with its filesystem recorded and a new server must get it.
		afterDown bool
	}{
		{"server create 503", hcloudsim.FaultRule{Kind: "503", Rate: 1, Method: "POST", Path: "/v1/servers", Count: 1}, false},
		{"server create action fails", hcloudsim.FaultRule{Kind: "action_error", Rate: 1, Command: "create_server", Count: 1}, false},
		{"volume create 500", hcloudsim.FaultRule{Kind: "500", Rate: 1, Method: "POST", Path: "/v1/volumes", Count: 1}, false},
		{"firewall create 502", hcloudsim.FaultRule{Kind: "502", Rate: 1, Method: "POST", Path: "/v1/firewalls", Count: 1}, false},
		{"ssh key 429", hcloudsim.FaultRule{Kind: "429", Rate: 1, Method: "POST", Path: "/v1/ssh_keys", Count: 1}, false},
		{"every GET 5xx at 30%", hcloudsim.FaultRule{Kind: "503", Rate: 0.3, Method: "GET", Count: 6}, false},
		// up never sends an attach request: the server is created with the data volume, and its
		// create_server action is what attaches it (the simulator's create_server lists and
		// locks the volume, and attaches it when it succeeds). So the attach fails there.
		{"attach of the data volume fails (create_server after down)", hcloudsim.FaultRule{Kind: "action_error", Rate: 1, Command: "create_server", Count: 1}, true},
	}
	// The create action fails and so does deleting the half-made server: the next up finds a
	// server of its own that never got the data volume, deletes it and makes a new one.
	t.Run("server create action fails, and its delete too", func(t *testing.T) {
		ctx := t.Context()
		e := newSimEnv(t)
		first, err := e.up(ctx, "default")
		must(t, err)
		_, err = Down(ctx, e.deps, DownOptions{Env: "default"})
		must(t, err)
		e.sim.Faults(t, hcloudsim.FaultConfig{Seed: 1, Rules: []hcloudsim.FaultRule{
			{Kind: "action_error", Rate: 1, Command: "create_server", Count: 1},
			{Kind: "503", Rate: 1, Method: "DELETE", Path: "/v1/servers/*", Count: 20},
		}})
		_, err = e.up(ctx, "default")
		if err == nil || !strings.Contains(err.Error(), "EXISTS AND IS BILLED") {
			t.Fatalf("up whose create and delete failed: %v; want a failure saying the server exists", err)
		}
		if s, _, _, _ := e.count(ctx); s != 1 {
			t.Fatalf("%d servers after the failed create and delete; want the half-made one", s)
		}
		e.sim.Faults(t, hcloudsim.FaultConfig{})
		res, err := e.up(ctx, "default")
		if err != nil {
			t.Fatalf("up after the faults: %v", err)
		}
		vol, err := e.api.Volume(ctx, first.VolumeID)
		must(t, err)
		if s, v, _, _ := e.count(ctx); s != 1 || v != 1 || vol.ServerID != res.ServerID || vol.Labels[LabelFSUUID] != e.disk.uuid {
			t.Fatalf("after recovery: %d servers, %d volumes, data volume on server %d (want %d), fs-uuid %q", s, v, vol.ServerID, res.ServerID, vol.Labels[LabelFSUUID])
		}
		if !strings.Contains(e.stderr.String(), "never got the data volume") {
			t.Errorf("up did not say why it replaced the server:\n%s", e.stderr)
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			var e *simEnv
			var first *UpResult
			if c.afterDown {
				e = newSimEnv(t)
				var err error
				if first, err = e.up(ctx, "default"); err != nil {
					t.Fatalf("up before the fault: %v", err)
				}
				if _, err := Down(ctx, e.deps, DownOptions{Env: "default"}); err != nil {
					t.Fatalf("down: %v", err)
				}
				e.sim.Faults(t, hcloudsim.FaultConfig{Seed: 1, Rules: []hcloudsim.FaultRule{c.rule}})
			} else {
				e = newSimEnv(t, hcloudsimtest.WithFaults(hcloudsim.FaultConfig{Seed: 1, Rules: []hcloudsim.FaultRule{c.rule}}))
			}
			before := e.sim.Stats().FaultsInjected
			_, err := e.up(ctx, "default")
			if n := e.sim.Stats().FaultsInjected - before; n == 0 {
				t.Fatalf("the simulator injected no fault (up: %v): this case proves nothing", err)
			}
			servers, _, _, _ := e.count(ctx)
			if err != nil {
				t.Logf("up under the fault: %v", err)
				msg := err.Error()
				if servers > 0 && !strings.Contains(msg, "EXISTS AND IS BILLED") && !strings.Contains(msg, "may have reached Hetzner") {
					t.Fatalf("a server exists but the error does not say so: %v", err)
				}
			}
			if c.afterDown {
				attachFailed(t, e, first.VolumeID, err)
			}
			e.sim.Faults(t, hcloudsim.FaultConfig{})
			res, err := e.up(ctx, "default")
			if err != nil {
				t.Fatalf("up after the fault: %v", err)
			}
			s, v, f, k := e.count(ctx)
			if s != 1 || v != 1 || f != 1 || k != 1 {
				t.Fatalf("after recovery: %d servers %d volumes %d firewalls %d keys; want one each", s, v, f, k)
			}
			if res.ServerID == 0 {
				t.Fatal("no server")
			}
			if c.afterDown {
				vol, err := e.api.Volume(ctx, first.VolumeID)
				must(t, err)
				if res.VolumeID != first.VolumeID || vol.ServerID != res.ServerID || vol.Labels[LabelFSUUID] != e.disk.uuid {
					t.Fatalf("after recovery: volume %d attached to %d with fs-uuid %q; want the data volume %d attached to server %d, its filesystem %s still recorded",
						res.VolumeID, vol.ServerID, vol.Labels[LabelFSUUID], first.VolumeID, res.ServerID, e.disk.uuid)
				}
			}
		})
	}
}

// attachFailed checks an up whose server create failed while attaching the data volume: the
// action that failed is the one attaching that volume, up says so and deletes the half-made
// server, and the volume is left detached, its filesystem record unchanged.
func attachFailed(t *testing.T, e *simEnv, volumeID int64, upErr error) {
	t.Helper()
	failed := simActions(t, e, fmt.Sprintf("/volumes/%d/actions?status=error", volumeID))
	if len(failed) != 1 || failed[0].Command != "create_server" {
		t.Fatalf("failed actions of the data volume %d: %+v; want its attach by create_server", volumeID, failed)
	}
	if upErr == nil || !strings.Contains(upErr.Error(), "was deleted") {
		t.Fatalf("up whose server could not get the data volume: %v; want a failure that says the half-created server was deleted", upErr)
	}
	vol, err := e.api.Volume(t.Context(), volumeID)
	must(t, err)
	if vol.ServerID != 0 || vol.Labels[LabelFSUUID] != e.disk.uuid {
		t.Fatalf("data volume after the failed attach: server %d, fs-uuid %q; want detached, %s", vol.ServerID, vol.Labels[LabelFSUUID], e.disk.uuid)
	}
}

// simAction is what the tests read of an action from the simulator's API.
type simAction struct {
	ID      int64  `json:"id"`
	Command string `json:"command"`
	Status  string `json:"status"`
}

// simActions lists actions from an action list endpoint of the simulator (path below /v1).
func simActions(t *testing.T, e *simEnv, path string) []simAction {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.sim.Endpoint+path, nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+e.sim.Token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var out struct {
		Actions []simAction `json:"actions"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	must(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Actions
}

// cancelAfter cancels a context once a response to a matching request has arrived,
// like Ctrl-C at that moment.
type cancelAfter struct {
	base   http.RoundTripper
	match  string
	cancel context.CancelFunc
}

func (c *cancelAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if r.Method+" "+r.URL.Path == c.match {
		c.cancel()
	}
	return resp, err
}

func TestInterruptedUpResumes(t *testing.T) {
	t.Run("during server creation", func(t *testing.T) {
		e := newSimEnv(t)
		ctx, cancel := context.WithCancel(t.Context())
		e.deps.API = e.client(e.sim.Token, &cancelAfter{base: http.DefaultTransport, match: "POST /v1/servers", cancel: cancel})
		_, err := e.up(ctx, "default")
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "EXISTS AND IS BILLED") {
			t.Fatalf("interrupted up: want a canceled error naming the billed server, got %v", err)
		}
		e.deps.API = e.api
		res, err := e.up(t.Context(), "default")
		if err != nil {
			t.Fatalf("resumed up: %v", err)
		}
		if res.ServerCreated {
			t.Fatalf("resumed up created another server instead of adopting the first")
		}
		if s, _, _, _ := e.count(t.Context()); s != 1 {
			t.Fatalf("%d servers", s)
		}
	})
	t.Run("while waiting for SSH", func(t *testing.T) {
		e := newSimEnv(t)
		ctx, cancel := context.WithCancel(t.Context())
		e.dialErr = func(n int) error {
			cancel()
			return errors.New("connection refused")
		}
		_, err := e.up(ctx, "default")
		var running *ServerRunningError
		if !errors.As(err, &running) || !errors.Is(err, context.Canceled) {
			t.Fatalf("want ServerRunningError wrapping context.Canceled, got %v", err)
		}
		e.dialErr = nil
		res, err := e.up(t.Context(), "default")
		if err != nil || res.ServerCreated || res.ServerID != running.Server.ID {
			t.Fatalf("resume: %+v %v", res, err)
		}
	})
}

func TestUpRefusesAServerWithAnUnknownHostKey(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	_, err := e.up(ctx, "default")
	must(t, err)
	must(t, os.Remove(e.deps.Paths.stateFile("default"))) // the pinned key is lost
	_, err = e.up(ctx, "default")
	if err == nil || !strings.Contains(err.Error(), "never trusts a host key on first use") || !strings.Contains(err.Error(), "docker dockbridge down") {
		t.Fatalf("want a refusal that explains the fix, got %v", err)
	}
}

func TestUpValidatesInput(t *testing.T) {
	e := newSimEnv(t)
	for _, o := range []UpOptions{
		{Env: "Bad_Name", NoVolumePlugin: true},
		{Env: "ok", AllowFrom: []string{"10.0.0.1"}, NoVolumePlugin: true},
		{Env: "ok", PluginDir: t.TempDir()},
	} {
		before := e.total()
		_, err := Up(t.Context(), e.deps, o)
		if err == nil {
			t.Errorf("%+v: no error", o)
			continue
		}
		t.Logf("%+v: %v", o, err)
		if e.total() != before {
			t.Errorf("%+v: bad input reached the API", o)
		}
	}
}

func TestDestroyVolumesDeletesThePluginVolumesOfItsServers(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	res, err := e.up(ctx, "default")
	must(t, err)
	_, err = Down(ctx, e.deps, DownOptions{Env: "default"})
	must(t, err)
	res2, err := e.up(ctx, "default") // a second server: volumes of both belong to the env
	must(t, err)
	plugin := func(name string, l map[string]string) *hetzner.Volume {
		l[LabelManagedBy], l[labelPluginVolume] = ManagedBy, name
		v, err := e.api.CreateVolume(ctx, hetzner.VolumeSpec{Name: name, SizeGB: 10, Location: "fsn1", Labels: l})
		must(t, err)
		return v
	}
	held := plugin("held", map[string]string{labelPluginHolder: fmt.Sprint(res2.ServerID)})
	released := plugin("released", map[string]string{labelPluginReleased: fmt.Sprint(res.ServerID)})
	foreign := plugin("other-env", map[string]string{labelPluginHolder: "999999"})
	unlabelled, err := e.api.CreateVolume(ctx, hetzner.VolumeSpec{Name: "precious", SizeGB: 10, Location: "fsn1"})
	must(t, err)

	out, err := Destroy(ctx, e.deps, DestroyOptions{Env: "default", Volumes: true, Yes: true})
	must(t, err)
	t.Logf("deleted: %v", out.Deleted)
	for _, v := range []*hetzner.Volume{held, released} {
		if _, err := e.api.Volume(ctx, v.ID); !errors.Is(err, hetzner.ErrNotFound) {
			t.Errorf("plugin volume %s (held by a server of the environment) still there: %v", v.Name, err)
		}
	}
	for _, v := range []*hetzner.Volume{foreign, unlabelled} {
		if _, err := e.api.Volume(ctx, v.ID); err != nil {
			t.Errorf("destroy deleted volume %s, which is not the environment's: %v", v.Name, err)
		}
	}
}

var (
	staticELFOnce sync.Once
	staticELFData []byte
)

// staticELF is a tiny static linux/amd64 program, built once per test binary.
func staticELF(t *testing.T) []byte {
	staticELFOnce.Do(func() { staticELFData = tinyELF(t, "amd64") })
	if staticELFData == nil {
		t.Fatal("no static ELF")
	}
	return staticELFData
}
