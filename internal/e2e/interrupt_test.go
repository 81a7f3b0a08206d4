package e2e_test

import (
	"bytes"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

// TestUpUnderInjectedFaults: 30% of the requests on a few endpoints answer 5xx while `up`
// creates a server that really boots. Every run either finishes or stops with a clear
// error; nothing is ever duplicated; a server that exists after a failed run is named as
// billed in the error; and the next run (faults off) adopts whatever was made.
func TestUpUnderInjectedFaults(t *testing.T) {
	w := newWorld(t)
	const env = "faulty"
	w.use(env)
	w.sim.Faults(t, hcloudsim.FaultConfig{Seed: 5, Rules: []hcloudsim.FaultRule{
		{Kind: "500", Rate: 0.3, Path: "/v1/servers*"},
		{Kind: "503", Rate: 0.3, Path: "/v1/volumes*"},
		{Kind: "502", Rate: 0.3, Path: "/v1/actions*"},
		{Kind: "500", Rate: 0.3, Method: "POST", Path: "/v1/firewalls*"},
		{Kind: "503", Rate: 0.3, Path: "/v1/ssh_keys*"},
		// hcloud-go and our client retry 5xx, so the runs above mostly finish: the first
		// server's create action fails for sure, the broken server must not stay.
		{Kind: "action_error", Rate: 1, Command: "create_server", Count: 1},
	}})
	var failures, successes int
	for attempt := 1; attempt <= 6 && successes == 0; attempt++ {
		r := w.run(t.Context(), nil, nil, "dockbridge", "up", "--name", env)
		ours := w.ours(t)
		for kind, list := range ours {
			if len(list) > 1 {
				t.Fatalf("attempt %d: %d of kind %s carry our label: %v\n%s", attempt, len(list), kind, list, r)
			}
		}
		if r.err == nil {
			successes++
			t.Logf("attempt %d: up finished despite the faults (%v)", attempt, r.took.Round(time.Millisecond))
			continue
		}
		failures++
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		t.Logf("attempt %d failed after %v: %s", attempt, r.took.Round(time.Millisecond), lastLines(lines, 4))
		if len(ours["server"]) == 1 && !strings.Contains(r.stderr, "EXISTS AND IS BILLED") {
			t.Errorf("attempt %d: server %v exists but the error does not say it is billed:\n%s", attempt, ours["server"], r.stderr)
		}
		if low := strings.ToLower(r.stderr); !strings.Contains(low, "failed") && !strings.Contains(low, "error") {
			t.Errorf("attempt %d: failed without an error message:\n%s", attempt, r)
		}
	}
	st := w.sim.Stats()
	t.Logf("%d failed runs, %d finished; faults injected: %d", failures, successes, st.FaultsInjected)
	if st.FaultsInjected == 0 || failures == 0 {
		t.Fatalf("faults injected %d, failed runs %d: the test proved nothing", st.FaultsInjected, failures)
	}

	w.sim.Faults(t, hcloudsim.FaultConfig{})
	res, spent := w.up(t, env)
	t.Logf("up without faults: created=%v server %d, %s", res.ServerCreated, res.ServerID, spent)
	ours := w.ours(t)
	for _, kind := range []string{"server", "volume", "firewall", "ssh key"} {
		if len(ours[kind]) != 1 {
			t.Errorf("after the faults: %d of kind %s (%v), want exactly 1", len(ours[kind]), kind, ours[kind])
		}
	}
	if out := w.must(t, "dockbridge", "ssh", "--name", env, "--", "docker info --format '{{.DockerRootDir}}'"); strings.TrimSpace(out.stdout) != "/var/lib/docker" {
		t.Errorf("docker on the adopted server: %q", out.stdout)
	}
	w.on(t, env, "volume", "create", "-d", "hetzner", "after-faults")
}

// TestCtrlCDuringUpResumes presses Ctrl-C (SIGINT to the process group, as a terminal does)
// while `up` waits for the new server's cloud-init. The run stops and names the server as
// billed; the next `up` adopts the same server (pinned host key) and finishes.
func TestCtrlCDuringUpResumes(t *testing.T) {
	w := newWorld(t)
	const env = "interrupted"
	w.use(env)
	c := w.cmd(t.Context(), nil, nil, "dockbridge", "up", "--name", env)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &watchBuffer{want: "Waiting for cloud-init", seen: make(chan struct{})}
	var stdout bytes.Buffer
	c.Stdout, c.Stderr = &stdout, stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stderr.seen:
	case <-time.After(5 * time.Minute):
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		t.Fatalf("up never reached the cloud-init wait:\n%s", stderr.String())
	}
	if err := syscall.Kill(-c.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := c.Wait()
	t.Logf("interrupted up: %v\n%s", err, stderr.String())
	if err == nil {
		t.Fatal("up finished although interrupted while waiting for cloud-init")
	}
	servers := w.ours(t)["server"]
	if len(servers) != 1 {
		t.Fatalf("after Ctrl-C: servers %v, want the one being created", servers)
	}
	if !strings.Contains(stderr.String(), "up was interrupted") || strings.Contains(stderr.String(), "cloudinit_rc") {
		t.Errorf("the interrupted up should say so in a line, not dump the remote script:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "EXISTS AND IS BILLED") {
		t.Errorf("the interrupted up did not say that the server exists and is billed:\n%s", stderr.String())
	}

	res, spent := w.up(t, env)
	t.Logf("resumed up: %.2fs, %s", res.Seconds, spent)
	if res.ServerCreated {
		t.Errorf("the resumed up created another server instead of adopting %v", servers)
	}
	if got := w.ours(t)["server"]; len(got) != 1 || got[0] != servers[0] {
		t.Errorf("servers after resuming: %v, want %v", got, servers)
	}
	w.on(t, env, "version")
}

// watchBuffer collects output and closes seen once want appears.
type watchBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (b *watchBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if strings.Contains(b.buf.String(), b.want) {
		b.once.Do(func() { close(b.seen) })
	}
	return n, err
}

func (b *watchBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func lastLines(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
