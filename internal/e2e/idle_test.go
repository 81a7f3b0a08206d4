//go:build linux

package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/sys/unix"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

// The idle tests give a server short times through the settings: a 10 s idle timeout, 40 s
// billing periods (--billing-period, which the server's policy uses in place of the hour) and
// a 10 s margin, so a server goes down 30 s into a period, once it has been idle for 10 s.
const (
	idlePeriod  = 40 * time.Second
	idleMargin  = 10 * time.Second
	idleTimeout = "10s"
)

// idleStatus is the part of `status -o json` the idle tests read.
type idleStatus struct {
	Idle      bool       `json:"idle"`
	IdleSince *time.Time `json:"idle_since"`
	DownAt    *time.Time `json:"down_at"`
	KeepingUp []string   `json:"keeping_up"`
	Timeout   string     `json:"idle_timeout"`
	Health    string     `json:"health_last_line"`
	Notes     []string   `json:"notes"`
	Server    *struct {
		ID int64 `json:"id"`
	} `json:"server"`
}

func (w *world) idleStatus(t testing.TB, env string) idleStatus {
	t.Helper()
	r := w.must(t, "dockbridge", "status", "--name", env, "-o", "json")
	var st idleStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	return st
}

// idleUp brings env up with the short idle times.
func (w *world) idleUp(t *testing.T, env string) upResult {
	t.Helper()
	res, _ := w.up(t, env, "--idle-timeout", idleTimeout, "--billing-period", idlePeriod.String())
	r := w.must(t, "dockbridge", "settings", "set", "idle_margin", idleMargin.String(), "--name", env)
	if !strings.Contains(r.stdout, "the server's agent uses them now") {
		t.Fatalf("settings set idle_margin did not reach the running server: %s", r)
	}
	return res
}

// serverOf is env's server in the API, nil when there is none.
func (w *world) serverOf(t testing.TB, env string) *hcloud.Server {
	t.Helper()
	for range 20 {
		servers, err := w.api.Server.AllWithOpts(t.Context(), hcloud.ServerListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "dockbridge/env=" + env}})
		if err == nil {
			if len(servers) == 0 {
				return nil
			}
			return servers[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("list servers: the API keeps failing")
	return nil
}

// waitGone waits until env's server has deleted itself, within bound, and returns when the API
// first showed it gone.
func (w *world) waitGone(t *testing.T, env string, bound time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(bound)
	for w.serverOf(t, env) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the idle server of %q did not delete itself within %s; status:\n%s", env, bound,
				w.run(t.Context(), nil, nil, "dockbridge", "status", "--name", env).stdout)
		}
		time.Sleep(time.Second)
	}
	return time.Now()
}

// stillUpFor checks that env's server id stays up for d (one whole billing period and more:
// a window in which an idle server would go down).
func (w *world) stillUpFor(t *testing.T, env string, id int64, d time.Duration, why string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Second) {
		if s := w.serverOf(t, env); s == nil || s.ID != id {
			t.Fatalf("%s: the server went down (now %v)", why, s)
		}
	}
}

func keepingUp(st idleStatus, what string) bool {
	return slices.ContainsFunc(st.KeepingUp, func(r string) bool { return strings.Contains(r, what) })
}

// TestIdleServerDeletesItselfAndWakes: a `docker logs -f` through the context keeps the server
// up, and so does a container labelled dockbridge.keep-alive=true; an idle shared SSH connection,
// an unlabelled container and status's own probe do not. Idle, the server stops cleanly (the
// container gets its own stop signal) and deletes itself at the end of a paid period: the data
// written before is there on the server the next docker command wakes (a pseudo-terminal shows
// the wake), two concurrent commands after a down create one server, and docker-compose through
// the context wakes it too (its stderr says so).
func TestIdleServerDeletesItselfAndWakes(t *testing.T) {
	w := newWorld(t)
	const env = "idle"
	res := w.idleUp(t, env)
	trapWorkload(t, w, env) // an unlabelled container, running all along
	w.on(t, env, "run", "--rm", "-v", "idle-data:/d", "keep:1", "busybox", "sh", "-c", "echo precious > /d/f && sync")

	// A docker logs -f in flight keeps it up, for longer than a paid period.
	ctx, stopLogs := context.WithCancel(t.Context())
	logs := w.cmd(ctx, nil, nil, "--context", contextName(env), "logs", "-f", "trap")
	if err := logs.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "status to show the docker logs -f", func() bool {
		return keepingUp(w.idleStatus(t, env), "docker command through the context")
	})
	w.stillUpFor(t, env, res.ServerID, idlePeriod+5*time.Second, "while docker logs -f ran")
	stopLogs()
	_ = logs.Wait()

	// So does a running container labelled dockbridge.keep-alive=true.
	w.on(t, env, "run", "-d", "--name", "keeper", "--label", "dockbridge.keep-alive=true", "keep:1", "busybox", "sleep", "3600")
	waitFor(t, "status to show the labelled container", func() bool {
		st := w.idleStatus(t, env)
		return keepingUp(st, "container keeper (dockbridge.keep-alive=true)") && !keepingUp(st, "docker command")
	})
	w.stillUpFor(t, env, res.ServerID, idlePeriod+5*time.Second, "while a container labelled dockbridge.keep-alive=true ran")
	w.on(t, env, "rm", "-f", "keeper")

	// Idle now (the shared connection, the unlabelled trap container): status says since when
	// and when it goes down, and asking does not change it.
	var first idleStatus
	waitFor(t, "status to show the server idle", func() bool {
		first = w.idleStatus(t, env)
		return first.Idle && first.IdleSince != nil && first.DownAt != nil && len(first.KeepingUp) == 0
	})
	time.Sleep(3 * time.Second)
	if again := w.idleStatus(t, env); again.IdleSince == nil || !again.IdleSince.Equal(*first.IdleSince) {
		t.Fatalf("status's own probe counted as activity: idle since %v, then %v", first.IdleSince, again.IdleSince)
	}
	created := w.serverOf(t, env).Created
	gone := w.waitGone(t, env, 3*idlePeriod)
	into := gone.Sub(created) % idlePeriod
	t.Logf("the server deleted itself %s after its creation (%s into a %s period; status said down at %s)",
		gone.Sub(created).Round(time.Second), into.Round(time.Second), idlePeriod, first.DownAt.Sub(created).Round(time.Second))
	if into < idlePeriod-idleMargin-2*time.Second && into > 5*time.Second {
		t.Errorf("deleted %s into a billing period: not near its end", into)
	}
	// It closed the shared connection before it went: the next command wakes at once.
	cm := exec.Command("ssh", "-F", w.envFile(env, "ssh_config"), "-O", "check", "dockbridge-"+env)
	cm.Env = append(slices.Clone(w.environ), "DOCKBRIDGE_NO_WAKE=1")
	if out, err := cm.CombinedOutput(); err == nil {
		t.Errorf("the shared connection still runs after the server deleted itself: %s", out)
	}

	// The next docker command wakes it, and the terminal says so.
	term := startOnTerminal(t, w, "docker", "--context", contextName(env), "ps", "-a", "--format", "{{.Names}}")
	out, err := term.wait(5 * time.Minute)
	if err != nil || !strings.Contains(out, "trap") {
		t.Fatalf("docker ps through the context while the server was down: %v\n%s", err, out)
	}
	if !strings.Contains(out, `dockbridge: environment "idle" has no server running: bringing it up`) || !strings.Contains(out, `dockbridge: environment "idle" is up (`) {
		t.Fatalf("the terminal did not show the wake:\n%s", out)
	}
	t.Logf("the terminal showed:\n%s", out)
	trapStopped(t, w, env) // the self-delete stopped the container with its own stop signal
	if got := w.on(t, env, "run", "--rm", "-v", "idle-data:/d", "keep:1", "busybox", "cat", "/d/f").stdout; got != "precious\n" {
		t.Fatalf("the data written before the server deleted itself: %q", got)
	}

	// down, then two commands at once: one wake, one server.
	w.must(t, "dockbridge", "down", "--name", env)
	var wg sync.WaitGroup
	results := make([]result, 2)
	spent := w.requests.spent(func() {
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = w.run(t.Context(), nil, nil, "--context", contextName(env), "version", "--format", "{{.Server.Version}}")
			}()
		}
		wg.Wait()
	})
	for i, r := range results {
		if r.err != nil || strings.TrimSpace(r.stdout) == "" {
			t.Fatalf("concurrent command %d: %s", i, r)
		}
		t.Logf("concurrent command %d answered after %s", i, r.took.Round(100*time.Millisecond))
	}
	if n := spent["POST /v1/servers"]; n != 1 {
		t.Fatalf("two concurrent commands made %d create requests (%s)", n, spent)
	}
	if got := w.ours(t)["server"]; len(got) != 1 {
		t.Fatalf("servers after two concurrent wakes: %v", got)
	}

	// docker-compose through the context wakes it too: it runs the system's ssh as docker does,
	// and its stderr shows the wake.
	w.must(t, "dockbridge", "down", "--name", env)
	project := t.TempDir()
	if err := os.WriteFile(filepath.Join(project, "docker-compose.yml"), []byte("version: \"2.4\"\nservices:\n  app:\n    image: keep:1\n    command: [\"busybox\", \"true\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// docker-compose 1.x finds contexts beside config.json only.
	if _, err := os.Stat(filepath.Join(w.config, "config.json")); os.IsNotExist(err) {
		if err := os.WriteFile(filepath.Join(w.config, "config.json"), []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := w.cmd(t.Context(), nil, nil)
	c.Path, c.Args = mustLook(t, "docker-compose"), []string{"docker-compose", "--context", contextName(env), "ps", "--all"}
	c.Dir = project
	var cout, cerr strings.Builder
	c.Stdout, c.Stderr = &cout, &cerr
	if err := c.Run(); err != nil {
		t.Fatalf("docker-compose ps through the context while the server was down: %v\n%s\n%s", err, cout.String(), cerr.String())
	}
	if !strings.Contains(cerr.String(), `dockbridge: environment "idle" has no server running: bringing it up`) {
		t.Fatalf("docker-compose's stderr did not show the wake:\n%s", cerr.String())
	}
	if got := w.ours(t)["server"]; len(got) != 1 {
		t.Fatalf("servers after docker-compose's wake: %v", got)
	}
}

// TestSelfDeleteUnderAPIFaults: whatever the API answers the self-delete, the server ends deleted
// or running Docker and saying why (status, health log); never billed with Docker stopped.
func TestSelfDeleteUnderAPIFaults(t *testing.T) {
	w := newWorld(t)
	const env = "faults"
	w.idleUp(t, env)
	// A short bound on the delete's retries, so that a failure ends within the test.
	w.onServer(t, env, `sed -i 's/"idle_timeout"/"delete_retry_for": "15s", "idle_timeout"/' /etc/dockbridge/idle.json && systemctl restart dockbridge-idle`)
	faultsBefore := w.sim.Stats().FaultsInjected

	// 5xx and 429 answers to the delete: retried, deleted.
	w.sim.Faults(t, hcloudsim.FaultConfig{Seed: 7, Rules: []hcloudsim.FaultRule{
		{Kind: "503", Rate: 1, Method: "DELETE", Path: "/v1/servers/*", Count: 2},
		{Kind: "429", Rate: 1, Method: "DELETE", Path: "/v1/servers/*", Count: 1},
	}})
	w.waitGone(t, env, 3*idlePeriod)
	if n := w.sim.Stats().FaultsInjected - faultsBefore; n < 3 {
		t.Fatalf("%d faults injected into the delete: the case proved nothing", n)
	}
	w.sim.Faults(t, hcloudsim.FaultConfig{})

	// A delete action that fails every time: Docker runs again on the same server, and says why.
	w.on(t, env, "ps") // wakes a new server
	w.onServer(t, env, `sed -i 's/"idle_timeout"/"delete_retry_for": "15s", "idle_timeout"/' /etc/dockbridge/idle.json && systemctl restart dockbridge-idle`)
	srv := w.serverOf(t, env)
	w.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "action_error", Rate: 1, Command: "delete_server"}}})
	var st idleStatus
	waitFor3 := func(what string, ok func() bool) {
		deadline := time.Now().Add(3 * idlePeriod)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, 3*idlePeriod)
			}
			time.Sleep(2 * time.Second)
		}
	}
	waitFor3("the failed self-delete reported", func() bool {
		st = w.idleStatus(t, env)
		return slices.ContainsFunc(st.Notes, func(n string) bool { return strings.Contains(n, "self-delete failed") })
	})
	if st.Server == nil || st.Server.ID != srv.ID || !strings.Contains(st.Health, "self-delete failed") || !strings.Contains(st.Health, "Docker was started again") {
		t.Fatalf("after a failed self-delete: %+v", st)
	}
	if got := strings.TrimSpace(w.onServer(t, env, "systemctl is-active docker")); got != "active" {
		t.Fatalf("Docker is %q after the failed self-delete", got)
	}
	w.on(t, env, "ps") // the server works
	t.Logf("after a failed delete action: %s", st.Health)

	// A delete held in the cloud: the server waits for it with Docker stopped (the only moment
	// it is stopped and billed); the action fails: Docker runs again.
	w.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "delete_server", Count: 1},
		{Kind: "action_error", Rate: 1, Command: "delete_server"}}})
	hctx, cancel := context.WithTimeout(t.Context(), 3*idlePeriod)
	held, err := w.sim.WaitHeld(hctx, "delete_server")
	cancel()
	if err != nil {
		t.Fatalf("no delete_server action held within %s: %v", 3*idlePeriod, err)
	}
	if s := w.serverOf(t, env); s == nil || s.ID != srv.ID {
		t.Fatalf("the server is gone while its delete is held")
	}
	time.Sleep(20 * time.Second) // longer than the delete's retries
	if got := w.sim.Release(hcloudsim.ReleaseRequest{IDs: []int64{held.ID}, Error: "held delete failed on purpose"}); len(got) != 1 {
		t.Fatalf("released %v, want the held delete", got)
	}
	waitFor3("Docker running again after the held delete failed", func() bool {
		st = w.idleStatus(t, env)
		return strings.Contains(st.Health, "held delete failed on purpose") && strings.Contains(st.Health, "Docker was started again")
	})
	if got := strings.TrimSpace(w.onServer(t, env, "systemctl is-active docker")); got != "active" {
		t.Fatalf("Docker is %q after the held delete failed", got)
	}

	// The API works again: the next paid period's end, it goes.
	w.sim.Faults(t, hcloudsim.FaultConfig{})
	w.waitGone(t, env, 3*idlePeriod)
}

// terminal is a command run on a pseudo-terminal: what a user at a shell sees.
type terminal struct {
	mu   sync.Mutex
	seen bytes.Buffer
	cmd  *exec.Cmd
	done chan error
}

func startOnTerminal(t *testing.T, w *world, name string, args ...string) *terminal {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pty: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	term := &terminal{done: make(chan error, 1)}
	term.cmd = exec.Command(name, args...)
	term.cmd.Env, term.cmd.Dir = w.environ, w.root
	term.cmd.Stdin, term.cmd.Stdout, term.cmd.Stderr = tty, tty, tty
	term.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := term.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			term.mu.Lock()
			term.seen.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { term.done <- term.cmd.Wait() }()
	return term
}

// wait waits for the command to end and returns what the terminal showed.
func (term *terminal) wait(bound time.Duration) (string, error) {
	var err error
	select {
	case err = <-term.done:
	case <-time.After(bound):
		_ = term.cmd.Process.Kill()
		err = fmt.Errorf("not done after %s", bound)
	}
	time.Sleep(200 * time.Millisecond) // the last output
	term.mu.Lock()
	defer term.mu.Unlock()
	return strings.ReplaceAll(term.seen.String(), "\r\n", "\n"), err
}
