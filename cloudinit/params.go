// Package cloudinit renders the #cloud-config user-data that turns a fresh
// Hetzner server into a dockbridge Docker host: pinned SSH host keys, the
// data volume mounted at /var/lib/docker before Docker ever starts, Docker
// configured without any TCP listener, and a volume health check.
//
// The shell logic lives in real scripts under scripts/ (embedded with
// go:embed) so that shellcheck and the tests can run them; the YAML document
// itself is produced by a YAML encoder, never by pasting strings.
package cloudinit

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Defaults applied by Params.withDefaults.
const (
	DefaultFilesystem      = "ext4"
	DefaultMountPoint      = "/var/lib/docker"
	DefaultDeviceTimeout   = 300 * time.Second
	DefaultWarningPercent  = 70
	DefaultCriticalPercent = 85
	DefaultLogMaxSize      = "10m"
	DefaultLogMaxFile      = 3
	// DeviceByIDPrefix is where Hetzner exposes a volume: the prefix followed by the volume ID.
	DeviceByIDPrefix = "/dev/disk/by-id/scsi-0HC_Volume_"
)

// Paths on the provisioned server that other parts of dockbridge read.
const (
	// CompleteMarkerPath holds a timestamp, written only when setup succeeded.
	CompleteMarkerPath = "/var/log/cloud-init-complete"
	// FailedMarkerPath holds the timestamp and reason when setup failed.
	FailedMarkerPath = "/var/log/dockbridge-setup-failed"
	// SetupLogPath is the setup scripts' own log (also sent to the journal and stderr).
	SetupLogPath = "/var/log/dockbridge-setup.log"
	// VolumeInfoPath holds KEY=VALUE facts about the data volume.
	VolumeInfoPath = "/etc/dockbridge/volume-info"
	// HealthLogPath gets one line per health check run; see ParseHealthLine.
	HealthLogPath = "/var/log/docker-volume-health.log"
	// HealthCheckPath is the health check command.
	HealthCheckPath = "/usr/local/bin/docker-volume-health-check"
	// SecretsDir is dockbridge's root-only (0700) secrets directory on the server. The setup links
	// it to SecretsVolumeDir on the data volume, so that its content is there on the next server
	// too; the volume plugin mounts it read-only.
	SecretsDir = "/etc/dockbridge/secrets"
	// SecretsVolumeDir is where SecretsDir lives, under the volume's mount point.
	SecretsVolumeDir = "dockbridge-secrets"
	// PluginTokenPath is the volume plugin's API token (0600), written by up.
	PluginTokenPath = SecretsDir + "/hcloud-token"
	// PluginMarkerName, under the volume's mount point, is written by up once it has installed
	// the volume plugin; the health check watches the plugin when it is there.
	PluginMarkerName = "dockbridge-volume-plugin"
	// MetadataFirewallRule is the iptables rule (chain and match) that keeps containers on
	// Docker's bridge networks from the metadata service; docker.service puts it in place
	// before dockerd starts.
	MetadataFirewallRule = "DOCKER-USER -d 169.254.169.254/32 -j REJECT"
)

// Params describes one server's first boot. The zero value of every optional
// field means "use the default".
type Params struct {
	// EnvName names the dockbridge environment (written to volume-info). Optional;
	// lower-case letters, digits, '-', '_' and '.', at most 63 characters.
	EnvName string
	// Labels are extra facts written to volume-info as LABELS=k=v,k=v.
	// Keys and values follow Hetzner's label rules (letters, digits, '-', '_', '.', '/' in keys).
	Labels map[string]string

	Volume Volume
	// AuthorizedKeys are the OpenSSH public keys allowed to log in as root. At least one.
	AuthorizedKeys []string
	// HostKeys are the server's SSH host key pairs, installed by cloud-init so the
	// client can pin them. One of type "ed25519" is required.
	HostKeys []HostKey
	Docker   Docker
	Health   Health
	// PrivateIP, when set, is the server's address on a Hetzner private network (a Swarm node):
	// Docker waits for it at every start (at most 120 s), since the network is attached while
	// the server boots.
	PrivateIP string
}

// Volume is the Hetzner volume that holds Docker's data root.
type Volume struct {
	// ID is the Hetzner volume ID (> 0).
	ID int64
	// Device defaults to /dev/disk/by-id/scsi-0HC_Volume_<ID>.
	Device string
	// Filesystem used when the volume is blank: "ext4" (default) or "xfs". An existing
	// ext4 or xfs filesystem is mounted as it is, whatever this says.
	Filesystem string
	// ExpectedUUID, when set, is the filesystem UUID the volume must carry. A device
	// with another UUID, or with no filesystem at all, is refused: it is the wrong volume.
	ExpectedUUID string
	// MountPoint defaults to /var/lib/docker. It becomes Docker's data-root.
	MountPoint string
	// DeviceTimeout bounds the wait for the device to appear (default 300s, whole seconds).
	DeviceTimeout time.Duration
}

// HostKey is one SSH host key pair in OpenSSH text form.
type HostKey struct {
	// Type is "ed25519", "ecdsa" or "rsa".
	Type string
	// Private is the unencrypted private key ("-----BEGIN OPENSSH PRIVATE KEY-----" ...).
	Private string
	// Public is the authorized_keys form ("ssh-ed25519 AAAA... comment").
	Public string
}

// Docker configures the Docker engine on the server.
type Docker struct {
	// NoInstall makes a missing dockerd an error instead of installing Debian's docker.io.
	NoInstall bool
	// LogMaxSize is json-file's max-size, e.g. "10m" (default). Units k, m or g.
	LogMaxSize string
	// LogMaxFile is json-file's max-file (default 3).
	LogMaxFile int
	// ExtraDaemonConfig holds additional daemon.json keys. Keys dockbridge manages
	// (data-root, hosts, log-driver, log-opts, live-restore, storage-driver, ...) are refused.
	ExtraDaemonConfig map[string]any
}

// Health configures the volume health check's thresholds (percent of the volume used).
type Health struct {
	WarningPercent  int // default 70
	CriticalPercent int // default 85
}

// ErrInvalidParams is wrapped by every validation error returned by Render.
var ErrInvalidParams = errors.New("invalid cloud-init params")

var (
	envNameRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)
	labelKeyRe   = regexp.MustCompile(`^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)
	labelValueRe = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$`)
	// safePathRe keeps paths free of anything a shell, fstab or a systemd unit would mis-read.
	safePathRe = regexp.MustCompile(`^/[A-Za-z0-9._/+:@-]*$`)
	uuidRe     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	logSizeRe  = regexp.MustCompile(`^[1-9][0-9]{0,5}[kmg]$`)
)

// managedDaemonKeys are daemon.json keys Render sets itself or forbids.
var managedDaemonKeys = []string{"data-root", "graph", "hosts", "log-driver", "log-opts", "live-restore", "storage-driver", "tls", "tlsverify", "tlscacert", "tlscert", "tlskey"}

var hostKeyWireType = map[string][]string{
	"ed25519": {"ssh-ed25519"},
	"ecdsa":   {"ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"},
	"rsa":     {"ssh-rsa"},
}

// withDefaults returns a copy of p with defaults filled in; it does not validate.
func (p Params) withDefaults() Params {
	v := &p.Volume
	if v.Device == "" && v.ID > 0 {
		v.Device = fmt.Sprintf("%s%d", DeviceByIDPrefix, v.ID)
	}
	if v.Filesystem == "" {
		v.Filesystem = DefaultFilesystem
	}
	if v.MountPoint == "" {
		v.MountPoint = DefaultMountPoint
	}
	if v.DeviceTimeout == 0 {
		v.DeviceTimeout = DefaultDeviceTimeout
	}
	v.ExpectedUUID = strings.ToLower(v.ExpectedUUID)
	if p.Docker.LogMaxSize == "" {
		p.Docker.LogMaxSize = DefaultLogMaxSize
	}
	if p.Docker.LogMaxFile == 0 {
		p.Docker.LogMaxFile = DefaultLogMaxFile
	}
	if p.Health.WarningPercent == 0 {
		p.Health.WarningPercent = DefaultWarningPercent
	}
	if p.Health.CriticalPercent == 0 {
		p.Health.CriticalPercent = DefaultCriticalPercent
	}
	return p
}

// Validate reports every problem with p (after defaults) in one error wrapping ErrInvalidParams.
func (p Params) Validate() error {
	return p.withDefaults().validate()
}

func (p Params) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if p.EnvName != "" && !envNameRe.MatchString(p.EnvName) {
		bad("env name %q: use 1-63 lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit", p.EnvName)
	}
	for k, v := range p.Labels {
		if !labelKeyRe.MatchString(k) {
			bad("label key %q: use letters, digits, '.', '_', '-' (optionally prefixed with a DNS name and '/')", k)
		}
		if !labelValueRe.MatchString(v) {
			bad("label %q value %q: use at most 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", k, v)
		}
	}

	if p.PrivateIP != "" {
		if a, err := netip.ParseAddr(p.PrivateIP); err != nil || !a.Is4() || !a.IsPrivate() {
			bad("private IP %q: must be a private IPv4 address such as 10.0.0.2", p.PrivateIP)
		}
	}
	v := p.Volume
	if v.ID <= 0 {
		bad("volume id %d: must be the positive Hetzner volume ID", v.ID)
	}
	if !safePathRe.MatchString(v.Device) || strings.Contains(v.Device, "..") {
		bad("volume device %q: must be an absolute path of letters, digits and ._/+:@- (e.g. %s<id>)", v.Device, DeviceByIDPrefix)
	}
	if v.Filesystem != "ext4" && v.Filesystem != "xfs" {
		bad("volume filesystem %q: must be \"ext4\" or \"xfs\"", v.Filesystem)
	}
	if v.ExpectedUUID != "" && !uuidRe.MatchString(v.ExpectedUUID) {
		bad("volume expected UUID %q: must look like 01234567-89ab-cdef-0123-456789abcdef (or be empty when unknown)", v.ExpectedUUID)
	}
	if !safePathRe.MatchString(v.MountPoint) || strings.Contains(v.MountPoint, "..") || v.MountPoint == "/" || strings.HasSuffix(v.MountPoint, "/") {
		bad("volume mount point %q: must be an absolute path other than / without a trailing slash, of letters, digits and ._/+:@-", v.MountPoint)
	}
	if v.DeviceTimeout < time.Second || v.DeviceTimeout > time.Hour || v.DeviceTimeout%time.Second != 0 {
		bad("volume device timeout %s: must be whole seconds between 1s and 1h", v.DeviceTimeout)
	}

	if len(p.AuthorizedKeys) == 0 {
		bad("authorized keys: at least one SSH public key for root is required")
	}
	for i, k := range p.AuthorizedKeys {
		if err := checkPublicKey(k, nil); err != nil {
			bad("authorized key %d: %w", i, err)
		}
	}

	seen := map[string]bool{}
	for i, hk := range p.HostKeys {
		if err := checkHostKey(hk); err != nil {
			bad("host key %d (%s): %w", i, hk.Type, err)
		}
		if seen[hk.Type] {
			bad("host key %d: more than one key of type %q", i, hk.Type)
		}
		seen[hk.Type] = true
	}
	if !seen["ed25519"] {
		bad("host keys: an ed25519 host key pair is required so the client can pin it")
	}

	d := p.Docker
	if !logSizeRe.MatchString(d.LogMaxSize) {
		bad("docker log max size %q: must be a number followed by k, m or g, e.g. \"10m\"", d.LogMaxSize)
	}
	if d.LogMaxFile < 1 || d.LogMaxFile > 100 {
		bad("docker log max file %d: must be between 1 and 100", d.LogMaxFile)
	}
	for k := range d.ExtraDaemonConfig {
		if slices.Contains(managedDaemonKeys, k) {
			bad("docker extra daemon config key %q: dockbridge manages this key itself (the API is reachable only over SSH; data-root is the volume)", k)
		}
	}

	h := p.Health
	if h.WarningPercent < 1 || h.WarningPercent > 99 {
		bad("health warning threshold %d%%: must be between 1 and 99", h.WarningPercent)
	}
	if h.CriticalPercent < 1 || h.CriticalPercent > 100 {
		bad("health critical threshold %d%%: must be between 1 and 100", h.CriticalPercent)
	}
	if h.WarningPercent >= h.CriticalPercent {
		bad("health thresholds: warning %d%% must be below critical %d%%", h.WarningPercent, h.CriticalPercent)
	}

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidParams, errors.Join(errs...))
}

// checkPublicKey checks an authorized_keys line "type base64 [comment]". When
// wantTypes is non-nil the key type must be one of them.
func checkPublicKey(line string, wantTypes []string) error {
	_, err := parsePublicKey(line, wantTypes)
	return err
}

func parsePublicKey(line string, wantTypes []string) ([]byte, error) {
	line = strings.TrimSpace(line)
	if strings.ContainsAny(line, "\n\r") {
		return nil, errors.New("must be a single line")
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return nil, errors.New("must look like \"ssh-ed25519 AAAA... comment\"")
	}
	typ := f[0]
	if wantTypes != nil && !slices.Contains(wantTypes, typ) {
		return nil, fmt.Errorf("key type %q, want one of %v", typ, wantTypes)
	}
	if !strings.HasPrefix(typ, "ssh-") && !strings.HasPrefix(typ, "ecdsa-") && !strings.HasPrefix(typ, "sk-") {
		return nil, fmt.Errorf("key type %q is not an OpenSSH public key type (options before the key are not supported)", typ)
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return nil, fmt.Errorf("key data is not base64: %w", err)
	}
	name, _, ok := readSSHString(blob)
	if !ok || string(name) != typ {
		return nil, fmt.Errorf("key data does not encode a %q key", typ)
	}
	return blob, nil
}

// checkHostKey checks that the pair is an unencrypted OpenSSH private key whose
// embedded public key is the given public key.
func checkHostKey(hk HostKey) error {
	wire, ok := hostKeyWireType[hk.Type]
	if !ok {
		return fmt.Errorf("type %q: must be ed25519, ecdsa or rsa", hk.Type)
	}
	pubBlob, err := parsePublicKey(hk.Public, wire)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	block, rest := pem.Decode([]byte(strings.TrimSpace(hk.Private) + "\n"))
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("private key: must be one \"-----BEGIN OPENSSH PRIVATE KEY-----\" block (ssh-keygen's default format)")
	}
	privPub, cipher, err := openSSHPrivatePublic(block.Bytes)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	if cipher != "none" {
		return fmt.Errorf("private key: encrypted with %q; sshd needs an unencrypted host key", cipher)
	}
	if !bytes.Equal(privPub, pubBlob) {
		return errors.New("public key does not belong to the private key")
	}
	return nil
}

// openSSHPrivatePublic reads the clear-text header of an "openssh-key-v1" blob:
// the cipher name and the first public key.
func openSSHPrivatePublic(b []byte) (pub []byte, cipher string, err error) {
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, "", errors.New("not an openssh-key-v1 key")
	}
	b = b[len(magic):]
	c, b, ok := readSSHString(b)
	if !ok {
		return nil, "", errors.New("truncated key (cipher)")
	}
	if _, b, ok = readSSHString(b); !ok { // kdf name
		return nil, "", errors.New("truncated key (kdf)")
	}
	if _, b, ok = readSSHString(b); !ok { // kdf options
		return nil, "", errors.New("truncated key (kdf options)")
	}
	if len(b) < 4 || binary.BigEndian.Uint32(b) != 1 {
		return nil, "", errors.New("must hold exactly one key")
	}
	pub, _, ok = readSSHString(b[4:])
	if !ok {
		return nil, "", errors.New("truncated key (public key)")
	}
	return pub, string(c), nil
}

func readSSHString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(len(b)-4) < uint64(n) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}
