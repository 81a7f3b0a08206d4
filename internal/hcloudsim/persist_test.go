package hcloudsim_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

func TestStatePersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	sim1 := hcloudsimtest.Start(t, hcloudsimtest.WithStateDir(dir), hcloudsimtest.WithLocalServer("me"))
	c1 := sim1.Client()
	localID := sim1.LocalServerID()
	key, _, err := c1.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: "k", PublicKey: must(newPublicKey(t))})
	if err != nil {
		t.Fatal(err)
	}
	srv := mustServer(t, c1, "web", "fsn1", map[string]string{"managed-by": "dockbridge"})
	vol := mustVolume(t, c1, hcloud.VolumeCreateOpts{Name: "data", Server: srv, Labels: map[string]string{"fs-uuid": "abc"}})
	if err := sim1.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "state.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v mode %v, want 0600", err, fi.Mode())
	}

	sim2 := hcloudsimtest.Start(t, hcloudsimtest.WithStateDir(dir), hcloudsimtest.WithLocalServer("me"))
	c2 := sim2.Client()
	if sim2.LocalServerID() != localID {
		t.Errorf("local server id %d after restart, want %d", sim2.LocalServerID(), localID)
	}
	k2, _, _ := c2.SSHKey.GetByID(ctx, key.ID)
	s2, _, _ := c2.Server.GetByID(ctx, srv.ID)
	v2, _, _ := c2.Volume.GetByID(ctx, vol.ID)
	if k2 == nil || k2.Fingerprint != key.Fingerprint {
		t.Errorf("ssh key after restart: %+v", k2)
	}
	if s2 == nil || s2.Status != hcloud.ServerStatusRunning || s2.Labels["managed-by"] != "dockbridge" || len(s2.Volumes) != 1 {
		t.Errorf("server after restart: %+v", s2)
	}
	if v2 == nil || v2.Server == nil || v2.Server.ID != srv.ID || v2.Labels["fs-uuid"] != "abc" {
		t.Errorf("volume after restart: %+v", v2)
	}
	// New ids never reuse old ones, and old actions are still readable.
	v3 := mustVolume(t, c2, hcloud.VolumeCreateOpts{Name: "more"})
	if v3.ID <= vol.ID {
		t.Errorf("new volume id %d <= old %d", v3.ID, vol.ID)
	}
	acts, err := c2.Volume.Action.AllFor(ctx, v2, hcloud.ActionListOpts{})
	if err != nil || len(acts) != 2 {
		t.Errorf("volume actions after restart: %d, %v", len(acts), err)
	}
}

func TestInterruptedActionsFailOnRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	// The create action is held (running) until the simulator stops: the stop interrupts it
	// whatever the machine's load, which a stop "within the action's 100 ms" did not.
	hold := hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "hold", Rate: 1, Command: "create_server", Count: 1}}}
	sim1 := hcloudsimtest.Start(t, hcloudsimtest.WithStateDir(dir), hcloudsimtest.WithFaults(hold))
	c1 := sim1.Client()
	res, _, err := c1.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "slow", ServerType: &hcloud.ServerType{Name: "cx23"}, Image: &hcloud.Image{Name: "debian-12"}})
	if err != nil {
		t.Fatal(err)
	}
	if held := sim1.AwaitHeld(t, "create_server"); held.ID != res.Action.ID {
		t.Fatalf("held %+v, want the create action %d", held, res.Action.ID)
	}
	if err := sim1.Close(); err != nil {
		t.Fatal(err)
	}
	sim2 := hcloudsimtest.Start(t, hcloudsimtest.WithStateDir(dir))
	c2 := sim2.Client()
	a, _, err := c2.Action.GetByID(ctx, res.Action.ID)
	if err != nil || a.Status != hcloud.ActionStatusError {
		t.Errorf("interrupted action = %+v, %v; want status error", a, err)
	}
	s, _, _ := c2.Server.GetByID(ctx, res.Server.ID)
	if s == nil || s.Status != hcloud.ServerStatusRunning {
		t.Errorf("server after restart = %+v, want running", s)
	}
}
