// Package integration drives the `hetzner` managed volume plugin through the real Docker engine:
// the plugin is assembled by plugin/build.sh, installed with `docker plugin create`, and talks to
// an in-process Hetzner Cloud simulator whose local backend turns this machine into a server
// with real loop devices. Needs root, a running dockerd, docker-compose and busybox-static:
// missing prerequisites FAIL the tests (they are skipped only under -short).
//
// The tests share one simulator and one plugin (hetzner:latest, recreated at start and removed
// at the end). They do not restart dockerd unless DOCKBRIDGE_TEST_DOCKERD_RESTART=1: that would
// disturb every other package's tests running at the same time.
package integration

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/volumedriver/plugintest"
)

const (
	pluginName = "hetzner:latest"
	image      = "dockbridge-test/busybox:latest"
)

var benchTable = flag.Bool("bench-table", false, "run TestPluginBench and print the API/latency table")

// env is the shared test environment: the simulator and the plugin hetzner:latest.
var env *plugintest.Env

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("plugin integration tests skipped under -short (they need root, dockerd and loop devices)")
		os.Exit(0)
	}
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: plugin integration setup: %v\n", err)
		teardown()
		os.Exit(1)
	}
	code := m.Run()
	teardown()
	os.Exit(code)
}

func prerequisites() error {
	var missing []string
	if err := plugintest.Prerequisites(); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		missing = append(missing, "docker-compose (apt-get install docker-compose)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox (apt-get install busybox-static)")
	}
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		missing = append(missing, "cryptsetup")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing prerequisites: %s", strings.Join(missing, "; "))
	}
	return nil
}

func setup() error {
	if err := prerequisites(); err != nil {
		return err
	}
	o := plugintest.Options{PluginName: pluginName, MetricsAddr: true, Settings: []string{"LOG_LEVEL=debug"}}
	if *benchTable {
		// Actions finish at once: the table shows the plugin's own latency, not simulated waits.
		o.ActionDurations = map[string]time.Duration{}
		for _, c := range []string{"create_volume", "attach_volume", "detach_volume", "resize_volume", "change_protection"} {
			o.ActionDurations[c] = 0
		}
	}
	var err error
	if env, err = plugintest.Start(context.Background(), o); err != nil {
		return err
	}
	return importImage()
}

func importImage() error {
	if _, err := dockerCmd("image", "inspect", image); err == nil {
		return nil
	}
	root, err := os.MkdirTemp(env.Tmp, "rootfs-")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		return err
	}
	for _, a := range []string{"sh", "cat", "echo", "ls", "sleep", "df", "stat", "touch", "test", "sync", "id"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	cmd := exec.Command("sh", "-c", "tar -C "+root+" -c . | docker import - "+image)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker import: %v: %s", err, out)
	}
	return nil
}

func teardown() {
	if out, err := dockerCmd("ps", "-aq", "--filter", "label=dockbridge-it"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = dockerCmd("rm", "-f", id)
		}
	}
	if env != nil {
		env.Close()
	}
}

func dockerCmd(args ...string) (string, error) { return plugintest.Docker(args...) }

func docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := dockerCmd(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// run runs script in a throwaway container with volume vol at /data.
func run(t testing.TB, vol, script string) string {
	t.Helper()
	return docker(t, "run", "--rm", "--label", "dockbridge-it=1", "-v", vol+":/data", image, "sh", "-c", script)
}

var seq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

// volName returns a fresh volume name for the test.
func volName(t testing.TB) string {
	n := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	n = strings.TrimPrefix(n, "testplugin")
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("it%d-%s", seq.Add(1), strings.Trim(n, "-"))
}

func createVolume(t testing.TB, name string, opts ...string) {
	t.Helper()
	args := []string{"volume", "create", "-d", "hetzner", name}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	docker(t, args...)
	t.Cleanup(func() { _, _ = dockerCmd("volume", "rm", "-f", name) })
}

// simVolume returns the simulator's volume of that name (nil if none).
func simVolume(t testing.TB, name string) *hetzner.Volume {
	t.Helper()
	v, err := env.Client.VolumeByName(context.Background(), name)
	if errors.Is(err, hetzner.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("simulator: volume %s: %v", name, err)
	}
	return v
}

// hostMountpoint is where the plugin mounts volume name, seen from the host.
func hostMountpoint(name string) string { return env.HostMountpoint(name) }

// hostMounted reports whether something is mounted on the volume's mount point in the host's
// mount namespace.
func hostMounted(t testing.TB, name string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mp := hostMountpoint(name)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == mp {
			return true
		}
	}
	return false
}

// pluginPID finds the plugin's process: it runs /hetzner-volume-plugin in its own root, with
// this run's DEVICE_DIR in its environment.
func pluginPID(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if pid := pluginPIDNow(); pid != 0 {
			return pid
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no plugin process found")
	return 0
}

func pluginPIDNow() int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if exe, err := os.Readlink(d + "/exe"); err != nil || exe != "/hetzner-volume-plugin" {
			continue
		}
		environ, err := os.ReadFile(d + "/environ")
		if err != nil || !strings.Contains(string(environ), "DEVICE_DIR="+env.ByID+"\x00") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		return pid
	}
	return 0
}

func stats() hcloudsim.Stats { return env.Sim.Stats() }

// apiRequests counts the API requests (not metadata) between two snapshots.
func apiRequests(before, after hcloudsim.Stats) (int64, map[string]int64) {
	var n int64
	diff := map[string]int64{}
	for k, v := range after.ByEndpoint {
		if d := v - before.ByEndpoint[k]; d > 0 && !strings.Contains(k, "/metadata/") {
			diff[k] = d
			n += d
		}
	}
	return n, diff
}
