// Package e2e runs `docker dockbridge` as users do — the docker CLI with the installed plugin,
// the ssh binary, a docker context over SSH — against the simulator's container backend,
// where every server really boots its user-data (systemd, cloud-init, sshd, Docker on the
// data volume) and the hetzner volume plugin really attaches, formats and mounts volumes.
package e2e_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/boottest"
	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/testbuild"
	"github.com/dockbridge/dockbridge/internal/testenv"
	"github.com/dockbridge/dockbridge/internal/testproc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbuild.Cleanup()
	os.Exit(code)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// requireTools fails (skips under -short) without what the tests use beyond boottest's list.
func requireTools(t testing.TB) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"docker", "ssh", "go", "bash", "ldd", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if f, err := elf.Open("/bin/busybox"); err != nil {
		missing = append(missing, "a static /bin/busybox (apt-get install busybox-static)")
	} else {
		if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
			missing = append(missing, "a static /bin/busybox (it is dynamically linked: apt-get install busybox-static)")
		}
		f.Close()
	}
	testenv.Require(t, "the end-to-end tests need", missing)
}

// world is one user's machine: a HOME, a DOCKER_CONFIG with the plugin installed, the ssh
// binary reading $HOME/.ssh/config (OpenSSH itself reads the passwd home, which is the
// real one: the wrapper keeps the tests off it), and a simulator whose servers boot.
type world struct {
	t    testing.TB
	sim  *boottest.Env
	api  *hcloud.Client
	root string
	// pluginDir is the volume plugin folder up installs; its rootfs holds the server binary.
	pluginDir string
	home      string
	config    string // DOCKER_CONFIG
	environ   []string
	envs      []string // dockbridge environments used, for cleanup
	// controlPaths are the shared SSH connections' sockets the environments had, for cleanup.
	controlPaths []string
	// requests counts the API requests of the CLI (not those of the volume plugins inside
	// the servers, which reach the simulator directly).
	requests *counter
	// forcedDeletes is how many deletes of a running server the test makes on purpose (with
	// --force): at its end the simulator's unclean_deletes must be exactly that, so every
	// other delete of the suite came after a clean stop.
	forcedDeletes int64
}

// counter is a reverse proxy in front of the simulator that counts requests per
// "METHOD /path" with numeric ids replaced by {id}.
type counter struct {
	mu     sync.Mutex
	counts map[string]int64
}

var idRe = regexp.MustCompile(`/[0-9]+(/|$)`)

func (c *counter) ServeHTTPWith(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + idRe.ReplaceAllString(idRe.ReplaceAllString(r.URL.Path, "/{id}$1"), "/{id}$1")
		c.mu.Lock()
		c.counts[key]++
		c.mu.Unlock()
		next.ServeHTTP(rw, r)
	})
}

func (c *counter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// spent is the requests counted while f ran.
func (c *counter) spent(f func()) requests {
	before := c.snapshot()
	f()
	d := requests{}
	for k, v := range c.snapshot() {
		if n := v - before[k]; n != 0 {
			d[k] = n
		}
	}
	return d
}

// requests are counts per "METHOD /path".
type requests map[string]int64

func (r requests) total() int64 {
	var n int64
	for _, v := range r {
		n += v
	}
	return n
}

func (r requests) mutations() []string {
	var out []string
	for k := range r {
		if !strings.HasPrefix(k, "GET ") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (r requests) String() string {
	keys := slices.Sorted(maps.Keys(r))
	var b strings.Builder
	fmt.Fprintf(&b, "%d:", r.total())
	for _, k := range keys {
		fmt.Fprintf(&b, " %s×%d", k, r[k])
	}
	return b.String()
}

// newWorld is a developer's machine: the CLI built with plain go build, the volume plugin
// folder from plugin/build.sh (DOCKBRIDGE_PLUGIN_DIR).
func newWorld(t testing.TB, opts ...boottest.Option) *world {
	t.Helper()
	boottest.Require(t)
	requireTools(t)
	cliPlugin, pluginDir := testbuild.Build(t)
	return newWorldWith(t, func(plugins string) {
		if err := os.Symlink(cliPlugin, filepath.Join(plugins, "docker-dockbridge")); err != nil {
			t.Fatal(err)
		}
	}, pluginDir, opts...)
}

// newWorldWith makes a world whose DOCKER_CONFIG/cli-plugins install fills; pluginDir, when
// set, is the volume plugin folder up uploads.
func newWorldWith(t testing.TB, install func(pluginsDir string), pluginDir string, opts ...boottest.Option) *world {
	t.Helper()
	sim := boottest.Start(t, opts...)
	w := &world{t: t, sim: sim, api: sim.Client(), root: t.TempDir(), pluginDir: pluginDir, requests: &counter{counts: map[string]int64{}}}
	target, err := url.Parse(sim.BaseURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(w.requests.ServeHTTPWith(httputil.NewSingleHostReverseProxy(target)))
	t.Cleanup(proxy.Close)
	w.home = filepath.Join(w.root, "home")
	w.config = filepath.Join(w.home, ".docker")
	wrap := filepath.Join(w.root, "bin")
	for _, d := range []string{filepath.Join(w.config, "cli-plugins"), wrap} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	install(filepath.Join(w.config, "cli-plugins"))
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\n# ssh with this test's ~/.ssh/config ($E2E_SSH_OPTS: a baseline without connection sharing; $E2E_SSH_CONFIG: another config)\nexec %s -F \"${E2E_SSH_CONFIG:-$HOME/.ssh/config}\" $E2E_SSH_OPTS \"$@\"\n", sshBin)
	if err := os.WriteFile(filepath.Join(wrap, "ssh"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME" || k == "PATH" || strings.HasPrefix(k, "DOCKER_") || strings.HasPrefix(k, "HCLOUD_") || strings.HasPrefix(k, "DOCKBRIDGE_"):
			continue
		}
		w.environ = append(w.environ, kv)
	}
	w.environ = append(w.environ,
		"HOME="+w.home, "DOCKER_CONFIG="+w.config, "PATH="+wrap+":"+os.Getenv("PATH"),
		"HCLOUD_TOKEN="+sim.Token, "HCLOUD_ENDPOINT="+proxy.URL+"/v1",
		// The API as processes inside a server reach it (the volume plugin).
		"DOCKBRIDGE_PLUGIN_ENDPOINT="+sim.ServerEndpoint)
	if pluginDir != "" {
		w.environ = append(w.environ, "DOCKBRIDGE_PLUGIN_DIR="+pluginDir)
	}
	t.Cleanup(func() {
		if n := uncleanDeletes(t, sim.BaseURL); n != w.forcedDeletes {
			t.Errorf("the simulator counted %d unclean deletes (a server deleted while a volume's filesystem was mounted), want %d", n, w.forcedDeletes)
		}
	})
	t.Cleanup(func() {
		// The laptop agents (ports, shared folders) and the shared SSH connections would
		// outlive the test (and hold whatever they inherited): agent stop and ssh -O exit end
		// them, and what is left after that is ended here, process group and all (a
		// surviving agent is an error: agent stop must end it).
		defer func() {
			for _, p := range testproc.End(append(slices.Clone(w.controlPaths), w.root+"/")...) {
				t.Logf("ended a process the test left running: pid %d: %s", p.PID, p.Command)
			}
		}()
		for _, env := range w.envs {
			w.noteControlPath(env)
		}
		for _, env := range w.envs {
			if t.Failed() {
				if b, err := os.ReadFile(filepath.Join(w.config, "dockbridge", "envs", env, "agent.log")); err == nil {
					t.Logf("laptop agent log of %s:\n%s", env, b)
				}
			}
			_ = w.cmd(context.Background(), nil, nil, "dockbridge", "agent", "stop", "--name", env).Run()
		}
		for _, env := range w.envs {
			cmd := exec.Command("ssh", "-F", filepath.Join(w.home, ".ssh", "config"), "-O", "exit", "dockbridge-"+env)
			cmd.Env = append(slices.Clone(w.environ), "DOCKBRIDGE_NO_WAKE=1") // ending a connection must not wake a server
			_ = cmd.Run()
		}
		for _, p := range testproc.Find(w.root + "/") {
			if strings.Contains(p.Command, " agent run ") {
				t.Errorf("a laptop agent outlived `agent stop`: pid %d: %s", p.PID, p.Command)
			}
		}
	})
	return w
}

// uncleanDeletes reads the top-level integer unclean_deletes of the simulator's /_sim/stats.
func uncleanDeletes(t testing.TB, base string) int64 {
	t.Helper()
	resp, err := http.Get(base + "/_sim/stats")
	if err != nil {
		t.Fatalf("GET /_sim/stats: %v", err)
	}
	defer resp.Body.Close()
	var doc map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("GET /_sim/stats: %v", err)
	}
	var n int64
	if err := json.Unmarshal(doc["unclean_deletes"], &n); err != nil {
		t.Fatalf("/_sim/stats has no integer unclean_deletes: %v", err)
	}
	return n
}

func (w *world) use(env string) {
	if !slices.Contains(w.envs, env) {
		w.envs = append(w.envs, env)
	}
}

// noteControlPath remembers env's shared connection's socket as it is now (each server has its
// own), for the cleanup.
func (w *world) noteControlPath(env string) {
	paths, err := host.NewPaths(w.config)
	if err != nil {
		return
	}
	if _, cp, err := host.SSHOptions(paths, env); err == nil && cp != "" && !slices.Contains(w.controlPaths, cp) {
		w.controlPaths = append(w.controlPaths, cp)
	}
}

// result is one command's outcome.
type result struct {
	stdout, stderr string
	err            error
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// cmd prepares `docker ARGS` on this machine.
func (w *world) cmd(ctx context.Context, stdin []byte, extraEnv []string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "docker", args...)
	c.Env = append(slices.Clone(w.environ), extraEnv...)
	c.Dir = w.root
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	return c
}

func (w *world) run(ctx context.Context, stdin []byte, extraEnv []string, args ...string) result {
	c := w.cmd(ctx, stdin, extraEnv, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	start := time.Now()
	err := c.Run()
	return result{stdout: out.String(), stderr: errb.String(), err: err, took: time.Since(start)}
}

// must runs `docker ARGS` and fails the test if it fails.
func (w *world) must(t testing.TB, args ...string) result {
	t.Helper()
	r := w.run(t.Context(), nil, nil, args...)
	if r.err != nil {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// on runs `docker --context <env's context> ARGS`.
func (w *world) on(t testing.TB, env string, args ...string) result {
	t.Helper()
	return w.must(t, append([]string{"--context", contextName(env)}, args...)...)
}

func contextName(env string) string {
	if env == "default" {
		return "dockbridge"
	}
	return "dockbridge-" + env
}

// upResult is the part of `up -o json` the tests read.
type upResult struct {
	ServerID      int64   `json:"server_id"`
	VolumeID      int64   `json:"volume_id"`
	ServerCreated bool    `json:"server_created"`
	Seconds       float64 `json:"seconds"`
	Steps         []struct {
		Title   string  `json:"step"`
		Seconds float64 `json:"seconds"`
		Note    string  `json:"note"`
	} `json:"steps"`
}

// up runs `docker dockbridge up -o json` and returns what it reported and the API
// requests it spent.
func (w *world) up(t testing.TB, env string, extra ...string) (upResult, requests) {
	t.Helper()
	w.use(env)
	var r result
	spent := w.requests.spent(func() {
		r = w.must(t, append([]string{"dockbridge", "up", "--name", env, "-o", "json"}, extra...)...)
	})
	w.noteControlPath(env)
	var res upResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("up -o json is not JSON: %v\n%s", err, r.stdout)
	}
	return res, spent
}

// ours lists what carries dockbridge's label in the project, by kind. It retries: the
// simulator may be injecting faults into these requests too.
func (w *world) ours(t testing.TB) map[string][]string {
	t.Helper()
	ctx := t.Context()
	sel := hcloud.ListOpts{LabelSelector: "managed-by=dockbridge"}
	got := map[string][]string{}
	retry := func(what string, f func() error) {
		var err error
		for range 20 {
			if err = f(); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("list %s: %v", what, err)
	}
	retry("servers", func() error {
		servers, err := w.api.Server.AllWithOpts(ctx, hcloud.ServerListOpts{ListOpts: sel})
		for _, s := range servers {
			got["server"] = append(got["server"], fmt.Sprintf("%s(%d)", s.Name, s.ID))
		}
		return err
	})
	retry("volumes", func() error {
		vols, err := w.api.Volume.AllWithOpts(ctx, hcloud.VolumeListOpts{ListOpts: sel})
		for _, v := range vols {
			got["volume"] = append(got["volume"], fmt.Sprintf("%s(%d)", v.Name, v.ID))
		}
		return err
	})
	retry("firewalls", func() error {
		fws, err := w.api.Firewall.AllWithOpts(ctx, hcloud.FirewallListOpts{ListOpts: sel})
		for _, f := range fws {
			got["firewall"] = append(got["firewall"], fmt.Sprintf("%s(%d)", f.Name, f.ID))
		}
		return err
	})
	retry("ssh keys", func() error {
		keys, err := w.api.SSHKey.AllWithOpts(ctx, hcloud.SSHKeyListOpts{ListOpts: sel})
		for _, k := range keys {
			got["ssh key"] = append(got["ssh key"], fmt.Sprintf("%s(%d)", k.Name, k.ID))
		}
		return err
	})
	return got
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
