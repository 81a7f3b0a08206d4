package swarmtest_test

import (
	"bufio"
	"cmp"
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

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

// The stack: one service with a hetzner volume, on workers only (the single manager stays up,
// so Swarm can reschedule), as the volume plugin's README recommends: stop-first updates, a
// restart delay, dnsrr (no IPVS on simulated servers). The task records its node and, the
// first time, writes 4 MiB of random data and its checksum.
const stack = `version: "3.8"
services:
  db:
    image: dockbridge-test/busybox:1
    environment:
      NODE: "{{.Node.Hostname}}"
    command: ["sh", "-c", "trap 'exit 0' TERM; echo $$NODE >> /data/hosts; [ -f /data/seed ] || { head -c 4194304 /dev/urandom > /data/seed.tmp && (cd /data && sha256sum seed.tmp | sed 's/seed.tmp/seed/' > seed.sha) && mv /data/seed.tmp /data/seed; }; while :; do sleep 1; done"]
    volumes: [data:/data]
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
      placement: {constraints: [node.role == worker]}
      update_config: {order: stop-first}
      restart_policy: {condition: any, delay: 2s}
volumes:
  data:
    driver: hetzner
`

const service, volumeName = "app_db", "app_data"

// figure is one measured move.
type figure struct {
	what     string
	took     time.Duration
	requests int64
	by       map[string]int64
}

var figures []figure

func TestSwarm(t *testing.T) {
	requireSwarmRun(t)
	w := newWorld(t)

	// Three nodes boot and form a swarm: docker node ls shows 3 Ready.
	w.must(t, "dockbridge", "up", "--nodes", "3")
	ns := w.nodes(t)
	checkNodes(t, w, ns)
	w.importBusybox(t, ns)

	// The stack, with its hetzner volume.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "stack.yml"), []byte(stack), 0o600); err != nil {
		t.Fatal(err)
	}
	w.on(t, "stack", "deploy", "--resolve-image", "never", "-c", filepath.Join(dir, "stack.yml"), "app")
	host := w.waitRunning(t, "", 3*time.Minute)
	seed := w.checkData(t, ns, host)
	t.Logf("the task runs on %s; its volume holds 4 MiB with checksum %s", host, seed)

	t.Run("PlannedMove", func(t *testing.T) { plannedMove(t, w, ns, seed) })
	t.Run("Refusal", func(t *testing.T) { refusal(t, w, ns, seed) })
	t.Run("Faults", func(t *testing.T) { faults(t, w, ns, seed) })
	t.Run("HardFailure", func(t *testing.T) { hardFailure(t, w, ns, seed) })
	t.Run("DownUp", func(t *testing.T) { downUp(t, w, seed) })
	t.Run("IdleDown", func(t *testing.T) { idleDown(t, w) })
	t.Run("Wake", func(t *testing.T) { wakeAll(t, w, seed) })
	t.Run("NodeAddRemove", func(t *testing.T) { nodeAddRemove(t, w) })

	if n := w.counter(t, "detaches_while_mounted"); n != 0 {
		t.Errorf("detaches_while_mounted = %d over the whole test, want 0", n)
	}
	if n := w.counter(t, "unclean_deletes"); n != 0 {
		t.Errorf("unclean_deletes = %d over the whole test, want 0", n)
	}
	printFigures(t)
}

// checkNodes: node ls, the swarm's own view, roles, fixed private addresses, ssh --node, the
// firewall (port 22 only) and Swarm listening on the private network only.
func checkNodes(t *testing.T, w *world, ns []node) {
	t.Helper()
	if len(ns) != 3 {
		t.Fatalf("node ls -o json has %d nodes, want 3: %+v", len(ns), ns)
	}
	for i, n := range ns {
		wantRole := "worker"
		if i == 0 {
			wantRole = "manager"
		}
		if n.Index != i+1 || n.Role != wantRole || n.PrivateIP != fmt.Sprintf("10.0.0.%d", i+2) || n.Status != "running" || n.SwarmState != "ready" || n.Volume == nil || n.PriceHour <= 0 {
			t.Fatalf("node %d in node ls: %+v; want %s at 10.0.0.%d, running, ready, with a data volume and a price", i+1, n, wantRole, i+2)
		}
	}
	if !ns[0].Leader {
		t.Errorf("node 1 is not the leader: %+v", ns[0])
	}
	ready := w.on(t, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	for _, n := range ns {
		if !strings.Contains(ready, n.Server+" Ready") {
			t.Fatalf("docker node ls:\n%s\nwant %s Ready", ready, n.Server)
		}
	}
	if got := w.ssh(t, 2, "hostname"); got != ns[1].Server {
		t.Fatalf("ssh --node 2 reached %q, want %s", got, ns[1].Server)
	}
	// Swarm's control port on the private address only.
	if got := w.ssh(t, 1, "ss -Hltn 'sport = :2377' | awk '{print $4}'"); got != "10.0.0.2:2377" {
		t.Fatalf("port 2377 on node 1 listens on %q, want only 10.0.0.2:2377", got)
	}
	fws, err := w.api.Firewall.AllWithOpts(t.Context(), hcloud.FirewallListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "managed-by=dockbridge"}})
	if err != nil || len(fws) != 1 || len(fws[0].Rules) != 1 || *fws[0].Rules[0].Port != "22" {
		t.Fatalf("firewalls %+v (%v): want one with port 22 only", fws, err)
	}
	var st struct {
		Nodes []node `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(w.must(t, "dockbridge", "status", "-o", "json")), &st); err != nil || len(st.Nodes) != 3 {
		t.Fatalf("status -o json: %d nodes (%v), want 3", len(st.Nodes), err)
	}
}

// runningOn says where the service's task runs ("" when none does yet).
func (w *world) runningOn(t testing.TB) string {
	t.Helper()
	r := w.run(t.Context(), "--context", "dockbridge", "service", "ps", service, "--filter", "desired-state=running", "--format", "{{.Node}}|{{.CurrentState}}")
	if r.err != nil {
		return ""
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if node, state, ok := strings.Cut(line, "|"); ok && strings.HasPrefix(state, "Running") {
			return node
		}
	}
	return ""
}

// waitRunning waits until the task runs on a node other than not, and returns that node.
func (w *world) waitRunning(t testing.TB, not string, d time.Duration) string {
	t.Helper()
	var host string
	eventually(t, d, "the task running on a node other than "+not, func() (bool, string) {
		host = w.runningOn(t)
		return host != "" && host != not, host
	})
	return host
}

// dataOn checks the task's data on host: the seed against its checksum; it returns the
// checksum ("" and the reason when it is not there yet).
func (w *world) dataOn(t testing.TB, ns []node, host string) (string, string) {
	t.Helper()
	idx := indexOf(t, ns, host)
	r := w.run(t.Context(), "dockbridge", "ssh", "--node", fmt.Sprint(idx), "--",
		"c=$(docker ps -q --filter label=com.docker.swarm.service.name="+service+"); [ -n \"$c\" ] && docker exec $c sh -c 'cd /data && sha256sum -c seed.sha >/dev/null && cut -d\" \" -f1 seed.sha'")
	if r.err != nil {
		return "", r.String()
	}
	return strings.TrimSpace(r.stdout), ""
}

func (w *world) checkData(t testing.TB, ns []node, host string) string {
	t.Helper()
	var sum string
	eventually(t, time.Minute, "the data on "+host, func() (bool, string) {
		s, why := w.dataOn(t, ns, host)
		sum = s
		return s != "", why
	})
	return sum
}

// moveTo waits until the task runs on another node than from with the data intact, and
// returns where, how long it took from start, and the API requests counted meanwhile.
func (w *world) moved(t testing.TB, ns []node, from, seed string, start time.Time, before map[string]int64, d time.Duration) (string, time.Duration, map[string]int64) {
	t.Helper()
	var host string
	eventually(t, d, "the task running elsewhere than "+from+" with its data", func() (bool, string) {
		host = w.runningOn(t)
		if host == "" || host == from {
			return false, "running on " + host
		}
		sum, why := w.dataOn(t, ns, host)
		if sum != "" && sum != seed {
			t.Fatalf("on %s the data's checksum is %s, want %s", host, sum, seed)
		}
		return sum == seed, why
	})
	took := time.Since(start)
	return host, took, diff(before, w.byEndpoint(t))
}

func (w *world) byEndpoint(t testing.TB) map[string]int64 {
	t.Helper()
	var m map[string]int64
	if err := json.Unmarshal(w.stats(t)["by_endpoint"], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func diff(before, after map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// plannedMove: drain the task's node; the task and its volume move with the data intact, no
// detach while mounted, and the plugins' logs show the volume was never mounted on two servers.
func plannedMove(t *testing.T, w *world, ns []node, seed string) {
	from := w.waitRunning(t, "", 3*time.Minute)
	before := w.byEndpoint(t)
	logStart := time.Now()
	start := time.Now()
	w.on(t, "node", "update", "--availability", "drain", from)
	to, took, spent := w.moved(t, ns, from, seed, start, before, 3*time.Minute)
	t.Logf("planned move %s -> %s: %v, %d API requests (%v)", from, to, took.Round(time.Millisecond), total(spent), spent)
	figures = append(figures, figure{"planned move (drain -> running elsewhere with its data)", took, total(spent), spent})
	w.on(t, "node", "update", "--availability", "active", from)
	if n := w.counter(t, "detaches_while_mounted"); n != 0 {
		t.Fatalf("detaches_while_mounted = %d after a drain, want 0", n)
	}
	w.neverTwoAtOnce(t, ns, logStart)
}

// neverTwoAtOnce reads every node's Docker journal since start for the volume plugin's
// "mounted volume" / "unmounted volume" lines about the stack's volume and fails when two
// servers had it mounted at the same time.
func (w *world) neverTwoAtOnce(t *testing.T, ns []node, since time.Time) {
	t.Helper()
	type event struct {
		at    time.Time
		node  string
		mount bool
	}
	var events []event
	for _, n := range ns {
		out := w.ssh(t, n.Index, fmt.Sprintf("journalctl -u docker.service --no-pager -o short-iso-precise --since @%d | grep 'mounted volume' | grep 'volume=%s' || true", since.Unix()-1, volumeName))
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			line := sc.Text()
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			at, err := time.Parse("2006-01-02T15:04:05.999999-0700", f[0])
			if err != nil {
				t.Fatalf("journal line %q: %v", line, err)
			}
			events = append(events, event{at, n.Server, !strings.Contains(line, "unmounted volume")})
		}
	}
	slices.SortFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	mounted := map[string]bool{}
	mounts := 0
	for _, e := range events {
		mounted[e.node] = e.mount
		if e.mount {
			mounts++
		}
		var on []string
		for n, m := range mounted {
			if m {
				on = append(on, n)
			}
		}
		if len(on) > 1 {
			t.Fatalf("at %s the plugins' logs show %s mounted on %v at once (events %+v)", e.at.Format(time.RFC3339Nano), volumeName, on, events)
		}
	}
	if mounts == 0 {
		t.Fatalf("the plugins' logs show no mount of %s since %s: the check saw nothing (events %+v)", volumeName, since, events)
	}
	t.Logf("plugins' logs: %d mount/unmount events of %s, never mounted on two servers at once", len(events), volumeName)
}

// refusal: the task's node keeps the volume mounted and in use (another container there uses
// it too) when the task moves: the other node's Mount fails with the clear error naming the
// holder, Swarm retries, and once the first node lets the volume go the task runs there.
func refusal(t *testing.T, w *world, ns []node, seed string) {
	from := w.waitRunning(t, "", 3*time.Minute)
	idx := indexOf(t, ns, from)
	w.ssh(t, idx, "docker run -d --name holder -v "+volumeName+":/data dockbridge-test/busybox:1 sh -c 'sleep 100000' >/dev/null")
	w.on(t, "node", "update", "--availability", "drain", from)
	var refused string
	eventually(t, 3*time.Minute, "a refused mount on the other node, retried by Swarm", func() (bool, string) {
		out := w.on(t, "service", "ps", service, "--no-trunc", "--format", "{{.Node}}|{{.Error}}")
		for _, line := range strings.Split(out, "\n") {
			if node, msg, _ := strings.Cut(line, "|"); node != from && strings.Contains(msg, "has not released it") {
				refused = msg
				return true, out
			}
		}
		return false, out
	})
	if !strings.Contains(refused, from) || !strings.Contains(refused, "running") || !strings.Contains(refused, "drain") {
		t.Fatalf("the refusal %q does not name the holder %s (running) and what to do", refused, from)
	}
	t.Logf("refused while %s holds it: %s", from, refused)
	if got := w.runningOn(t); got != "" && got != from {
		t.Fatalf("the task runs on %s while %s still has the volume mounted", got, from)
	}
	start, before := time.Now(), w.byEndpoint(t)
	w.ssh(t, idx, "docker rm -f holder >/dev/null")
	to, took, _ := w.moved(t, ns, from, seed, start, before, 3*time.Minute)
	t.Logf("released by %s: the task runs on %s %v later", from, to, took.Round(time.Millisecond))
	w.on(t, "node", "update", "--availability", "active", from)
}

// faults: 10 % 5xx and 5 % locked on the API while the task moves four times: the volume has
// at most one holder at every look, every move completes, and once the faults stop the task
// runs with its data. Every move must complete: dockbridge's API client retries each 5xx up to
// four times and waits out locked, and a failed attach only makes Swarm start the task again,
// so a fault costs seconds, not a move (every logged run completed all four within 3 minutes
// each); a move that does not complete is a failure to look at.
func faults(t *testing.T, w *world, ns []node, seed string) {
	before := w.counter(t, "faults_injected")
	t.Cleanup(func() { w.sim.Faults(t, hcloudsim.FaultConfig{}) })
	w.sim.Faults(t, hcloudsim.FaultConfig{Seed: 7, Rules: []hcloudsim.FaultRule{
		{Kind: "500", Rate: 0.04, Path: "/v1/*"},
		{Kind: "502", Rate: 0.03, Path: "/v1/*"},
		{Kind: "503", Rate: 0.03, Path: "/v1/*"},
		{Kind: "locked", Rate: 0.05, Path: "/v1/volumes*"},
	}})
	moved := 0
	for i := range 4 {
		from := w.runningOn(t)
		if from == "" {
			from = w.waitRunning(t, "", 3*time.Minute)
		}
		w.on(t, "node", "update", "--availability", "drain", from)
		deadline := time.Now().Add(3 * time.Minute)
		for {
			done := false
			host := w.runningOn(t)
			if host != "" && host != from {
				sum, _ := w.dataOn(t, ns, host)
				done = sum == seed
			}
			w.oneHolder(t, ns)
			if done {
				t.Logf("move %d under faults: %s -> %s", i+1, from, host)
				moved++
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("move %d under faults (from %s) did not complete in 3 minutes; the volume has one holder", i+1, from)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		w.on(t, "node", "update", "--availability", "active", from)
	}
	injected := w.counter(t, "faults_injected") - before
	w.sim.Faults(t, hcloudsim.FaultConfig{})
	if injected == 0 {
		t.Fatal("no fault was injected: the test proved nothing")
	}
	if moved < 4 {
		t.Fatalf("%d of 4 moves under faults completed", moved)
	}
	host := w.waitRunning(t, "", 3*time.Minute)
	if sum := w.checkData(t, ns, host); sum != seed {
		t.Fatalf("after the faults the data's checksum is %s, want %s", sum, seed)
	}
	t.Logf("%d faults injected during four moves; the task runs on %s with its data", injected, host)
}

// oneHolder fails unless the volume is attached to at most one server and mounted on at most
// one node, that one.
func (w *world) oneHolder(t testing.TB, ns []node) {
	t.Helper()
	// Under injected faults the API may answer a look with a 5xx: looked at again, a few times.
	v, err := getVolume(t, w, volumeName)
	for try := 1; err != nil && try < 10; try++ {
		time.Sleep(500 * time.Millisecond)
		v, err = getVolume(t, w, volumeName)
	}
	if err != nil {
		t.Fatalf("volume %s: %v", volumeName, err)
	}
	var mountedOn []string
	for _, n := range ns {
		r := w.run(t.Context(), "dockbridge", "ssh", "--node", fmt.Sprint(n.Index), "--",
			fmt.Sprintf("grep -c ' /var/lib/docker/plugins/.*/%s' /proc/self/mountinfo || true", volumeName))
		if r.err != nil {
			t.Fatalf("node %d: whether %s is mounted: %s", n.Index, volumeName, r)
		}
		if c := strings.TrimSpace(r.stdout); c != "0" {
			mountedOn = append(mountedOn, n.Server)
		}
	}
	if len(mountedOn) > 1 {
		t.Fatalf("volume %s is mounted on %v at once", volumeName, mountedOn)
	}
	if len(mountedOn) == 1 && (v.Server == nil || ns[indexOf(t, ns, mountedOn[0])-1].ServerID != v.Server.ID) {
		t.Fatalf("volume %s is mounted on %s but attached to server %v", volumeName, mountedOn[0], v.Server)
	}
}

func getVolume(t testing.TB, w *world, name string) (*hcloud.Volume, error) {
	v, _, err := w.api.Volume.GetByName(t.Context(), name)
	if err == nil && v == nil {
		err = fmt.Errorf("no volume %s", name)
	}
	return v, err
}

// hardFailure: the task's node is powered off through the API, without warning (a power
// cut): Swarm reschedules the task, and the volume is taken over only once that server is off.
func hardFailure(t *testing.T, w *world, ns []node, seed string) {
	from := w.waitRunning(t, "", 3*time.Minute)
	srv := ns[indexOf(t, ns, from)-1]
	vol, err := getVolume(t, w, volumeName)
	if err != nil {
		t.Fatal(err)
	}
	before := w.byEndpoint(t)
	start := time.Now()
	a, _, err := w.api.Server.Poweroff(t.Context(), &hcloud.Server{ID: srv.ServerID})
	if err != nil {
		t.Fatal(err)
	}
	to, took, spent := w.moved(t, ns, from, seed, start, before, 5*time.Minute)
	t.Logf("unplanned move (power cut of %s) -> %s: %v, %d API requests (%v)", from, to, took.Round(time.Millisecond), total(spent), spent)
	figures = append(figures, figure{"unplanned move (power cut -> running elsewhere with its data)", took, total(spent), spent})

	// The takeover came after the server was off: the volume's detach started after the power
	// cut's action finished (the server's status is off from then on).
	off, err := waitAction(t, w, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	detach := volumeActions(t, w, vol.ID, "detach_volume", start)
	if len(detach) == 0 {
		t.Fatalf("no detach of volume %d after the power cut", vol.ID)
	}
	if detach[0].Started.Before(*off.Finished) {
		t.Fatalf("the volume was detached (started %s) before the server was off (%s)", detach[0].Started, off.Finished)
	}
	t.Logf("server %s off at %s; the volume's detach started %s later", from, off.Finished.Format(time.RFC3339Nano), detach[0].Started.Sub(*off.Finished))
}

type actionDoc struct {
	ID       int64      `json:"id"`
	Command  string     `json:"command"`
	Status   string     `json:"status"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished"`
}

func waitAction(t testing.TB, w *world, id int64) (actionDoc, error) {
	var a actionDoc
	for range 600 {
		if err := w.apiGet(t, fmt.Sprintf("/v1/actions/%d", id), &struct {
			Action *actionDoc `json:"action"`
		}{&a}); err == nil && a.Status != "running" {
			return a, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return a, fmt.Errorf("action %d did not finish", id)
}

func volumeActions(t testing.TB, w *world, volumeID int64, command string, since time.Time) []actionDoc {
	var doc struct {
		Actions []actionDoc `json:"actions"`
	}
	if err := w.apiGet(t, fmt.Sprintf("/v1/volumes/%d/actions?sort=id&per_page=50", volumeID), &doc); err != nil {
		t.Fatal(err)
	}
	var out []actionDoc
	for _, a := range doc.Actions {
		if a.Command == command && !a.Started.Before(since.Add(-time.Second)) {
			out = append(out, a)
		}
	}
	return out
}

func (w *world) apiGet(t testing.TB, path string, out any) error {
	req, err := http.NewRequestWithContext(t.Context(), "GET", strings.TrimSuffix(w.sim.Endpoint, "/v1")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+w.sim.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// downUp: down and then up of the whole environment (with a node powered off by the hard
// failure): nodes, services, the stack and the volume with its data are all back.
func downUp(t *testing.T, w *world, seed string) {
	w.must(t, "dockbridge", "down")
	servers, err := w.api.Server.AllWithOpts(t.Context(), hcloud.ServerListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "managed-by=dockbridge"}})
	if err != nil || len(servers) != 0 {
		t.Fatalf("after down: %d servers (%v), want none", len(servers), err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	if r := w.run(ctx, "dockbridge", "up"); r.err != nil {
		t.Fatalf("up after down: %s", r)
	}
	ns := w.nodes(t)
	checkNodes(t, w, ns)
	services := w.on(t, "service", "ls", "--format", "{{.Name}} {{.Replicas}}")
	host := w.waitRunning(t, "", 5*time.Minute)
	if sum := w.checkData(t, ns, host); sum != seed {
		t.Fatalf("after down and up the data's checksum is %s, want %s", sum, seed)
	}
	if !strings.Contains(w.on(t, "stack", "ls"), "app") {
		t.Fatalf("stack app is gone after down and up: %s", services)
	}
	hosts := w.ssh(t, indexOf(t, ns, host), "docker exec $(docker ps -q --filter label=com.docker.swarm.service.name="+service+") sh -c 'cat /data/hosts'")
	t.Logf("after down and up: %s; the task ran on: %s", services, strings.ReplaceAll(hosts, "\n", ", "))
}

// The idle self-down's short times: a 10 s timeout, 30 s billing periods with a 10 s margin (the
// environment goes down 20 s into a period once every node has been idle for 10 s).
const (
	swarmIdleTimeout = "10s"
	swarmIdlePeriod  = 30 * time.Second
	swarmIdleMargin  = "10s"
)

// idleDown: the environment goes down by itself as a whole. A session on a worker (`ssh --node
// 2 -- sleep`) keeps every node up for more than a billing period, and status says which
// node's activity it is; once it ends, node 1's agent stops every node cleanly and deletes them,
// the workers first (each shut down, off, then deleted), node 1 last: no unclean delete, no
// detach under a mounted filesystem. Prints the time from idle to all deleted and the API
// requests it cost. (Wake, next, wakes the whole swarm with its data after this.)
func idleDown(t *testing.T, w *world) {
	ns := w.nodes(t)
	worker := ns[1]
	w.must(t, "dockbridge", "up", "--idle-timeout", swarmIdleTimeout, "--billing-period", swarmIdlePeriod.String())
	if out := w.must(t, "dockbridge", "settings", "set", "idle_margin", swarmIdleMargin); !strings.Contains(out, "agent uses them now") {
		t.Fatalf("settings set idle_margin did not reach node 1: %s", out)
	}
	t.Cleanup(func() {
		// The next subtests and the teardown must not race a self-down.
		w.run(context.Background(), "dockbridge", "settings", "set", "idle_timeout", "30m")
	})
	// The members' agents listen on their private address only, and refuse a request without
	// the swarm's secret (here from node 1, a host of the private network).
	if got := w.ssh(t, worker.Index, "ss -Hltn 'sport = :7411' | awk '{print $4}'"); got != worker.PrivateIP+":7411" {
		t.Fatalf("node 2's idle agent listens on %q, want only %s:7411", got, worker.PrivateIP)
	}
	refused := w.ssh(t, 1, `exec 3<>/dev/tcp/`+worker.PrivateIP+`/7411; printf 'POST /v1/stop HTTP/1.0\r\nAuthorization: Bearer guess\r\nContent-Length: 0\r\n\r\n' >&3; head -n 1 <&3`)
	if !strings.Contains(refused, "401") {
		t.Fatalf("a request to node 2's agent with a wrong secret got %q, want 401", refused)
	}
	unclean, detaches := w.counter(t, "unclean_deletes"), w.counter(t, "detaches_while_mounted")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	session := exec.CommandContext(ctx, "docker", "dockbridge", "ssh", "--node", fmt.Sprint(worker.Index), "--", "sleep", "60")
	session.Env = w.environ
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 40*time.Second, "status to show node 2's session", func() (bool, string) {
		var st struct {
			KeepingUp []string `json:"keeping_up"`
			Idle      bool     `json:"idle"`
		}
		out := w.must(t, "dockbridge", "status", "-o", "json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, err.Error()
		}
		return !st.Idle && slices.ContainsFunc(st.KeepingUp, func(r string) bool { return strings.HasPrefix(r, "node 2: ") }), fmt.Sprint(st.KeepingUp)
	})
	for end := time.Now().Add(swarmIdlePeriod + 5*time.Second); time.Now().Before(end); time.Sleep(2 * time.Second) {
		if n := len(w.servers(t)); n != 3 {
			t.Fatalf("%d servers while a session ran on node 2, want 3: the environment went down under it", n)
		}
	}
	if err := session.Wait(); err != nil {
		t.Fatalf("the session on node 2: %v", err)
	}
	idleFrom := time.Now()
	before := w.byEndpoint(t)
	eventually(t, 5*time.Minute, "every node to be deleted", func() (bool, string) {
		ss := w.servers(t)
		return len(ss) == 0, fmt.Sprintf("%d servers left", len(ss))
	})
	took := time.Since(idleFrom)
	cost := diff(before, w.byEndpoint(t))
	delete(cost, "GET /v1/servers") // the test's own polling
	figures = append(figures, figure{what: "idle self-down of 3 nodes (idle → every server deleted)", took: took, requests: total(cost), by: cost})

	if n := w.counter(t, "unclean_deletes") - unclean; n != 0 {
		t.Errorf("the self-down made %d unclean deletes, want 0", n)
	}
	if n := w.counter(t, "detaches_while_mounted") - detaches; n != 0 {
		t.Errorf("the self-down made %d detaches while mounted, want 0", n)
	}
	// The order, from the API's actions: each worker shut down, off and deleted, by number, then
	// node 1 deleting itself (after its own clean stop, so without a shutdown action).
	node := map[int64]int{}
	for _, n := range ns {
		node[n.ServerID] = n.Node
	}
	var order []string
	for _, a := range w.serverActions(t, idleFrom.Add(-time.Second)) {
		if a.Command == "shutdown_server" || a.Command == "delete_server" {
			order = append(order, fmt.Sprintf("%s:%d", a.Command, node[a.server()]))
		}
	}
	if want := []string{"shutdown_server:2", "delete_server:2", "shutdown_server:3", "delete_server:3", "delete_server:1"}; !slices.Equal(order, want) {
		t.Fatalf("the self-down's actions %v, want %v", order, want)
	}
	t.Logf("idle self-down of %d nodes: %s from the end of the last session to every server deleted, %d API requests (%v); actions %v",
		len(ns), took.Round(100*time.Millisecond), total(cost), cost, order)
}

func (w *world) servers(t testing.TB) []*hcloud.Server {
	t.Helper()
	for range 20 {
		ss, err := w.api.Server.AllWithOpts(t.Context(), hcloud.ServerListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "managed-by=dockbridge"}})
		if err == nil {
			return ss
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("list servers: the API keeps failing")
	return nil
}

// serverAction is an action of the API with the server it acted on.
type serverAction struct {
	actionDoc
	Resources []struct {
		ID   int64  `json:"id"`
		Type string `json:"type"`
	} `json:"resources"`
}

func (a serverAction) server() int64 {
	for _, r := range a.Resources {
		if r.Type == "server" {
			return r.ID
		}
	}
	return 0
}

// serverActions are the API's actions started since, in the order of their ids.
func (w *world) serverActions(t testing.TB, since time.Time) []serverAction {
	t.Helper()
	var out []serverAction
	for page := 1; page > 0; {
		var doc struct {
			Actions []serverAction `json:"actions"`
			Meta    struct {
				Pagination struct {
					NextPage *int `json:"next_page"`
				} `json:"pagination"`
			} `json:"meta"`
		}
		if err := w.apiGet(t, fmt.Sprintf("/v1/actions?sort=id&per_page=50&page=%d", page), &doc); err != nil {
			t.Fatal(err)
		}
		for _, a := range doc.Actions {
			if !a.Started.Before(since) {
				out = append(out, a)
			}
		}
		page = 0
		if doc.Meta.Pagination.NextPage != nil {
			page = *doc.Meta.Pagination.NextPage
		}
	}
	slices.SortFunc(out, func(a, b serverAction) int { return int(a.ID - b.ID) })
	return out
}

// wakeAll: after down, a docker command through the context (node 1's alias) wakes the
// environment: the same up, every node back, then the command runs; the stack and its data
// are there.
func wakeAll(t *testing.T, w *world, seed string) {
	w.must(t, "dockbridge", "down")
	servers, err := w.api.Server.AllWithOpts(t.Context(), hcloud.ServerListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "managed-by=dockbridge"}})
	if err != nil || len(servers) != 0 {
		t.Fatalf("after down: %d servers (%v), want none", len(servers), err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	r := w.run(ctx, "--context", "dockbridge", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	took := time.Since(start)
	if r.err != nil {
		t.Fatalf("docker node ls through the context after down (the wake): %s", r)
	}
	ns := w.nodes(t)
	for _, n := range ns {
		if !strings.Contains(r.stdout, n.Server+" Ready") {
			t.Errorf("the command that woke the environment printed:\n%s\nwant %s Ready", r.stdout, n.Server)
		}
	}
	checkNodes(t, w, ns)
	host := w.waitRunning(t, "", 5*time.Minute)
	if sum := w.checkData(t, ns, host); sum != seed {
		t.Fatalf("after the wake the data's checksum is %s, want %s", sum, seed)
	}
	t.Logf("after down, docker node ls through the context woke all %d nodes and ran in %s", len(ns), took.Round(100*time.Millisecond))
}

// agentConfig is the part of a node's idle agent configuration (idleagent.ConfigPath) the
// tests read: its part in the swarm and, on node 1, the members it asks.
type agentConfig struct {
	Swarm *struct {
		Node      int    `json:"node"`
		Role      string `json:"role"`
		PrivateIP string `json:"private_ip"`
		Members   []struct {
			Node      int    `json:"node"`
			ServerID  int64  `json:"server_id"`
			PrivateIP string `json:"private_ip"`
		} `json:"members"`
	} `json:"swarm"`
}

// agentConfig reads node index's idle agent configuration over ssh --node.
func (w *world) agentConfig(t testing.TB, index int) agentConfig {
	t.Helper()
	var c agentConfig
	if err := json.Unmarshal([]byte(w.ssh(t, index, "cat /etc/dockbridge/idle.json")), &c); err != nil || c.Swarm == nil {
		t.Fatalf("node %d's idle agent configuration is not a swarm's (%v)", index, err)
	}
	return c
}

// members are the node numbers and addresses node 1's idle agent asks, in its order.
func (c agentConfig) members() []string {
	var out []string
	for _, m := range c.Swarm.Members {
		out = append(out, fmt.Sprintf("%d@%s", m.Node, m.PrivateIP))
	}
	return out
}

// nodeAddRemove: `node add` gives the swarm a 4th node (its own server and data volume, at its
// fixed private address, Ready, its idle agent a member that node 1's asks, a task runs on it);
// `node rm 4` drains it (the task leaves), takes it out of the swarm and out of node 1's
// agent's list, stops its server cleanly and deletes it and its data volume: 3 Ready again.
func nodeAddRemove(t *testing.T, w *world) {
	before, start := w.byEndpoint(t), time.Now()
	w.must(t, "dockbridge", "node", "add")
	took, cost := time.Since(start), diff(before, w.byEndpoint(t))
	figures = append(figures, figure{"node add (a 4th node, Ready, its agent a member)", took, total(cost), cost})
	t.Logf("node add: %s, %d API requests (%v)", took.Round(100*time.Millisecond), total(cost), cost)

	ns := w.nodes(t)
	if len(ns) != 4 {
		t.Fatalf("node ls -o json after node add has %d nodes, want 4: %+v", len(ns), ns)
	}
	n4 := ns[3]
	if n4.Index != 4 || n4.Node != 4 || n4.Role != "worker" || n4.PrivateIP != "10.0.0.5" || n4.Status != "running" || n4.SwarmState != "ready" || n4.Availability != "active" || n4.Volume == nil || n4.PriceHour <= 0 {
		t.Fatalf("node 4 in node ls: %+v; want a worker at 10.0.0.5, running, ready, active, with its own data volume and a price", n4)
	}
	for _, n := range ns[:3] {
		if n.Volume == nil || n.Volume.ID == n4.Volume.ID {
			t.Fatalf("node 4's data volume %+v is not its own: node %d has %+v", n4.Volume, n.Index, n.Volume)
		}
	}
	ready := w.on(t, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	if lines := strings.Split(ready, "\n"); len(lines) != 4 || strings.Count(ready, " Ready") != 4 || !strings.Contains(ready, n4.Server+" Ready") {
		t.Fatalf("docker node ls after node add:\n%s\nwant 4 Ready, %s among them", ready, n4.Server)
	}
	// On the private network with its fixed address: the API's, the server's own and Swarm's.
	srv, _, err := w.api.Server.GetByID(t.Context(), n4.ServerID)
	if err != nil || srv == nil || len(srv.PrivateNet) != 1 || srv.PrivateNet[0].IP.String() != "10.0.0.5" {
		t.Fatalf("server %d's private networks (%v): want one, at 10.0.0.5", n4.ServerID, err)
	}
	if got := w.ssh(t, 4, "ip -4 -o addr | grep -c ' 10\\.0\\.0\\.5/' || true"); got != "1" {
		t.Fatalf("node 4 has 10.0.0.5 on %s interfaces, want 1", got)
	}
	if got := w.on(t, "node", "inspect", n4.Server, "--format", "{{.Status.Addr}}"); got != "10.0.0.5" {
		t.Fatalf("Swarm knows node 4 at %q, want 10.0.0.5", got)
	}
	// Idle agents: node 1's asks nodes 2, 3 and 4; node 4's is a member listening on its
	// private address only.
	if got := w.agentConfig(t, 1).members(); !slices.Equal(got, []string{"2@10.0.0.3", "3@10.0.0.4", "4@10.0.0.5"}) {
		t.Fatalf("node 1's idle agent asks %v after node add, want nodes 2, 3 and 4", got)
	}
	if c := w.agentConfig(t, 4); c.Swarm.Role != "member" || c.Swarm.Node != 4 || c.Swarm.PrivateIP != "10.0.0.5" {
		t.Fatalf("node 4's idle agent: %+v, want member 4 at 10.0.0.5", *c.Swarm)
	}
	if got := w.ssh(t, 4, "systemctl is-active dockbridge-idle.service; ss -Hltn 'sport = :7411' | awk '{print $4}'"); got != "active\n10.0.0.5:7411" {
		t.Fatalf("node 4's idle agent: %q, want active and listening on 10.0.0.5:7411 only", got)
	}
	// A task runs on it: a global service on the workers.
	w.importBusybox(t, ns[3:])
	w.on(t, "service", "create", "--detach", "--no-resolve-image", "--name", "probe", "--mode", "global", "--endpoint-mode", "dnsrr",
		"--constraint", "node.role==worker", "dockbridge-test/busybox:1", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")
	defer w.run(context.Background(), "--context", "dockbridge", "service", "rm", "probe")
	eventually(t, 2*time.Minute, "the probe's task running on node 4", func() (bool, string) {
		out := w.on(t, "service", "ps", "probe", "--filter", "node="+n4.Server, "--filter", "desired-state=running", "--format", "{{.CurrentState}}")
		return strings.HasPrefix(out, "Running"), out
	})

	unclean, detaches := w.counter(t, "unclean_deletes"), w.counter(t, "detaches_while_mounted")
	before, start = w.byEndpoint(t), time.Now()
	out := w.must(t, "dockbridge", "node", "rm", "4", "--yes", "-o", "json")
	took, cost = time.Since(start), diff(before, w.byEndpoint(t))
	figures = append(figures, figure{"node rm 4 (drain, leave, clean stop, deletes)", took, total(cost), cost})
	t.Logf("node rm 4: %s, %d API requests (%v)", took.Round(100*time.Millisecond), total(cost), cost)
	var rm struct {
		Node    int  `json:"node"`
		Drained bool `json:"drained"`
		Server  *struct {
			ID   int64  `json:"id"`
			Stop string `json:"stop"`
		} `json:"server"`
		Volume *struct {
			ID int64 `json:"id"`
		} `json:"volume"`
		VolumeKept bool     `json:"volume_kept"`
		Notes      []string `json:"notes"`
	}
	if err := json.Unmarshal([]byte(out), &rm); err != nil || rm.Node != 4 || !rm.Drained || rm.Server == nil || rm.Server.ID != n4.ServerID || rm.Server.Stop != "clean" || rm.Volume == nil || rm.Volume.ID != n4.Volume.ID || rm.VolumeKept {
		t.Fatalf("node rm 4 -o json (%v):\n%s\nwant node 4 drained, server %d stopped clean, data volume %d deleted", err, out, n4.ServerID, n4.Volume.ID)
	}
	if n := w.counter(t, "unclean_deletes") - unclean; n != 0 {
		t.Errorf("node rm made %d unclean deletes, want 0", n)
	}
	if n := w.counter(t, "detaches_while_mounted") - detaches; n != 0 {
		t.Errorf("node rm made %d detaches while mounted, want 0", n)
	}
	// Its server and its data volume are gone (node rm without --keep-volume deletes it).
	if s, _, err := w.api.Server.GetByID(t.Context(), n4.ServerID); err != nil || s != nil {
		t.Fatalf("server %d after node rm: %v (%v), want none", n4.ServerID, s, err)
	}
	if v, _, err := w.api.Volume.GetByID(t.Context(), n4.Volume.ID); err != nil || v != nil {
		t.Fatalf("node 4's data volume %d after node rm: %+v (%v), want deleted", n4.Volume.ID, v, err)
	}
	// The swarm: 3 Ready, node 4 gone from the list (not Down).
	ready = w.on(t, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
	if lines := strings.Split(ready, "\n"); len(lines) != 3 || strings.Count(ready, " Ready") != 3 || strings.Contains(ready, n4.Server) {
		t.Fatalf("docker node ls after node rm:\n%s\nwant 3 Ready, %s gone", ready, n4.Server)
	}
	if got := w.agentConfig(t, 1).members(); !slices.Equal(got, []string{"2@10.0.0.3", "3@10.0.0.4"}) {
		t.Fatalf("node 1's idle agent asks %v after node rm 4, want nodes 2 and 3 (node rm's notes: %v)", got, rm.Notes)
	}
	checkNodes(t, w, w.nodes(t))
	t.Logf("node 4 (%s, 10.0.0.5) added and removed; node 1's agent asks nodes 2 and 3 again", n4.Server)
}

func printFigures(t *testing.T) {
	var b strings.Builder
	profile := cmp.Or(os.Getenv("SWARM_ACTION_PROFILE"), "fast")
	fmt.Fprintf(&b, "\nMoves of a Swarm service with a hetzner volume, the idle self-down, node add and rm (simulated servers, %s action profile):\n", profile)
	fmt.Fprintf(&b, "%-62s %10s %9s\n", "what", "time", "requests")
	for _, f := range figures {
		fmt.Fprintf(&b, "%-62s %10s %9d\n", f.what, f.took.Round(100*time.Millisecond), f.requests)
		for _, k := range sortedKeys(f.by) {
			fmt.Fprintf(&b, "    %-58s %9d\n", k, f.by[k])
		}
	}
	fmt.Fprintf(&b, "csi-driver's reported planned move (unmount on one node to mount on the next): ~30 s\n")
	t.Log(b.String())
	fmt.Print(b.String())
}
