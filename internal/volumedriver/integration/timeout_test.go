package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

// dockersDefaultBound is the HTTP client timeout Docker gives a managed plugin enabled without
// --timeout (`docker plugin enable`'s default, 30 s); a plugin operation held longer than this
// shows whether the plugin was enabled with a bound that covers its own.
const dockersDefaultBound = 30 * time.Second

// heldRun is what a docker command did while an action it waited on was held.
type heldRun struct {
	out   string
	err   error
	ended bool // it ended while the action was still held
}

// heldDockerCommand runs `docker args...` while the simulator holds the first action of command
// on resource (a glob such as "volume:*") for hold, then releases it and waits for the command.
func heldDockerCommand(t *testing.T, command, resource string, hold time.Duration, args ...string) heldRun {
	t.Helper()
	if err := env.Sim.SetFaults(hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: command, Resource: resource, Count: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Sim.SetFaults(hcloudsim.FaultConfig{})
		env.Sim.Release(hcloudsim.ReleaseRequest{})
	})
	cmd := exec.Command("docker", args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	held, werr := env.Sim.WaitHeld(ctx, command)
	cancel()
	if werr != nil {
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("no %s action was held within a minute after `docker %s` (%v):\n%s", command, strings.Join(args, " "), werr, buf.String())
	}
	var r heldRun
	select {
	case r.err = <-done:
		r.ended = true
	case <-time.After(time.Until(held.HeldSince.Add(hold))):
	}
	env.Sim.Release(hcloudsim.ReleaseRequest{IDs: []int64{held.ID}})
	_ = env.Sim.SetFaults(hcloudsim.FaultConfig{})
	if !r.ended {
		select {
		case r.err = <-done:
		case <-time.After(3 * time.Minute):
			_ = cmd.Process.Kill()
			t.Fatalf("`docker %s` did not end within 3 minutes of the release:\n%s", strings.Join(args, " "), buf.String())
		}
	}
	r.out = strings.TrimSpace(buf.String())
	return r
}

// TestPluginSlowOperationsSucceed holds a Create's and a Mount's action in the simulator for
// longer than the 30 s Docker gives a plugin enabled without --timeout (a slow attach, a 429
// back-off, a `locked` retry), well within the plugin's own bound. Docker must wait for the
// plugin's answer: the create and the run succeed, and Docker reports no failure for an
// operation that completed (a failed Mount the plugin completes anyway leaves a mount that
// no container will ever unmount).
func TestPluginSlowOperationsSucceed(t *testing.T) {
	hold := dockersDefaultBound + 15*time.Second

	t.Run("create", func(t *testing.T) {
		name := volName(t)
		t.Cleanup(func() { _, _ = dockerCmd("volume", "rm", "-f", name) })
		r := heldDockerCommand(t, "create_volume", "volume:*", hold, "volume", "create", "-d", "hetzner", name)
		if r.err != nil || r.ended {
			made := "the volume does not exist"
			if simVolume(t, name) != nil {
				made = "the plugin created the volume anyway"
			}
			t.Fatalf("`docker volume create` of a volume whose create action took %s: ended while the action was held=%v, err=%v, and %s:\n%s", hold, r.ended, r.err, made, r.out)
		}
		if v := simVolume(t, name); v == nil || v.ServerID != env.LocalID {
			t.Fatalf("after the slow create, the volume is %+v, want one attached to this server", v)
		}
		if got := strings.TrimSpace(run(t, name, "echo slow > /data/f && cat /data/f")); got != "slow" {
			t.Fatalf("the slowly created volume reads %q", got)
		}
	})

	t.Run("mount", func(t *testing.T) {
		name := volName(t)
		createVolume(t, name)
		run(t, name, "echo kept > /data/kept")
		// Detached, the next Mount has to attach it: that attach is what is held.
		v := simVolume(t, name)
		if err := env.Client.DetachVolume(context.Background(), v.ID); err != nil {
			t.Fatal(err)
		}
		r := heldDockerCommand(t, "attach_volume", fmt.Sprintf("volume:%d", v.ID), hold,
			"run", "--rm", "--label", "dockbridge-it=1", "-v", name+":/data", image, "cat", "/data/kept")
		if r.err != nil || r.ended || r.out != "kept" {
			left := ""
			if waitQuiet(func() bool { return hostMounted(t, name) }) {
				left = "; the plugin mounted the volume anyway, and no container will ever unmount it"
			}
			t.Fatalf("`docker run` on a volume whose attach took %s: ended while the attach was held=%v, err=%v, output %q%s", hold, r.ended, r.err, r.out, left)
		}
		if hostMounted(t, name) {
			t.Fatal("a mount is left behind after the container ended")
		}
		if !attached(t, name) {
			t.Fatal("not attached to this server")
		}
	})
}

// waitQuiet is waitFor without failing: whether cond became true within 10 s.
func waitQuiet(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// TestPluginRemoveOutlastingDockersBound holds a Remove's detach for longer than the minute
// Docker gives a Remove whatever the enable's --timeout. The plugin must answer first, with its
// own error, and stop: Docker then reports a failure for a remove that did not happen (the
// volume is still there once the detach completed), and `docker volume rm` again removes it.
// Carrying on past Docker's bound, the plugin deleted a volume Docker said it failed to remove.
func TestPluginRemoveOutlastingDockersBound(t *testing.T) {
	hold := time.Minute + 10*time.Second
	name := volName(t)
	createVolume(t, name)
	run(t, name, "echo x > /data/x")
	v := simVolume(t, name)
	r := heldDockerCommand(t, "detach_volume", fmt.Sprintf("volume:%d", v.ID), hold, "volume", "rm", name)
	if r.err == nil {
		t.Fatalf("`docker volume rm` succeeded while its detach was held for %s:\n%s", hold, r.out)
	}
	if waitQuiet(func() bool { return simVolume(t, name) == nil }) {
		t.Fatalf("Docker reported the remove failed, and the plugin deleted the volume anyway:\n%s", r.out)
	}
	if !strings.Contains(r.out, "the plugin stopped waiting at its bound") {
		t.Fatalf("the failed remove does not carry the plugin's own error (Docker gave up first?):\n%s", r.out)
	}
	t.Logf("the held remove failed with: %s", r.out)
	docker(t, "volume", "rm", name)
	if simVolume(t, name) != nil {
		t.Fatal("the second `docker volume rm` did not delete the volume")
	}
}
