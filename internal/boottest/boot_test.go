package boottest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/testimage"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"

	"github.com/dockbridge/dockbridge/cloudinit"
)

// TestBoot boots servers through the simulator's API (hcloud-go, container backend) with
// dockbridge's rendered user-data and checks, over SSH with the pinned host key, what the
// user-data promises. The scenarios run in parallel on one simulator.
func TestBoot(t *testing.T) {
	e := Start(t)
	t.Cleanup(func() {
		bootTimes.Lock()
		defer bootTimes.Unlock()
		t.Logf("boot-to-ready over %d successful boots: median create->SSH %v, create->cloud-init done %v",
			len(bootTimes.ready), median(bootTimes.ssh), median(bootTimes.ready))
	})

	// A blank volume is formatted and becomes Docker's root; the server sees the
	// simulator's metadata service and API; a full volume is CRITICAL; the volume then
	// carries Docker's state to a new server without being formatted again.
	t.Run("BlankVolumeFullDiskRecreate", func(t *testing.T) {
		t.Parallel()
		vol := e.volume(t, "data", "")
		s := e.boot(t, "first", bootOpts{volumes: []*hcloud.Volume{vol}})

		t.Run("BlankVolume", func(t *testing.T) {
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
			info := s.run(t, "cat "+cloudinit.VolumeInfoPath)
			if !strings.Contains(info, uuid) || !strings.Contains(info, fmt.Sprint(vol.ID)) {
				t.Fatalf("%s does not name the volume %d and UUID %s:\n%s", cloudinit.VolumeInfoPath, vol.ID, uuid, info)
			}
			if fstab := s.run(t, "cat /etc/fstab"); !strings.Contains(fstab, "UUID="+uuid) || !strings.Contains(fstab, "nofail") {
				t.Fatalf("fstab has no nofail entry by UUID %s:\n%s", uuid, fstab)
			}
		})

		t.Run("MetadataAndAPIFromInside", func(t *testing.T) {
			if got := s.run(t, "curl -sf http://169.254.169.254/hetzner/v1/metadata/instance-id"); got != fmt.Sprint(s.ID) {
				t.Fatalf("metadata instance-id from inside server %d: %q", s.ID, got)
			}
			out := s.run(t, fmt.Sprintf("curl -sf -H 'Authorization: Bearer %s' %s/servers/%d", e.Token, e.ServerEndpoint, s.ID))
			var got schema.ServerGetResponse
			if err := json.Unmarshal([]byte(out), &got); err != nil || got.Server.Name != "first" {
				t.Fatalf("API at %s from inside the server: %v: %.300s", e.ServerEndpoint, err, out)
			}
		})

		t.Run("FullDisk", func(t *testing.T) {
			// Fill the volume to 86% of its size.
			s.run(t, `set -- $(df -B1 --output=used,avail /var/lib/docker | tail -n 1); fallocate -l $(( ($1 + $2) * 86 / 100 - $1 )) /var/lib/docker/filler`)
			rec := s.lastHealth(t)
			if rec.Level != cloudinit.HealthCritical || rec.UsedPct < 85 || rec.UsedPct > 90 {
				t.Fatalf("health at ~86%%: %+v, want CRITICAL", rec)
			}
			s.run(t, "rm /var/lib/docker/filler")
			if rec := s.lastHealth(t); rec.Level != cloudinit.HealthOK {
				t.Fatalf("health after freeing the space: %+v, want OK", rec)
			}
		})

		t.Run("Recreate", func(t *testing.T) {
			uuid := blkidUUID(t, e.VolumeImage(vol.ID))
			if out, err := runInput(s.ssh, testimage.BusyboxRootfs(t), "docker import - dockbridge-test/busybox:1"); err != nil {
				t.Fatal(err, out)
			}
			s.run(t, "docker create --name keeper dockbridge-test/busybox:1 sh -c 'sleep 1000'")
			s.run(t, "docker volume create keepvol && docker run --rm -v keepvol:/d dockbridge-test/busybox:1 sh -c 'echo kept > /d/f'")
			e.deleteServer(t, s)
			v, _, err := e.Client().Volume.GetByID(t.Context(), vol.ID)
			if err != nil || v.Server != nil {
				t.Fatalf("volume after server delete: %+v, %v; want it detached", v, err)
			}

			s2 := e.boot(t, "second", bootOpts{volumes: []*hcloud.Volume{v},
				edit: func(p *cloudinit.Params) { p.Volume.ExpectedUUID = uuid }})
			s2.succeeded(t)
			if got := s2.dockerOnVolume(t, vol.ID, "ext4"); got != uuid {
				t.Fatalf("filesystem UUID %s after recreate, was %s: the volume was formatted", got, uuid)
			}
			log := s2.runAny(cloudinit.SetupLogPath)
			if strings.Contains(log, "formatting it") || !strings.Contains(log, "found existing ext4 filesystem "+uuid) {
				t.Fatalf("setup log of the new server, want the existing filesystem mounted as it is:\n%s", log)
			}
			if got := s2.run(t, "docker ps -a --filter name=keeper --format '{{.Names}} {{.Image}}'"); got != "keeper dockbridge-test/busybox:1" {
				t.Fatalf("container keeper after recreate: %q", got)
			}
			if got := s2.run(t, "docker image ls -q dockbridge-test/busybox:1"); got == "" {
				t.Fatal("image dockbridge-test/busybox:1 is gone after recreate")
			}
			if got := s2.run(t, "docker run --rm -v keepvol:/d dockbridge-test/busybox:1 /bin/busybox cat /d/f"); got != "kept" {
				t.Fatalf("volume keepvol after recreate: %q", got)
			}
		})
	})

	// Volumes carrying something else are neither formatted nor used.
	for _, tc := range []struct {
		name   string
		make   []string // command run on the volume's image; the image path is appended
		stdin  string
		reason string
	}{
		{"ForeignExt2", []string{"mkfs.ext2", "-q", "-F"}, "", "holds a ext2 filesystem"},
		{"ForeignBtrfs", []string{"mkfs.btrfs", "-q", "-f"}, "", "holds a btrfs filesystem"},
		{"PartitionTable", []string{"sfdisk", "-q"}, "label: gpt\n,1GiB\n", "partition table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vol := e.volume(t, strings.ToLower(tc.name), "")
			img := e.VolumeImage(vol.ID)
			shIn(t, tc.stdin, tc.make[0], append(tc.make[1:], img)...)
			before := dataHash(t, img)
			s := e.boot(t, strings.ToLower(tc.name), bootOpts{volumes: []*hcloud.Volume{vol}})
			s.failedWith(t, tc.reason)
			s.dockerDown(t)
			s.notMounted(t)
			if after := dataHash(t, img); after != before {
				t.Fatal("the volume's bytes changed")
			}
		})
	}

	// debian-12 has no Docker: the user-data installs Debian's docker.io and ends in the
	// same state as docker-ce.
	t.Run("InstallPath", func(t *testing.T) {
		t.Parallel()
		vol := e.volume(t, "install", "")
		s := e.boot(t, "install", bootOpts{image: "debian-12", volumes: []*hcloud.Volume{vol}})
		s.succeeded(t)
		s.dockerOnVolume(t, vol.ID, "ext4")
		if rec := s.lastHealth(t); rec.Level != cloudinit.HealthOK {
			t.Fatalf("health: %+v, want OK", rec)
		}
		if log := s.runAny(cloudinit.SetupLogPath); !strings.Contains(log, "installing Debian's docker.io") {
			t.Fatalf("setup log does not show the install:\n%s", log)
		}
	})

	// The device never appears (the volume is not attached): a clear failure, and Docker
	// stays down, also after a reboot.
	t.Run("DeviceNeverAppears", func(t *testing.T) {
		t.Parallel()
		vol := e.volume(t, "detached", "")
		s := e.boot(t, "nodevice", bootOpts{edit: func(p *cloudinit.Params) {
			p.Volume.ID = vol.ID
			p.Volume.DeviceTimeout = 5 * time.Second
		}})
		s.failedWith(t, "did not appear within 5s")
		s.dockerDown(t)
		s.notMounted(t)

		c := e.Client()
		a, _, err := c.Server.Reboot(t.Context(), s.Server)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Action.WaitFor(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		s.reconnect(t)
		s.dockerDown(t)
		s.notMounted(t)
	})

	// A user-data step that fails (here: Docker missing and installing it disabled) leaves the
	// failure marker and log, and no Docker.
	t.Run("SetupStepFails", func(t *testing.T) {
		t.Parallel()
		vol := e.volume(t, "noinstall", "")
		s := e.boot(t, "noinstall", bootOpts{image: "debian-12", volumes: []*hcloud.Volume{vol},
			edit: func(p *cloudinit.Params) { p.Docker.NoInstall = true }})
		s.failedWith(t, "dockerd is not installed and Docker installation is disabled")
		s.dockerDown(t)
		if !strings.Contains(s.cloudInit, "error") {
			t.Fatalf("cloud-init status does not report the error:\n%s", s.cloudInit)
		}
	})
}
