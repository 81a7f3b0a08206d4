package hcloudsim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

func TestRateLimit(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := hcloudsimtest.NewFakeClock(start)
	// 360 per hour: one token every 10 s.
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithClock(clk), hcloudsimtest.WithRateLimit(360))
	sim.SetRateLimit(360, 3)
	c := sim.Client(hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 0, BackoffFunc: hcloud.ConstantBackoff(0)}))
	ctx := t.Context()

	for i := 0; i < 3; i++ {
		_, resp, err := c.Location.List(ctx, hcloud.LocationListOpts{})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.Meta.Ratelimit.Limit != 360 || resp.Meta.Ratelimit.Remaining != 2-i {
			t.Errorf("request %d: ratelimit meta %+v, want limit 360 remaining %d", i, resp.Meta.Ratelimit, 2-i)
		}
	}
	_, resp, err := c.Location.List(ctx, hcloud.LocationListOpts{})
	wantAPIError(t, err, hcloud.ErrorCodeRateLimitExceeded)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("status = %d, want 429", resp.StatusCode)
	}
	// Empty bucket: full again after 360 tokens * 10 s.
	if want := start.Add(3600 * time.Second); !resp.Meta.Ratelimit.Reset.Equal(want) {
		t.Errorf("RateLimit-Reset = %v, want %v", resp.Meta.Ratelimit.Reset, want)
	}
	clk.Advance(10 * time.Second)
	if _, _, err := c.Location.List(ctx, hcloud.LocationListOpts{}); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	_, _, err = c.Location.List(ctx, hcloud.LocationListOpts{})
	wantAPIError(t, err, hcloud.ErrorCodeRateLimitExceeded)

	// hcloud-go retries rate_limit_exceeded with its backoff; the refill lets it through.
	retrying := sim.Client(hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 3, BackoffFunc: func(int) time.Duration {
		clk.Advance(10 * time.Second)
		return time.Millisecond
	}}))
	if _, _, err := retrying.Location.List(ctx, hcloud.LocationListOpts{}); err != nil {
		t.Fatalf("retrying client: %v", err)
	}
	st := sim.Stats()
	if st.RateLimited != 3 || st.ByStatus["429"] != 3 {
		t.Errorf("stats: rate_limited %d, 429s %d; want 3", st.RateLimited, st.ByStatus["429"])
	}

	// Control endpoint sets the bucket; headers are on every answer, errors included.
	var rl hcloudsim.RateLimitStatus
	if err := sim.PostControl(ctx, "/_sim/ratelimit", map[string]int{"limit": 3600, "remaining": 3600}, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Limit != 3600 || rl.Remaining != 3600 {
		t.Errorf("ratelimit after POST = %+v", rl)
	}
	r := raw(t, sim, "GET", "/v1/servers/999999", sim.Token, nil)
	if r.status != 404 || r.header.Get("RateLimit-Limit") != "3600" || r.header.Get("RateLimit-Remaining") != "3599" {
		t.Errorf("404 answer: status %d headers %v", r.status, r.header)
	}
	reset, _ := strconv.ParseInt(r.header.Get("RateLimit-Reset"), 10, 64)
	if want := clk.Now().Add(time.Second).Unix(); reset != want {
		t.Errorf("RateLimit-Reset with one token used = %d, want %d", reset, want)
	}
}

func TestFaultInjection(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	ctx := t.Context()
	noRetry := sim.Client(hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 0, BackoffFunc: hcloud.ConstantBackoff(0)}))
	c := sim.Client() // 5 retries, 10 ms apart

	t.Run("500 on a path is not retried by hcloud-go", func(t *testing.T) {
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "500", Rate: 1, Method: "GET", Path: "/v1/volumes"}}})
		before := sim.Stats().ByEndpoint["GET /v1/volumes"]
		_, _, err := c.Volume.List(ctx, hcloud.VolumeListOpts{})
		wantAPIError(t, err, hcloud.ErrorCodeServerError)
		if got := sim.Stats().ByEndpoint["GET /v1/volumes"] - before; got != 1 {
			t.Errorf("requests = %d, want 1 (no retry on 500)", got)
		}
		if _, _, err := c.Server.List(ctx, hcloud.ServerListOpts{}); err != nil {
			t.Errorf("other path got a fault: %v", err)
		}
	})
	t.Run("503 unavailable", func(t *testing.T) {
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "503", Rate: 1, Path: "/v1/servers*"}}})
		_, _, err := noRetry.Server.List(ctx, hcloud.ServerListOpts{})
		wantAPIError(t, err, "unavailable")
	})
	t.Run("502 is retried until the fault stops", func(t *testing.T) {
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "502", Rate: 1, Path: "/v1/volumes", Count: 2}}})
		before := sim.Stats().ByEndpoint["GET /v1/volumes"]
		if _, _, err := c.Volume.List(ctx, hcloud.VolumeListOpts{}); err != nil {
			t.Fatalf("list after 2 injected 502s: %v", err)
		}
		if got := sim.Stats().ByEndpoint["GET /v1/volumes"] - before; got != 3 {
			t.Errorf("requests = %d, want 3 (2 faults + 1 success)", got)
		}
	})
	t.Run("injected 429 is retried", func(t *testing.T) {
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "429", Rate: 1, Count: 1}}})
		if _, _, err := c.Location.List(ctx, hcloud.LocationListOpts{}); err != nil {
			t.Fatalf("after one injected 429: %v", err)
		}
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "429", Rate: 1}}})
		_, _, err := noRetry.Location.List(ctx, hcloud.LocationListOpts{})
		wantAPIError(t, err, hcloud.ErrorCodeRateLimitExceeded)
	})
	t.Run("timeout holds the request", func(t *testing.T) {
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "timeout", Rate: 1, MaxDelay: "50ms"}}})
		_, _, err := noRetry.Location.List(ctx, hcloud.LocationListOpts{})
		wantAPIError(t, err, hcloud.ErrorCodeTimeout)
		short := sim.Client(hcloud.WithHTTPClient(&http.Client{Timeout: 20 * time.Millisecond}),
			hcloud.WithRetryOpts(hcloud.RetryOpts{MaxRetries: 0, BackoffFunc: hcloud.ConstantBackoff(0)}))
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "timeout", Rate: 1, MaxDelay: "10s"}}})
		_, _, err = short.Location.List(ctx, hcloud.LocationListOpts{})
		if err == nil || !strings.Contains(err.Error(), "Timeout") {
			t.Errorf("client with a 20 ms timeout: err = %v, want a client timeout", err)
		}
	})
	t.Run("failed action", func(t *testing.T) {
		sim.Faults(t, hcloudsim.FaultConfig{Rules: []hcloudsim.FaultRule{{Kind: "action_error", Rate: 1, Command: "attach_volume"}}})
		srv := mustServer(t, c, "f1", "fsn1", nil)
		v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "fv"})
		a, _, err := c.Volume.Attach(ctx, v, srv)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Action.WaitFor(ctx, a)
		var ae hcloud.ActionError
		if !errors.As(err, &ae) || ae.Code != "action_failed" {
			t.Fatalf("WaitFor = %v, want an ActionError action_failed", err)
		}
		v, _, _ = c.Volume.GetByID(ctx, v.ID)
		if v.Server != nil {
			t.Errorf("volume attached to %d after a failed attach", v.Server.ID)
		}
	})
	t.Run("partial rate is deterministic with a seed", func(t *testing.T) {
		run := func() string {
			sim.Faults(t, hcloudsim.FaultConfig{Seed: 42, Rules: []hcloudsim.FaultRule{{Kind: "500", Rate: 0.5}}})
			var b strings.Builder
			for i := 0; i < 20; i++ {
				_, _, err := noRetry.Location.List(ctx, hcloud.LocationListOpts{})
				b.WriteString(map[bool]string{true: "x", false: "."}[err != nil])
			}
			return b.String()
		}
		a, b := run(), run()
		if a != b || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
			t.Errorf("runs %s and %s: want equal and mixed", a, b)
		}
	})
	sim.Faults(t, hcloudsim.FaultConfig{})
	if err := sim.PostControl(ctx, "/_sim/faults", map[string]any{"rules": []map[string]any{{"kind": "418", "rate": 1}}}, nil); err == nil {
		t.Errorf("unknown fault kind accepted")
	}
	if st := sim.Stats(); st.FaultsInjected == 0 {
		t.Errorf("faults_injected = 0")
	}
}

func TestMetadata(t *testing.T) {
	sim := hcloudsimtest.Start(t, hcloudsimtest.WithLocalServer("builder"))
	ctx := t.Context()
	md := sim.MetadataClient()
	id, err := md.InstanceIDWithContext(ctx)
	if err != nil || id != sim.LocalServerID() || id == 0 {
		t.Fatalf("instance-id = %d, %v; want %d", id, err, sim.LocalServerID())
	}
	c := sim.Client()
	srv, _, err := c.Server.GetByID(ctx, id)
	if err != nil || srv == nil || srv.Name != "builder" || srv.Status != hcloud.ServerStatusRunning {
		t.Fatalf("local server = %+v, %v", srv, err)
	}
	host, _ := md.HostnameWithContext(ctx)
	ip, _ := md.PublicIPv4WithContext(ctx)
	region, _ := md.RegionWithContext(ctx)
	az, _ := md.AvailabilityZoneWithContext(ctx)
	if host != "builder" || !ip.Equal(srv.PublicNet.IPv4.IP) || region != "eu-central" || az != "fsn1-dc14" {
		t.Errorf("metadata: hostname %q ip %v region %q az %q", host, ip, region, az)
	}
	if !md.IsHcloudServerWithContext(ctx) {
		t.Errorf("IsHcloudServer = false")
	}
	nets, err := md.PrivateNetworksWithContext(ctx)
	if err != nil || nets != "[]" {
		t.Errorf("private-networks = %q, %v", nets, err)
	}
	r := raw(t, sim, "GET", "/hetzner/v1/metadata", "", nil)
	if r.status != 200 || !strings.Contains(string(r.body), "instance-id: "+strconv.FormatInt(id, 10)) {
		t.Errorf("summary: %d %s", r.status, r.body)
	}
	_, err = c.Server.Delete(ctx, srv)
	wantAPIError(t, err, hcloud.ErrorCodeProtected)

	// Without a local server the metadata service knows nobody.
	bare := hcloudsimtest.Start(t)
	if _, err := bare.MetadataClient().InstanceIDWithContext(ctx); err == nil {
		t.Errorf("metadata without a local server answered")
	}
	// A resolver hook maps requests to servers (what a container backend will do).
	hooked := hcloudsimtest.Start(t, hcloudsimtest.WithConfig(func(cfg *hcloudsim.Config) {
		cfg.MetadataResolver = func(r *http.Request) (int64, bool) {
			v, err := strconv.ParseInt(r.Header.Get("X-Test-Server"), 10, 64)
			return v, err == nil
		}
	}))
	hs := mustServer(t, hooked.Client(), "web-7", "hel1", nil)
	req, _ := http.NewRequestWithContext(ctx, "GET", hooked.MetadataEndpoint+"/hostname", nil)
	req.Header.Set("X-Test-Server", strconv.FormatInt(hs.ID, 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b [64]byte
	n, _ := resp.Body.Read(b[:])
	if string(b[:n]) != "web-7" {
		t.Errorf("hooked hostname = %q", b[:n])
	}
}

func TestStatsAndReset(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	v := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "s"})
	for i := 0; i < 3; i++ {
		if _, _, err := c.Volume.GetByID(ctx, v.ID); err != nil {
			t.Fatal(err)
		}
	}
	raw(t, sim, "GET", "/v1/volumes/424242", sim.Token, nil)
	resp, err := http.Get(sim.BaseURL + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	byEP := st["by_endpoint"].(map[string]any)
	if byEP["GET /v1/volumes/{id}"].(float64) != 5 || byEP["POST /v1/volumes"].(float64) != 1 {
		t.Errorf("by_endpoint = %v", byEP)
	}
	if st["total"].(float64) < 7 || st["by_status"].(map[string]any)["404"].(float64) != 1 {
		t.Errorf("stats = %v", st)
	}
	if err := sim.PostControl(ctx, "/_sim/reset", nil, nil); err != nil {
		t.Fatal(err)
	}
	vols, err := c.Volume.All(ctx)
	if err != nil || len(vols) != 0 {
		t.Errorf("after reset: %d volumes, %v", len(vols), err)
	}
	if got := sim.Stats().Total; got != 1 {
		t.Errorf("stats after reset: total %d, want 1", got)
	}
	// IDs are never given twice, also across a reset (the README says so).
	if v2 := mustVolume(t, c, hcloud.VolumeCreateOpts{Name: "s"}); v2.ID <= v.ID {
		t.Errorf("after reset a new volume got id %d, the one before had %d", v2.ID, v.ID)
	}
}

func TestConcurrentClients(t *testing.T) {
	sim := hcloudsimtest.Start(t)
	c := sim.Client()
	ctx := t.Context()
	srv := mustServer(t, c, "busy", "fsn1", nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	attached := 0
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				v, _, err := c.Volume.Create(ctx, hcloud.VolumeCreateOpts{Name: "c-" + strconv.Itoa(g) + "-" + strconv.Itoa(i), Size: 10, Location: &hcloud.Location{Name: "fsn1"}})
				if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				if err := c.Action.WaitFor(ctx, v.Action); err != nil {
					t.Errorf("wait: %v", err)
					return
				}
				a, _, err := c.Volume.Attach(ctx, v.Volume, srv)
				switch {
				case err == nil:
					if c.Action.WaitFor(ctx, a) == nil {
						mu.Lock()
						attached++
						mu.Unlock()
					}
				case hcloud.IsError(err, hcloud.ErrorCodeLocked), hcloud.IsError(err, hcloud.ErrorCodeResourceLimitExceeded):
				default:
					t.Errorf("attach: %v", err)
				}
				if _, err := c.Volume.All(ctx); err != nil {
					t.Errorf("list: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	srv, _, _ = c.Server.GetByID(ctx, srv.ID)
	if attached == 0 || attached > 16 || len(srv.Volumes) != attached {
		t.Errorf("attached %d, server lists %d volumes (max 16)", attached, len(srv.Volumes))
	}
	if st := sim.Stats(); st.ByStatus["500"] != 0 {
		t.Errorf("500 answers under concurrency: %d", st.ByStatus["500"])
	}
}
