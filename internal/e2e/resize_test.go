package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/sys/unix"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/testbuild"
	"github.com/dockbridge/dockbridge/internal/testimage"
	"github.com/dockbridge/dockbridge/internal/volumedriver/plugintest"
	"github.com/dockbridge/dockbridge/internal/volumefs"
)

// scene is one engine with the hetzner plugin, as `volume resize` and `volume fsck` meet it:
// this machine's engine on the simulator's local backend, or a dockbridge host (a booted
// simulated server) through its docker context.
type scene struct {
	name   string
	sim    *hcloudsim.Sim
	api    *hcloud.Client
	driver string // the plugin's name for docker volume create -d
	image  string // a busybox image on the engine
	// docker runs `docker ARGS` against the engine (the context included).
	docker func(ctx context.Context, args ...string) result
	// onServer runs a shell command as root on the engine's server.
	onServer func(t testing.TB, script string) string
	// image file of a Hetzner volume, to hash it from outside.
	volumeImage func(id int64) string
	// capSysResource: root on the engine's server may grow an ext4 online.
	capSysResource bool
}

func (s *scene) must(t testing.TB, args ...string) result {
	t.Helper()
	r := s.docker(t.Context(), args...)
	if r.err != nil {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// resize runs `volume resize ... -o json` and decodes what it printed.
func (s *scene) resize(t testing.TB, args ...string) (*volumefs.Resized, result) {
	t.Helper()
	before := s.sim.Stats().Total
	r := s.docker(t.Context(), append([]string{"dockbridge", "volume", "resize", "-o", "json"}, args...)...)
	t.Logf("volume resize %s on %s: %.2fs, %d API requests (the plugins' included): %s", strings.Join(args, " "), s.name, r.took.Seconds(), s.sim.Stats().Total-before, r)
	var res volumefs.Resized
	if r.stdout != "" {
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("volume resize -o json printed no JSON: %v\n%s", err, r)
		}
		return &res, r
	}
	return nil, r
}

// fsck runs `volume fsck ... -o json` and decodes what it printed.
func (s *scene) fsck(t testing.TB, args ...string) (*volumefs.Checked, result) {
	t.Helper()
	r := s.docker(t.Context(), append([]string{"dockbridge", "volume", "fsck", "-o", "json"}, args...)...)
	t.Logf("volume fsck %s on %s: %.2fs: %s", strings.Join(args, " "), s.name, r.took.Seconds(), r)
	var res volumefs.Checked
	if r.stdout != "" {
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("volume fsck -o json printed no JSON: %v\n%s", err, r)
		}
		return &res, r
	}
	return nil, r
}

// dfKiB is the size in KiB of the filesystem at path as df in container c shows it.
func (s *scene) dfKiB(t testing.TB, args ...string) int64 {
	t.Helper()
	// -P: one line per filesystem (busybox df otherwise puts the numbers of a long device name,
	// such as /dev/disk/by-id/scsi-0HC_Volume_1007, on a line of their own).
	out := s.must(t, append(args, "busybox", "df", "-P", "-k", "/data")...).stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 {
		t.Fatalf("df printed %q", out)
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("df printed %q: %v", out, err)
	}
	return n
}

func (s *scene) stat(t testing.TB, endpoint string) int64 { return s.sim.Stats().ByEndpoint[endpoint] }

const resizeEndpoint = "POST /v1/volumes/{id}/actions/resize"

var sceneSeq atomic.Int64

// growScenario is the list for one filesystem: grow while a container writes (the data
// intact, df in the container shows the new size); grow while unmounted, then mount; a shrink
// refused with the API's reason, the same size again a no-op; a locked volume retried.
func growScenario(t *testing.T, s *scene, fstype string) {
	vol := fmt.Sprintf("grow-%s-%d", fstype, sceneSeq.Add(1))
	s.must(t, "volume", "create", "-d", s.driver, "-o", "size=10", "-o", "fstype="+fstype, vol)
	t.Cleanup(func() {
		s.docker(context.Background(), "rm", "-f", vol+"-writer")
		s.docker(context.Background(), "volume", "rm", "-f", vol)
	})
	writer := vol + "-writer"
	// The writer appends a numbered line every 20 ms and syncs: a lost or torn write would show
	// as a gap or a broken line.
	s.must(t, "run", "-d", "--name", writer, "-v", vol+":/data", s.image, "busybox", "sh", "-c",
		`i=$(busybox cat /data/log 2>/dev/null | busybox wc -l); while true; do i=$((i+1)); echo "line $i" >> /data/log; busybox sync; busybox usleep 20000; done`)
	blob := make([]byte, 3<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	blobFile := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(blobFile, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	s.must(t, "cp", blobFile, writer+":/data/blob")
	want := sha(blob)
	before := s.dfKiB(t, "exec", writer)

	// 1. Grow while the container writes.
	res, r := s.resize(t, vol, "+5G")
	if r.err != nil || res == nil || !res.Resized || res.SizeGBBefore != 10 || res.SizeGB != 15 || res.MonthlyCost <= 0 {
		t.Fatalf("resize +5G while a container writes: %+v\n%s", res, r)
	}
	// The server sees the grown device at once, without a detach, as on Hetzner.
	if res.Filesystem == nil || res.Filesystem.DeviceBytes != 15<<30 {
		t.Fatalf("the device on the server after the resize to 15 GB: %+v", res.Filesystem)
	}
	online := fstype == "xfs" || s.capSysResource
	if online {
		if res.GrowsAtNextMount || res.Filesystem == nil || !res.Filesystem.Grown {
			t.Fatalf("%s on %s: the filesystem was not grown online: %+v", fstype, s.name, res)
		}
	} else {
		// Nothing on this machine has CAP_SYS_RESOURCE (not even dockerd's bounding set), and
		// the kernel grows a mounted ext4 only with it: the command must say so, and the
		// growth happens at the next mount.
		if !res.GrowsAtNextMount || !strings.Contains(res.Note, "CAP_SYS_RESOURCE") {
			t.Fatalf("online ext4 growth without CAP_SYS_RESOURCE: %+v; want it deferred to the next mount, naming the capability", res)
		}
		t.Logf("NOTE: online ext4 growth is refused on this machine (no CAP_SYS_RESOURCE); checked the deferral, and the growth at the next mount")
		s.must(t, "restart", "-t", "1", writer)
	}
	after := s.dfKiB(t, "exec", writer)
	t.Logf("%s on %s: df in the container %d -> %d KiB", fstype, s.name, before, after)
	if after < before+4<<20 {
		t.Fatalf("df in the container shows %d KiB after growing 10 -> 15 GB (was %d)", after, before)
	}
	time.Sleep(300 * time.Millisecond) // the writer goes on on the grown filesystem
	checkWriter(t, s, writer, vol, want)

	// 2. Grow while unmounted, then mount.
	s.must(t, "stop", "-t", "1", writer)
	res, r = s.resize(t, vol, "20")
	if r.err != nil || res == nil || !res.Resized || res.SizeGB != 20 || !res.GrowsAtNextMount || !strings.Contains(res.Note, "no container uses it") {
		t.Fatalf("resize to 20 GB while unmounted: %+v\n%s", res, r)
	}
	grown := s.dfKiB(t, "run", "--rm", "-v", vol+":/data", s.image)
	if grown < after+4<<20 {
		t.Fatalf("df after mounting the volume grown to 20 GB while unmounted: %d KiB (was %d)", grown, after)
	}
	checkWriter(t, s, "", vol, want)

	// 3. A shrink is refused with the API's reason; the same size again is a no-op.
	resizes := s.stat(t, resizeEndpoint)
	res, r = s.resize(t, vol, "15")
	if r.err == nil || res != nil || !strings.Contains(r.stderr, "must be larger than the current size") || !strings.Contains(r.stderr, "only grow") {
		t.Errorf("shrink 20 -> 15 GB: want an error with the API's reason\n%s", r)
	}
	if n := s.stat(t, resizeEndpoint) - resizes; n != 1 {
		t.Errorf("shrink sent %d resize requests, want 1 (the API gives the reason)", n)
	}
	resizes = s.stat(t, resizeEndpoint)
	actions := s.sim.Stats().Actions["resize_volume"]
	res, r = s.resize(t, vol, "20")
	if r.err != nil || res == nil || res.Resized || res.SizeGB != 20 {
		t.Errorf("the same size again: %+v, want success without a resize\n%s", res, r)
	}
	if n := s.stat(t, resizeEndpoint) - resizes; n != 0 || s.sim.Stats().Actions["resize_volume"] != actions {
		t.Errorf("the same size again sent %d resize requests, want none", n)
	}

	// 4. A locked volume is retried: another resize (someone else's, held by the simulator)
	//    holds the volume's lock; ours waits for it and then goes through.
	id := hetznerID(t, s, vol)
	if err := s.sim.SetFaults(hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Count: 1, Command: "resize_volume", Resource: fmt.Sprintf("volume:%d", id)}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.sim.SetFaults(hcloudsim.FaultConfig{}) })
	if _, _, err := s.api.Volume.Resize(t.Context(), &hcloud.Volume{ID: id}, 21); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	held, err := s.sim.WaitHeld(ctx, "resize_volume")
	cancel()
	if err != nil {
		t.Fatalf("the other resize was not held: %v", err)
	}
	locked := s.sim.Stats().ByStatus["423"]
	resizes = s.stat(t, resizeEndpoint)
	done := make(chan result, 1)
	go func() { done <- s.docker(t.Context(), "dockbridge", "volume", "resize", "-o", "json", vol, "22") }()
	deadline := time.Now().Add(60 * time.Second)
	for s.stat(t, resizeEndpoint)-resizes < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := s.stat(t, resizeEndpoint) - resizes; n < 2 {
		t.Fatalf("while the volume was locked the resize was sent %d times, want it retried", n)
	}
	s.sim.Release(hcloudsim.ReleaseRequest{IDs: []int64{held.ID}})
	lockedRun := <-done
	t.Logf("resize of a locked volume, released after the second attempt: %.2fs, %d resize requests, %d answered 423 locked",
		lockedRun.took.Seconds(), s.stat(t, resizeEndpoint)-resizes, s.sim.Stats().ByStatus["423"]-locked)
	var lockedRes volumefs.Resized
	if err := json.Unmarshal([]byte(lockedRun.stdout), &lockedRes); lockedRun.err != nil || err != nil || lockedRes.SizeGB != 22 || s.sim.Stats().ByStatus["423"]-locked < 1 {
		t.Errorf("resize of a locked volume: %+v, 423 answers %d; want it retried until it went through\n%s", lockedRes, s.sim.Stats().ByStatus["423"]-locked, lockedRun)
	}
	if grown := s.dfKiB(t, "run", "--rm", "-v", vol+":/data", s.image); grown < 21<<20 {
		t.Errorf("df after the resize to 22 GB: %d KiB", grown)
	}
}

// adviceScenario: `volume check` at WARNING prints the exact resize command that brings the
// volume's usage under the warning threshold, with its price per month from /pricing; running
// that command brings the volume back to OK. A threshold of 8 % stands for 70 % (300 MB on a
// 10 GB volume instead of 7 GB): over ext4's 5 % reserve, which grows with the filesystem
// and so still counts after the resize.
func adviceScenario(t *testing.T, s *scene) {
	vol := fmt.Sprintf("advice-%d", sceneSeq.Add(1))
	s.must(t, "volume", "create", "-d", s.driver, "-o", "size=10", "-o", "fstype=ext4", vol)
	t.Cleanup(func() { s.docker(context.Background(), "volume", "rm", "-f", vol) })
	s.must(t, "run", "--rm", "-v", vol+":/data", s.image, "busybox", "dd", "if=/dev/zero", "of=/data/fill", "bs=1M", "count=300")
	check := func(format string) result {
		t.Helper()
		args := []string{"dockbridge", "volume", "check", "--warning", "8", "--critical", "99"}
		if format != "" {
			args = append(args, "-o", format)
		}
		return s.must(t, append(args, vol)...)
	}
	r := check("")
	m := regexp.MustCompile(`(?m)^  docker dockbridge volume resize ` + regexp.QuoteMeta(vol) + ` (\d+)    # (\d+) GB: ([0-9.]+) (\w+)/month, ([0-9.]+) more than now$`).FindStringSubmatch(r.stdout)
	if !strings.Contains(r.stdout, "To bring usage under 8 %:") || m == nil || m[1] != m[2] {
		t.Fatalf("volume check at WARNING: want the resize command and its price under the table\n%s", r)
	}
	size, _ := strconv.Atoi(m[1])
	var res []struct {
		Status string           `json:"status"`
		Usage  float64          `json:"usage"`
		Resize *volumefs.Advice `json:"resize"`
	}
	if err := json.Unmarshal([]byte(check("json").stdout), &res); err != nil || len(res) != 1 || res[0].Status != "warning" || res[0].Resize == nil ||
		res[0].Resize.Command != "docker dockbridge volume resize "+vol+" "+m[1] {
		t.Fatalf("volume check -o json at WARNING: %+v, %v", res, err)
	}
	pricing, _, err := s.api.Pricing.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	perGB, err := strconv.ParseFloat(pricing.Volume.PerGBMonthly.Gross, 64)
	if err != nil {
		t.Fatal(err)
	}
	if a := res[0].Resize; a.Currency != pricing.Currency || math.Abs(a.MonthlyCost-perGB*float64(size)) > 1e-6 || math.Abs(a.MonthlyIncrease-perGB*float64(size-10)) > 1e-6 {
		t.Errorf("the advice's price: %+v; /pricing says %s %s per GB and month", a, pricing.Volume.PerGBMonthly.Gross, pricing.Currency)
	}
	t.Logf("%s at %.2f %% of 10 GB: %s (%s %s/month)", vol, res[0].Usage*100, res[0].Resize.Command, m[3], m[4])
	if out, r := s.resize(t, vol, m[1]); r.err != nil || out == nil || out.SizeGB != size {
		t.Fatalf("the advised resize: %+v\n%s", out, r)
	}
	res = nil // a fresh slice: Unmarshal would keep the earlier resize where the key is absent
	if err := json.Unmarshal([]byte(check("json").stdout), &res); err != nil || len(res) != 1 || res[0].Status != "ok" || res[0].Usage >= 0.08 || res[0].Resize != nil {
		t.Fatalf("volume check after the advised resize: %+v, %v; want ok, under 8 %%", res, err)
	}
	t.Logf("%s after the advised resize to %d GB: %.2f %%", vol, size, res[0].Usage*100)
}

// fsckScenario: fsck refuses a volume a running container uses and names it; on a clean
// volume it reports clean without changing a byte; on a corrupted one it reports the findings
// (exit 1) and changes nothing, and --repair repairs it.
func fsckScenario(t *testing.T, s *scene, fstype string) {
	vol := fmt.Sprintf("fsck-%s-%d", fstype, sceneSeq.Add(1))
	s.must(t, "volume", "create", "-d", s.driver, "-o", "size=10", "-o", "fstype="+fstype, vol)
	user := vol + "-user"
	t.Cleanup(func() {
		s.docker(context.Background(), "rm", "-f", user)
		s.docker(context.Background(), "volume", "rm", "-f", vol)
	})
	s.must(t, "run", "-d", "--name", user, "-v", vol+":/data", s.image, "busybox", "sh", "-c",
		"echo keep > /data/keep; echo victim > /data/victim; exec busybox sleep 2147483647")
	res, r := s.fsck(t, vol)
	if r.err == nil || res != nil || !strings.Contains(r.stderr, "in use by running containers: "+user) {
		t.Fatalf("fsck of a volume a running container uses: want a refusal naming %s\n%s", user, r)
	}
	s.must(t, "stop", "-t", "1", user)
	id := hetznerID(t, s, vol)
	img := s.volumeImage(id)
	before := sparseHash(t, img)
	res, r = s.fsck(t, vol)
	if r.err != nil || res == nil || !res.Clean || len(res.Findings) != 0 || res.FSType != fstype {
		t.Fatalf("fsck of a clean volume: %+v\n%s", res, r)
	}
	if after := sparseHash(t, img); after != before {
		t.Errorf("fsck of a clean volume changed its bytes: %s -> %s", before, after)
	}
	dev := res.Device
	switch fstype {
	case "ext4":
		s.onServer(t, "debugfs -w -R 'clri /victim' "+dev)
	case "xfs":
		s.onServer(t, "xfs_db -x -c 'sb 0' -c 'inode 128' -c 'write -d core.nlinkv2 9' "+dev)
	}
	before = sparseHash(t, img)
	res, r = s.fsck(t, vol)
	if r.err == nil || res == nil || res.Clean || len(res.Findings) == 0 || !strings.Contains(r.stderr, "--repair") {
		t.Fatalf("fsck of a corrupted volume: %+v; want findings and exit 1\n%s", res, r)
	}
	if after := sparseHash(t, img); after != before {
		t.Errorf("fsck without --repair changed the corrupted volume: %s -> %s", before, after)
	}
	text := s.docker(t.Context(), "dockbridge", "volume", "fsck", vol)
	if !strings.Contains(text.stdout, "PROBLEMS FOUND") || !strings.Contains(text.stdout, res.Findings[0]) {
		t.Errorf("fsck's text report lacks the verdict or the findings:\n%s", text)
	}
	res, r = s.fsck(t, vol, "--repair")
	if r.err != nil || res == nil || res.Clean || !res.Repaired {
		t.Fatalf("fsck --repair: %+v\n%s", res, r)
	}
	s.must(t, "start", user)
	if got := strings.TrimSpace(s.must(t, "exec", user, "busybox", "cat", "/data/keep").stdout); got != "keep" {
		t.Errorf("after the repair /data/keep holds %q", got)
	}
}

// checkWriter checks the writer's log has no gap and no torn line, and the blob is intact.
// With writer "" it reads the volume in a new container.
func checkWriter(t testing.TB, s *scene, writer, vol, wantBlob string) {
	t.Helper()
	args := []string{"exec", writer}
	if writer == "" {
		args = []string{"run", "--rm", "-v", vol + ":/data", s.image}
	}
	out := s.must(t, append(args, "busybox", "sh", "-c", "busybox sha256sum /data/blob; busybox cat /data/log")...).stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if f := strings.Fields(lines[0]); len(f) < 1 || f[0] != wantBlob {
		t.Errorf("the blob changed: %q, want sha256 %s", lines[0], wantBlob)
	}
	n := 0
	for _, l := range lines[1:] {
		n++
		if l != fmt.Sprintf("line %d", n) {
			t.Fatalf("the writer's log breaks at line %d: %q", n, l)
		}
	}
	if n < 10 {
		t.Errorf("the writer wrote only %d lines", n)
	}
}

func hetznerID(t testing.TB, s *scene, vol string) int64 {
	t.Helper()
	out := s.must(t, "volume", "inspect", "-f", "{{index .Status \"hetzner_id\"}}", vol).stdout
	id, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("hetzner id of %s: %q", vol, out)
	}
	return id
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sparseHash hashes a sparse image file by its data extents (offset and bytes) and size, so a
// 10 GB volume image hashes in well under a second; any write changes it.
func sparseHash(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "size %d\n", size)
	var off int64
	for off < size {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break // no data after off
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "extent %d\n", data)
		if _, err := io.Copy(h, io.NewSectionReader(f, data, hole-data)); err != nil {
			t.Fatal(err)
		}
		off = hole
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestVolumeResizeAndFsckLocal runs the scenarios on this machine's engine, which the
// simulator's local backend makes a server with loop devices; the CLI grows and checks the
// filesystems in its own process, as root.
func TestVolumeResizeAndFsckLocal(t *testing.T) {
	requireTools(t)
	cliPlugin, _ := testbuild.Build(t)
	env, err := plugintest.Start(t.Context(), plugintest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	config := filepath.Join(t.TempDir(), "docker")
	if err := os.MkdirAll(filepath.Join(config, "cli-plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cliPlugin, filepath.Join(config, "cli-plugins", "docker-dockbridge")); err != nil {
		t.Fatal(err)
	}
	image := "dockbridge-e2e-busybox:resize"
	var environ []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "DOCKER_") && !strings.HasPrefix(k, "HCLOUD_") && !strings.HasPrefix(k, "DOCKBRIDGE_") {
			environ = append(environ, kv)
		}
	}
	environ = append(environ, "DOCKER_CONFIG="+config, "HCLOUD_TOKEN="+plugintest.Token, "HCLOUD_ENDPOINT="+env.Base+"/v1")
	api := hcloud.NewClient(hcloud.WithToken(plugintest.Token), hcloud.WithEndpoint(env.Base+"/v1"),
		hcloud.WithPollOpts(hcloud.PollOpts{BackoffFunc: hcloud.ConstantBackoff(20 * time.Millisecond)}))
	s := &scene{name: "the local backend", sim: env.Sim, api: api, driver: env.PluginName, image: image,
		capSysResource: hasCapSysResource(t),
		docker: func(ctx context.Context, args ...string) result {
			c := exec.CommandContext(ctx, "docker", args...)
			c.Env = environ
			var out, errb strings.Builder
			c.Stdout, c.Stderr = &out, &errb
			start := time.Now()
			err := c.Run()
			return result{stdout: out.String(), stderr: errb.String(), err: err, took: time.Since(start)}
		},
		onServer: func(t testing.TB, script string) string {
			out, err := exec.CommandContext(t.Context(), "sh", "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", script, err, out)
			}
			return string(out)
		},
		volumeImage: func(id int64) string { return filepath.Join(env.ImageDir, fmt.Sprintf("volume-%d.img", id)) },
	}
	imp := exec.CommandContext(t.Context(), "docker", "import", "-", image)
	imp.Stdin = strings.NewReader(string(testimage.BusyboxRootfs(t)))
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "image", "rm", "-f", image).Run() })
	for _, fstype := range []string{"ext4", "xfs"} {
		t.Run("resize/"+fstype, func(t *testing.T) { growScenario(t, s, fstype) })
		t.Run("fsck/"+fstype, func(t *testing.T) { fsckScenario(t, s, fstype) })
	}
	t.Run("check advises a resize", func(t *testing.T) { adviceScenario(t, s) })
}

func hasCapSysResource(t testing.TB) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<24) != 0
		}
	}
	return false
}

// TestVolumeResizeAndFsckOnAHost runs the scenarios on a dockbridge host (a simulated server
// that really boots, through its docker context): the CLI grows and checks filesystems as root
// over SSH with the plugin's binary as disk tool. Then the data volume: resized while the server
// runs and while there is none (it grows at the next up, before Docker starts), and checked
// with Docker stopped and started again.
func TestVolumeResizeAndFsckOnAHost(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	const env = "default"
	first, _ := w.up(t, env)
	if r := w.run(ctx, testimage.BusyboxRootfs(t), nil, "--context", "dockbridge", "import", "-", "keep:1"); r.err != nil {
		t.Fatalf("docker import through the context: %s", r)
	}
	caps := w.must(t, "dockbridge", "ssh", "--name", env, "--", "grep CapEff /proc/self/status").stdout
	capEff, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(caps), "CapEff:")), 16, 64)
	if err != nil {
		t.Fatalf("capabilities on the server: %q", caps)
	}
	s := &scene{name: "a dockbridge host", sim: w.sim.Sim.Sim, api: w.api, driver: "hetzner", image: "keep:1",
		capSysResource: capEff&(1<<24) != 0,
		docker: func(ctx context.Context, args ...string) result {
			return w.run(ctx, nil, nil, append([]string{"--context", "dockbridge"}, args...)...)
		},
		onServer: func(t testing.TB, script string) string {
			return w.must(t, "dockbridge", "ssh", "--name", env, "--", script).stdout
		},
		volumeImage: w.sim.VolumeImage,
	}
	for _, fstype := range []string{"ext4", "xfs"} {
		t.Run("resize/"+fstype, func(t *testing.T) { growScenario(t, s, fstype) })
		t.Run("fsck/"+fstype, func(t *testing.T) { fsckScenario(t, s, fstype) })
	}
	t.Run("check advises a resize", func(t *testing.T) { adviceScenario(t, s) })

	// The data volume.
	s.must(t, "volume", "create", "-d", "hetzner", "-o", "size=10", "data-user")
	s.must(t, "run", "-d", "--name", "data-user", "--restart", "unless-stopped", "-v", "data-user:/data", "keep:1",
		"busybox", "sh", "-c", "echo here > /data/mark; exec busybox sleep 2147483647")
	t.Run("fsck --data", func(t *testing.T) {
		res, r := s.fsck(t, "--data")
		if r.err != nil || res == nil || !res.Clean || !res.Data || !res.DockerStopped || !res.DockerStarted || !res.Remounted ||
			!slices.Contains(res.Unmounted, volumefs.DataMountpoint) {
			t.Fatalf("fsck --data: %+v\n%s", res, r)
		}
		waitRunning(t, s, "data-user")
		if got := strings.TrimSpace(s.must(t, "exec", "data-user", "busybox", "cat", "/data/mark").stdout); got != "here" {
			t.Errorf("after fsck --data the hetzner volume holds %q", got)
		}
	})
	t.Run("resize --data while the server runs, then while there is none", func(t *testing.T) {
		// dataGrown checks the data volume's filesystem fills its new size; on a server whose
		// root lacks CAP_SYS_RESOURCE, fsck --data grows it while it has it unmounted.
		dataGrown := func(t *testing.T, sizeGB int) {
			t.Helper()
			if !s.capSysResource {
				res, r := s.fsck(t, "--data")
				if r.err != nil || res == nil || !res.Clean || !res.Grown || !res.DockerStarted {
					t.Fatalf("fsck --data after a deferred growth: %+v; want it grown while unmounted\n%s", res, r)
				}
			}
			var st struct {
				Volume struct {
					SizeGB int   `json:"size_gb"`
					Total  int64 `json:"total_bytes"`
				} `json:"volume"`
			}
			out := w.must(t, "dockbridge", "status", "--name", env, "-o", "json").stdout
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatal(err)
			}
			t.Logf("data volume: %d GB, filesystem %d bytes", st.Volume.SizeGB, st.Volume.Total)
			if st.Volume.SizeGB != sizeGB || st.Volume.Total < int64(sizeGB-1)<<30 {
				t.Errorf("the data volume is %d GB with a %d-byte filesystem, want it grown to %d GB", st.Volume.SizeGB, st.Volume.Total, sizeGB)
			}
			waitRunning(t, s, "data-user")
			if got := strings.TrimSpace(s.must(t, "exec", "data-user", "busybox", "cat", "/data/mark").stdout); got != "here" {
				t.Errorf("the hetzner volume holds %q", got)
			}
		}
		res, r := s.resize(t, "--data", "+5G")
		if r.err != nil || res == nil || !res.Data || !res.Resized || res.SizeGB != res.SizeGBBefore+5 {
			t.Fatalf("resize --data +5G: %+v\n%s", res, r)
		}
		if s.capSysResource == res.GrowsAtNextMount || !s.capSysResource && !strings.Contains(res.Note, "CAP_SYS_RESOURCE") {
			t.Errorf("resize --data with CAP_SYS_RESOURCE=%v on the server: grows at next mount = %v (%s)", s.capSysResource, res.GrowsAtNextMount, res.Note)
		}
		dataGrown(t, res.SizeGB)

		w.must(t, "dockbridge", "down", "--name", env)
		res, r = s.resize(t, "--data", "+5G")
		if r.err != nil || res == nil || !res.Resized || !res.GrowsAtNextMount || !strings.Contains(res.Note, "docker dockbridge up") {
			t.Fatalf("resize --data +5G without a server: %+v\n%s", res, r)
		}
		second, _ := w.up(t, env)
		if second.VolumeID != first.VolumeID {
			t.Fatalf("up after down uses volume %d, want %d", second.VolumeID, first.VolumeID)
		}
		var note string
		for _, st := range second.Steps {
			if strings.HasPrefix(st.Title, "Growing the data volume's filesystem") {
				note = st.Note
			}
		}
		if want := map[bool]string{true: "grown to the volume's", false: "CAP_SYS_RESOURCE"}[s.capSysResource]; !strings.Contains(note, want) {
			t.Errorf("up after resize --data: the growth step says %q, want %q", note, want)
		}
		dataGrown(t, res.SizeGB)
	})
}

// waitRunning waits (90 s at most) until the container runs again, by its restart policy.
func waitRunning(t testing.TB, s *scene, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := s.docker(t.Context(), "inspect", "-f", "{{.State.Running}}", name)
		if r.err == nil && strings.TrimSpace(r.stdout) == "true" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s does not run again after 90 s: %s", name, r)
		}
		time.Sleep(time.Second)
	}
}
