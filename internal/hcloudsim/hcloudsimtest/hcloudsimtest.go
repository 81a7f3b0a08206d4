// Package hcloudsimtest starts an in-process Hetzner Cloud API simulator for tests.
//
//	sim := hcloudsimtest.Start(t)
//	client := sim.Client() // or hcloud.NewClient(hcloud.WithToken(sim.Token), hcloud.WithEndpoint(sim.Endpoint))
package hcloudsimtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"github.com/hetznercloud/hcloud-go/v2/hcloud/metadata"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

// Sim is a simulator serving on 127.0.0.1 for the duration of a test.
type Sim struct {
	*hcloudsim.Sim
	// Endpoint is the API endpoint, "http://127.0.0.1:PORT/v1".
	Endpoint string
	// MetadataEndpoint is "http://127.0.0.1:PORT/hetzner/v1/metadata".
	MetadataEndpoint string
	// BaseURL is "http://127.0.0.1:PORT" (control endpoints live under /_sim/).
	BaseURL string
	// Token is the API token the simulator accepts.
	Token string
}

// Option changes the simulator configuration before it starts.
type Option func(*hcloudsim.Config)

// WithConfig edits the configuration directly.
func WithConfig(f func(*hcloudsim.Config)) Option { return Option(f) }

// WithLocalServer makes the simulator answer metadata requests for a server of that name.
func WithLocalServer(name string) Option {
	return func(c *hcloudsim.Config) { c.LocalServer = name }
}

// WithStateDir persists the state in dir.
func WithStateDir(dir string) Option { return func(c *hcloudsim.Config) { c.StateDir = dir } }

// WithRateLimit sets the bucket size per hour.
func WithRateLimit(n int) Option { return func(c *hcloudsim.Config) { c.RateLimit = n } }

// WithFaults sets the initial fault configuration.
func WithFaults(f hcloudsim.FaultConfig) Option { return func(c *hcloudsim.Config) { c.Faults = f } }

// WithBackend sets the backend.
func WithBackend(b hcloudsim.Backend) Option { return func(c *hcloudsim.Config) { c.Backend = b } }

// WithClock injects the clock used for timestamps and the rate limit.
func WithClock(clk hcloudsim.Clock) Option { return func(c *hcloudsim.Config) { c.Clock = clk } }

// Start starts a simulator (token "test-token", fast actions) and stops it on t.Cleanup.
func Start(t testing.TB, opts ...Option) *Sim {
	t.Helper()
	cfg := hcloudsim.Config{Token: "test-token", ActionProfile: "fast"}
	for _, o := range opts {
		o(&cfg)
	}
	ctx := context.Background()
	s, err := hcloudsim.New(ctx, cfg)
	if err != nil {
		t.Fatalf("start hcloud simulator: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("start hcloud simulator: listen: %v", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := s.Close(); err != nil {
			t.Errorf("close hcloud simulator: %v", err)
		}
	})
	return &Sim{Sim: s, Endpoint: base + "/v1", MetadataEndpoint: base + "/hetzner/v1/metadata", BaseURL: base, Token: cfg.Token}
}

// Client returns an hcloud-go client for the simulator with fast polling and retries
// (poll every 10 ms, retry backoff 10 ms), plus extra options.
func (s *Sim) Client(opts ...hcloud.ClientOption) *hcloud.Client {
	base := []hcloud.ClientOption{
		hcloud.WithToken(s.Token), hcloud.WithEndpoint(s.Endpoint),
		hcloud.WithPollOpts(hcloud.PollOpts{BackoffFunc: hcloud.ConstantBackoff(10 * time.Millisecond)}),
		hcloud.WithRetryOpts(hcloud.RetryOpts{BackoffFunc: hcloud.ConstantBackoff(10 * time.Millisecond), MaxRetries: 5}),
	}
	return hcloud.NewClient(append(base, opts...)...)
}

// MetadataClient returns an hcloud-go metadata client for the simulator.
func (s *Sim) MetadataClient() *metadata.Client {
	return metadata.NewClient(metadata.WithEndpoint(s.MetadataEndpoint))
}

// Faults replaces the fault configuration (failing the test on a bad one).
func (s *Sim) Faults(t testing.TB, cfg hcloudsim.FaultConfig) {
	t.Helper()
	if err := s.SetFaults(cfg); err != nil {
		t.Fatalf("set simulator faults: %v", err)
	}
}

// AwaitHeld waits (30 s at most) until the simulator holds an action whose command matches the
// glob (see the "hold" fault kind), and returns it; the test fails if none is held in time.
// Let it go on with Release(hcloudsim.ReleaseRequest{IDs: []int64{held.ID}}).
func (s *Sim) AwaitHeld(t testing.TB, command string) hcloudsim.HeldAction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := s.WaitHeld(ctx, command)
	if err != nil {
		t.Fatalf("no %q action was held within 30s (held: %+v): %v", command, s.HeldActions(), err)
	}
	return h
}

// GetControl gets a /_sim/ endpoint and decodes the answer into out.
func (s *Sim) GetControl(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.BaseURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// PostControl posts a JSON body to a /_sim/ endpoint and decodes the answer into out.
func (s *Sim) PostControl(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.BaseURL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d", path, resp.StatusCode)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// FakeClock is a settable clock for rate-limit tests.
type FakeClock struct {
	mu  chan struct{}
	now time.Time
}

// NewFakeClock returns a clock standing at t.
func NewFakeClock(t time.Time) *FakeClock {
	c := &FakeClock{mu: make(chan struct{}, 1), now: t}
	return c
}

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	return c.now
}

// Advance moves the clock forward.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	c.now = c.now.Add(d)
}
