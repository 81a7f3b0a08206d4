package hcloudsim

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/simhost"
)

// The container backend's booting tests live in internal/boottest (they need root, Docker
// and the simulated-server images); these need none of that.

func TestContainerBackendOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no state dir", Options{Backend: "container", Listen: "127.0.0.1:8080", PublicIPs: "127.0.0.0/24"}, "--state-dir"},
		{"bad public range", Options{Backend: "container", StateDir: "/tmp/x", Listen: "127.0.0.1:8080", PublicIPs: "nope"}, "--public-ips"},
		{"wildcard listen", Options{Backend: "container", StateDir: "/tmp/x", Listen: "0.0.0.0:8080", PublicIPs: "127.0.0.0/24"}, "beyond this machine"},
		{"empty host", Options{Backend: "container", StateDir: "/tmp/x", Listen: ":8080", PublicIPs: "127.0.0.0/24"}, "beyond this machine"},
		{"port 0", Options{Backend: "container", StateDir: "/tmp/x", Listen: "127.0.0.1:0", PublicIPs: "127.0.0.0/24"}, "fixed port"},
		{"unknown backend", Options{Backend: "vm"}, "none, local or container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.o.Config(t.Context(), slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Config() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestContainerBackendImages(t *testing.T) {
	for image, want := range map[string]string{"docker-ce": simhost.KindDockerCE, "debian-12": simhost.KindDebian12} {
		if got, err := imageKind(image); err != nil || got != want {
			t.Errorf("imageKind(%q) = %q, %v; want %q", image, got, err, want)
		}
	}
	if _, err := imageKind("ubuntu-24.04"); err == nil || !strings.Contains(err.Error(), "docker-ce") {
		t.Errorf("imageKind(ubuntu-24.04) error = %v, want one naming the available images", err)
	}
}

func TestContainerBackendAddresses(t *testing.T) {
	b := &ContainerBackend{
		cfg:       ContainerBackendConfig{PublicIPs: netip.MustParsePrefix("127.0.0.0/30")},
		net:       &simhost.Network{Subnet: netip.MustParsePrefix("172.30.0.0/29"), Gateway: netip.MustParseAddr("172.30.0.1")},
		servers:   map[int64]*containerServer{},
		byPrivate: map[netip.Addr]int64{},
	}
	// 127.0.0.0/30: .0 is the network, .1 this machine's localhost: .2 and .3 are left.
	// 172.30.0.0/29: from the top, below the broadcast address .7, never the gateway .1.
	wantPub := []string{"127.0.0.2", "127.0.0.3"}
	wantPriv := []string{"172.30.0.6", "172.30.0.5"}
	for i := range wantPub {
		pub, priv, err := b.allocLocked()
		if err != nil {
			t.Fatal(err)
		}
		if pub.String() != wantPub[i] || priv.String() != wantPriv[i] {
			t.Fatalf("allocation %d: %s %s, want %s %s", i, pub, priv, wantPub[i], wantPriv[i])
		}
		b.servers[int64(i+1)] = &containerServer{public: pub, private: priv}
		b.byPrivate[priv] = int64(i + 1)
	}
	if _, _, err := b.allocLocked(); err == nil || !strings.Contains(err.Error(), "no free public address") {
		t.Fatalf("third allocation: %v, want no free public address", err)
	}
}
