package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/testimage"
)

// The tests here delete servers with `down`, `destroy` and `up` on servers that really boot;
// the world's teardown asserts the simulator counted no unclean delete (a delete while a
// volume's filesystem was mounted) beyond the --force the test makes on purpose.

// trapWorkload imports the test image and runs a container whose stop signal is USR1: only
// dockerd's stop sends it (a shutdown's last resort is TERM, then KILL), and its trap writes
// "stop-signal" to a hetzner volume and a named volume before it exits.
func trapWorkload(t *testing.T, w *world, env string) {
	t.Helper()
	if r := w.run(t.Context(), testimage.BusyboxRootfs(t), nil, "--context", contextName(env), "import", "-", "keep:1"); r.err != nil {
		t.Fatalf("docker import through the context: %s", r)
	}
	w.on(t, env, "volume", "create", "-d", "hetzner", "-o", "size=10", "trap-hz")
	w.on(t, env, "run", "-d", "--name", "trap", "--restart", "unless-stopped", "--stop-signal", "USR1", "--stop-timeout", "30",
		"-v", "trap-hz:/hz", "-v", "trap-named:/named", "keep:1", "busybox", "sh", "-c",
		`trap 'sleep 1; echo stop-signal >> /hz/log; echo stop-signal >> /named/log; sync; exit 0' USR1; echo start >> /hz/log; echo start >> /named/log; while :; do sleep 1; done`)
	waitFor(t, "the trap container's first write", func() bool {
		r := w.run(t.Context(), nil, nil, "--context", contextName(env), "exec", "trap", "busybox", "cat", "/hz/log")
		return r.err == nil && strings.Contains(r.stdout, "start")
	})
}

// trapStopped checks, on the environment's (new) server, that the trap container got its stop
// signal before its server went: both volumes say so.
func trapStopped(t *testing.T, w *world, env string) {
	t.Helper()
	waitFor(t, "the trap container running again", func() bool {
		ps := w.on(t, env, "ps", "--filter", "name=trap", "--format", "{{.Status}}")
		return strings.HasPrefix(ps.stdout, "Up")
	})
	for _, f := range []string{"/hz/log", "/named/log"} {
		got := w.on(t, env, "exec", "trap", "busybox", "cat", f).stdout
		if !strings.HasPrefix(got, "start\nstop-signal\n") {
			t.Errorf("%s on the volume: %q, want start then stop-signal: the container was not stopped by dockerd before its server went", f, got)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 2 minutes", what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// pluginVolume is the Hetzner volume behind a hetzner-driver Docker volume.
func pluginVolume(t *testing.T, w *world, name string) *hcloud.Volume {
	t.Helper()
	vols, err := w.api.Volume.AllWithOpts(t.Context(), hcloud.VolumeListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "dockbridge/volume=" + name}})
	if err != nil || len(vols) != 1 {
		t.Fatalf("the Hetzner volume of %s: %v (%d found)", name, err, len(vols))
	}
	return vols[0]
}

// TestDownAndDestroyStopCleanly: down stops Docker over SSH (the container gets its own stop
// signal, the plugin records the release of its volume), shuts the server down and deletes
// it once it is off; the next up finds what the container wrote as it stopped. destroy then
// does the same.
func TestDownAndDestroyStopCleanly(t *testing.T) {
	w := newWorld(t)
	const env = "clean"
	first, _ := w.up(t, env)
	trapWorkload(t, w, env)

	r := w.must(t, "dockbridge", "down", "--name", env)
	t.Logf("down:\n%s%s", r.stderr, r.stdout)
	if !strings.Contains(r.stdout, "stopped cleanly (1 container(s) stopped") {
		t.Errorf("down did not stop the server cleanly:\n%s", r.stdout)
	}
	if v := pluginVolume(t, w, "trap-hz"); v.Labels["dockbridge/released"] != fmt.Sprint(first.ServerID) || v.Labels["dockbridge/holder"] != "" {
		t.Errorf("the hetzner volume after down: labels %v, want released by server %d and no holder", v.Labels, first.ServerID)
	}

	second, _ := w.up(t, env)
	if second.ServerID == first.ServerID {
		t.Fatalf("up after down kept server %d", first.ServerID)
	}
	trapStopped(t, w, env)

	r = w.must(t, "dockbridge", "destroy", "--name", env, "--volumes", "--yes")
	t.Logf("destroy:\n%s%s", r.stderr, r.stdout)
	if !strings.Contains(r.stdout, "stopped: clean") {
		t.Errorf("destroy did not stop the server cleanly:\n%s", r.stdout)
	}
	if left := w.ours(t); len(left) > 0 {
		t.Errorf("destroy left %v", left)
	}
}

// TestDownWithoutSSHStopsThroughTheServersOwnShutdown: with sshd stopped on the server, down
// still shuts it down first, and the server's own shutdown stops Docker (the container gets
// its stop signal, the plugin records the release of its volume) and unmounts the volumes
// before it powers off.
func TestDownWithoutSSHStopsThroughTheServersOwnShutdown(t *testing.T) {
	w := newWorld(t)
	const env = "nossh"
	first, _ := w.up(t, env)
	trapWorkload(t, w, env)
	h := w.sim.Backend.Host(first.ServerID)
	if out, _, err := h.Exec(t.Context(), "systemctl", "stop", "ssh.socket", "ssh.service"); err != nil {
		t.Fatalf("stop sshd on the server: %v %s", err, out)
	}

	r := w.must(t, "dockbridge", "down", "--name", env)
	t.Logf("down:\n%s%s", r.stderr, r.stdout)
	if !strings.Contains(r.stdout, "stopped by its own shutdown") || !strings.Contains(r.stdout, "the stop over SSH failed") {
		t.Errorf("down without SSH: want the server stopped by its own shutdown, and a note why:\n%s", r.stdout)
	}
	// systemd stopped Docker, and with it the plugin, while the network was still up.
	if v := pluginVolume(t, w, "trap-hz"); v.Labels["dockbridge/released"] != fmt.Sprint(first.ServerID) || v.Labels["dockbridge/holder"] != "" {
		t.Errorf("the hetzner volume after the server's own shutdown: labels %v, want released by server %d and no holder", v.Labels, first.ServerID)
	}
	w.up(t, env)
	trapStopped(t, w, env)
}

// TestDownRefusesAServerThatWillNotPowerOff: a server whose OS ignores the shutdown request
// (poweroff.target masked) is not deleted: down says it is still running and billed, starts
// Docker on it again, and names --force. down --force deletes it: a power cut, which it says
// and the simulator counts.
func TestDownRefusesAServerThatWillNotPowerOff(t *testing.T) {
	w := newWorld(t)
	const env = "deaf"
	first, _ := w.up(t, env)
	trapWorkload(t, w, env)
	w.must(t, "dockbridge", "ssh", "--name", env, "--", "systemctl mask poweroff.target")

	r := w.run(t.Context(), nil, nil, "dockbridge", "down", "--name", env, "--shutdown-timeout", "15s")
	t.Logf("down:\n%s", r)
	if r.err == nil {
		t.Fatal("down of a server that does not power off succeeded")
	}
	for _, want := range []string{"did not power off within 15s", "STILL RUNNING AND BILLED", "has been started again", "docker dockbridge down --name deaf --force", "power cut"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the refusal does not say %q", want)
		}
	}
	if s, _, err := w.api.Server.GetByID(t.Context(), first.ServerID); err != nil || s == nil || s.Status != hcloud.ServerStatusRunning {
		t.Fatalf("server after the refusal: %v, %v; want it running", s, err)
	}
	// Docker is back, and so is the container (its restart policy).
	waitFor(t, "the container running again on the refused server", func() bool {
		ps := w.run(t.Context(), nil, nil, "--context", contextName(env), "ps", "--filter", "name=trap", "--format", "{{.Status}}")
		return ps.err == nil && strings.HasPrefix(ps.stdout, "Up")
	})

	w.forcedDeletes = 1
	r = w.must(t, "dockbridge", "down", "--name", env, "--force")
	t.Logf("down --force:\n%s%s", r.stderr, r.stdout)
	if !strings.Contains(r.stderr, "--force: deleting server dockbridge-deaf") || !strings.Contains(r.stderr, "power cut") || !strings.Contains(r.stdout, "WHILE RUNNING (--force)") {
		t.Errorf("down --force does not say what it risks:\n%s", r)
	}
	if s, _, err := w.api.Server.GetByID(t.Context(), first.ServerID); err != nil || s != nil {
		t.Fatalf("server after down --force: %v, %v; want it deleted", s, err)
	}
}

// TestUpReplacesABrokenServerCleanly: the start of up's new server fails while the client's
// wait for its actions is held for 15 s, time enough for a server that kept running to boot and
// mount its data volume. up deletes the broken server, which is off (as Hetzner reports a
// server whose start failed, and as the simulator then makes it), and the next up makes a new
// one.
func TestUpReplacesABrokenServerCleanly(t *testing.T) {
	w := newWorld(t)
	const env = "broken"
	w.up(t, env) // key, firewall and a formatted data volume: the next up makes only a server
	w.must(t, "dockbridge", "down", "--name", env)
	w.sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{
		{Kind: "action_error", Rate: 1, Command: "start_server", Count: 1},
		{Kind: "timeout", Rate: 1, Method: "GET", Path: "/v1/actions*", Count: 1, MaxDelay: "15s"},
	}})
	r := w.run(t.Context(), nil, nil, "dockbridge", "up", "--name", env)
	t.Logf("up with a failing start:\n%s", r)
	if r.err == nil || !strings.Contains(r.stderr, "was deleted") {
		t.Fatalf("up with a failing start: want the broken server deleted\n%s", r)
	}
	if left := w.ours(t)["server"]; len(left) != 0 {
		t.Fatalf("servers left: %v", left)
	}
	w.sim.Faults(t, hcloudsim.FaultConfig{})
	res, _ := w.up(t, env)
	if !res.ServerCreated {
		t.Fatalf("up after the broken server: %+v", res)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out := w.run(ctx, nil, nil, "dockbridge", "ssh", "--name", env, "--", "docker info --format '{{.DockerRootDir}}'"); strings.TrimSpace(out.stdout) != "/var/lib/docker" {
		t.Errorf("docker on the new server: %s", out)
	}
}
