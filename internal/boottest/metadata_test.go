package boottest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/testimage"
)

// TestMetadataFirewall: the metadata service serves the user-data, with the server's SSH host
// key, to whatever reaches 169.254.169.254. Containers on Docker's bridge networks (the
// default one and user-defined ones) must not reach it; host-network processes (the volume
// plugin asks it for the instance-id) still do. The rule is in place whenever dockerd starts,
// so also after a reboot, before the first container with a restart policy runs.
func TestMetadataFirewall(t *testing.T) {
	t.Parallel()
	e := Start(t)
	vol := e.volume(t, "data", "")
	s := e.boot(t, "fenced", bootOpts{volumes: []*hcloud.Volume{vol}})
	s.succeeded(t)
	if out, err := runInput(s.ssh, testimage.BusyboxRootfs(t), "docker import - dockbridge-test/busybox:1"); err != nil {
		t.Fatal(err, out)
	}
	s.run(t, "docker network create fenced-net")
	const userData = "http://169.254.169.254/hetzner/v1/userdata"
	// ask is an HTTP GET of the metadata service from a busybox container (busybox's wget
	// crashes in a static build; nc does not).
	ask := func(path string) string {
		return `sh -c 'printf "GET ` + path + ` HTTP/1.0\r\n\r\n" | busybox nc -w 10 169.254.169.254 80'`
	}

	// The service really serves the user-data, host key included: the host sees it.
	if got := s.run(t, "curl -sf --max-time 10 "+userData); !strings.Contains(got, "ed25519_private") {
		t.Fatalf("the metadata service does not serve the user-data to the host (so the test below would prove nothing): %.300q", got)
	}

	blocked := func(t *testing.T, where, network string) {
		t.Helper()
		out, err := Run(s.ssh, "docker run --rm --network "+network+" dockbridge-test/busybox:1 "+ask("/hetzner/v1/userdata"))
		if err == nil || strings.Contains(out, "ssh_keys") {
			t.Fatalf("a container on %s read the user-data:\n%.300s", where, out)
		}
		if !strings.Contains(out, "Connection refused") {
			t.Fatalf("a container on %s: %q, want the connection refused by the DOCKER-USER rule", where, out)
		}
	}
	t.Run("DefaultBridge", func(t *testing.T) { blocked(t, "the default bridge", "bridge") })
	t.Run("UserDefinedNetwork", func(t *testing.T) { blocked(t, "a user-defined network", "fenced-net") })
	t.Run("HostNetwork", func(t *testing.T) {
		got := s.run(t, "docker run --rm --network host dockbridge-test/busybox:1 "+ask("/hetzner/v1/metadata/instance-id"))
		if !strings.HasPrefix(got, "HTTP/1.0 200") || !strings.HasSuffix(got, "\n"+fmt.Sprint(s.ID)) {
			t.Fatalf("a host-network container (like the volume plugin) asked the instance-id: %q, want %d", got, s.ID)
		}
	})
	t.Run("RuleFirstInDockerUser", func(t *testing.T) {
		rules := strings.Split(s.run(t, "iptables -w -S DOCKER-USER"), "\n")
		want := "-A " + cloudinit.MetadataFirewallRule
		if len(rules) < 2 || !strings.HasPrefix(rules[1], want) {
			t.Fatalf("DOCKER-USER:\n%s\nwant %q first", strings.Join(rules, "\n"), want)
		}
		if n := strings.Count(strings.Join(rules, "\n"), "169.254.169.254"); n != 1 {
			t.Fatalf("the rule is in DOCKER-USER %d times", n)
		}
	})

	// A container with a restart policy tries at every start of Docker; after a reboot (a new
	// network namespace, no rules at all) it must find the rule in place already.
	t.Run("AfterReboot", func(t *testing.T) {
		s.run(t, "docker volume create fenced-probe")
		s.run(t, "docker run -d --name prober --restart always --network fenced-net -v fenced-probe:/p dockbridge-test/busybox:1 "+
			`sh -c 'printf "GET /hetzner/v1/userdata HTTP/1.0\r\n\r\n" | busybox nc -w 10 169.254.169.254 80 >/p/out 2>&1; echo rc=$? >>/p/out; busybox sleep 2147483647'`)
		probe := func() string {
			t.Helper()
			var out string
			for range 60 {
				out, _ = Run(s.ssh, "cat /var/lib/docker/volumes/fenced-probe/_data/out")
				if strings.Contains(out, "rc=") {
					return out
				}
				time.Sleep(500 * time.Millisecond)
			}
			t.Fatalf("the prober container wrote no result: %q", out)
			return ""
		}
		if out := probe(); strings.Contains(out, "rc=0") || strings.Contains(out, "ssh_keys") {
			t.Fatalf("before the reboot the prober read the user-data: %.300q", out)
		}
		s.run(t, "rm /var/lib/docker/volumes/fenced-probe/_data/out")

		c := e.Client()
		a, _, err := c.Server.Reboot(t.Context(), s.Server)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Action.WaitFor(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		s.reconnect(t)
		if out, err := Run(s.ssh, "iptables -w -S DOCKER-USER"); err == nil && strings.Contains(out, "169.254.169.254") {
			t.Fatalf("the rule survived in a fresh network namespace before Docker started (the test could not tell who put it there):\n%s", out)
		}
		// A VM mounts the fstab entry at boot; a simulated server does not (see README.md).
		s.run(t, "mountpoint -q /var/lib/docker || mount /var/lib/docker; systemctl reset-failed docker.service docker.socket; systemctl start docker.service")
		if out := probe(); strings.Contains(out, "rc=0") || strings.Contains(out, "ssh_keys") || !strings.Contains(out, "Connection refused") {
			t.Fatalf("after the reboot the prober (restart policy) got: %.300q, want the connection refused", out)
		}
		if got := s.run(t, "curl -sf --max-time 10 http://169.254.169.254/hetzner/v1/metadata/instance-id"); got != fmt.Sprint(s.ID) {
			t.Fatalf("the host asked its instance-id after the reboot: %q", got)
		}
	})
}
