package boottest

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/testimage"
)

// TestShutdownIsCleanDeleteOfARunningServerIsNot: the shutdown action is an ACPI request the
// server's systemd obeys in order — dockerd stops the containers with their own stop signal
// and timeout (a container's trap writes to its volume), the data volume is unmounted —
// and the server is off only then; deleting it is then clean. A delete of a running server is
// a hard kill under the mounted data volume, and the simulator counts it in unclean_deletes.
func TestShutdownIsCleanDeleteOfARunningServerIsNot(t *testing.T) {
	t.Parallel()
	e := Start(t)
	ctx := t.Context()
	c := e.Client()

	vol := e.volume(t, "acpi-data", "")
	s := e.boot(t, "acpi", bootOpts{volumes: []*hcloud.Volume{vol}})
	s.succeeded(t)
	if out, err := runInput(s.ssh, testimage.BusyboxRootfs(t), "docker import - dockbridge-test/busybox:1"); err != nil {
		t.Fatal(err, out)
	}
	// Its stop signal is USR1, which only dockerd's stop sends (systemd's last resort at a
	// shutdown is TERM, then KILL); the trap takes a second and writes to its volume.
	s.run(t, `docker run -d --name trap --stop-signal USR1 --stop-timeout 30 -v trapped:/v dockbridge-test/busybox:1 sh -c 'trap "sleep 1; echo stop-signal >> /v/log; sync; exit 0" USR1; echo start >> /v/log; while :; do sleep 1; done'`)
	s.run(t, "until grep -q start /var/lib/docker/volumes/trapped/_data/log; do sleep 0.2; done")

	a, _, err := c.Server.Shutdown(ctx, s.Server)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Action.WaitFor(ctx, a); err != nil {
		t.Fatalf("shutdown action: %v", err)
	}
	for {
		sv, _, err := c.Server.GetByID(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if sv.Status == hcloud.ServerStatusOff {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server %d never reached off after the shutdown request (status %s)", s.ID, sv.Status)
		case <-time.After(200 * time.Millisecond):
		}
	}
	e.deleteServer(t, s)
	if n := e.Stats().UncleanDeletes; n != 0 {
		t.Fatalf("unclean_deletes = %d after shutdown, off, delete; want 0", n)
	}
	// The container's trap ran before the volume was unmounted: read the ext4 image directly.
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "cat /volumes/trapped/_data/log", e.VolumeImage(vol.ID)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "start\nstop-signal") {
		t.Fatalf("the container's log on the data volume: %q (%v), want start then stop-signal: dockerd did not stop it with its stop signal before the shutdown", out, err)
	}

	// A delete of a running server: killed with /var/lib/docker mounted.
	vol2 := e.volume(t, "cut-data", "")
	s2 := e.boot(t, "cut", bootOpts{volumes: []*hcloud.Volume{vol2}})
	s2.succeeded(t)
	e.deleteServer(t, s2)
	if n := e.Stats().UncleanDeletes; n != 1 {
		t.Fatalf("unclean_deletes = %d after deleting a running server with its data volume mounted; want 1", n)
	}
}
