// Package boottest runs the Hetzner Cloud API simulator with its container backend, so
// servers created through the API really boot (systemd, sshd, cloud-init, Docker), and
// holds the boot tests of the rendered user-data. Start is also the helper for other
// packages' end-to-end tests.
package boottest

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hcloudsim"
	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
	"github.com/dockbridge/dockbridge/internal/simhost"
	"github.com/dockbridge/dockbridge/internal/testenv"
)

// Env is a simulator whose servers are containers on the local Docker engine.
type Env struct {
	*hcloudsimtest.Sim
	Backend *hcloudsim.ContainerBackend
	// ServerEndpoint is the API endpoint as processes inside a server reach it
	// (http://<network gateway>:<port>/v1).
	ServerEndpoint string

	cfg     envConfig
	network string
	stop    func()
}

type envConfig struct {
	stateDir   string
	datasource string
	profile    string // action profile: fast (default) or realistic
	publicIPs  netip.Prefix
	logger     *slog.Logger
}

// Option configures Start.
type Option func(*envConfig)

// WithStateDir keeps the simulator's state (and volume images) in dir, so Restart finds it.
func WithStateDir(dir string) Option { return func(c *envConfig) { c.stateDir = dir } }

// WithDatasource selects how cloud-init finds user_data (simhost.DatasourceNoCloud or
// simhost.DatasourceHetzner).
func WithDatasource(ds string) Option { return func(c *envConfig) { c.datasource = ds } }

// WithActionProfile selects the simulator's action durations: "fast" (the default) or
// "realistic" (Hetzner-like: attach and detach 2.5 s, create_server 12 s, ...).
func WithActionProfile(p string) Option { return func(c *envConfig) { c.profile = p } }

// Require fails the test (skips it under -short) unless root, the Docker engine and the
// tools simulated servers need are there.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing = append(missing, fmt.Sprintf("a running Docker engine (docker info: %v: %s)", err, strings.TrimSpace(string(out))))
	}
	for _, tool := range []string{"iptables", "debootstrap", "losetup", "mkfs.ext4", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		missing = append(missing, "loop devices (/dev/loop-control)")
	}
	testenv.Require(t, "booting simulated servers needs", missing)
}

// Start (skipped under -short) builds the simulated-server images when missing (minutes the first time), starts a
// simulator with the container backend on its own Docker network and serves it on the
// network's gateway. On t.Cleanup it removes every server container, loop device, the
// network and the metadata route it made.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("boots simulated servers (minutes); skipped under -short")
	}
	Require(t)
	cfg := envConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.stateDir == "" {
		cfg.stateDir = t.TempDir()
	}
	ctx := context.Background()
	start := time.Now()
	if err := simhost.EnsureImages(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("simulated-server images ready after %v", time.Since(start).Round(time.Millisecond))

	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	e := &Env{cfg: cfg, network: "dbboot-" + hex.EncodeToString(rnd[:])}
	// A loopback /24 of our own, so parallel environments never publish on the same address.
	e.cfg.publicIPs = netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 200 + rnd[0]%50, rnd[1], 0}), 24)
	if e.cfg.logger == nil {
		e.cfg.logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	t.Cleanup(func() {
		e.shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if e.Backend != nil {
			if err := e.Backend.RemoveAll(ctx); err != nil {
				t.Errorf("remove simulated servers: %v", err)
			}
		}
	})
	if err := e.start(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// Restart stops the simulator (server containers keep running, as the cloud does) and
// starts a new one on the same state, network and volume images.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	e.shutdown()
	if err := e.start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *Env) shutdown() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

func (e *Env) start(ctx context.Context) error {
	n, err := simhost.EnsureNetwork(ctx, e.network)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(n.Gateway, 0).String())
	if err != nil {
		return fmt.Errorf("listen on the servers' gateway %s: %w", n.Gateway, err)
	}
	b, err := hcloudsim.NewContainerBackend(ctx, hcloudsim.ContainerBackendConfig{
		ImageDir: filepath.Join(e.cfg.stateDir, "volumes"), Network: e.network,
		APIAddr: netip.MustParseAddrPort(ln.Addr().String()), PublicIPs: e.cfg.publicIPs,
		Datasource: e.cfg.datasource, Logger: e.cfg.logger,
	})
	if err != nil {
		ln.Close()
		return err
	}
	e.Backend = b
	sim, err := hcloudsim.New(ctx, hcloudsim.Config{Token: "boot-test-token", StateDir: e.cfg.stateDir,
		Backend: b, ActionProfile: cmp.Or(e.cfg.profile, "fast"), Logger: e.cfg.logger})
	if err != nil {
		ln.Close()
		_ = b.Close()
		return err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	e.Sim = &hcloudsimtest.Sim{Sim: sim, Endpoint: base + "/v1", MetadataEndpoint: base + "/hetzner/v1/metadata",
		BaseURL: base, Token: "boot-test-token"}
	e.ServerEndpoint = b.ServerEndpoint()
	e.stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := sim.Close(); err != nil {
			e.cfg.logger.Warn("close simulator", "err", err)
		}
	}
	return nil
}

// VolumeImage is the sparse image file behind volume id.
func (e *Env) VolumeImage(id int64) string {
	return filepath.Join(e.cfg.stateDir, "volumes", fmt.Sprintf("volume-%d.img", id))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Keys are a server's SSH host key pair (installed by the user-data, pinned by the client)
// and the client's key pair.
type Keys struct {
	Host       cloudinit.HostKey
	HostPublic ssh.PublicKey
	Client     ssh.Signer
	// ClientAuthorized is the client's public key in authorized_keys form.
	ClientAuthorized string
}

// NewKeys generates fresh ed25519 host and client keys.
func NewKeys() (Keys, error) {
	var k Keys
	hpub, hpriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return k, err
	}
	block, err := ssh.MarshalPrivateKey(hpriv, "")
	if err != nil {
		return k, err
	}
	if k.HostPublic, err = ssh.NewPublicKey(hpub); err != nil {
		return k, err
	}
	k.Host = cloudinit.HostKey{Type: "ed25519", Private: string(pem.EncodeToMemory(block)),
		Public: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.HostPublic)))}
	_, cpriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return k, err
	}
	if k.Client, err = ssh.NewSignerFromKey(cpriv); err != nil {
		return k, err
	}
	k.ClientAuthorized = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.Client.PublicKey())))
	return k, nil
}

// ErrHostKeyMismatch: the server answered with a host key other than the pinned one.
var ErrHostKeyMismatch = errors.New("host key does not match the pinned key")

// DialSSH connects as root to addr (host:port) and accepts only the pinned host key.
func DialSSH(ctx context.Context, addr string, k Keys) (*ssh.Client, error) {
	want := k.HostPublic.Marshal()
	cfg := &ssh.ClientConfig{
		User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(k.Client)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if string(key.Marshal()) != string(want) {
				return fmt.Errorf("%w: got %s %s", ErrHostKeyMismatch, key.Type(), ssh.FingerprintSHA256(key))
			}
			return nil
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs cmd in a session and returns its combined output.
func Run(c *ssh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		return string(out), fmt.Errorf("ssh %q: %w: %s", cmd, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
