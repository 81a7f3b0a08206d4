// Package swarmtest runs a multi-server dockbridge environment (a Docker Swarm of servers that
// really boot, on the simulator's container backend) as a user does: `docker dockbridge up
// --nodes 3`, `docker stack deploy` of a service with a `driver: hetzner` volume, moves of that
// service between nodes (drain, a power cut, a node that keeps the volume), `down`/`up` of the
// whole environment, its idle self-down as a whole, `node add` and `node rm` of a fourth node,
// and API faults during moves. Three booted nodes are slow on two cores: these tests run only
// with DOCKBRIDGE_TEST_SWARM=1 (make test-swarm).
package swarmtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/boottest"
	"github.com/dockbridge/dockbridge/internal/testbuild"
	"github.com/dockbridge/dockbridge/internal/testimage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbuild.Cleanup()
	os.Exit(code)
}

// requireSwarmRun skips unless DOCKBRIDGE_TEST_SWARM=1: `go test ./...` (make test) does not
// boot three servers; make test-swarm does.
func requireSwarmRun(t *testing.T) {
	t.Helper()
	if os.Getenv("DOCKBRIDGE_TEST_SWARM") != "1" {
		t.Skip("boots a swarm of three simulated servers (minutes): run with DOCKBRIDGE_TEST_SWARM=1 (make test-swarm)")
	}
}

// world is one user's machine (HOME, DOCKER_CONFIG with the plugin, an ssh wrapper reading
// $HOME/.ssh/config) and a simulator whose servers boot.
type world struct {
	t       *testing.T
	sim     *boottest.Env
	api     *hcloud.Client
	root    string
	home    string
	environ []string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	boottest.Require(t)
	cliPlugin, pluginDir := testbuild.Build(t)
	// SWARM_ACTION_PROFILE=realistic gives Hetzner-like action durations (the figures).
	sim := boottest.Start(t, boottest.WithActionProfile(os.Getenv("SWARM_ACTION_PROFILE")))
	w := &world{t: t, sim: sim, api: sim.Client(), root: t.TempDir()}
	w.home = filepath.Join(w.root, "home")
	config := filepath.Join(w.home, ".docker")
	wrap := filepath.Join(w.root, "bin")
	for _, d := range []string{filepath.Join(config, "cli-plugins"), wrap} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(cliPlugin, filepath.Join(config, "cli-plugins", "docker-dockbridge")); err != nil {
		t.Fatal(err)
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s -F \"$HOME/.ssh/config\" \"$@\"\n", sshBin)
	if err := os.WriteFile(filepath.Join(wrap, "ssh"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || k == "PATH" || strings.HasPrefix(k, "DOCKER_") || strings.HasPrefix(k, "HCLOUD_") || strings.HasPrefix(k, "DOCKBRIDGE_") {
			continue
		}
		w.environ = append(w.environ, kv)
	}
	w.environ = append(w.environ,
		"HOME="+w.home, "DOCKER_CONFIG="+config, "PATH="+wrap+":"+os.Getenv("PATH"),
		"HCLOUD_TOKEN="+sim.Token, "HCLOUD_ENDPOINT="+sim.Endpoint,
		"DOCKBRIDGE_PLUGIN_ENDPOINT="+sim.ServerEndpoint, "DOCKBRIDGE_PLUGIN_DIR="+pluginDir)
	t.Cleanup(func() {
		// Everything the test made goes (servers stopped cleanly first), and the shared SSH
		// connections with it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if r := w.run(ctx, "dockbridge", "destroy", "--volumes", "--yes"); r.err != nil {
			t.Logf("destroy at cleanup: %s", r)
			if r := w.run(ctx, "dockbridge", "destroy", "--volumes", "--yes", "--force"); r.err != nil {
				t.Logf("destroy --force at cleanup: %s", r)
			}
		}
	})
	return w
}

type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

func (w *world) run(ctx context.Context, args ...string) result {
	c := exec.CommandContext(ctx, "docker", args...)
	c.Env, c.Dir = w.environ, w.root
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	return result{stdout: out.String(), stderr: errb.String(), err: err}
}

func (w *world) must(t testing.TB, args ...string) string {
	t.Helper()
	r := w.run(t.Context(), args...)
	if r.err != nil {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

// on runs docker against the environment's context (node 1, a manager).
func (w *world) on(t testing.TB, args ...string) string {
	t.Helper()
	return w.must(t, append([]string{"--context", "dockbridge"}, args...)...)
}

// ssh runs a shell command on node index (its position in node ls).
func (w *world) ssh(t testing.TB, index int, cmd string) string {
	t.Helper()
	return w.must(t, "dockbridge", "ssh", "--node", fmt.Sprint(index), "--", cmd)
}

// node is the part of `node ls -o json` the tests read.
type node struct {
	Index        int     `json:"index"`
	Node         int     `json:"node"`
	Server       string  `json:"server"`
	ServerID     int64   `json:"server_id"`
	Status       string  `json:"status"`
	PrivateIP    string  `json:"private_ip"`
	Role         string  `json:"role"`
	Leader       bool    `json:"leader"`
	SwarmState   string  `json:"swarm_state"`
	Availability string  `json:"availability"`
	PriceHour    float64 `json:"price_per_hour"`
	Volume       *struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"volume"`
}

func (w *world) nodes(t testing.TB) []node {
	t.Helper()
	out := w.must(t, "dockbridge", "node", "ls", "-o", "json")
	var ns []node
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		t.Fatalf("node ls -o json is not a JSON array: %v\n%s", err, out)
	}
	return ns
}

// indexOf is the position in node ls of the node whose server is named host.
func indexOf(t testing.TB, ns []node, host string) int {
	t.Helper()
	for _, n := range ns {
		if n.Server == host {
			return n.Index
		}
	}
	t.Fatalf("no node has server %q: %+v", host, ns)
	return 0
}

// importBusybox gives every node the test image (no registry is reachable here).
func (w *world) importBusybox(t testing.TB, ns []node) {
	t.Helper()
	img := testimage.BusyboxRootfs(t)
	for _, n := range ns {
		c := exec.CommandContext(t.Context(), "docker", "dockbridge", "ssh", "--node", fmt.Sprint(n.Index), "--", "docker import - dockbridge-test/busybox:1 >/dev/null")
		c.Env, c.Stdin = w.environ, bytes.NewReader(img)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("import busybox on node %d: %v: %s", n.Index, err, out)
		}
	}
}

// stats reads the simulator's /_sim/stats (the plugins' requests from inside the servers
// included).
func (w *world) stats(t testing.TB) map[string]json.RawMessage {
	t.Helper()
	resp, err := http.Get(w.sim.BaseURL + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func (w *world) counter(t testing.TB, name string) int64 {
	t.Helper()
	var n int64
	if err := json.Unmarshal(w.stats(t)[name], &n); err != nil {
		t.Fatalf("/_sim/stats has no integer %s: %v", name, err)
	}
	return n
}

// apiRequests is the total of API requests the simulator counted.
func (w *world) apiRequests(t testing.TB) int64 { return w.counter(t, "total") }

// eventually polls f every 250 ms until it returns true, for at most d; it fails the test with
// what the last call said.
func eventually(t testing.TB, d time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, d, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
