package hcloudsim_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

// TestStoredVerbatim: what the API stores comes back exactly as it was sent (Terraform
// compares every attribute with its configuration): an SSH key with its comment and
// trailing newline, names with spaces, labels, rule descriptions, user_data.
func TestStoredVerbatim(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithLocalServer("me"))
	c := sim.Client()
	ctx := t.Context()
	pub, _ := newPublicKey(t)
	pub = strings.TrimSpace(pub) + " alice@laptop (work)\n"
	labels := map[string]string{"team": "web-1.a_b", "empty": "", "example.com/role": "x"}
	k, _, err := c.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: "Alice's key  (2026)", PublicKey: pub, Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := c.SSHKey.GetByID(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.PublicKey != pub || k.PublicKey != pub {
		t.Errorf("public_key came back as %q (create answered %q); sent %q", got.PublicKey, k.PublicKey, pub)
	}
	if got.Name != "Alice's key  (2026)" || fmt.Sprint(got.Labels) != fmt.Sprint(labels) {
		t.Errorf("name %q, labels %v", got.Name, got.Labels)
	}

	desc := "  SSH from the office — ünïcode, trailing space "
	fw, _, err := c.Firewall.Create(ctx, hcloud.FirewallCreateOpts{Name: "web firewall", Labels: labels, Rules: []hcloud.FirewallRule{{
		Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolTCP, Port: hcloud.Ptr("22"),
		SourceIPs: mustCIDRs(t, "203.0.113.0/24", "2001:db8::/32"), Description: hcloud.Ptr(desc),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	f, _, _ := c.Firewall.GetByID(ctx, fw.Firewall.ID)
	if f.Name != "web firewall" || len(f.Rules) != 1 || f.Rules[0].Description == nil || *f.Rules[0].Description != desc {
		t.Errorf("firewall %q, rules %+v", f.Name, f.Rules)
	}

	userData := "#cloud-config\n# keeps spaces at the end   \nruncmd: [ 'true' ]\n\n\n"
	res, _, err := c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "web.example.com", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "debian-12"}, Labels: labels, UserData: userData})
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := c.Server.GetByID(ctx, res.Server.ID)
	if s.Name != "web.example.com" || fmt.Sprint(s.Labels) != fmt.Sprint(labels) {
		t.Errorf("server %q, labels %v", s.Name, s.Labels)
	}
	v, _, err := c.Volume.Create(ctx, hcloud.VolumeCreateOpts{Name: "Data.v1_x", Size: 10, Location: &hcloud.Location{Name: "fsn1"}, Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if v.Volume.Name != "Data.v1_x" || fmt.Sprint(v.Volume.Labels) != fmt.Sprint(labels) {
		t.Errorf("volume %q, labels %v", v.Volume.Name, v.Volume.Labels)
	}
	// user_data is served byte for byte to the server it belongs to.
	resp, err := http.Get(sim.BaseURL + "/hetzner/v1/userdata") // the local server "me": none
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var serverID atomic.Int64
	sim2 := hcloudsimtest.Start(t, hcloudsimtest.WithConfig(func(cfg *hcloudsim.Config) {
		cfg.MetadataResolver = func(*http.Request) (int64, bool) { return serverID.Load(), true }
	}))
	res2, _, err := sim2.Client().Server.Create(ctx, hcloud.ServerCreateOpts{Name: "ud", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "debian-12"}, UserData: userData})
	if err != nil {
		t.Fatal(err)
	}
	serverID.Store(res2.Server.ID)
	resp, err = http.Get(sim2.BaseURL + "/hetzner/v1/userdata")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != userData {
		t.Errorf("user_data served as %q; sent %q", body, userData)
	}
}
