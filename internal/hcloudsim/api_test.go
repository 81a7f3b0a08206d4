package hcloudsim_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/crypto/ssh"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

func TestCatalog(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()

	locs, err := c.Location.All(ctx)
	if err != nil || len(locs) < 3 {
		t.Fatalf("locations: %v %v", len(locs), err)
	}
	fsn1, _, err := c.Location.GetByName(ctx, "fsn1")
	if err != nil || fsn1 == nil || fsn1.NetworkZone != "eu-central" {
		t.Fatalf("fsn1 = %+v, %v", fsn1, err)
	}
	dcs, err := c.Datacenter.All(ctx)
	if err != nil || len(dcs) != len(locs) {
		t.Fatalf("datacenters: %d %v", len(dcs), err)
	}
	st, _, err := c.ServerType.GetByName(ctx, "cx23")
	if err != nil || st == nil {
		t.Fatalf("cx23: %v", err)
	}
	if len(st.Pricings) == 0 || st.Pricings[0].Monthly.Net == "" {
		t.Errorf("cx23 has no per-location prices: %+v", st.Pricings)
	}
	for _, name := range []string{"docker-ce", "debian-12", "ubuntu-24.04"} {
		im, _, err := c.Image.GetForArchitecture(ctx, name, hcloud.ArchitectureX86)
		if err != nil || im == nil {
			t.Errorf("image %s: %v %v", name, im, err)
		}
	}
	apps, err := c.Image.AllWithOpts(ctx, hcloud.ImageListOpts{Type: []hcloud.ImageType{hcloud.ImageTypeApp}, Architecture: []hcloud.Architecture{hcloud.ArchitectureX86}})
	if err != nil || len(apps) != 1 || apps[0].Name != "docker-ce" {
		t.Errorf("app images = %v, %v; want docker-ce only", apps, err)
	}
	pr, _, err := c.Pricing.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Volume.PerGBMonthly.Net == "" || len(pr.ServerTypes) == 0 {
		t.Errorf("pricing lacks volume or server type prices: %+v", pr)
	}
}

func newPublicKey(t *testing.T) (string, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(sp)), ssh.FingerprintLegacyMD5(sp)
}

func TestSSHKeys(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	pub, fp := newPublicKey(t)

	k, _, err := c.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: "laptop", PublicKey: pub, Labels: map[string]string{"managed-by": "dockbridge"}})
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint != fp {
		t.Errorf("fingerprint = %s, want %s (ssh-keygen -E md5)", k.Fingerprint, fp)
	}
	got, _, err := c.SSHKey.GetByFingerprint(ctx, fp)
	if err != nil || got == nil || got.ID != k.ID {
		t.Errorf("get by fingerprint = %v, %v", got, err)
	}
	_, _, err = c.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: "other", PublicKey: pub})
	wantAPIError(t, err, hcloud.ErrorCodeUniquenessError)
	pub2, _ := newPublicKey(t)
	_, _, err = c.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: "laptop", PublicKey: pub2})
	wantAPIError(t, err, hcloud.ErrorCodeUniquenessError)
	_, _, err = c.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: "bad", PublicKey: "ssh-ed25519 notbase64!"})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)

	k, _, err = c.SSHKey.Update(ctx, k, hcloud.SSHKeyUpdateOpts{Name: "laptop2"})
	if err != nil || k.Name != "laptop2" {
		t.Fatalf("update: %v %v", k, err)
	}
	if _, err := c.SSHKey.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.SSHKey.GetByID(ctx, k.ID)
	if err != nil {
		t.Fatal(err) // hcloud-go answers (nil, nil) on not_found
	}
	_, err = c.SSHKey.Delete(ctx, k)
	wantAPIError(t, err, hcloud.ErrorCodeNotFound)
}

func TestServerPowerActions(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	srv := mustServer(t, c, "node1", "fsn1", nil)

	steps := []struct {
		do   func(*hcloud.Server) (*hcloud.Action, *hcloud.Response, error)
		cmd  string
		want hcloud.ServerStatus
	}{
		{func(s *hcloud.Server) (*hcloud.Action, *hcloud.Response, error) { return c.Server.Poweroff(ctx, s) }, "stop_server", hcloud.ServerStatusOff},
		{func(s *hcloud.Server) (*hcloud.Action, *hcloud.Response, error) { return c.Server.Poweron(ctx, s) }, "start_server", hcloud.ServerStatusRunning},
		{func(s *hcloud.Server) (*hcloud.Action, *hcloud.Response, error) { return c.Server.Reboot(ctx, s) }, "reboot_server", hcloud.ServerStatusRunning},
		{func(s *hcloud.Server) (*hcloud.Action, *hcloud.Response, error) { return c.Server.Reset(ctx, s) }, "reset_server", hcloud.ServerStatusRunning},
		{func(s *hcloud.Server) (*hcloud.Action, *hcloud.Response, error) { return c.Server.Shutdown(ctx, s) }, "shutdown_server", hcloud.ServerStatusOff},
	}
	for _, st := range steps {
		a, _, err := st.do(srv)
		if err == nil && a.Command != st.cmd {
			t.Errorf("command = %s, want %s", a.Command, st.cmd)
		}
		waitAction(t, c, a, err)
		srv, _, _ = c.Server.GetByID(ctx, srv.ID)
		if srv.Status != st.want {
			t.Errorf("after %s: status %s, want %s", st.cmd, srv.Status, st.want)
		}
	}
	acts, err := c.Server.Action.AllFor(ctx, srv, hcloud.ActionListOpts{})
	if err != nil || len(acts) != 2+len(steps) {
		t.Errorf("server actions = %d (%v), want %d", len(acts), err, 2+len(steps))
	}
	one, _, err := c.Server.Action.GetByID(ctx, acts[0].ID)
	if err != nil || one == nil || one.ID != acts[0].ID {
		t.Errorf("GET /servers/actions/{id} = %v, %v", one, err)
	}
	all, err := c.Server.Action.All(ctx, hcloud.ActionListOpts{})
	if err != nil || len(all) != len(acts) {
		t.Errorf("GET /servers/actions = %d, %v", len(all), err)
	}

	// Protection, then delete.
	waiter(t, c)(c.Server.ChangeProtection(ctx, srv, hcloud.ServerChangeProtectionOpts{Delete: hcloud.Ptr(true)}))
	_, _, err = c.Server.DeleteWithResult(ctx, srv)
	wantAPIError(t, err, hcloud.ErrorCodeProtected)
	waiter(t, c)(c.Server.ChangeProtection(ctx, srv, hcloud.ServerChangeProtectionOpts{Delete: hcloud.Ptr(false)}))
	res, _, err := c.Server.DeleteWithResult(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	waitAction(t, c, res.Action, nil)
	gone, _, err := c.Server.GetByID(ctx, srv.ID)
	if err != nil || gone != nil {
		t.Errorf("server still there after delete: %v %v", gone, err)
	}
	_, _, err = c.Server.Poweron(ctx, srv)
	wantAPIError(t, err, hcloud.ErrorCodeNotFound)
}

// waiter returns a function that waits for the action an hcloud-go call returned.
func waiter(t *testing.T, c *hcloud.Client) func(*hcloud.Action, *hcloud.Response, error) {
	return func(a *hcloud.Action, _ *hcloud.Response, err error) {
		t.Helper()
		waitAction(t, c, a, err)
	}
}

func TestServerCreateWithVolumesAndFirewall(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	v1 := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "v1", Location: &hcloud.Location{Name: "nbg1"}})
	v2 := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "v2", Location: &hcloud.Location{Name: "nbg1"}})
	fwres, _, err := c.Firewall.Create(ctx, hcloud.FirewallCreateOpts{Name: "ssh-only", Rules: []hcloud.FirewallRule{{
		Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolTCP, Port: hcloud.Ptr("22"),
		SourceIPs: mustCIDRs(t, "0.0.0.0/0", "::/0"),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := c.Server.Create(ctx, hcloud.ServerCreateOpts{
		Name: "host", ServerType: &hcloud.ServerType{Name: "cx23"}, Image: &hcloud.Image{Name: "docker-ce"},
		Location: &hcloud.Location{Name: "nbg1"}, Volumes: []*hcloud.Volume{v1, v2}, Automount: hcloud.Ptr(true),
		Firewalls: []*hcloud.ServerCreateFirewall{{Firewall: *fwres.Firewall}}, UserData: "#cloud-config\n",
		PublicNet: &hcloud.ServerCreatePublicNet{EnableIPv4: true, EnableIPv6: false},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The create action holds the server and its volumes.
	_, _, err = c.Volume.Detach(ctx, v1)
	wantAPIError(t, err, hcloud.ErrorCodeLocked)
	if err := c.Action.WaitFor(ctx, append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatal(err)
	}
	srv, _, _ := c.Server.GetByID(ctx, res.Server.ID)
	if len(srv.Volumes) != 2 || len(srv.PublicNet.Firewalls) != 1 || srv.PublicNet.IPv4.IP == nil || !srv.PublicNet.IPv6.IsUnspecified() {
		t.Errorf("server = volumes %v, firewalls %v, ipv4 %v, ipv6 %v", srv.Volumes, srv.PublicNet.Firewalls, srv.PublicNet.IPv4, srv.PublicNet.IPv6)
	}
	fw, _, _ := c.Firewall.GetByID(ctx, fwres.Firewall.ID)
	if len(fw.AppliedTo) != 1 || fw.AppliedTo[0].Server.ID != srv.ID {
		t.Errorf("firewall applied to %+v", fw.AppliedTo)
	}
	_, err = c.Firewall.Delete(ctx, fw)
	wantAPIError(t, err, hcloud.ErrorCodeResourceInUse)

	// Volumes in another location cannot be given.
	v3 := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "v3", Location: &hcloud.Location{Name: "hel1"}})
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "host2", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "debian-12"}, Location: &hcloud.Location{Name: "nbg1"}, Volumes: []*hcloud.Volume{v3}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "host3", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "debian-12"}, Location: &hcloud.Location{Name: "nbg1"}, Volumes: []*hcloud.Volume{v1}})
	wantAPIError(t, err, hcloud.ErrorCodeVolumeAlreadyAttached)
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "host", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "debian-12"}})
	wantAPIError(t, err, hcloud.ErrorCodeUniquenessError)
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "big", ServerType: &hcloud.ServerType{Name: "cx23"},
		Image: &hcloud.Image{Name: "debian-12"}, UserData: strings.Repeat("x", 32*1024+1)})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
	_, _, err = c.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "nope", ServerType: &hcloud.ServerType{Name: "cx9000"},
		Image: &hcloud.Image{Name: "debian-12"}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)

	// Deleting the server detaches its volumes and removes it from the firewall.
	del, _, err := c.Server.DeleteWithResult(ctx, srv)
	waitAction(t, c, del.Action, err)
	v1, _, _ = c.Volume.GetByID(ctx, v1.ID)
	fw, _, _ = c.Firewall.GetByID(ctx, fw.ID)
	if v1.Server != nil || len(fw.AppliedTo) != 0 {
		t.Errorf("after server delete: volume server %v, firewall applied to %v", v1.Server, fw.AppliedTo)
	}
}

func TestFirewallActions(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	srv := mustServer(t, c, "web", "fsn1", map[string]string{"role": "web"})
	res, _, err := c.Firewall.Create(ctx, hcloud.FirewallCreateOpts{Name: "fw", ApplyTo: []hcloud.FirewallResource{{
		Type: hcloud.FirewallResourceTypeLabelSelector, LabelSelector: &hcloud.FirewallResourceLabelSelector{Selector: "role=web"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Action.WaitFor(ctx, res.Actions...); err != nil {
		t.Fatal(err)
	}
	fw := res.Firewall
	acts, _, err := c.Firewall.SetRules(ctx, fw, hcloud.FirewallSetRulesOpts{Rules: []hcloud.FirewallRule{{
		Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolICMP, SourceIPs: mustCIDRs(t, "0.0.0.0/0"),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Action.WaitFor(ctx, acts...); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Firewall.SetRules(ctx, fw, hcloud.FirewallSetRulesOpts{Rules: []hcloud.FirewallRule{{
		Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolTCP, SourceIPs: mustCIDRs(t, "0.0.0.0/0"),
	}}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput) // tcp without port
	acts, _, err = c.Firewall.ApplyResources(ctx, fw, []hcloud.FirewallResource{{Type: hcloud.FirewallResourceTypeServer, Server: &hcloud.FirewallResourceServer{ID: srv.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Action.WaitFor(ctx, acts...); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Firewall.ApplyResources(ctx, fw, []hcloud.FirewallResource{{Type: hcloud.FirewallResourceTypeServer, Server: &hcloud.FirewallResourceServer{ID: srv.ID}}})
	wantAPIError(t, err, hcloud.ErrorCodeFirewallAlreadyApplied)
	got, _, _ := c.Firewall.GetByID(ctx, fw.ID)
	if len(got.AppliedTo) != 2 || len(got.Rules) != 1 {
		t.Errorf("firewall = applied %+v rules %+v", got.AppliedTo, got.Rules)
	}
	acts, _, err = c.Firewall.RemoveResources(ctx, fw, got.AppliedTo)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Action.WaitFor(ctx, acts...); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Firewall.Delete(ctx, fw); err != nil {
		t.Fatalf("delete unused firewall: %v", err)
	}
}

func TestVolumeRulesAndErrors(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	srv := mustServer(t, c, "node1", "fsn1", nil)
	other := mustServer(t, c, "node2", "hel1", nil)
	v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "data", Size: 10, Labels: map[string]string{"managed-by": "dockbridge"}})
	if v.LinuxDevice != fmt.Sprintf("/dev/disk/by-id/scsi-0HC_Volume_%d", v.ID) || v.Status != hcloud.VolumeStatusAvailable {
		t.Errorf("volume = device %s status %s", v.LinuxDevice, v.Status)
	}

	tooLong := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name string
		opts hcloud.VolumeCreateOpts
	}{
		{"too small", hcloud.VolumeCreateOpts{Name: "small", Size: 9}},
		{"too big", hcloud.VolumeCreateOpts{Name: "big", Size: 10241}},
		{"name too long", hcloud.VolumeCreateOpts{Name: tooLong, Size: 10}},
		{"name with slash", hcloud.VolumeCreateOpts{Name: "a/b", Size: 10}},
		{"name starting with dash", hcloud.VolumeCreateOpts{Name: "-x", Size: 10}},
		{"bad format", hcloud.VolumeCreateOpts{Name: "f", Size: 10, Format: hcloud.Ptr("btrfs")}},
		{"bad label", hcloud.VolumeCreateOpts{Name: "l", Size: 10, Labels: map[string]string{"bad key!": "x"}}},
		{"reserved label prefix", hcloud.VolumeCreateOpts{Name: "l", Size: 10, Labels: map[string]string{"hetzner.cloud/x": "y"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Location == nil && tc.opts.Server == nil {
				tc.opts.Location = &hcloud.Location{Name: "fsn1"}
			}
			_, _, err := c.Volume.Create(ctx, tc.opts)
			wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
			var apiErr hcloud.Error
			if hcloud.IsError(err, hcloud.ErrorCodeInvalidInput) {
				apiErr = err.(hcloud.Error)
				if d, ok := apiErr.Details.(hcloud.ErrorDetailsInvalidInput); !ok || len(d.Fields) == 0 {
					t.Errorf("invalid_input without details.fields: %+v", apiErr.Details)
				}
			}
		})
	}
	_, _, err := c.Volume.Create(ctx, hcloud.VolumeCreateOpts{Name: "data", Size: 10, Location: &hcloud.Location{Name: "fsn1"}})
	wantAPIError(t, err, hcloud.ErrorCodeUniquenessError)

	_, _, err = c.Volume.Attach(ctx, v, other)
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput) // other location
	waiter(t, c)(c.Volume.Attach(ctx, v, srv))
	_, _, err = c.Volume.Attach(ctx, v, srv)
	wantAPIError(t, err, hcloud.ErrorCodeVolumeAlreadyAttached)
	_, err = c.Volume.Delete(ctx, v)
	wantAPIError(t, err, hcloud.ErrorCodeServiceError)

	_, _, err = c.Volume.Resize(ctx, v, 10)
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput) // not larger
	waiter(t, c)(c.Volume.Resize(ctx, v, 25))
	v, _, _ = c.Volume.GetByID(ctx, v.ID)
	if v.Size != 25 {
		t.Errorf("size after resize = %d, want 25", v.Size)
	}
	_, _, err = c.Volume.Resize(ctx, v, 20)
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput) // shrink

	waiter(t, c)(c.Volume.Detach(ctx, v))
	_, _, err = c.Volume.Detach(ctx, v)
	wantAPIError(t, err, hcloud.ErrorCodeServiceError)
	waiter(t, c)(c.Volume.ChangeProtection(ctx, v, hcloud.VolumeChangeProtectionOpts{Delete: hcloud.Ptr(true)}))
	_, err = c.Volume.Delete(ctx, v)
	wantAPIError(t, err, hcloud.ErrorCodeProtected)
	waiter(t, c)(c.Volume.ChangeProtection(ctx, v, hcloud.VolumeChangeProtectionOpts{Delete: hcloud.Ptr(false)}))

	v, _, err = c.Volume.Update(ctx, v, hcloud.VolumeUpdateOpts{Name: "renamed", Labels: map[string]string{"a": "b"}})
	if err != nil || v.Name != "renamed" || v.Labels["a"] != "b" {
		t.Fatalf("update = %+v, %v", v, err)
	}
	if _, err := c.Volume.Delete(ctx, v); err != nil {
		t.Fatal(err)
	}
	_, err = c.Volume.Delete(ctx, v)
	wantAPIError(t, err, hcloud.ErrorCodeNotFound)

	// At most 16 volumes per server.
	for i := 0; i < 16; i++ {
		mustVolume(t, c, hcloud.VolumeCreateOpts{Name: fmt.Sprintf("m%d", i), Server: srv})
	}
	_, _, err = c.Volume.Create(ctx, hcloud.VolumeCreateOpts{Name: "m16", Size: 10, Server: srv})
	wantAPIError(t, err, hcloud.ErrorCodeResourceLimitExceeded)
}

func TestLocked(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithConfig(func(c *hcloudsim.Config) {
		c.ActionDurations = map[string]time.Duration{"attach_volume": 400 * time.Millisecond}
	}))
	c := sim.Client()
	ctx := t.Context()
	srv := mustServer(t, c, "node1", "fsn1", nil)
	v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "data"})
	w := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "data2"})
	a, _, err := c.Volume.Attach(ctx, v, srv)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != hcloud.ActionStatusRunning {
		t.Fatalf("attach action status = %s, want running", a.Status)
	}
	_, _, err = c.Volume.Detach(ctx, v)
	wantAPIError(t, err, hcloud.ErrorCodeLocked)
	_, _, err = c.Volume.Attach(ctx, w, srv) // the server is locked too
	wantAPIError(t, err, hcloud.ErrorCodeLocked)
	_, _, err = c.Server.Poweroff(ctx, srv)
	wantAPIError(t, err, hcloud.ErrorCodeLocked)
	s, _, _ := c.Server.GetByID(ctx, srv.ID)
	if !s.Locked {
		t.Errorf("server.locked = false during attach")
	}
	if during, _, _ := c.Volume.GetByID(ctx, v.ID); during.Server != nil {
		t.Errorf("volume.server = %d before the attach action finished", during.Server.ID)
	}
	var progress []int
	err = c.Action.WaitForFunc(ctx, func(u *hcloud.Action) error { progress = append(progress, u.Progress); return nil }, a)
	if err != nil {
		t.Fatal(err)
	}
	if progress[len(progress)-1] != 100 {
		t.Errorf("progress = %v, want it to end at 100", progress)
	}
	waiter(t, c)(c.Volume.Detach(ctx, v))
}

func TestPaginationAndSort(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	const n = 120
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.Volume.Create(ctx, hcloud.VolumeCreateOpts{Name: fmt.Sprintf("vol-%03d", i), Size: 10, Location: &hcloud.Location{Name: "fsn1"},
				Labels: map[string]string{"parity": []string{"even", "odd"}[i%2]}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.Volume.AllWithOpts(ctx, hcloud.VolumeListOpts{ListOpts: hcloud.ListOpts{PerPage: 50}})
	if err != nil || len(all) != n {
		t.Fatalf("AllWithOpts = %d volumes, %v; want %d", len(all), err, n)
	}
	seen := map[int64]bool{}
	for _, v := range all {
		if seen[v.ID] {
			t.Fatalf("volume %d listed twice", v.ID)
		}
		seen[v.ID] = true
	}
	page, resp, err := c.Volume.List(ctx, hcloud.VolumeListOpts{ListOpts: hcloud.ListOpts{Page: 2, PerPage: 100}})
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Meta.Pagination
	if len(page) != 50 || p.PerPage != 50 || p.Page != 2 || p.PreviousPage != 1 || p.NextPage != 3 || p.LastPage != 3 || p.TotalEntries != n {
		t.Errorf("page 2 = %d items, meta %+v", len(page), p)
	}
	odd, err := c.Volume.AllWithOpts(ctx, hcloud.VolumeListOpts{ListOpts: hcloud.ListOpts{LabelSelector: "parity=odd"}, Sort: []string{"name:desc"}})
	if err != nil || len(odd) != n/2 || odd[0].Name != "vol-119" {
		t.Errorf("odd sorted by name desc: %d, first %v, %v", len(odd), odd[0].Name, err)
	}
	r := raw(t, sim, "GET", "/v1/volumes?per_page=5", sim.Token, nil)
	if !strings.Contains(string(r.body), `"previous_page": null`) {
		t.Errorf("first page previous_page is not null: %s", r.body[len(r.body)-200:])
	}
	_, _, err = c.Volume.List(ctx, hcloud.VolumeListOpts{Sort: []string{"size;drop"}})
	wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
}

func TestLabelSelectors(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	labels := map[string]map[string]string{
		"a": {"env": "prod", "tier": "web"},
		"b": {"env": "prod", "tier": "db"},
		"c": {"env": "dev"},
		"d": {},
	}
	for name, l := range labels {
		if _, _, err := c.SSHKey.Create(ctx, hcloud.SSHKeyCreateOpts{Name: name, PublicKey: must(newPublicKey(t)), Labels: l}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sel  string
		want string
	}{
		{"", "abcd"},
		{"env", "abc"},
		{"!env", "d"},
		{"env=prod", "ab"},
		{"env==prod", "ab"},
		{"env!=prod", "cd"},
		{"env in (dev,test)", "c"},
		{"env notin (dev)", "abd"},
		{"env=prod,tier=web", "a"},
		{"env in (prod,dev),!tier", "c"},
		{"tier notin (web,db),env", "c"},
		{" env = prod , tier != db ", "a"},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			keys, err := c.SSHKey.AllWithOpts(ctx, hcloud.SSHKeyListOpts{ListOpts: hcloud.ListOpts{LabelSelector: tc.sel}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.Name)
			}
			sortStrings(got)
			if strings.Join(got, "") != tc.want {
				t.Errorf("selector %q matched %v, want %s", tc.sel, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"env in (a", "=x", "env=a=b", "env in (a,(b))", "bad key!", "a,,b"} {
		t.Run("invalid "+bad, func(t *testing.T) {
			_, _, err := c.SSHKey.List(ctx, hcloud.SSHKeyListOpts{ListOpts: hcloud.ListOpts{LabelSelector: bad}})
			wantAPIError(t, err, hcloud.ErrorCodeInvalidInput)
		})
	}
}

func must(s, _ string) string { return s }

func sortStrings(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

func mustCIDRs(t *testing.T, cidrs ...string) []netIPNet {
	t.Helper()
	var out []netIPNet
	for _, c := range cidrs {
		_, n, err := parseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *n)
	}
	return out
}
