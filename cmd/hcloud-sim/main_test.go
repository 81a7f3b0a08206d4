package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// --help succeeds and writes every option as the READMEs do (--name); a word that is no option
// is an error (it was ignored).
func TestHelpAndStrayWords(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hcloud-sim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, help := range []string{"--help", "-h"} {
		cmd := exec.Command(bin, help)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "  --listen string") || !strings.Contains(stdout.String(), "  --token string") {
			t.Errorf("hcloud-sim %s: %v\nstdout:\n%s\nstderr:\n%s", help, err, stdout.String(), stderr.String())
		}
		if regexp.MustCompile(`(?m)^\s+-[a-z]`).MatchString(stdout.String()) {
			t.Errorf("hcloud-sim %s writes an option with one dash:\n%s", help, stdout.String())
		}
	}
	for _, args := range [][]string{{"--token", "secret", "extra"}, {"serve"}, {"--listen", "127.0.0.1:0", "--v", "now"}} {
		// A simulator that ignores the word serves until it is killed: give it 20 s.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		out, err := exec.CommandContext(ctx, bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "unexpected argument") {
			t.Errorf("hcloud-sim %v: %v\n%s", args, err, out)
		}
	}
	// Every option a README gives the simulator exists.
	readmes := []string{"../../README.md", "../../internal/hcloudsim/README.md"}
	help, _ := exec.Command(bin, "--help").Output()
	for _, r := range readmes {
		b, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("hcloud-sim((?: +(?:--?[a-z-]+(?: +[^ `\\\\\n-][^ `\\\\\n]*)?|\\\\\n))+)").FindAllStringSubmatch(string(b), -1) {
			for _, f := range regexp.MustCompile(`(?:^|\s)(--?[a-z][a-z-]*)`).FindAllStringSubmatch(m[1], -1) {
				if !strings.HasPrefix(f[1], "--") {
					t.Errorf("%s writes the option %s with one dash", r, f[1])
				} else if f[1] != "--help" && !strings.Contains(string(help), "  "+f[1]+" ") && !strings.Contains(string(help), "  "+f[1]+"\n") {
					t.Errorf("%s gives hcloud-sim %s, which --help does not list", r, f[1])
				}
			}
		}
	}
}
