package host

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// UpOptions are the choices of one `up`.
type UpOptions struct {
	Env            string
	AllowFrom      []string // CIDRs allowed to reach port 22; nil keeps the firewall's rules (new: anywhere)
	NoVolumePlugin bool
	// PluginDir is a `docker plugin create` folder of the hetzner volume plugin (make plugin);
	// empty: the server assembles the plugin from the binary this CLI carries for its
	// architecture.
	PluginDir string
	Use       bool // make the context the current one
	// Force deletes a broken server it replaces without stopping it: a power cut (ForceRisk).
	Force bool
	// Nodes, when > 0, makes the environment a Docker Swarm of that many servers (nodes); 0
	// keeps the number it has (1 for a new environment, without Swarm).
	Nodes int
	// Managers is the number of Swarm managers (odd; 0 keeps it, 1 for a new swarm).
	Managers int
	// IdleTimeout and BillingPeriod, when not "", change the environment's settings
	// (EnvSettings) before anything else.
	IdleTimeout, BillingPeriod string
	// Flags are the command line's overrides, remembered for the wake (EnvSettings.Up).
	Flags Flags
}

// UpResult is what `up` reports.
type UpResult struct {
	Env string `json:"env"`
	// Agent says what the laptop agent does (port forwards, shared folders); the CLI fills it.
	Agent         string `json:"agent,omitempty"`
	Context       string `json:"context"`
	ServerID      int64  `json:"server_id"`
	ServerName    string `json:"server_name"`
	IPv4          string `json:"ipv4"`
	ServerType    string `json:"server_type"`
	Location      string `json:"location"`
	VolumeID      int64  `json:"volume_id"`
	VolumeName    string `json:"volume_name"`
	VolumeSizeGB  int    `json:"volume_size_gb"`
	ServerCreated bool   `json:"server_created"`
	UsedContext   bool   `json:"used_context"`
	SSHInclude    bool   `json:"ssh_config_include_added"`
	// Nodes are the servers of a multi-server environment (Swarm), node 1 first.
	Nodes    []NodeUp        `json:"nodes,omitempty"`
	Managers int             `json:"managers,omitempty"`
	Steps    []ui.StepResult `json:"steps"`
	Warnings []string        `json:"warnings,omitempty"`
	Seconds  float64         `json:"seconds"`
}

// NodeUp is one node as `up` left it.
type NodeUp struct {
	Node          int    `json:"node"`
	Role          string `json:"role"`
	ServerID      int64  `json:"server_id"`
	ServerName    string `json:"server_name"`
	IPv4          string `json:"ipv4"`
	PrivateIP     string `json:"private_ip"`
	VolumeID      int64  `json:"volume_id"`
	VolumeName    string `json:"volume_name"`
	ServerCreated bool   `json:"server_created"`
}

var defaultAllowFrom = []string{"0.0.0.0/0", "::/0"}

// upNode is one node while up brings it up.
type upNode struct {
	*plannedNode
	st      *nodeState
	srv     *hetzner.Server
	created bool
	remote  Remote
}

// upNodes pairs each planned node with its state in st. Every node's state is made first:
// st.node appends a new node to st.Nodes, which may move the slice, so a pointer taken before
// an append would point at a copy that is never saved (a new swarm's node 2 lost its host key
// and server that way, and the next up or node add refused the server as not ours).
func upNodes(st *envState, plan []*plannedNode) []*upNode {
	for _, p := range plan {
		st.node(p.N)
	}
	nodes := make([]*upNode, len(plan))
	for i, p := range plan {
		nodes[i] = &upNode{plannedNode: p, st: st.node(p.N)}
	}
	return nodes
}

// Up brings an environment up, creating only what is missing. Run twice, the second run
// changes nothing and spends one GET per kind of resource (key, firewall, volumes, servers, and
// for a multi-server environment the network).
//
// A multi-server environment (Nodes > 0, or one that has nodes) is a Docker Swarm: every node is
// made as a single server is, in turn (their servers boot meanwhile), attached to the private
// network at its fixed address, and then the swarm is formed, joined or repaired.
func Up(ctx context.Context, d *Deps, o UpOptions) (res *UpResult, err error) {
	d.defaults()
	d.newType, d.warnings = newServerType{}, nil
	start := d.Now()
	if err := ValidateEnvName(o.Env); err != nil {
		return nil, err
	}
	for _, c := range o.AllowFrom {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(c)); err != nil {
			return nil, fmt.Errorf("--allow-from %q: want a CIDR such as 203.0.113.7/32 (one address) or 0.0.0.0/0 (anywhere)", c)
		}
	}
	var plugin pluginSource
	if !o.NoVolumePlugin {
		if plugin, err = d.pluginSourceFor(o.PluginDir); err != nil {
			return nil, err
		}
	}
	// Malformed idle settings fail before any API request (they are saved only later, once the
	// data volumes have been read).
	var check EnvSettings
	if o.IdleTimeout != "" {
		if err := check.Set("idle_timeout", o.IdleTimeout); err != nil {
			return nil, fmt.Errorf("--idle-timeout: %w", err)
		}
	}
	if o.BillingPeriod != "" {
		if err := check.Set("billing_period", o.BillingPeriod); err != nil {
			return nil, fmt.Errorf("--billing-period: %w", err)
		}
	}
	st, err := loadState(d.Paths, o.Env)
	if err != nil {
		return nil, err
	}
	res = &UpResult{Env: o.Env, Context: ContextName(o.Env)}
	defer func() {
		res.Steps = d.Progress.Steps()
		res.Warnings = d.warnings
		res.Seconds = d.Now().Sub(start).Seconds()
		err = d.explainAPI(err)
	}()

	// 1. The data volumes say which nodes the environment has.
	vols, err := d.API.Volumes(ctx, selector(o.Env, RoleDataRoot))
	if err != nil {
		return res, err
	}
	plan, err := planNodes(o.Env, vols, o.Nodes, o.Managers)
	if err != nil {
		return res, err
	}
	swarm := plan[0].Role != ""
	// The environment's settings, before anything is made (the volumes were only read).
	es, err := upEnvSettings(d.Paths, o)
	if err != nil {
		return res, err
	}
	st.Swarm = swarm
	if err := canInstallIdleAgent(d, es, o.PluginDir); err != nil {
		return res, err
	}
	nodes := upNodes(&st, plan)
	newServer := false
	for _, n := range nodes {
		newServer = newServer || n.st.ServerID == 0
		if n.Role == SwarmManager {
			res.Managers++
		}
	}
	if newServer {
		// A new server is likely: its type is chosen (or refused) before anything is created.
		if _, err := d.serverTypeFor(ctx, d.Config.Location); err != nil {
			return res, err
		}
	}

	// 2. The user's key.
	userKey, err := ensureUserKey(ctx, d, o.Env)
	if err != nil {
		return res, err
	}
	// 3. The firewall (port 22 only: Swarm's ports are on the private network, which Hetzner's
	// firewalls do not filter and the public interface never carries).
	fw, err := ensureFirewall(ctx, d, o.Env, o.AllowFrom)
	if err != nil {
		return res, err
	}
	// 4. The private network of a swarm.
	var network *hetzner.Network
	if swarm {
		loc := d.Config.Location
		for _, p := range plan {
			if p.Vol != nil {
				loc = p.Vol.Location // the servers go where the volumes are
				break
			}
		}
		if network, err = ensureNetwork(ctx, d, o.Env, loc); err != nil {
			return res, err
		}
	}
	// 5. Every node's data volume and server: adopted when they exist (with the pinned key), else
	// created; the server on the private network at its node's address.
	servers, err := d.API.Servers(ctx, selector(o.Env, RoleServer))
	if err != nil {
		return res, err
	}
	var billed []*hetzner.Server
	// From the first server on, every failure says which servers exist and are billed.
	defer func() {
		if err != nil && len(billed) > 0 && !errors.As(err, new(*ServerRunningError)) {
			if ctx.Err() != nil {
				err = fmt.Errorf("up was interrupted: %w", err)
			}
			err = &ServerRunningError{Env: o.Env, Server: billed[0], More: billed[1:], Err: d.explainAPI(err)}
		}
	}()
	for _, n := range nodes {
		if n.Vol, err = ensureVolume(ctx, d, o.Env, n.plannedNode); err != nil {
			return res, err
		}
		if n.srv, n.created, err = ensureServer(ctx, d, o.Env, &st, n, servers, userKey.key, fw, o.Force); err != nil {
			return res, err
		}
		billed = append(billed, n.srv)
		if st.addServer(n.srv.ID) {
			if err := saveState(d.Paths, o.Env, st); err != nil {
				return res, err
			}
		}
		if network != nil {
			if err := ensureOnNetwork(ctx, d, n, network); err != nil {
				return res, err
			}
		}
	}
	first := nodes[0]
	res.ServerID, res.ServerName, res.IPv4, res.ServerType, res.Location = first.srv.ID, first.srv.Name, first.srv.IPv4, first.srv.ServerType, first.srv.Location
	res.VolumeID, res.VolumeName, res.VolumeSizeGB = first.Vol.ID, first.Vol.Name, first.Vol.SizeGB
	res.ServerCreated = first.created
	defer func() {
		for _, n := range nodes {
			if n.remote != nil {
				n.remote.Close()
			}
		}
	}()

	// 6. Each node: SSH with the pinned host key, cloud-init, the user-data's host key retired,
	// Docker's root dir on the volume, the hetzner volume plugin.
	for _, n := range nodes {
		if err := finishNode(ctx, d, o, es, &st, n, userKey, plugin, swarm); err != nil {
			return res, err
		}
	}

	// 7. The swarm: formed, joined, repaired; then its idle agents, which go down together.
	if swarm {
		if err := formSwarm(ctx, d, o.Env, &st, nodes); err != nil {
			return res, err
		}
		if err := installSwarmAgents(ctx, d, o, es, nodes); err != nil {
			return res, err
		}
	}

	// 8. SSH config and docker context (node 1: a manager).
	step := d.Progress.Start(fmt.Sprintf("Docker context %s", res.Context))
	err = func() error {
		var hosts []SSHHost
		for _, n := range nodes {
			// The wake is node 1's (the context's): the same up, every node back.
			hosts = append(hosts, SSHHost{Env: o.Env, Node: n.N, Addr: n.srv.IPv4, Port: d.SSHPort, User: d.SSHUser, KeyFile: userKey.path, HostKey: n.st.HostKey, Wake: d.WakeBinary})
		}
		if err := WriteSSHConfig(d.Paths, hosts...); err != nil {
			return err
		}
		added, err := EnsureInclude(d.Paths)
		if err != nil {
			return fmt.Errorf("add our Include line to %s: %w", d.Paths.UserSSHConfig, err)
		}
		res.SSHInclude = added
		changed, err := EnsureContext(d.Contexts, o.Env)
		if err != nil {
			return err
		}
		if changed {
			step.Note("created")
		} else {
			step.Note("unchanged")
		}
		if o.Use {
			if d.UseContext == nil {
				return errors.New("--use: switching contexts is not available here; run `docker context use " + res.Context + "`")
			}
			if err := d.UseContext(res.Context); err != nil {
				return fmt.Errorf("docker context use %s: %w", res.Context, err)
			}
			res.UsedContext = true
		}
		return nil
	}()
	step.End(&err)
	if err != nil {
		return res, err
	}
	for _, n := range nodes {
		n.st.ServerID, n.st.ServerIPv4, n.st.SSHPort = n.srv.ID, n.srv.IPv4, d.SSHPort
		if swarm {
			res.Nodes = append(res.Nodes, NodeUp{Node: n.N, Role: n.Role, ServerID: n.srv.ID, ServerName: n.srv.Name, IPv4: n.srv.IPv4,
				PrivateIP: nodeIP(n.N), VolumeID: n.Vol.ID, VolumeName: n.Vol.Name, ServerCreated: n.created})
		}
	}
	if err := saveState(d.Paths, o.Env, st); err != nil {
		return res, err
	}
	return res, nil
}

// finishNode waits for a node's server (SSH with the pinned key, cloud-init), retires the
// user-data's host key, checks Docker's root dir is on the data volume and installs the volume
// plugin. The connection stays open in n.remote.
func finishNode(ctx context.Context, d *Deps, o UpOptions, es EnvSettings, st *envState, n *upNode, userKey *userKey, plugin pluginSource, swarm bool) (err error) {
	on := ""
	if swarm {
		on = fmt.Sprintf(" (node %d)", n.N)
	}
	hostKey, nextKey, err := n.st.pins()
	if err != nil {
		return err
	}
	target := Target{Addr: d.sshAddr(n.srv.IPv4), User: d.SSHUser, Signer: userKey.kp.Signer, HostKey: hostKey, NextHostKey: nextKey}
	step := d.Progress.Start(fmt.Sprintf("Waiting for SSH on %s%s (pinned host key %s)", target.Addr, on, shortFP(hostKey)))
	sshCtx, cancel := context.WithTimeout(ctx, d.BootTimeout)
	n.remote, err = WaitForSSH(sshCtx, d.Dial, target, d.SSHPoll)
	cancel()
	step.End(&err)
	if err != nil {
		return err
	}

	step = d.Progress.Start("Waiting for cloud-init to finish the setup" + on)
	ciCtx, cancel := context.WithTimeout(ctx, d.BootTimeout)
	err = waitCloudInit(ciCtx, n.remote)
	cancel()
	step.End(&err)
	if err != nil {
		return err
	}

	if n.st.CreatedHostKey == "" {
		step = d.Progress.Start("Replacing the host key of the user-data (the metadata service serves it)" + on)
		n.remote, err = rotateHostKey(ctx, d, o.Env, st, n.st, n.remote, target)
		if k, perr := ParseAuthorizedKey(n.st.HostKey); err == nil && perr == nil {
			step.Note("pinned the server's new key %s", shortFP(k))
		}
		step.End(&err)
		if err != nil {
			return err
		}
	}

	step = d.Progress.Start("Checking that Docker's root dir is on the data volume" + on)
	facts, err := verifyRootDir(ctx, n.remote, n.Vol.ID)
	if err == nil {
		step.Note("%s on %s", facts.RootDir, facts.Device)
		err = recordFSUUID(ctx, d, n.Vol, facts.FSUUID)
	}
	step.End(&err)
	if err != nil {
		return err
	}

	if o.NoVolumePlugin {
		step = d.Progress.Start("Volume plugin" + on)
		step.Note("skipped (--no-volume-plugin)")
		step.Done()
	} else {
		step = d.Progress.Start("Installing the hetzner volume plugin" + on)
		// On a swarm's nodes hetzner volumes follow their services: detached when their last
		// container on a node stops, so another node may take them (the plugin's fence).
		note, perr := installPlugin(ctx, n.remote, plugin, d.Config.Token, d.Config.PluginEndpoint, swarm)
		err = perr
		step.Note("%s", note)
		step.End(&err)
		if err != nil {
			return err
		}
	}

	// A data volume resized while no server ran grows now (the plugin's binary grows it).
	if !o.NoVolumePlugin {
		if note, gerr := growDataVolume(ctx, n.remote, n.Vol.ID); gerr != nil || note != "" {
			step = d.Progress.Start("Growing the data volume's filesystem to the resized volume" + on)
			if gerr != nil {
				note = "not grown: " + gerr.Error()
			}
			step.Note("%s", note)
			step.Done()
		}
	}

	// Scheduled backups: the timer lives on the server's own disk, the schedules on the data
	// volume; a new server gets the timer again here.
	step = d.Progress.Start("Backup schedules" + on)
	note, err := ensureBackupTimer(ctx, n.remote, o.PluginDir)
	if err != nil {
		// The server works without its backup timer: say so loudly, do not fail up.
		d.warnings = append(d.warnings, fmt.Sprintf("the backup schedules on the data volume%s are NOT running on this server: %v (run up again, or `docker dockbridge backup schedule ls%s`)", on, err, nameFlag(o.Env)))
		note = "NOT installed: " + err.Error()
	}
	step.Note("%s", note)
	step.Done()

	// The idle agent: a single server deletes itself when nobody uses it. It puts the servers'
	// binary on the root disk (from the data volume after the first time), where the laptop
	// agent's server end finds it. A swarm's nodes get theirs once the swarm is formed
	// (installSwarmAgents): they go down together.
	if !swarm {
		step = d.Progress.Start("Idle agent")
		note, err = installIdleAgent(ctx, d, n.remote, idleAgentOptions{Env: o.Env, Server: n.srv, Settings: es, PluginDir: o.PluginDir, NoVolumePlugin: o.NoVolumePlugin})
		step.Note("%s", note)
		step.End(&err)
		if err != nil {
			return err
		}
	}

	// The server end of the laptop agent: port forwards, shared folders, the bind check.
	step = d.Progress.Start("Port forwards and shared folders: the server's side" + on)
	lnote, lerr := installLinkServer(ctx, n.remote, o.PluginDir)
	err = lerr
	step.Note("%s", lnote)
	step.End(&err)
	return err
}

type userKey struct {
	kp   *KeyPair
	key  *hetzner.SSHKey
	path string
}

func ensureUserKey(ctx context.Context, d *Deps, env string) (_ *userKey, err error) {
	step := d.Progress.Start("SSH key")
	defer step.End(&err)
	path, create := d.Config.SSHKey, false
	if path == "" {
		path, create = d.Paths.UserKeyFile(env), true
	}
	kp, made, err := LoadOrCreateKey(path, "dockbridge-"+env, create)
	if err != nil {
		return nil, err
	}
	fp := MD5Fingerprint(kp.Signer.PublicKey())
	k, err := d.API.SSHKeyByFingerprint(ctx, fp)
	switch {
	case err == nil:
		step.Note("%s, uploaded as %q (id %d)", path, k.Name, k.ID)
		return &userKey{kp: kp, key: k, path: path}, nil
	case !errors.Is(err, hetzner.ErrNotFound):
		return nil, err
	}
	name := sshKeyName(env)
	k, err = d.API.CreateSSHKey(ctx, name, kp.Public, labels(env, RoleSSHKey))
	if errors.Is(err, hetzner.ErrAlreadyExists) {
		// The name is taken by another key: keep the name unique with the fingerprint.
		name = fmt.Sprintf("%s-%s", name, strings.ReplaceAll(fp, ":", "")[:8])
		k, err = d.API.CreateSSHKey(ctx, name, kp.Public, labels(env, RoleSSHKey))
	}
	if err != nil {
		return nil, err
	}
	verb := "existing key"
	if made {
		verb = "new key"
	}
	step.Note("%s %s, uploaded as %q (id %d)", verb, path, k.Name, k.ID)
	return &userKey{kp: kp, key: k, path: path}, nil
}

func firewallRules(sources []string) []hetzner.FirewallRule {
	return []hetzner.FirewallRule{{Port: 22, Sources: sources}}
}

func sameRules(a []hetzner.FirewallRule, sources []string) bool {
	if len(a) != 1 || a[0].Port != 22 {
		return false
	}
	norm := func(in []string) []string {
		var out []string
		for _, s := range in {
			if _, n, err := net.ParseCIDR(strings.TrimSpace(s)); err == nil {
				out = append(out, n.String())
			}
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(norm(a[0].Sources), norm(sources))
}

func ensureFirewall(ctx context.Context, d *Deps, env string, allowFrom []string) (_ *hetzner.Firewall, err error) {
	step := d.Progress.Start("Firewall (inbound port 22 only)")
	defer step.End(&err)
	fws, err := d.API.Firewalls(ctx, selector(env, RoleFirewall))
	if err != nil {
		return nil, err
	}
	if len(fws) > 1 {
		return nil, fmt.Errorf("%d firewalls carry the labels of environment %q (ids %v): delete the extra ones in the Hetzner console", len(fws), env, ids(fws, func(f *hetzner.Firewall) int64 { return f.ID }))
	}
	if len(fws) == 1 {
		fw := fws[0]
		if !ours(fw.Labels, env, RoleFirewall) {
			return nil, fmt.Errorf("firewall %d does not carry our labels: refusing to use it", fw.ID)
		}
		if allowFrom != nil && !sameRules(fw.Rules, allowFrom) {
			if err := d.API.SetFirewallRules(ctx, fw.ID, firewallRules(allowFrom)); err != nil {
				return nil, err
			}
			step.Note("%q (id %d), port 22 now from %s", fw.Name, fw.ID, strings.Join(allowFrom, ", "))
			return fw, nil
		}
		step.Note("%q (id %d)", fw.Name, fw.ID)
		return fw, nil
	}
	src := allowFrom
	if src == nil {
		src = defaultAllowFrom
	}
	fw, err := d.API.CreateFirewall(ctx, firewallName(env), firewallRules(src), labels(env, RoleFirewall))
	if errors.Is(err, hetzner.ErrAlreadyExists) {
		return nil, fmt.Errorf("a firewall named %q exists without dockbridge's labels: dockbridge does not adopt it; rename or delete it, or use another --name: %w", firewallName(env), err)
	}
	if err != nil {
		return nil, err
	}
	step.Note("created %q (id %d), port 22 from %s", fw.Name, fw.ID, strings.Join(src, ", "))
	return fw, nil
}

// ensureVolume finds node p's data volume (p.Vol, from the list up read) or creates it, and
// brings its node labels up to date (a single server that becomes a swarm's node 1, a changed
// role).
func ensureVolume(ctx context.Context, d *Deps, env string, p *plannedNode) (_ *hetzner.Volume, err error) {
	title := "Data volume for /var/lib/docker"
	if p.Role != "" {
		title += fmt.Sprintf(" (node %d, %s)", p.N, p.Role)
	}
	step := d.Progress.Start(title)
	defer step.End(&err)
	want := nodeLabels(env, RoleDataRoot, p.N, p.Role)
	if v := p.Vol; v != nil {
		if v.Location != d.Config.Location {
			d.Progress.Printf("note: the data volume is in %s, so the server goes there too (not %s)\n", v.Location, d.Config.Location)
		}
		if v.Labels[LabelNode] != want[LabelNode] || v.Labels[LabelSwarm] != want[LabelSwarm] {
			l := maps.Clone(v.Labels)
			maps.Copy(l, want)
			if v, err = d.API.SetVolumeLabels(ctx, v.ID, l); err != nil {
				return nil, fmt.Errorf("label the data volume %d as node %d (%s): %w", p.Vol.ID, p.N, p.Role, err)
			}
		}
		step.Note("%q (id %d, %d GB, %s)", v.Name, v.ID, v.SizeGB, v.Location)
		return v, nil
	}
	name := nodeVolumeName(env, p.N)
	v, err := d.API.CreateVolume(ctx, hetzner.VolumeSpec{
		Name: name, SizeGB: d.Config.VolumeSizeGB, Location: d.Config.Location, Labels: want,
	})
	if errors.Is(err, hetzner.ErrAlreadyExists) {
		return nil, fmt.Errorf("a volume named %q exists without dockbridge's labels: dockbridge never adopts a volume it did not make (it could hold someone's data); rename or delete it, or use another --name: %w", name, err)
	}
	if err != nil {
		return nil, err
	}
	step.Note("created %q (id %d, %d GB, %s)", v.Name, v.ID, v.SizeGB, v.Location)
	return v, nil
}

// ensureServer finds node n's server among the environment's servers or creates it with a
// fresh host key, pinned in the state before the create request.
func ensureServer(ctx context.Context, d *Deps, env string, es *envState, n *upNode, all []*hetzner.Server, key *hetzner.SSHKey, fw *hetzner.Firewall, force bool) (srv *hetzner.Server, created bool, err error) {
	title := "Server"
	if n.Role != "" {
		title = fmt.Sprintf("Server (node %d)", n.N)
	}
	step := d.Progress.Start(title)
	defer step.End(&err)
	st, vol := n.st, n.Vol
	var servers []*hetzner.Server
	for _, s := range all {
		if !ours(s.Labels, env, RoleServer) {
			return nil, false, fmt.Errorf("server %d does not carry our labels: refusing to use it", s.ID)
		}
		if num, err := nodeOf(s.Labels); err == nil && num == n.N {
			servers = append(servers, s)
		}
	}
	if len(servers) > 1 {
		return nil, false, fmt.Errorf("%d servers carry the labels of environment %q's node %d (ids %v): delete the extra ones in the Hetzner console", len(servers), env, n.N, ids(servers, func(s *hetzner.Server) int64 { return s.ID }))
	}
	if len(servers) == 1 {
		s := servers[0]
		var createdWith ssh.PublicKey
		if st.HostKey != "" {
			createdWith, _ = ParseAuthorizedKey(st.createdWith())
		}
		if createdWith == nil || s.Labels[LabelHostKey] != HostKeyLabel(createdWith) {
			return s, false, &ServerRunningError{Env: env, Server: s, Err: fmt.Errorf(
				"server %q (id %d) exists but this machine does not hold the host key it was created with (state in %s is missing or from another server). dockbridge never trusts a host key on first use, so it can't talk to this server",
				s.Name, s.ID, d.Paths.EnvDir(env))}
		}
		halfMade := false
		if !slices.Contains(s.VolumeIDs, vol.ID) {
			// An interrupted create may still be attaching it: wait for that, with a bound.
			ws, werr := waitAttached(ctx, d, s, vol.ID)
			if werr != nil {
				// The data volume is attached nowhere and this server of ours never got it: a
				// half-made server (its create failed, and deleting it failed too). Nothing of
				// Docker's is on it: it is deleted (stopped cleanly first) and a new one made.
				cur, verr := d.API.Volume(ctx, vol.ID)
				if verr != nil || cur.ServerID != 0 {
					return ws, false, &ServerRunningError{Env: env, Server: ws, Err: werr}
				}
				d.Progress.Printf("note: server %q (id %d) never got the data volume (a create that failed half-way): deleting it and making a new one\n", ws.Name, ws.ID)
				if _, derr := stopAndDelete(ctx, d, env, ws, stopOptions{Force: force, Command: "up"}); derr != nil {
					return ws, false, &ServerRunningError{Env: env, Server: ws, Err: fmt.Errorf("%w; deleting it failed: %w", werr, derr)}
				}
				vol, halfMade = cur, true
			}
			s = ws
		}
		if !halfMade {
			if s.Off() {
				step.Note("powering on %q (id %d)", s.Name, s.ID)
				if err := d.API.PowerOn(ctx, s.ID); err != nil {
					return s, false, &ServerRunningError{Env: env, Server: s, Err: err}
				}
			} else {
				step.Note("%q (id %d, %s, %s)", s.Name, s.ID, s.Status, s.IPv4)
			}
			if s.IPv4 == "" {
				return s, false, &ServerRunningError{Env: env, Server: s, Err: fmt.Errorf("server %d has no public IPv4 address", s.ID)}
			}
			return s, false, nil
		}
	}
	if vol.ServerID != 0 {
		return nil, false, fmt.Errorf("the data volume %d is attached to server %d, which is not this environment's server: detach it first (hcloud volume detach %d)", vol.ID, vol.ServerID, vol.ID)
	}

	serverType, err := d.serverTypeFor(ctx, vol.Location)
	if err != nil {
		return nil, false, err
	}

	// A fresh host key pair; the public half is saved (pinned) before the server exists.
	hk, err := GenerateEd25519("dockbridge-" + env + "-host")
	if err != nil {
		return nil, false, err
	}
	st.forgetServer()
	st.HostKey = hk.Public
	if err := saveState(d.Paths, env, *es); err != nil {
		return nil, false, err
	}
	params := cloudinit.Params{
		EnvName:        env,
		Volume:         cloudinit.Volume{ID: vol.ID, ExpectedUUID: vol.Labels[LabelFSUUID]},
		AuthorizedKeys: []string{key.PublicKey},
		HostKeys:       []cloudinit.HostKey{hk.CloudInitHostKey()},
	}
	if n.Role != "" {
		params.PrivateIP = nodeIP(n.N)
	}
	userData, err := cloudinit.Render(params)
	if err != nil {
		return nil, false, fmt.Errorf("render the user-data: %w", err)
	}
	srvLabels := nodeLabels(env, RoleServer, n.N, n.Role)
	srvLabels[LabelHostKey] = HostKeyLabel(hk.Signer.PublicKey())
	spec := hetzner.ServerSpec{
		Name: nodeServerName(env, n.N), ServerType: serverType, Image: d.Config.Image, Location: vol.Location,
		SSHKeyIDs: []int64{key.ID}, UserData: string(userData), VolumeIDs: []int64{vol.ID},
		FirewallIDs: []int64{fw.ID}, Labels: srvLabels,
	}
	s, err := d.API.CreateServer(ctx, spec)
	if err != nil {
		return nil, false, createFailed(ctx, d, env, s, err, force)
	}
	step.Note("created %q (id %d, %s in %s, %s)", s.Name, s.ID, s.ServerType, s.Location, s.IPv4)
	return s, true, nil
}

// createFailed decides what a failed create leaves behind and says it loudly.
func createFailed(ctx context.Context, d *Deps, env string, s *hetzner.Server, err error, force bool) error {
	if s == nil || s.ID == 0 {
		if ctx.Err() != nil || errors.Is(err, hetzner.ErrUnavailable) {
			// The answer was lost (Ctrl-C, timeout, 5xx): look once, even after Ctrl-C, so
			// a server that was made anyway is reported instead of left running silently.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			if found, lerr := d.API.Servers(lctx, selector(env, RoleServer)); lerr == nil && len(found) > 0 {
				return &ServerRunningError{Env: env, Server: found[0], More: found[1:], Err: err}
			} else if lerr == nil {
				return fmt.Errorf("%w\nNo server was created; run up again", err)
			}
			return fmt.Errorf("%w\nThe request may have reached Hetzner: run `docker dockbridge up%s` again to adopt the server if it exists (its host key is pinned already), or `docker dockbridge down%s` to delete it; `docker dockbridge status%s` shows it",
				err, nameFlag(env), nameFlag(env), nameFlag(env))
		}
		return err
	}
	if errors.Is(err, hetzner.ErrActionFailed) {
		// The server is broken: it must not stay and cost money. It is deleted like any other
		// (stopped cleanly first, if it runs), also after Ctrl-C: every step is bounded.
		dctx := context.WithoutCancel(ctx)
		if cur, gerr := d.API.Server(dctx, s.ID); gerr == nil {
			s = cur
		}
		_, derr := stopAndDelete(dctx, d, env, s, stopOptions{Force: force, Command: "down"})
		if derr == nil {
			return fmt.Errorf("%w\nThe half-created server %d was deleted (nothing is billed for it any more); run up again", err, s.ID)
		}
		if errors.As(derr, new(*StillRunningError)) {
			return fmt.Errorf("%w\n%w", err, derr)
		}
		err = fmt.Errorf("%w; deleting the broken server also failed: %v", err, derr)
	}
	return &ServerRunningError{Env: env, Server: s, Err: err}
}

func recordFSUUID(ctx context.Context, d *Deps, vol *hetzner.Volume, uuid string) error {
	if uuid == "" {
		return nil
	}
	switch have := vol.Labels[LabelFSUUID]; have {
	case uuid:
		return nil
	case "":
		l := map[string]string{}
		for k, v := range vol.Labels {
			l[k] = v
		}
		l[LabelFSUUID] = uuid
		v, err := d.API.SetVolumeLabels(ctx, vol.ID, l)
		if err != nil {
			return fmt.Errorf("record the data volume's filesystem UUID: %w", err)
		}
		vol.Labels = v.Labels
		return nil
	default:
		return fmt.Errorf("the data volume %d carries filesystem %s but its label says %s: this is not the filesystem dockbridge made; check it with `docker dockbridge ssh -- blkid`", vol.ID, uuid, have)
	}
}

func shortFP(k ssh.PublicKey) string {
	fp := ssh.FingerprintSHA256(k)
	if len(fp) > 19 {
		return fp[:19] + "…"
	}
	return fp
}

func ids[T any](xs []T, id func(T) int64) []int64 {
	out := make([]int64, 0, len(xs))
	for _, x := range xs {
		out = append(out, id(x))
	}
	return out
}

// waitAttached polls the server until the volume shows as attached (an attach action of
// an interrupted create still running), for at most d.AttachWait.
func waitAttached(ctx context.Context, d *Deps, s *hetzner.Server, volumeID int64) (*hetzner.Server, error) {
	deadline := d.Now().Add(d.AttachWait)
	for {
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("wait for volume %d to attach to server %d: %w", volumeID, s.ID, ctx.Err())
		case <-time.After(max(d.SSHPoll, 10*time.Millisecond)):
		}
		cur, err := d.API.Server(ctx, s.ID)
		if err != nil {
			return s, err
		}
		s = cur
		if slices.Contains(s.VolumeIDs, volumeID) {
			return s, nil
		}
		if d.Now().After(deadline) {
			return s, fmt.Errorf("server %q (id %d) runs without the data volume %d attached: Docker's data is not on it", s.Name, s.ID, volumeID)
		}
	}
}
