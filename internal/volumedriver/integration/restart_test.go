package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

// startContainer runs a long-lived container using vol at /data.
func startContainer(t *testing.T, vol, script string) string {
	t.Helper()
	id := strings.TrimSpace(docker(t, "run", "-d", "--label", "dockbridge-it=1", "-v", vol+":/data", image, "sh", "-c", script))
	t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", id) })
	return id
}

// attachments counts the simulator volumes attached to this server.
func attached(t *testing.T, name string) bool {
	v := simVolume(t, name)
	return v != nil && v.ServerID == env.LocalID
}

// restartPlugin is `docker plugin disable -f hetzner && docker plugin enable --timeout 120 hetzner`.
func restartPlugin(t *testing.T) {
	t.Helper()
	docker(t, "plugin", "disable", "-f", pluginName)
	docker(t, dockbridge.PluginEnableArgs(pluginName)...)
}

func TestPluginSurvivesDisableEnable(t *testing.T) {
	name := volName(t)
	createVolume(t, name)
	c := startContainer(t, name, "echo before > /data/before; sleep 600")
	waitFor(t, "the container's first write", func() bool {
		out, err := dockerCmd("exec", c, "cat", "/data/before")
		return err == nil && strings.Contains(out, "before")
	})
	restartPlugin(t)
	// The running container kept its mount and its data, and can still write.
	docker(t, "exec", c, "sh", "-c", "echo after > /data/after && sync")
	if !hostMounted(t, name) {
		t.Fatal("after enable, the plugin did not mount again the volume a running container uses")
	}
	// A new container shares the same filesystem and sees both writes.
	if out := run(t, name, "cat /data/before /data/after"); !strings.Contains(out, "before") || !strings.Contains(out, "after") {
		t.Fatalf("a new container reads %q", out)
	}
	docker(t, "rm", "-f", c)
	if hostMounted(t, name) {
		t.Fatal("the container's Unmount after the restart did not release the mount")
	}
	if !attached(t, name) {
		t.Fatal("the volume is no longer attached")
	}
}

// killPlugin kills the plugin process with SIGKILL and waits until Docker runs it again (or
// brings it back with disable -f/enable, which is what a person would do).
func killPlugin(t *testing.T) {
	t.Helper()
	pid := pluginPID(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if p := pluginPIDNow(); p != 0 && p != pid {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("Docker did not restart the killed plugin by itself within 15s: disable -f / enable")
	_, _ = dockerCmd("plugin", "disable", "-f", pluginName)
	docker(t, dockbridge.PluginEnableArgs(pluginName)...)
}

// TestPluginKillDuringMount kills the plugin while a Mount waits for its attach action: the
// simulator holds that action until the plugin is dead, so the kill comes during the Mount for
// sure. Whatever the interrupted `docker run` then does, it must do right: succeed reading the
// data, or fail in the volume's Mount without starting the container. Afterwards the volume works, was attached once, to this server, and is mounted only
// while a container uses it.
func TestPluginKillDuringMount(t *testing.T) {
	name := volName(t)
	createVolume(t, name)
	run(t, name, "echo kept > /data/kept")
	// Detach it, so the next Mount has to attach it; hold that attach until the plugin is killed.
	v := simVolume(t, name)
	if err := env.Client.DetachVolume(context.Background(), v.ID); err != nil {
		t.Fatal(err)
	}
	if err := env.Sim.SetFaults(hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "attach_volume", Resource: fmt.Sprintf("volume:%d", v.ID), Count: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Sim.SetFaults(hcloudsim.FaultConfig{})
		env.Sim.Release(hcloudsim.ReleaseRequest{})
	})
	attachesBefore := stats().Actions["attach_volume"]
	cmd := exec.Command("docker", "run", "--rm", "--label", "dockbridge-it=1", "-v", name+":/data", image, "cat", "/data/kept")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	held, err := env.Sim.WaitHeld(ctx, "attach_volume")
	cancel()
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("no attach of volume %d was held within a minute: the Mount never waited on its attach, so no kill could come during it (%v)\n%s", v.ID, err, out.String())
	}
	select {
	case err := <-done:
		t.Fatalf("docker run ended while its Mount's attach was still held: %v\n%s", err, out.String())
	default:
	}
	t.Logf("the Mount waits on attach action %d (held since %s): killing the plugin", held.ID, held.HeldSince.Format(time.RFC3339Nano))
	killPlugin(t)
	env.Sim.Release(hcloudsim.ReleaseRequest{IDs: []int64{held.ID}})
	_ = env.Sim.SetFaults(hcloudsim.FaultConfig{})
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("the interrupted docker run did not end within 3 minutes:\n%s", out.String())
	}
	if got := strings.TrimSpace(out.String()); err == nil {
		if got != "kept" {
			t.Fatalf("the interrupted docker run succeeded but read %q, want %q", got, "kept")
		}
		t.Log("the interrupted docker run succeeded: Docker retried the Mount with the restarted plugin")
	} else {
		// The plugin died holding the request: Docker reports its Mount call failing (with an
		// empty volume path and the broken connection: "VolumeDriver.Mount: EOF") and starts
		// no container, so none ran on an empty directory in place of the volume.
		if !strings.Contains(got, "VolumeDriver.Mount") || strings.Contains(got, "can't open") {
			t.Fatalf("the interrupted docker run failed, but not in the volume's Mount: %v\n%s", err, got)
		}
		t.Logf("the interrupted docker run failed in its Mount: %s", lastLine(got))
	}

	// The next run works, and the volume is attached once, to this server, mounted only while used.
	if got := strings.TrimSpace(run(t, name, "cat /data/kept")); got != "kept" {
		t.Fatalf("after the kill, read %q", got)
	}
	if !attached(t, name) {
		t.Fatal("not attached to this server")
	}
	if n := stats().Actions["attach_volume"] - attachesBefore; n != 1 {
		t.Errorf("%d attach actions after the detach, want 1 (the held one)", n)
	}
	if hostMounted(t, name) {
		t.Fatal("a mount is left behind")
	}
}

func TestPluginKillWhileMountedThenUnmount(t *testing.T) {
	name := volName(t)
	createVolume(t, name)
	a := startContainer(t, name, "echo a > /data/a; sleep 600")
	b := startContainer(t, name, "sleep 600")
	waitFor(t, "container A's write", func() bool { _, err := dockerCmd("exec", b, "cat", "/data/a"); return err == nil })
	killPlugin(t)
	// Both containers still use it; the recovered plugin has their references.
	docker(t, "rm", "-f", a)
	if !hostMounted(t, name) {
		t.Fatal("after the kill, stopping A released the mount B still uses")
	}
	if out := docker(t, "exec", b, "cat", "/data/a"); !strings.Contains(out, "a") {
		t.Fatalf("B reads %q", out)
	}
	docker(t, "rm", "-f", b)
	if hostMounted(t, name) {
		t.Fatal("after the kill, the last Unmount did not release the mount")
	}
}

// TestPluginSurvivesDockerdRestart restarts the Docker daemon: opt-in, because every other
// package's tests using Docker at the same time would fail.
// `make test` runs it alone, after every other test: DOCKBRIDGE_TEST_DOCKERD_RESTART=1 go test -run DockerdRestart ./internal/volumedriver/integration/
func TestPluginSurvivesDockerdRestart(t *testing.T) {
	if os.Getenv("DOCKBRIDGE_TEST_DOCKERD_RESTART") != "1" {
		t.Skip("restarting dockerd disturbs other tests: `make test` runs it alone after them (DOCKBRIDGE_TEST_DOCKERD_RESTART=1)")
	}
	name := volName(t)
	createVolume(t, name)
	c := strings.TrimSpace(docker(t, "run", "-d", "--restart", "always", "--label", "dockbridge-it=1", "-v", name+":/data", image,
		"sh", "-c", "echo $(cat /data/n 2>/dev/null)x > /data/n; sleep 600"))
	t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", c) })
	waitFor(t, "first write", func() bool {
		out, err := dockerCmd("exec", c, "cat", "/data/n")
		return err == nil && strings.TrimSpace(out) == "x"
	})
	restartDockerd(t)
	waitFor(t, "the container restarted by its policy", func() bool {
		out, err := dockerCmd("exec", c, "cat", "/data/n")
		return err == nil && strings.TrimSpace(out) == "xx"
	})
	docker(t, "rm", "-f", c)
	if hostMounted(t, name) {
		t.Fatal("a mount is left behind after the restart")
	}
	if !attached(t, name) {
		t.Fatal("not attached")
	}
}

func restartDockerd(t *testing.T) {
	t.Helper()
	out, err := exec.Command("sh", "-c", "systemctl is-active docker 2>/dev/null").Output()
	if err == nil && strings.TrimSpace(string(out)) == "active" {
		if out, err := exec.Command("systemctl", "restart", "docker").CombinedOutput(); err != nil {
			t.Fatalf("systemctl restart docker: %v %s", err, out)
		}
	} else {
		pid, err := os.ReadFile("/var/run/docker.pid")
		if err != nil {
			t.Fatalf("dockerd is not a systemd unit and has no pid file: %v", err)
		}
		if out, err := exec.Command("sh", "-c", "kill "+strings.TrimSpace(string(pid))+" && while kill -0 "+strings.TrimSpace(string(pid))+" 2>/dev/null; do sleep 0.2; done; nohup dockerd >>/var/log/dockerd.log 2>&1 &").CombinedOutput(); err != nil {
			t.Fatalf("restart dockerd: %v %s", err, out)
		}
	}
	waitFor(t, "dockerd", func() bool { _, err := dockerCmd("info"); return err == nil })
}
