package host

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idle"
	"github.com/dockbridge/dockbridge/internal/idleagent"
	"github.com/dockbridge/dockbridge/internal/schedule"
	"github.com/dockbridge/dockbridge/internal/serverbin"
)

// EnvSettings are one environment's own settings (envs/<env>/settings.json, 0600): how long
// its server may stay idle, and how up was last run, which the wake runs again.
type EnvSettings struct {
	// IdleTimeout is idle.ParseTimeout's form ("30m", "off"); "" is the default (30m).
	IdleTimeout string `json:"idle_timeout,omitempty"`
	// IdleMargin is how long before a paid hour ends the server goes down; "" is 1/12 of
	// the billing period (5 min of an hour).
	IdleMargin string `json:"idle_margin,omitempty"`
	// BillingPeriod replaces Hetzner's hour (the simulator's tests; up --billing-period).
	BillingPeriod string `json:"billing_period,omitempty"`
	// Up is how up was last run here, for the wake.
	Up *WakeUp `json:"up,omitempty"`
}

// WakeUp is what the wake needs to run up again as the user last did.
type WakeUp struct {
	Flags          Flags  `json:"flags"`
	NoVolumePlugin bool   `json:"no_volume_plugin,omitempty"`
	PluginDir      string `json:"plugin_dir,omitempty"`
}

// EnvSettingKeys are the per-environment names `settings set --name ENV` accepts.
var EnvSettingKeys = []string{"idle_timeout", "idle_margin"}

// EnvSettingsFile is an environment's own settings file.
func (p Paths) EnvSettingsFile(env string) string {
	return filepath.Join(p.EnvDir(env), "settings.json")
}

// LoadEnvSettings reads an environment's settings; a missing file is the defaults.
func LoadEnvSettings(p Paths, env string) (EnvSettings, error) {
	var s EnvSettings
	b, err := os.ReadFile(p.EnvSettingsFile(env))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read the settings of environment %q: %w", env, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read %s: %w (fix or delete the file)", p.EnvSettingsFile(env), err)
	}
	return s, nil
}

// SaveEnvSettings writes an environment's settings (0600 in a 0700 directory).
func SaveEnvSettings(p Paths, env string, s EnvSettings) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(p.EnvSettingsFile(env), append(b, '\n'))
}

// Set sets one per-environment setting by name, validating it ("" unsets it).
func (s *EnvSettings) Set(key, value string) error {
	value = strings.TrimSpace(value)
	switch key {
	case "idle_timeout":
		if value != "" {
			d, err := idle.ParseTimeout(value)
			if err != nil {
				return err
			}
			value = idle.FormatTimeout(d)
		}
		s.IdleTimeout = value
	case "idle_margin":
		if value != "" {
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return fmt.Errorf("idle_margin %q: want a duration such as 5m: how long before a paid hour ends the idle server goes down (time for the clean stop and the delete)", value)
			}
			value = d.String()
		}
		s.IdleMargin = value
	case "billing_period":
		if value != "" {
			d, err := time.ParseDuration(value)
			if err != nil || d < 10*time.Second {
				return fmt.Errorf("billing_period %q: want a duration of at least 10s (Hetzner's is 1h; only the simulator's tests change it)", value)
			}
			value = d.String()
		}
		s.BillingPeriod = value
	default:
		return fmt.Errorf("unknown setting %q: use one of %s", key, strings.Join(append(slices.Clone(SettingKeys), EnvSettingKeys...), ", "))
	}
	return nil
}

// Get returns one per-environment setting for display, defaults filled in.
func (s EnvSettings) Get(key string) (string, error) {
	is, err := s.Idle()
	if err != nil {
		return "", err
	}
	switch key {
	case "idle_timeout":
		return idle.FormatTimeout(is.Timeout), nil
	case "idle_margin":
		return is.Margin.String(), nil
	case "billing_period":
		return is.BillingPeriod.String(), nil
	}
	return "", fmt.Errorf("unknown setting %q", key)
}

// Idle is the policy's settings these give (defaults filled in).
func (s EnvSettings) Idle() (idle.Settings, error) {
	return idleagent.Config{Timeout: s.timeoutOrDefault(), BillingPeriod: s.BillingPeriod, Margin: s.IdleMargin}.Settings()
}

func (s EnvSettings) timeoutOrDefault() string {
	if s.IdleTimeout == "" {
		return idle.FormatTimeout(idle.DefaultTimeout)
	}
	return s.IdleTimeout
}

// upEnvSettings applies up's --idle-timeout and --billing-period to the environment's
// settings and remembers how up was run (the wake runs it again so), before anything is made.
func upEnvSettings(p Paths, o UpOptions) (EnvSettings, error) {
	es, err := LoadEnvSettings(p, o.Env)
	if err != nil {
		return es, err
	}
	if o.IdleTimeout != "" {
		if err := es.Set("idle_timeout", o.IdleTimeout); err != nil {
			return es, fmt.Errorf("--idle-timeout: %w", err)
		}
	}
	if o.BillingPeriod != "" {
		if err := es.Set("billing_period", o.BillingPeriod); err != nil {
			return es, fmt.Errorf("--billing-period: %w", err)
		}
	}
	if _, err := es.Idle(); err != nil {
		return es, fmt.Errorf("the settings of environment %q: %w", o.Env, err)
	}
	es.Up = &WakeUp{Flags: o.Flags, NoVolumePlugin: o.NoVolumePlugin, PluginDir: o.PluginDir}
	return es, SaveEnvSettings(p, o.Env, es)
}

// Server-side paths of the agent's binary: the copy on the data volume, which the scheduled
// backups run and which stays across servers, so that a new server needs no upload (the
// agent runs a copy on the root disk: it unmounts the volume before the delete).
const (
	agentBinaryCache = schedule.DefaultBinary
	agentUnitPath    = "/etc/systemd/system/" + idleagent.UnitName
)

// agentUnit runs the agent on the host (not in a container: it reads the host's /proc and
// sshd's sessions). It is not part of docker.service: it stops Docker itself before the delete.
const agentUnit = `[Unit]
Description=dockbridge idle agent: deletes this server when nobody uses it (docker dockbridge up --idle-timeout)
After=network-online.target ssh.service
Wants=network-online.target

[Service]
ExecStart=` + idleagent.BinaryPath + ` idle run
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`

// serverBinary is the servers' binary for a server of arch (uname -m): the one this CLI
// carries (Deps.ServerBinary, serverbin.Load), else where ServerBinarySource finds one
// ($DOCKBRIDGE_SERVER_BINARY, a developer's plugin folder).
func serverBinary(d *Deps, arch, pluginDir string) (data []byte, from string, err error) {
	if d.ServerBinary != nil || len(serverbin.Embedded()) > 0 {
		b, err := d.loadServerBinary(arch)
		if err != nil {
			return nil, "", err
		}
		return b.Data, "the linux/" + b.Arch + " binary docker-dockbridge carries", nil
	}
	data, from, err = ServerBinarySource(arch, pluginDir)
	if err != nil {
		return nil, "", fmt.Errorf("the idle agent: %w; or pass --plugin-dir with a folder from `make plugin`; or run without it with --idle-timeout off (the server then never goes down by itself)", err)
	}
	return data, from, nil
}

// canInstallIdleAgent fails, before anything is made, when the idle agent is wanted and no
// servers' binary can be had for it (a plain `go build` CLI without a plugin folder).
func canInstallIdleAgent(d *Deps, es EnvSettings, pluginDir string) error {
	is, err := es.Idle()
	if err != nil || is.Timeout == idle.Off || d.ServerBinary != nil || len(serverbin.Embedded()) > 0 || os.Getenv("DOCKBRIDGE_SERVER_BINARY") != "" {
		return err
	}
	if pluginDir != "" {
		if _, err := os.Stat(filepath.Join(pluginDir, "rootfs", "hetzner-volume-plugin")); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: the idle agent (the server deleting itself when nobody uses it) needs the servers' binary. Install a release or build with `make build`; or pass --plugin-dir with a folder from `make plugin`; or run up with --idle-timeout off (the server then stays until `docker dockbridge down`)", serverbin.ErrNotEmbedded)
}

// idleAgentOptions are what installIdleAgent needs to know.
type idleAgentOptions struct {
	Env            string
	Server         *hetzner.Server
	Settings       EnvSettings
	PluginDir      string
	NoVolumePlugin bool
	// Swarm is the agent's part on a node of a swarm (decider on node 1, member elsewhere),
	// Secret the swarm's shared secret written to Swarm.SecretFile; nil on a single server.
	Swarm  *idleagent.SwarmConfig
	Secret string
}

// installIdleAgent makes sure the idle agent runs on the server with this environment's
// settings: the servers' binary on the host's root disk (copied from the data volume or the
// plugin when they hold the same one, else uploaded once to the data volume), its
// configuration, its systemd unit. The agent deletes the server through the API with the token
// in cloudinit.PluginTokenPath: it is written here when the file is missing or holds another
// token (with --no-volume-plugin nothing else rewrites a rotated one), and removed when neither
// needs it (--idle-timeout off with --no-volume-plugin). Nothing is installed
// over SSH twice: a second up spends one command here.
func installIdleAgent(ctx context.Context, d *Deps, r Remote, o idleAgentOptions) (string, error) {
	is, err := o.Settings.Idle()
	if err != nil {
		return "", err
	}
	off := is.Timeout == idle.Off
	cfg := idleagent.Config{
		Env: o.Env, ServerID: o.Server.ID, ServerName: o.Server.Name, Created: o.Server.Created.UTC(),
		Endpoint: d.Config.PluginEndpoint, TokenFile: cloudinit.PluginTokenPath,
		Timeout: o.Settings.timeoutOrDefault(), BillingPeriod: o.Settings.BillingPeriod, Margin: o.Settings.IdleMargin,
		Swarm: o.Swarm,
	}
	// A member decides nothing and deletes nothing: no token for the agent there.
	member := o.Swarm != nil && o.Swarm.Role == idleagent.RoleMember
	if member {
		cfg.TokenFile = ""
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = hetzner.DefaultEndpoint
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	cfgJSON = append(cfgJSON, '\n')

	out, err := r.Run(ctx, fmt.Sprintf(`echo "arch=$(uname -m)"
echo "have=$(sha256sum %[1]s 2>/dev/null | cut -c1-64)"
for f in %[2]s /var/lib/docker/plugins/*/rootfs/hetzner-volume-plugin; do [ -f "$f" ] && echo "candidate=$(sha256sum "$f" | cut -c1-64) $f"; done
echo "config=$(sha256sum %[3]s 2>/dev/null | cut -c1-64)"
echo "unit=$(sha256sum %[4]s 2>/dev/null | cut -c1-64)"
echo "active=$(systemctl is-active %[5]s 2>/dev/null)"
echo "token=$(sha256sum %[6]s 2>/dev/null | cut -c1-64)"
echo "secret=$(sha256sum %[7]s 2>/dev/null | cut -c1-64)"`,
		idleagent.BinaryPath, agentBinaryCache, idleagent.ConfigPath, agentUnitPath, idleagent.UnitName, cloudinit.PluginTokenPath, idleagent.SwarmSecretPath), nil)
	if err != nil {
		return "", fmt.Errorf("check the idle agent: %w", err)
	}
	facts := map[string]string{}
	var candidates [][2]string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if k == "candidate" {
			if sum, path, ok := strings.Cut(v, " "); ok {
				candidates = append(candidates, [2]string{sum, path})
			}
			continue
		}
		facts[k] = strings.TrimSpace(v)
	}

	var notes []string
	switch {
	case member:
		notes = append(notes, fmt.Sprintf("member: node 1 decides for the environment; answers it on %s:%d (private network, shared secret)", o.Swarm.PrivateIP, idleagent.DefaultMemberPort))
	case o.Swarm != nil:
		notes = append(notes, fmt.Sprintf("decides for all %d nodes", len(o.Swarm.Members)+1))
	}
	// The token: the agent needs it unless the timeout is off, and this one (a token rotated
	// since the last up would make every self-delete fail with 401): compared by its hash, as
	// installPlugin's settings do, so the token never crosses the connection to be checked.
	switch {
	case member && o.NoVolumePlugin && facts["token"] != "":
		if _, err := r.Run(ctx, "rm -f "+cloudinit.PluginTokenPath, nil); err != nil {
			return "", fmt.Errorf("remove the API token from the server: %w", err)
		}
		notes = append(notes, "API token removed (a member node needs none)")
	case member:
	case !off && facts["token"] != sha256Hex(d.Config.Token):
		if _, err := r.Run(ctx, writeTokenScript, strings.NewReader(d.Config.Token)); err != nil {
			return "", redact(fmt.Errorf("write the API token for the idle agent to %s: %w", cloudinit.PluginTokenPath, err), d.Config.Token)
		}
		if facts["token"] == "" {
			notes = append(notes, "API token written (root only)")
		} else {
			notes = append(notes, "API token updated (root only)")
		}
	case off && o.NoVolumePlugin && facts["token"] != "":
		if _, err := r.Run(ctx, "rm -f "+cloudinit.PluginTokenPath, nil); err != nil {
			return "", fmt.Errorf("remove the API token from the server: %w", err)
		}
		notes = append(notes, "API token removed from the server (neither the plugin nor the agent needs it)")
	}

	// The swarm's shared secret: the decider proves itself with it to the members.
	restart := false
	if o.Swarm != nil && facts["secret"] != sha256Hex(o.Secret) {
		script := fmt.Sprintf(`set -e; install -d -m 0755 "$(dirname %[1]s)"; t=$(mktemp %[1]s.XXXXXX); chmod 0600 "$t"; cat > "$t"; mv -f "$t" %[1]s`, idleagent.SwarmSecretPath)
		if _, err := r.Run(ctx, script, strings.NewReader(o.Secret)); err != nil {
			return "", redact(fmt.Errorf("write the swarm's secret for the idle agents: %w", err), o.Secret)
		}
		restart = true
	}

	bin, from, err := serverBinary(d, facts["arch"], o.PluginDir)
	if err != nil {
		if !off {
			return "", err
		}
		// The timeout is off: an agent there gets the new setting, else none is needed.
		if facts["have"] == "" {
			return strings.Join(append(notes, idleNote(is)+"; no agent installed"), "; "), nil
		}
		bin, from = nil, ""
	}
	want := facts["have"]
	if bin != nil {
		sum := sha256.Sum256(bin)
		want = hex.EncodeToString(sum[:])
	}
	wantCfg, wantUnit := sha256Hex(string(cfgJSON)), sha256Hex(agentUnit)
	if !restart && facts["have"] == want && facts["config"] == wantCfg && facts["unit"] == wantUnit && facts["active"] == "active" {
		return strings.Join(append(notes, idleNote(is)+"; already running"), "; "), nil
	}

	src := ""
	if facts["have"] != want {
		for _, c := range candidates {
			if c[0] == want {
				src = c[1]
				break
			}
		}
		if src == "" {
			var z bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
			_, _ = zw.Write(bin)
			_ = zw.Close()
			script := fmt.Sprintf(`set -e; d=$(dirname %[1]s); mkdir -p "$d"; t=$(mktemp "$d/.upload.XXXXXX"); trap 'rm -f "$t"' EXIT
gzip -dc > "$t"; echo "%[2]s  $t" | sha256sum -c --quiet -; chmod 0755 "$t"; mv -f "$t" %[1]s`, agentBinaryCache, want)
			if _, err := r.Run(ctx, script, &z); err != nil {
				return "", fmt.Errorf("upload the servers' binary (%s) for the idle agent: %w", from, err)
			}
			src = agentBinaryCache
			notes = append(notes, fmt.Sprintf("uploaded %s (%d KB)", from, z.Len()>>10))
		}
	}
	install := fmt.Sprintf(`set -e
if [ -n %[1]s ]; then install -d -m 0755 "$(dirname %[2]s)"; install -m 0755 %[1]s %[2]s.new; mv -f %[2]s.new %[2]s; fi
install -d -m 0755 "$(dirname %[3]s)"; t=$(mktemp %[3]s.XXXXXX); cat > "$t"; chmod 0600 "$t"; mv -f "$t" %[3]s
printf '%%s' %[4]s > %[5]s
systemctl daemon-reload
systemctl enable %[6]s >/dev/null 2>&1
systemctl restart %[6]s
systemctl is-active -q %[6]s`, shellQuote(src), idleagent.BinaryPath, idleagent.ConfigPath, shellQuote(agentUnit), agentUnitPath, idleagent.UnitName)
	if _, err := r.Run(ctx, install, bytes.NewReader(cfgJSON)); err != nil {
		return "", fmt.Errorf("install the idle agent (its log: `docker dockbridge ssh%s -- journalctl -u %s`): %w", nameFlag(o.Env), idleagent.UnitName, err)
	}
	return strings.Join(append(notes, idleNote(is)), "; "), nil
}

// idleNote says what the settings mean, for up's progress.
func idleNote(s idle.Settings) string {
	if s.Timeout == idle.Off {
		return "idle timeout off: the server stays until `docker dockbridge down`"
	}
	per := "hour"
	if s.BillingPeriod != idle.DefaultBillingPeriod {
		per = s.BillingPeriod.String() + " billing period"
	}
	return fmt.Sprintf("goes down after %s idle, %s before its paid %s ends", idle.FormatTimeout(s.Timeout), s.Margin, per)
}

// ApplyIdleSettings tells a running server of env its new idle settings (after `settings set
// idle_timeout`): over SSH with the pinned key, the agent's configuration is rewritten and the
// agent restarted (it keeps its idle time). No API request; a server that is down gets them at
// its next up. It returns what became of them.
func ApplyIdleSettings(ctx context.Context, d *Deps, env string) (string, error) {
	d.defaults()
	es, err := LoadEnvSettings(d.Paths, env)
	if err != nil {
		return "", err
	}
	st, err := loadState(d.Paths, env)
	if err != nil {
		return "", err
	}
	// A swarm's: node 1's agent decides for every node (the top-level state is node 1's).
	if st.ServerID == 0 || st.ServerIPv4 == "" || st.HostKey == "" {
		return "no server now: the next one gets them", nil
	}
	t, err := stateTarget(d, env, &st.nodeState)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r, err := d.Dial(ctx, t)
	if err != nil {
		return fmt.Sprintf("the server (%s) did not answer (%v): it gets them at the next `docker dockbridge up%s`", st.ServerIPv4, shortErr(err), nameFlag(env)), nil
	}
	defer r.Close()
	out, err := r.Run(ctx, "cat "+idleagent.ConfigPath, nil)
	if err != nil {
		return fmt.Sprintf("the server has no idle agent yet: `docker dockbridge up%s` installs it with them", nameFlag(env)), nil
	}
	var cfg idleagent.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		return "", fmt.Errorf("the idle agent's configuration on the server: %w", err)
	}
	cfg.Timeout, cfg.BillingPeriod, cfg.Margin = es.timeoutOrDefault(), es.BillingPeriod, es.IdleMargin
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	if _, err := r.Run(ctx, fmt.Sprintf(`set -e; t=$(mktemp %[1]s.XXXXXX); cat > "$t"; chmod 0600 "$t"; mv -f "$t" %[1]s; systemctl restart %[2]s`,
		idleagent.ConfigPath, idleagent.UnitName), bytes.NewReader(append(b, '\n'))); err != nil {
		return "", fmt.Errorf("update the idle agent on the server: %w", err)
	}
	is, _ := es.Idle()
	if is.Timeout != idle.Off {
		if _, err := r.Run(ctx, "test -s "+cloudinit.PluginTokenPath, nil); err != nil {
			return fmt.Sprintf("the server's agent uses them now (%s), but it has no API token to delete the server with: run `docker dockbridge up%s`", idleNote(is), nameFlag(env)), nil
		}
	}
	return "the server's agent uses them now: " + idleNote(is), nil
}

// stateTarget is how to reach the server this machine last brought up, from the state alone
// (no API request): its address and the pinned host keys, which prove it is that server.
func stateTarget(d *Deps, env string, st *nodeState) (Target, error) {
	hk, next, err := st.pins()
	if err != nil {
		return Target{}, err
	}
	path := d.Config.SSHKey
	if path == "" {
		path = d.Paths.UserKeyFile(env)
	}
	kp, _, err := LoadOrCreateKey(path, "", false)
	if err != nil {
		return Target{}, err
	}
	port := d.SSHPort
	if st.SSHPort != 0 {
		port = st.SSHPort
	}
	return Target{Addr: net.JoinHostPort(st.ServerIPv4, fmt.Sprint(port)), User: d.SSHUser, Signer: kp.Signer, HostKey: hk, NextHostKey: next}, nil
}

// installSwarmAgents installs the idle agent on every node of a swarm, with its part: node 1
// (the first manager, the context's) decides for the whole environment and keeps the API token;
// every other node is a member, with no token, that answers node 1 over the private network
// only, proven by a shared secret (swarmSecret) written to each node over SSH (0600, never in
// the user-data). The members first, so that node 1 starts with them answering. `node add`
// runs up, which gives node 1 its new member list; `node rm` rewrites it (forgetMember).
func installSwarmAgents(ctx context.Context, d *Deps, o UpOptions, es EnvSettings, nodes []*upNode) error {
	lead := nodes[0]
	secret, err := swarmSecret(ctx, lead.remote)
	if err != nil {
		return err
	}
	var members []idleagent.Member
	for _, n := range nodes[1:] {
		members = append(members, idleagent.Member{Node: n.N, ServerID: n.srv.ID, ServerName: n.srv.Name, PrivateIP: nodeIP(n.N), Manager: n.Role == SwarmManager})
	}
	order := append(slices.Clone(nodes[1:]), lead)
	for _, n := range order {
		sw := &idleagent.SwarmConfig{Node: n.N, Role: idleagent.RoleMember, PrivateIP: nodeIP(n.N), SecretFile: idleagent.SwarmSecretPath}
		if n == lead {
			sw.Role, sw.Members = idleagent.RoleDecider, members
		}
		step := d.Progress.Start(fmt.Sprintf("Idle agent (node %d)", n.N))
		note, err := installIdleAgent(ctx, d, n.remote, idleAgentOptions{Env: o.Env, Server: n.srv, Settings: es, PluginDir: o.PluginDir, NoVolumePlugin: o.NoVolumePlugin, Swarm: sw, Secret: secret})
		step.Note("%s", note)
		step.End(&err)
		if err != nil {
			return fmt.Errorf("node %d: %w", n.N, err)
		}
	}
	return nil
}

// swarmSecret is the secret node 1's agent proves itself to the members with: the one node 1
// holds (a server's root disk keeps it until the server is deleted), else a new random one.
// It crosses SSH only, never the command line or the user-data, and is never printed.
func swarmSecret(ctx context.Context, r Remote) (string, error) {
	out, err := r.Run(ctx, "cat "+idleagent.SwarmSecretPath+" 2>/dev/null || true", nil)
	if err != nil {
		return "", fmt.Errorf("read the swarm's secret on node 1: %w", err)
	}
	s := strings.TrimSpace(string(out))
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return s, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// forgetMember takes node num out of node 1's idle agent's member list (after `node rm`), over
// SSH with the pinned key, and restarts the agent. A node 1 that is down gets the right list
// from its next up. It returns what became of it.
func forgetMember(ctx context.Context, d *Deps, env string, num int) string {
	st, err := loadState(d.Paths, env)
	if err != nil {
		return "node 1's idle agent: " + err.Error()
	}
	lead := st.node(1)
	if lead.ServerID == 0 || lead.ServerIPv4 == "" || lead.HostKey == "" {
		return "node 1 has no server now: its next up gives its idle agent the nodes"
	}
	t, err := stateTarget(d, env, lead)
	if err != nil {
		return "node 1's idle agent: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := d.Dial(ctx, t)
	if err != nil {
		return fmt.Sprintf("node 1 did not answer (%s): its idle agent keeps node %d in its list until the next up (it is deleted: no activity)", shortErr(err), num)
	}
	defer r.Close()
	out, err := r.Run(ctx, "cat "+idleagent.ConfigPath, nil)
	if err != nil {
		return "node 1 has no idle agent"
	}
	var cfg idleagent.Config
	if err := json.Unmarshal(out, &cfg); err != nil || cfg.Swarm == nil {
		return "node 1's idle agent is not a swarm's: `docker dockbridge up` installs it"
	}
	before := len(cfg.Swarm.Members)
	cfg.Swarm.Members = slices.DeleteFunc(cfg.Swarm.Members, func(m idleagent.Member) bool { return m.Node == num })
	if len(cfg.Swarm.Members) == before {
		return fmt.Sprintf("node 1's idle agent did not know node %d", num)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err.Error()
	}
	if _, err := r.Run(ctx, fmt.Sprintf(`set -e; t=$(mktemp %[1]s.XXXXXX); cat > "$t"; chmod 0600 "$t"; mv -f "$t" %[1]s; systemctl restart %[2]s`,
		idleagent.ConfigPath, idleagent.UnitName), bytes.NewReader(append(b, '\n'))); err != nil {
		return fmt.Sprintf("node 1's idle agent still lists node %d (%s): the next up corrects it", num, shortErr(err))
	}
	return fmt.Sprintf("node 1's idle agent no longer waits for node %d", num)
}
