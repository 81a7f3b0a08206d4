// Package plugintest runs the `hetzner` managed volume plugin for tests: plugin/build.sh
// assembles it, `docker plugin create` installs it on the local engine, and it talks to an
// in-process Hetzner Cloud simulator whose local backend makes this machine a server with real
// loop devices. The volume plugin's integration tests and the volume backup round trip share it.
//
// Several test processes may run it at the same time on one engine (go test runs packages in
// parallel). Each process gets its own simulator, its own by-id device directory under /dev and,
// unless it asks for the real name hetzner:latest, its own plugin instance named
// dockbridge-test-<pid>/hetzner:latest: instances of different names never collide, and the
// driver name still ends in "/hetzner", so the CLI treats it as the hetzner plugin. Only one
// process may own hetzner:latest at a time (the plugin's own integration tests).
package plugintest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// Token is the simulator's API token.
const Token = "itest-token"

// Options configure Start.
type Options struct {
	// PluginName is the plugin instance; default dockbridge-test-<pid>/hetzner:latest.
	PluginName string
	// LocalServer names the simulator's server that is this machine; default "itest-host".
	LocalServer string
	// ActionDurations overrides the simulator's action durations (nil: the "fast" profile).
	ActionDurations map[string]time.Duration
	// Settings are extra plugin settings (KEY=VALUE), e.g. LOG_LEVEL=debug.
	Settings []string
	// MetricsAddr asks the plugin to serve metrics on a free local port (Env.MetricsAddr).
	MetricsAddr bool
}

// Env is a running simulator with the plugin enabled against it.
type Env struct {
	Sim        *hcloudsim.Sim
	Base       string // http://127.0.0.1:PORT
	Client     *hetzner.Client
	ByID       string // the simulator's /dev/disk/by-id, the plugin's DEVICE_DIR
	ImageDir   string // the volumes' sparse image files
	Tmp        string // scratch directory removed by Close
	PluginName string // e.g. hetzner:latest
	PluginID   string
	// PropagatedMount is where the plugin mounts volumes in its own root (config.json).
	PropagatedMount string
	MetricsAddr     string // host:port when Options.MetricsAddr
	LocalID         int64  // the simulator's id of this machine
}

// DefaultPluginName is this process's own plugin instance.
func DefaultPluginName() string {
	return fmt.Sprintf("dockbridge-test-%d/hetzner:latest", os.Getpid())
}

// Prerequisites reports what this machine lacks to run the plugin (nil: nothing).
func Prerequisites() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		missing = append(missing, "/dev/loop-control (modprobe loop)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing = append(missing, "a running Docker engine (docker info: "+strings.TrimSpace(string(out))+")")
	}
	for _, t := range []string{"sfdisk", "mkfs.xfs", "mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing prerequisites: %s", strings.Join(missing, "; "))
	}
	return nil
}

// Start starts a simulator, builds the plugin and enables it against the simulator, with
// `--timeout` as up does (dockbridge.PluginEnableArgs). On error what was made is undone.
// Close it at the end.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	if o.PluginName == "" {
		o.PluginName = DefaultPluginName()
	}
	if o.LocalServer == "" {
		o.LocalServer = "itest-host"
	}
	removeStale()
	e := &Env{PluginName: o.PluginName}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.Tmp, err = os.MkdirTemp("", "dockbridge-plugin-it-"); err != nil {
		return nil, err
	}
	// A by-id directory of our own under /dev (the plugin sees the host's /dev): other
	// simulators running at the same time number their volumes the same way.
	e.ByID = fmt.Sprintf("/dev/dockbridge-it-%d", os.Getpid())
	e.ImageDir = filepath.Join(e.Tmp, "images")
	if err := os.MkdirAll(e.ByID, 0o755); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	backend, err := hcloudsim.NewLocalBackend(hcloudsim.LocalBackendConfig{ImageDir: e.ImageDir, ByIDDir: e.ByID, Logger: log})
	if err != nil {
		return nil, err
	}
	cfg := hcloudsim.Config{Token: Token, ActionProfile: "fast", LocalServer: o.LocalServer, Backend: backend,
		Logger: log, ActionDurations: o.ActionDurations}
	if e.Sim, err = hcloudsim.New(ctx, cfg); err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}
	e.LocalID = e.Sim.LocalServerID()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = http.Serve(ln, e.Sim) }()
	e.Base = "http://" + ln.Addr().String()
	if e.Client, err = hetzner.New(hetzner.Config{Endpoint: e.Base + "/v1", Token: Token,
		PollBase: 20 * time.Millisecond, PollMax: 200 * time.Millisecond}); err != nil {
		return nil, err
	}
	// The secrets mount's source must exist (a server has /etc/dockbridge/secrets): a
	// directory of our own instead, so the test never touches this machine's /etc.
	secrets := filepath.Join(e.Tmp, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		return nil, err
	}
	settings := []string{"secrets.source=" + secrets, "HCLOUD_TOKEN=" + Token, "HCLOUD_ENDPOINT=" + e.Base + "/v1",
		"HCLOUD_METADATA_ENDPOINT=" + e.Base + "/hetzner/v1/metadata",
		"DEVICE_DIR=" + e.ByID, "DEVICE_WAIT_TIMEOUT=20s"}
	if o.MetricsAddr {
		mln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		e.MetricsAddr = mln.Addr().String()
		mln.Close()
		settings = append(settings, "METRICS_ADDR="+e.MetricsAddr)
	}
	settings = append(settings, o.Settings...)

	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..", "..")
	out := filepath.Join(e.Tmp, "plugin")
	build := exec.CommandContext(ctx, "bash", filepath.Join(repo, "plugin/build.sh"))
	build.Env = append(os.Environ(), "OUT="+out, "NO_CREATE=1")
	if b, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("plugin/build.sh: %v\n%s", err, b)
	}
	_, _ = Docker("plugin", "rm", "-f", e.PluginName)
	if _, err := Docker("plugin", "create", e.PluginName, out); err != nil {
		return nil, err
	}
	if _, err := Docker(append([]string{"plugin", "set", e.PluginName}, settings...)...); err != nil {
		return nil, err
	}
	if _, err := Docker(dockbridge.PluginEnableArgs(e.PluginName)...); err != nil {
		return nil, err
	}
	id, err := Docker("plugin", "inspect", "-f", "{{.Id}}", e.PluginName)
	if err != nil {
		return nil, err
	}
	e.PluginID = strings.TrimSpace(id)
	pm, err := Docker("plugin", "inspect", "-f", "{{.Config.PropagatedMount}}", e.PluginName)
	if err != nil {
		return nil, err
	}
	e.PropagatedMount = strings.TrimSpace(pm)
	return e, nil
}

// Close removes the plugin's volumes (remove the containers using them first), the plugin, the
// simulator, the loop devices of its volumes and the scratch directories.
func (e *Env) Close() {
	if e.PluginID != "" {
		if out, err := Docker("volume", "ls", "-q", "--filter", "driver="+e.PluginName); err == nil {
			for _, v := range strings.Fields(out) {
				_, _ = Docker("volume", "rm", "-f", v)
			}
		}
	}
	_, _ = Docker("plugin", "disable", "-f", e.PluginName)
	_, _ = Docker("plugin", "rm", "-f", e.PluginName)
	if e.Sim != nil {
		_ = e.Sim.Close()
	}
	detachLoops(e.ImageDir)
	if e.ByID != "" {
		_ = os.RemoveAll(e.ByID)
	}
	if e.Tmp != "" {
		_ = os.RemoveAll(e.Tmp)
	}
}

// HostMountpoint is where the plugin mounts volume name, seen from the host.
func (e *Env) HostMountpoint(name string) string {
	return filepath.Join("/var/lib/docker/plugins", e.PluginID, "propagated-mount", name)
}

// HostPath maps a path in the plugin's root under its propagated mount (what the engine reports
// as a volume's Mountpoint, e.g. /mnt/volumes/NAME) to the same directory seen from the host.
func (e *Env) HostPath(pluginPath string) (string, error) {
	rel, err := filepath.Rel(e.PropagatedMount, pluginPath)
	if err != nil || e.PropagatedMount == "" || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s is not under the plugin's propagated mount %q", pluginPath, e.PropagatedMount)
	}
	return filepath.Join("/var/lib/docker/plugins", e.PluginID, "propagated-mount", rel), nil
}

// detachLoops unmounts and detaches the loop devices of the image files left in dir.
func detachLoops(dir string) {
	if dir == "" {
		return
	}
	imgs, _ := filepath.Glob(filepath.Join(dir, "*.img"))
	for _, img := range imgs {
		out, _ := exec.Command("losetup", "-j", img).Output()
		for _, line := range strings.Split(string(out), "\n") {
			if dev, _, ok := strings.Cut(line, ":"); ok {
				_ = exec.Command("umount", dev).Run()
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
	}
}

var staleName = regexp.MustCompile(`^dockbridge-test-(\d+)/hetzner:latest$`)

// removeStale removes the plugin instances of test processes that are gone (killed before
// their Close ran).
func removeStale() {
	out, err := Docker("plugin", "ls", "--format", "{{.Name}}")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(out) {
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM) {
			continue // alive
		}
		if vols, err := Docker("volume", "ls", "-q", "--filter", "driver="+name); err == nil {
			for _, v := range strings.Fields(vols) {
				_, _ = Docker("volume", "rm", "-f", v)
			}
		}
		_, _ = Docker("plugin", "disable", "-f", name)
		_, _ = Docker("plugin", "rm", "-f", name)
	}
}

// Docker runs the docker CLI and returns its output; the error includes the output.
func Docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
