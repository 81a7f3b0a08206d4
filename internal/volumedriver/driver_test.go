package volumedriver

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/docker/go-plugins-helpers/volume"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/mount"
)

func (h *harness) create(name string, opts map[string]string) {
	h.t.Helper()
	if err := h.d.Create(&volume.CreateRequest{Name: name, Options: opts}); err != nil {
		h.t.Fatalf("create %s: %v", name, err)
	}
}

func (h *harness) mount(name, id string) string {
	h.t.Helper()
	r, err := h.d.Mount(&volume.MountRequest{Name: name, ID: id})
	if err != nil {
		h.t.Fatalf("mount %s (%s): %v", name, id, err)
	}
	return r.Mountpoint
}

func (h *harness) unmount(name, id string) {
	h.t.Helper()
	if err := h.d.Unmount(&volume.UnmountRequest{Name: name, ID: id}); err != nil {
		h.t.Fatalf("unmount %s (%s): %v", name, id, err)
	}
}

func (h *harness) volumeNamed(name string) *hetzner.Volume {
	h.t.Helper()
	v, err := h.cloud.VolumeByNameFunc(h.t.Context(), name)
	if err != nil {
		h.t.Fatalf("volume %s: %v", name, err)
	}
	return v
}

func TestCreateLabelsAndAttachesToThisServer(t *testing.T) {
	h := newHarness(t)
	calls := h.apiCalls(func() {
		h.create("data", map[string]string{"size": "20", "labels": "env=prod", "uid": "1000", "mode": "0750"})
	})
	if strings.Join(calls, ",") != "CreateVolume" {
		t.Errorf("create made API calls %v, want just CreateVolume", calls)
	}
	v := h.volumeNamed("data")
	if v.SizeGB != 20 || v.ServerID != 1 {
		t.Errorf("volume %+v: want 20 GB attached to server 1", v)
	}
	for k, want := range map[string]string{"managed-by": "dockbridge", "dockbridge/volume": "data", "env": "prod",
		"dockbridge/uid": "1000", "dockbridge/mode": "0750", "dockbridge/holder": "1", "dockbridge/fstype": "ext4"} {
		if v.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, v.Labels[k], want)
		}
	}
}

func TestCreateRetryAdoptsOwnVolumeRefusesForeign(t *testing.T) {
	h := newHarness(t)
	h.create("data", nil)
	// A retry after a lost answer: the plugin's state is gone but the volume exists.
	h.d = h.newDriver()
	if err := h.d.del("data"); err != nil {
		t.Fatal(err)
	}
	h.create("data", nil)
	if n := len(h.p.vols); n != 1 {
		t.Fatalf("%d volumes after a retried create, want 1", n)
	}
	// A volume of the same name that is not ours.
	h.p.vols[999] = &hetzner.Volume{ID: 999, Name: "foreign", Labels: map[string]string{"owner": "someone"}}
	err := h.d.Create(&volume.CreateRequest{Name: "foreign"})
	if err == nil || !strings.Contains(err.Error(), "not created by this plugin") {
		t.Fatalf("create over a foreign volume: %v, want a refusal", err)
	}
}

func TestBadOptions(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name string
		opts map[string]string
		want string
	}{
		{"size not a number", map[string]string{"size": "abc"}, "size=\"abc\": want a whole number of GB"},
		{"size too small", map[string]string{"size": "5"}, "5 GB is outside"},
		{"size too large", map[string]string{"size": "20000"}, "20000 GB is outside"},
		{"unsupported fstype", map[string]string{"fstype": "ntfs"}, "supported filesystems are ext4 and xfs"},
		{"unknown option", map[string]string{"colour": "blue"}, "unknown option \"colour\""},
		{"bad label", map[string]string{"labels": "a b=c"}, "label key"},
		{"reserved label", map[string]string{"labels": "managed-by=me"}, "reserved"},
		{"bad uid", map[string]string{"uid": "bob"}, "uid=\"bob\""},
		{"bad mode", map[string]string{"mode": "999"}, "octal mode"},
		{"unsafe mount option", map[string]string{"mountopts": "suid"}, "not allowed"},
		{"xfs option on ext4", map[string]string{"mountopts": "inode64"}, "is for xfs"},
		{"bad protection", map[string]string{"protection": "maybe"}, "protection=\"maybe\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := h.apiCalls(func() {
				err := h.d.Create(&volume.CreateRequest{Name: "v", Options: c.opts})
				if err == nil || !errors.Is(err, ErrBadOption) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v, want an ErrBadOption containing %q", err, c.want)
				}
			})
			if len(calls) != 0 {
				t.Errorf("a bad option made API calls: %v", calls)
			}
		})
	}
	for _, name := range []string{"has space", strings.Repeat("x", 64), "trailing-", "a/b"} {
		if err := h.d.Create(&volume.CreateRequest{Name: name}); err == nil || !strings.Contains(err.Error(), "can't be a Hetzner Cloud volume name") {
			t.Errorf("name %q: %v, want a clear refusal", name, err)
		}
	}
}

func TestFirstMountFormatsOnceAndRecordsUUID(t *testing.T) {
	h := newHarness(t)
	h.create("data", map[string]string{"fstype": "xfs"})
	var mp string
	calls := h.apiCalls(func() { mp = h.mount("data", "c1") })
	if strings.Join(calls, ",") != "SetVolumeLabels" {
		t.Errorf("first mount of a new volume made API calls %v, want just SetVolumeLabels (the UUID)", calls)
	}
	v := h.volumeNamed("data")
	if v.Labels[labelUUID] != "uuid-1" || v.Labels[labelFSType] != "xfs" {
		t.Errorf("labels after first mount: %v", v.Labels)
	}
	if !h.m.mounted(mp) || h.m.formats != 1 {
		t.Fatalf("mounted=%v formats=%d", h.m.mounted(mp), h.m.formats)
	}
	// Second container shares the mount, no API request, no format.
	calls = h.apiCalls(func() {
		if got := h.mount("data", "c2"); got != mp {
			t.Errorf("second mount at %s, want %s", got, mp)
		}
	})
	if len(calls) != 0 {
		t.Errorf("second mount made API calls %v", calls)
	}
	h.unmount("data", "c1")
	if !h.m.mounted(mp) {
		t.Fatal("first unmount released the mount another container uses")
	}
	h.unmount("data", "c2")
	if h.m.mounted(mp) {
		t.Fatal("last unmount left the filesystem mounted")
	}
	// docker run again on the attached volume: zero API requests, no format.
	calls = h.apiCalls(func() { h.mount("data", "c3"); h.unmount("data", "c3") })
	if len(calls) != 0 || h.m.formats != 1 {
		t.Errorf("run on an attached volume: API calls %v, formats %d", calls, h.m.formats)
	}
}

func TestGetListPathNeedNoAPI(t *testing.T) {
	h := newHarness(t)
	h.create("a", nil)
	h.create("b", nil)
	mp := h.mount("a", "c1")
	calls := h.apiCalls(func() {
		l, err := h.d.List()
		if err != nil || len(l.Volumes) != 2 {
			t.Fatalf("list: %v %v", l, err)
		}
		g, err := h.d.Get(&volume.GetRequest{Name: "a"})
		if err != nil || g.Volume.Mountpoint != mp || g.Volume.Status["hetzner_id"] == nil || g.Volume.Status["device"] == nil {
			t.Fatalf("get: %+v %v", g, err)
		}
		p, err := h.d.Path(&volume.PathRequest{Name: "a"})
		if err != nil || p.Mountpoint != mp {
			t.Fatalf("path: %+v %v", p, err)
		}
		if h.d.Capabilities().Capabilities.Scope != "global" {
			t.Fatal("scope")
		}
	})
	if len(calls) != 0 {
		t.Errorf("Get/List/Path made API calls: %v", calls)
	}
	// An unknown name is looked up once (it may have been created on another server), then
	// remembered as missing for a while.
	calls = h.apiCalls(func() {
		for range 3 {
			if _, err := h.d.Get(&volume.GetRequest{Name: "nope"}); err == nil {
				t.Fatal("get of an unknown volume succeeded")
			}
		}
	})
	if len(calls) != 1 {
		t.Errorf("3 Gets of an unknown volume made API calls %v, want 1", calls)
	}
}

func TestDataSafety(t *testing.T) {
	cases := []struct {
		name      string
		sig       mount.Signature
		uuidLabel string
		wantErr   string
	}{
		{"ext4 with data is adopted, not formatted", mount.Signature{Type: "ext4", Usage: "filesystem", UUID: "u-ext4", Found: []mount.Found{{Type: "ext4"}}}, "", ""},
		{"xfs with data is adopted", mount.Signature{Type: "xfs", Usage: "filesystem", UUID: "u-xfs", Found: []mount.Found{{Type: "xfs"}}}, "", ""},
		{"partition table is refused", mount.Signature{PTType: "gpt", Found: []mount.Found{{Type: "PMBR"}, {Type: "gpt"}}}, "", "gpt partition table"},
		{"LUKS is refused", mount.Signature{Type: "crypto_LUKS", Usage: "crypto", Found: []mount.Found{{Type: "crypto_LUKS"}}}, "", "LUKS"},
		{"another volume's filesystem is refused", mount.Signature{Type: "ext4", Usage: "filesystem", UUID: "someone-else", Found: []mount.Found{{Type: "ext4"}}}, "mine", "is not this volume"},
		{"a blank device where a filesystem was recorded is refused", mount.Signature{}, "mine", "Refusing to format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.create("data", nil)
			v := h.volumeNamed("data")
			h.m.setDevice(h.dev(v.ID), c.sig)
			if c.uuidLabel != "" {
				st := h.d.get("data")
				st.Labels[labelUUID] = c.uuidLabel
				if err := h.d.put(st); err != nil {
					t.Fatal(err)
				}
			}
			_, err := h.d.Mount(&volume.MountRequest{Name: "data", ID: "c1"})
			if h.m.formats != 0 {
				t.Fatalf("asked to format a device holding %s (%d Format calls)", c.sig, h.m.formats)
			}
			after, _ := h.m.Probe(t.Context(), h.dev(v.ID))
			if after.UUID != c.sig.UUID || after.Type != c.sig.Type || after.PTType != c.sig.PTType {
				t.Fatalf("device changed: %s -> %s", c.sig, after)
			}
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("mount: %v", err)
				}
				if got := h.volumeNamed("data").Labels[labelUUID]; got != c.sig.UUID {
					t.Errorf("recorded UUID %q, want %q", got, c.sig.UUID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("mount: %v, want an error containing %q", err, c.wantErr)
			}
			if h.m.mounted(h.d.mountpoint("data")) {
				t.Fatal("refused, yet mounted")
			}
		})
	}
}

// TestTakeOverRule: a volume attached to another server is taken over only when that server
// cannot be using it, and then it is detached there, attached here and mounted, its filesystem
// untouched. Refused, it is not detached.
func TestTakeOverRule(t *testing.T) {
	ext4u1 := mount.Signature{Type: "ext4", Usage: "filesystem", UUID: "u1", Found: []mount.Found{{Type: "ext4"}}}
	cases := []struct {
		name    string
		status  string // status of server 2 ("" = deleted)
		labels  map[string]string
		disk    mount.Signature // what the volume holds
		wantErr error
		wantMsg string
	}{
		{"running holder is refused, named", "running", map[string]string{labelHolder: "2"}, ext4u1, ErrAttachedElsewhere, `attached to server "other-server" (id 2, running)`},
		// Only off counts: a server on its way up or down may be writing.
		{"starting holder is refused", "starting", map[string]string{labelHolder: "2"}, ext4u1, ErrAttachedElsewhere, "(id 2, starting)"},
		{"stopping holder is refused", "stopping", map[string]string{labelHolder: "2"}, ext4u1, ErrAttachedElsewhere, "(id 2, stopping)"},
		{"holder being deleted is refused", "deleting", map[string]string{labelHolder: "2"}, ext4u1, ErrAttachedElsewhere, "(id 2, deleting)"},
		{"holder in an unknown state is refused", "unknown", map[string]string{labelHolder: "2"}, ext4u1, ErrAttachedElsewhere, "(id 2, unknown)"},
		{"holder without labels is refused", "running", nil, ext4u1, ErrAttachedElsewhere, "has not released it"},
		{"a release record that still names it the holder does not count", "running", map[string]string{labelReleased: "2", labelHolder: "2"}, ext4u1, ErrAttachedElsewhere, "has not released it"},
		{"powered off holder", "off", map[string]string{labelHolder: "2"}, ext4u1, nil, ""},
		{"deleted holder", "", map[string]string{labelHolder: "2"}, ext4u1, nil, ""},
		{"holder that released it", "running", map[string]string{labelReleased: "2"}, ext4u1, nil, ""},
		{"a release record of a third server does not count", "running", map[string]string{labelReleased: "3"}, ext4u1, ErrAttachedElsewhere, "attached to server"},
		// Taken over, but the device here shows no filesystem where u1 was recorded: the wrong
		// volume may be at that path, so nothing is formatted or mounted.
		{"taken over, device blank: refused, not formatted", "off", map[string]string{labelHolder: "2"}, mount.Signature{}, ErrWrongVolume, "Refusing to format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			if c.status == "" {
				delete(h.p.servers, 2)
			} else {
				h.p.servers[2].Status = c.status
			}
			labels := map[string]string{labelManagedBy: managedByValue, labelName: "shared", labelUUID: "u1", labelFSType: "ext4"}
			for k, v := range c.labels {
				labels[k] = v
			}
			h.p.vols[500] = &hetzner.Volume{ID: 500, Name: "shared", SizeGB: 10, Location: "fsn1", ServerID: 2, Labels: labels}
			h.disks[500] = c.disk
			resp, err := h.d.Mount(&volume.MountRequest{Name: "shared", ID: "c1"})
			calls := strings.Join(h.cloud.Calls(), ",")
			if h.m.formats != 0 {
				t.Fatalf("asked to format the taken-over volume (%d Format calls)", h.m.formats)
			}
			if c.wantErr == ErrAttachedElsewhere {
				if !errors.Is(err, ErrAttachedElsewhere) || !strings.Contains(err.Error(), c.wantMsg) {
					t.Fatalf("mount: %v, want ErrAttachedElsewhere containing %q", err, c.wantMsg)
				}
				if strings.Contains(calls, "Detach") || h.volumeNamed("shared").ServerID != 2 {
					t.Fatalf("detached a volume another server may be using (calls %s)", calls)
				}
				// Fails fast: the volume and its server read, nothing else.
				if calls != "VolumeByName,Volume,Server" {
					t.Fatalf("a refused mount made calls %s, want VolumeByName,Volume,Server", calls)
				}
				return
			}
			// Allowed: detached there (and only there), attached here, this server recorded
			// as its holder after the attach.
			if !strings.Contains(calls, "DetachVolumeFrom,") || strings.Index(calls, "DetachVolumeFrom") > strings.Index(calls, "AttachVolume") ||
				strings.Index(calls, "AttachVolume") > strings.Index(calls, "SetVolumeLabels") {
				t.Fatalf("takeover calls %s, want DetachVolumeFrom, then AttachVolume, then SetVolumeLabels (mount: %v)", calls, err)
			}
			v := h.volumeNamed("shared")
			if v.ServerID != 1 || v.Labels[labelHolder] != "1" || v.Labels[labelReleased] != "" {
				t.Fatalf("after takeover: server %d labels %v", v.ServerID, v.Labels)
			}
			mp := h.d.mountpoint("shared")
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), c.wantMsg) {
					t.Fatalf("mount after takeover: %v, want %v containing %q", err, c.wantErr, c.wantMsg)
				}
				if h.m.mounted(mp) {
					t.Fatal("refused, yet mounted")
				}
				return
			}
			if err != nil {
				t.Fatalf("mount after takeover: %v", err)
			}
			if dev, ok, _ := h.m.MountedDevice(mp); !ok || dev != h.dev(500) || resp.Mountpoint != mp {
				t.Fatalf("after takeover: %s mounted=%v from %q (want %s), answer %+v", mp, ok, dev, h.dev(500), resp)
			}
			if after, _ := h.m.Probe(t.Context(), h.dev(500)); after.UUID != "u1" || after.Type != "ext4" {
				t.Fatalf("the filesystem changed in the takeover: %s", after)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t)
	h.create("data", nil)
	h.mount("data", "c1")
	if err := h.d.Remove(&volume.RemoveRequest{Name: "data"}); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove in use: %v", err)
	}
	h.unmount("data", "c1")
	calls := h.apiCalls(func() {
		if err := h.d.Remove(&volume.RemoveRequest{Name: "data"}); err != nil {
			t.Fatalf("remove: %v", err)
		}
	})
	if strings.Join(calls, ",") != "DetachVolumeFrom,DeleteVolume" {
		t.Errorf("remove made calls %v", calls)
	}
	if len(h.p.vols) != 0 {
		t.Fatal("the Hetzner volume is still there")
	}
	if l, _ := h.d.List(); len(l.Volumes) != 0 {
		t.Fatal("still listed")
	}

	h.create("safe", map[string]string{"protection": "true"})
	err := h.d.Remove(&volume.RemoveRequest{Name: "safe"})
	if err == nil || !strings.Contains(err.Error(), "hcloud volume disable-protection") {
		t.Fatalf("remove of a protected volume: %v", err)
	}
	// Lifted in the console: the next remove sees it.
	h.volumeNamed("safe")
	for _, v := range h.p.vols {
		v.Protected = false
	}
	if err := h.d.Remove(&volume.RemoveRequest{Name: "safe"}); err != nil {
		t.Fatalf("remove after lifting protection: %v", err)
	}
}

func TestRecoverAfterRestart(t *testing.T) {
	h := newHarness(t)
	h.create("kept", nil)
	h.create("stale", nil)
	mpKept := h.mount("kept", "c1")
	mpStale := h.mount("stale", "c2")
	// A kill -9 between Unmount's state save and its umount: refs gone, mount still there.
	st := h.d.get("stale")
	st.Refs, st.Mountpoint = nil, ""
	if err := h.d.put(st); err != nil {
		t.Fatal(err)
	}
	// docker plugin disable -f unmounts everything under the propagated mount.
	_ = h.m.Unmount(t.Context(), mpKept)

	h.d = h.newDriver()
	calls := h.apiCalls(func() {
		if err := h.d.Recover(t.Context()); err != nil {
			t.Fatalf("recover: %v", err)
		}
	})
	if len(calls) != 0 {
		t.Errorf("recover made API calls %v", calls)
	}
	if !h.m.mounted(mpKept) {
		t.Error("a volume still used by a container was not mounted again")
	}
	if h.m.mounted(mpStale) {
		t.Error("a mount without references was left behind")
	}
	h.unmount("kept", "c1")
	if h.m.mounted(mpKept) {
		t.Error("the later Unmount did not release the mount")
	}
	if n := h.m.formats; n != 2 {
		t.Errorf("%d formats, want 2 (one per volume)", n)
	}
}

// TestDetachOnUnmountReleases: with DETACH_ON_UNMOUNT (Swarm nodes) a volume is created
// detached, attached at its first mount, and detached again when its last container here
// stops, while Mounts and Unmounts of different containers interleave.
func TestDetachOnUnmountReleases(t *testing.T) {
	h := newHarness(t)
	h.setting.DetachOnUnmount = true
	h.d = h.newDriver()
	h.create("moving", nil)
	if v := h.volumeNamed("moving"); v.ServerID != 0 || v.Labels[labelHolder] != "" {
		t.Fatalf("created: server %d labels %v; want detached, no holder (any server may take it)", v.ServerID, v.Labels)
	}
	h.mount("moving", "c1")
	h.mount("moving", "c2")
	calls := h.apiCalls(func() { h.unmount("moving", "c1") })
	if len(calls) != 0 || !h.m.mounted(h.d.mountpoint("moving")) {
		t.Fatalf("unmount of one of two containers: calls %v, mounted %v; want no call and still mounted", calls, h.m.mounted(h.d.mountpoint("moving")))
	}
	h.mount("moving", "c3")
	h.unmount("moving", "c2")
	calls = h.apiCalls(func() { h.unmount("moving", "c3") })
	if strings.Join(calls, ",") != "DetachVolumeFrom" {
		t.Fatalf("last unmount made calls %v, want one conditional detach", calls)
	}
	if v := h.volumeNamed("moving"); v.ServerID != 0 {
		t.Fatalf("after the last unmount: attached to server %d, want detached", v.ServerID)
	}
	if h.m.mounted(h.d.mountpoint("moving")) {
		t.Fatal("still mounted after the last unmount")
	}
	// Mounting again attaches again, holder recorded.
	h.mount("moving", "c4")
	v := h.volumeNamed("moving")
	if v.ServerID != 1 || v.Labels[labelHolder] != "1" || v.Labels[labelReleased] != "" {
		t.Fatalf("after mount again: server %d labels %v", v.ServerID, v.Labels)
	}
	if h.m.formats != 1 {
		t.Fatalf("%d formats, want 1 (the first mount of a blank volume)", h.m.formats)
	}
}

// TestReleaseAllReleasesUnusedVolumesOnly is what the plugin does when Docker stops it (the
// clean stop before a server is deleted): every volume it holds that no container uses is
// marked released, so another server may take it; one still in use stays held; nothing is
// detached; and a later mount here takes it back.
func TestReleaseAllReleasesUnusedVolumesOnly(t *testing.T) {
	h := newHarness(t)
	h.create("idle", nil)
	h.create("busy", nil)
	h.create("used-before", nil)
	h.mount("busy", "c1")
	h.mount("used-before", "c2")
	h.unmount("used-before", "c2")
	released, err := h.d.ReleaseAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(released, ",") != "idle,used-before" {
		t.Fatalf("released %v, want idle and used-before", released)
	}
	for name, want := range map[string]string{"idle": "released", "used-before": "released", "busy": "held"} {
		v := h.volumeNamed(name)
		got := "held"
		if v.Labels[labelReleased] == "1" && v.Labels[labelHolder] == "" {
			got = "released"
		} else if v.Labels[labelHolder] != "1" || v.Labels[labelReleased] != "" {
			got = fmt.Sprintf("labels %v", v.Labels)
		}
		if got != want || v.ServerID != 1 {
			t.Errorf("%s: %s on server %d, want %s and still attached to this server", name, got, v.ServerID, want)
		}
	}
	if mayTakeOver(t.Context(), h.cloud, h.volumeNamed("idle")) != nil {
		t.Error("another server may not take over a released volume")
	}
	// Mounting here again records this server as the holder again.
	h.mount("idle", "c3")
	if v := h.volumeNamed("idle"); v.Labels[labelHolder] != "1" || v.Labels[labelReleased] != "" {
		t.Fatalf("after mounting again: labels %v", v.Labels)
	}
}

func TestDeviceNeverAppears(t *testing.T) {
	h := newHarness(t)
	h.p.onAttach = nil // attached, but no device shows up
	h.create("ghost", nil)
	_, err := h.d.Mount(&volume.MountRequest{Name: "ghost", ID: "c1"})
	if !errors.Is(err, ErrDeviceMissing) || !strings.Contains(err.Error(), "DEVICE_WAIT_TIMEOUT") {
		t.Fatalf("mount: %v, want ErrDeviceMissing naming DEVICE_WAIT_TIMEOUT", err)
	}
}

func TestNoTokenSaysHowToSetIt(t *testing.T) {
	h := newHarness(t)
	h.d.cloud = nil
	h.d.noCloud = errors.New("no Hetzner Cloud API token")
	err := h.d.Create(&volume.CreateRequest{Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "docker plugin set hetzner HCLOUD_TOKEN=") {
		t.Fatalf("create without token: %v", err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	h.create("a", nil)
	h.mount("a", "c1")
	d2 := h.newDriver()
	v := d2.get("a")
	if v == nil || len(v.Refs) != 1 || v.Mountpoint == "" {
		t.Fatalf("state after restart: %+v", v)
	}
}

func TestSyncAddsVolumesOfOtherServers(t *testing.T) {
	h := newHarness(t)
	h.p.vols[700] = &hetzner.Volume{ID: 700, Name: "elsewhere", ServerID: 2, Location: "fsn1",
		Labels: map[string]string{labelManagedBy: managedByValue, labelName: "elsewhere"}}
	h.p.vols[701] = &hetzner.Volume{ID: 701, Name: "not-ours", Labels: map[string]string{}}
	if err := h.d.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	l, _ := h.d.List()
	if len(l.Volumes) != 1 || l.Volumes[0].Name != "elsewhere" {
		t.Fatalf("list after sync: %+v", l.Volumes)
	}
}

// A volume resized while no container used it grows at its next mount, before Mount answers:
// an ext4 unmounted (no CAP_SYS_RESOURCE needed), an xfs right after mounting. A volume whose
// filesystem fills its device is not touched, and neither is a freshly formatted one.
func TestMountGrowsAResizedVolume(t *testing.T) {
	for _, fstype := range []string{"ext4", "xfs"} {
		t.Run(fstype, func(t *testing.T) {
			h := newHarness(t)
			h.create("data", map[string]string{"size": "10", "fstype": fstype})
			h.mount("data", "c1")
			h.unmount("data", "c1")
			h.mount("data", "c2")
			h.unmount("data", "c2")
			if len(h.m.grows) != 0 {
				t.Fatalf("grown without a resize: %q", h.m.grows)
			}
			dev := h.dev(h.volumeNamed("data").ID)
			h.m.mu.Lock()
			h.m.devBytes[dev] = 15 << 30 // `volume resize data 15` while unmounted
			h.m.mu.Unlock()
			h.mount("data", "c3")
			want := map[string]string{"ext4": "unmounted " + dev, "xfs": "mounted " + dev}[fstype]
			if len(h.m.grows) != 1 || h.m.grows[0] != want {
				t.Errorf("grows %q, want [%q]", h.m.grows, want)
			}
			if v := h.d.get("data"); v.SizeGB != 15 {
				t.Errorf("the plugin's state says %d GB after mounting the 15 GB device", v.SizeGB)
			}
			h.unmount("data", "c3")
			h.mount("data", "c4")
			if len(h.m.grows) != 1 {
				t.Errorf("grown again without a resize: %q", h.m.grows)
			}
		})
	}
}

// Docker mounts a running container's volumes again with the container's own ID for docker cp
// (and export) and unmounts once afterwards: the container keeps its mount, and the plugin must
// still count it as used (else it unmounts, and with DETACH_ON_UNMOUNT detaches, a volume a
// running container writes to).
func TestMountAgainWithTheSameIDKeepsTheMount(t *testing.T) {
	h := newHarness(t)
	h.create("data", nil)
	mp := h.mount("data", "c1")
	h.mount("data", "c1") // docker cp into the running container
	h.unmount("data", "c1")
	if !h.m.mounted(mp) {
		t.Fatal("the Unmount after docker cp unmounted the volume of a running container")
	}
	if v := h.d.get("data"); v.Mountpoint == "" || len(v.Refs) != 1 {
		t.Fatalf("after docker cp the plugin's state is %+v; want it mounted with one container", v)
	}
	h.d = h.newDriver()     // the count survives a plugin restart
	h.unmount("data", "c1") // the container stops
	if h.m.mounted(mp) {
		t.Error("the container's own Unmount left the volume mounted")
	}
}
