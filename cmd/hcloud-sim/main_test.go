package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"github.com/hetznercloud/hcloud-go/v2/hcloud/metadata"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startRun runs the simulator with args on a free loopback address and waits until it
// answers. stop ends it and returns run's error; it also runs on t.Cleanup.
func startRun(t *testing.T, args ...string) (addr string, out *syncBuffer, stop func() error) {
	t.Helper()
	addr = freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"--listen", addr}, args...), out) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/_sim/health")
		if err == nil {
			resp.Body.Close()
			return addr, out, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("simulator did not come up: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunServesAPIAndMetadata(t *testing.T) {
	dir := t.TempDir()
	addr, out, stop := startRun(t, "--token", "secret", "--state-dir", dir, "--local-server", "me",
		"--rate-limit", "100", "--action-duration", "create_server=10ms")
	c := hcloud.NewClient(hcloud.WithToken("secret"), hcloud.WithEndpoint("http://"+addr+"/v1"))
	servers, resp, err := c.Server.List(t.Context(), hcloud.ServerListOpts{})
	if err != nil || len(servers) != 1 || servers[0].Name != "me" {
		t.Fatalf("servers = %v, %v", servers, err)
	}
	if resp.Meta.Ratelimit.Limit != 100 {
		t.Errorf("rate limit %d, want 100 from --rate-limit", resp.Meta.Ratelimit.Limit)
	}
	bad := hcloud.NewClient(hcloud.WithToken("other"), hcloud.WithEndpoint("http://"+addr+"/v1"))
	if _, _, err := bad.Server.List(t.Context(), hcloud.ServerListOpts{}); !hcloud.IsError(err, hcloud.ErrorCodeUnauthorized) {
		t.Errorf("wrong token: %v, want unauthorized", err)
	}
	id, err := metadata.NewClient(metadata.WithEndpoint("http://" + addr + "/hetzner/v1/metadata")).InstanceIDWithContext(t.Context())
	if err != nil || id != servers[0].ID {
		t.Errorf("metadata instance-id %d, %v; want %d", id, err, servers[0].ID)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		t.Errorf("no state written: %v", err)
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("the token appears in the log:\n%s", out.String())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--backend", "cloud"},
		{"--backend", "local"},
		{"--action-profile", "slow"},
		{"--action-duration", "attach_volume"},
		{"--fault-rate", "0.5", "--fault-kinds", "418"},
		{"--local-location", "mars1", "--local-server", "x"},
		{"--no-such-flag"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out syncBuffer
			err := run(t.Context(), append([]string{"--listen", "127.0.0.1:0"}, args...), &out)
			if err == nil {
				t.Fatalf("run %v succeeded", args)
			}
		})
	}
}
