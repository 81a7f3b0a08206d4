package boottest

import (
	"strings"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/cloudinit"
)

// TestBoot boots servers through the simulator's API with dockbridge's rendered user-data
// and checks, over SSH with the pinned host key, what the user-data promises. The
// scenarios run in parallel on one simulator.
func TestBoot(t *testing.T) {
	e := Start(t)
	t.Cleanup(func() {
		bootTimes.Lock()
		defer bootTimes.Unlock()
		t.Logf("boot-to-ready over %d successful boots: median create->SSH %v, create->cloud-init done %v",
			len(bootTimes.ready), median(bootTimes.ssh), median(bootTimes.ready))
	})

	t.Run("BlankVolume", func(t *testing.T) {
		t.Parallel()
		vol := e.volume(t, "blank", "")
		s := e.boot(t, "blank", bootOpts{volumes: []*hcloud.Volume{vol}})
		s.succeeded(t)
		uuid := s.dockerOnVolume(t, vol.ID, "ext4")
		if got := blkidUUID(t, e.VolumeImage(vol.ID)); got != uuid {
			t.Fatalf("the volume's image has filesystem UUID %q, the server mounted %q", got, uuid)
		}
		if rec := s.lastHealth(t); rec.Level != cloudinit.HealthOK {
			t.Fatalf("health: %+v, want OK", rec)
		}
		if log := s.runAny(cloudinit.SetupLogPath); !strings.Contains(log, "formatting it as ext4") {
			t.Fatalf("setup log does not say the blank volume was formatted:\n%s", log)
		}
	})
}
