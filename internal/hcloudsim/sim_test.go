package hcloudsim_test

import (
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

func TestServerVolumeLifecycle(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()

	res, _, err := c.Server.Create(ctx, hcloud.ServerCreateOpts{
		Name: "node1", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "docker-ce"}, Location: &hcloud.Location{Name: "fsn1"},
		Labels: map[string]string{"managed-by": "dockbridge"},
	})
	if err != nil {
		t.Fatalf("create server: %v", err)
	}
	if res.Server.Status != hcloud.ServerStatusInitializing {
		t.Errorf("status after create = %q, want initializing", res.Server.Status)
	}
	if len(res.NextActions) != 1 || res.NextActions[0].Command != "start_server" {
		t.Errorf("next actions = %+v, want one start_server", res.NextActions)
	}
	if err := c.Action.WaitFor(ctx, append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatalf("wait for create: %v", err)
	}
	srv, _, err := c.Server.GetByName(ctx, "node1")
	if err != nil || srv == nil {
		t.Fatalf("get server: %v %v", srv, err)
	}
	if srv.Status != hcloud.ServerStatusRunning {
		t.Errorf("status = %q, want running", srv.Status)
	}

	vres, _, err := c.Volume.Create(ctx, hcloud.VolumeCreateOpts{Name: "data", Size: 10, Server: srv, Format: hcloud.Ptr("ext4")})
	if err != nil {
		t.Fatalf("create volume: %v", err)
	}
	if err := c.Action.WaitFor(ctx, append([]*hcloud.Action{vres.Action}, vres.NextActions...)...); err != nil {
		t.Fatalf("wait for volume: %v", err)
	}
	v, _, err := c.Volume.GetByID(ctx, vres.Volume.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Server == nil || v.Server.ID != srv.ID || v.Status != hcloud.VolumeStatusAvailable {
		t.Errorf("volume = %+v, want attached to %d and available", v, srv.ID)
	}
	_ = time.Second
}
