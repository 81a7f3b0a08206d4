package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The docker context talks to the server through docker's ssh connection helper, which
// runs the `ssh` binary with no way to pass it options (no -F, no -o from a context).
// So the context's endpoint is ssh://<alias> and the alias is defined in a file dockbridge
// owns (envs/<env>/ssh_config: address, user, key, pinned known_hosts, ControlMaster).
// ssh finds it through an Include at the top of ~/.ssh/config (IncludeBlock: a comment line,
// the Include and an empty line):
//
//	Include <DOCKER_CONFIG>/dockbridge/envs/*/ssh_config
//
// Trade-off: these lines are the only change to a file the user owns; they are added once,
// never rewritten, at the top (where OpenSSH applies it unconditionally; Host blocks in
// an included file do not leak into the lines after the Include), and removable by hand.
// Everything that changes (the address after each up, a future local wake-up proxy)
// stays in our own file, so the context itself never has to change.

// SSHAlias is the Host name ssh and the docker context use for an environment (its node 1).
func SSHAlias(env string) string { return "dockbridge-" + env }

// NodeAlias is the Host name of node n of an environment: SSHAlias for node 1.
func NodeAlias(env string, n int) string {
	if n <= 1 {
		return SSHAlias(env)
	}
	return fmt.Sprintf("dockbridge-%s-node%d", env, n)
}

// ContextName is the docker context of an environment.
func ContextName(env string) string {
	if env == DefaultEnv {
		return "dockbridge"
	}
	return "dockbridge-" + env
}

// EnvOfContext is the environment whose docker context is name ("dockbridge" is the default
// environment's), if name is one of dockbridge's context names.
func EnvOfContext(name string) (string, bool) {
	if name == "dockbridge" {
		return DefaultEnv, true
	}
	env, ok := strings.CutPrefix(name, "dockbridge-")
	if !ok || env == DefaultEnv || ValidateEnvName(env) != nil {
		return "", false
	}
	return env, true
}

// SSHConfigFile is an environment's ssh_config.
func (p Paths) SSHConfigFile(env string) string { return filepath.Join(p.EnvDir(env), "ssh_config") }

// KnownHostsFile holds the one pinned host key of an environment's server.
func (p Paths) KnownHostsFile(env string) string { return filepath.Join(p.EnvDir(env), "known_hosts") }

// UserKeyFile is an environment's generated private key.
func (p Paths) UserKeyFile(env string) string { return filepath.Join(p.EnvDir(env), "id_ed25519") }

// ControlPath is where ssh keeps the shared connection of one server: the name hashes
// the environment, address and pinned host key, so a connection is never reused for
// another environment or for a new server (whose key differs) on a reused IP address.
// It is "" where ssh cannot share connections (Windows). A Unix socket's path is limited
// (104 bytes on macOS, 108 on Linux), so a long DOCKER_CONFIG falls back to a directory
// under /tmp (not $TMPDIR, which on macOS alone is about 50 bytes).
func (p Paths) ControlPath(h SSHHost) string {
	if !p.sharesConnections() {
		return ""
	}
	dir := filepath.Join(p.Root, "cm")
	// ssh appends ".XXXXXXXXXXXXXXXX" to the name while it sets the master up.
	if len(dir)+1+24+17 > maxSocketPath {
		dir = filepath.Join(socketFallbackDir, fmt.Sprintf("dockbridge-%d", os.Getuid()))
	}
	return filepath.Join(dir, sha256Hex(fmt.Sprintf("%s\x00%s\x00%d\x00%s\x00%s", h.Env, h.Addr, h.Port, h.User, h.HostKey))[:24])
}

// SSHHost is what an environment's ssh_config says about one server (node).
type SSHHost struct {
	Env     string
	Node    int    // 0 or 1: the environment's first (or only) server
	Addr    string // IPv4 or host name
	Port    int
	User    string
	KeyFile string
	HostKey string // authorized_keys form of the pinned host key
	// NoControlMaster turns connection sharing off (a baseline for measurements).
	NoControlMaster bool
	// Wake is the docker-dockbridge that wakes the server when it is down (wake.go), run by
	// ssh before it connects; "" writes no wake (ssh then connects to the last address).
	Wake string
}

// SSHServerFile is the part of a single-server environment's ssh configuration that changes
// with each new server (address, port, connection path): ssh_config includes it after the
// wake has run.
func (p Paths) SSHServerFile(env string) string {
	return filepath.Join(p.EnvDir(env), "ssh_server.conf")
}

// WakeScript is what ssh runs before it connects to an environment's server (ssh_config's
// Match exec line).
func (p Paths) WakeScript(env string) string { return filepath.Join(p.EnvDir(env), "wake.sh") }

// WriteSSHConfig writes the environment's known_hosts and ssh_config (0600): one Host block
// and one pinned key per server (node), all of one environment.
//
// The first host (the single server, or a swarm's node 1, which the context uses) also gets
// ssh_server.conf and, with a wake, wake.sh (0700):
//
//	Host dockbridge-<env>
//	  User, IdentityFile, HostKeyAlias, the pinned known_hosts, ControlMaster, ... (fixed)
//	Host dockbridge-<env>-node2            (a swarm's other nodes: their address inline)
//	  HostName, Port, ..., ControlPath
//	Match originalhost dockbridge-<env> exec "/bin/sh '.../wake.sh'"
//	  Include .../ssh_server.conf          (HostName, Port, ControlPath: this server's)
//
// OpenSSH runs the exec while it reads the file, before it connects, and reads the Include
// only after it: the wake may replace the server and rewrite ssh_server.conf, and ssh connects
// to the new one. The context, the alias and the known_hosts file stay the same. A swarm's wake
// is the same `up`, which brings every node back; it runs when node 1 does not answer.
func WriteSSHConfig(p Paths, hosts ...SSHHost) error {
	if len(hosts) == 0 {
		return errors.New("write ssh config: no host")
	}
	env := hosts[0].Env
	var known bytes.Buffer
	for _, h := range hosts {
		if h.Env != env {
			return fmt.Errorf("write ssh config: hosts of environments %q and %q in one file", env, h.Env)
		}
		fmt.Fprintf(&known, "%s %s\n", NodeAlias(h.Env, h.Node), strings.Join(strings.Fields(h.HostKey)[:2], " "))
		if cp := p.ControlPath(h); cp != "" {
			if err := os.MkdirAll(filepath.Dir(cp), 0o700); err != nil {
				return fmt.Errorf("create ssh control directory: %w", err)
			}
		}
	}
	if err := writePrivate(p.KnownHostsFile(env), known.Bytes()); err != nil {
		return err
	}
	h := hosts[0]
	if err := writePrivate(p.SSHServerFile(env), p.renderSSHServer(h)); err != nil {
		return err
	}
	if p.wakes(h) {
		if err := writePrivate(p.WakeScript(env), p.renderWakeScript(h)); err != nil {
			return err
		}
		if err := os.Chmod(p.WakeScript(env), 0o700); err != nil {
			return err
		}
	} else if err := os.Remove(p.WakeScript(env)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return writePrivate(p.SSHConfigFile(env), p.renderSSHConfig(hosts...))
}

// wakes says whether ssh wakes the server: there is a wake to run, and /bin/sh to run it
// (Windows has none: there `up` brings the server up).
func (p Paths) wakes(h SSHHost) bool { return h.Wake != "" && p.goos() != "windows" }

// renderSSHConfig is the text of an environment's ssh_config: a Host block per server, and for
// the first (the single server, a swarm's node 1) the Match line that runs the wake and
// includes ssh_server.conf.
func (p Paths) renderSSHConfig(hosts ...SSHHost) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by `docker dockbridge up` for environment %q; rewritten on every up, do not edit.\n", hosts[0].Env)
	for i, h := range hosts {
		p.hostBlock(&b, h, i > 0)
	}
	h := hosts[0]
	match := "Match originalhost " + NodeAlias(h.Env, h.Node)
	if p.wakes(h) {
		fmt.Fprintf(&b, "# Before it connects, ssh runs the wake (nothing to do while the shared connection lives),\n# then reads the server's address from ssh_server.conf, which the wake may have rewritten.\n")
		// ssh expands %-tokens in the command: a % of the path is written %%.
		match += fmt.Sprintf(` exec "/bin/sh %s"`, strings.ReplaceAll(shellQuote(p.WakeScript(h.Env)), "%", "%%"))
	}
	fmt.Fprintf(&b, "%s\n  Include %s\n", match, p.sshPath(p.SSHServerFile(h.Env)))
	return b.Bytes()
}

// hostBlock writes one server's Host block; inline puts its address, port and connection path
// in it (else they are in ssh_server.conf).
func (p Paths) hostBlock(b *bytes.Buffer, h SSHHost, inline bool) {
	alias := NodeAlias(h.Env, h.Node)
	fmt.Fprintf(b, "Host %s\n", alias)
	var kv [][2]string
	if inline {
		kv = append(kv, [2]string{"HostName", h.Addr}, [2]string{"Port", strconv.Itoa(h.Port)})
	}
	kv = append(kv, [][2]string{
		{"User", h.User},
		{"IdentityFile", p.sshPath(h.KeyFile)},
		{"IdentitiesOnly", "yes"},
		// The pinned key: the only known_hosts file, looked up by alias, never updated.
		{"HostKeyAlias", alias},
		{"UserKnownHostsFile", p.sshPath(p.KnownHostsFile(h.Env))},
		{"GlobalKnownHostsFile", "/dev/null"},
		{"StrictHostKeyChecking", "yes"},
		{"UpdateHostKeys", "no"},
		{"CheckHostIP", "no"},
		{"BatchMode", "yes"},
		{"PasswordAuthentication", "no"},
	}...)
	if cp := p.ControlPath(h); cp != "" && !h.NoControlMaster {
		// One connection shared by every docker command (buildx #315); a single server's
		// path is in ssh_server.conf.
		kv = append(kv, [2]string{"ControlMaster", "auto"})
		if inline {
			kv = append(kv, [2]string{"ControlPath", p.sshPath(cp)})
		}
		kv = append(kv, [2]string{"ControlPersist", "10m"})
	} else {
		// Windows' OpenSSH has no connection sharing: every docker command opens its own.
		kv = append(kv, [2]string{"ControlMaster", "no"}, [2]string{"ControlPath", "none"})
	}
	kv = append(kv,
		[2]string{"ServerAliveInterval", "30"},
		[2]string{"ServerAliveCountMax", "3"},
		[2]string{"ConnectTimeout", "15"},
		[2]string{"LogLevel", "ERROR"},
	)
	for _, e := range kv {
		fmt.Fprintf(b, "  %s %s\n", e[0], e[1])
	}
}

// renderSSHServer is ssh_server.conf: what changes with each server.
func (p Paths) renderSSHServer(h SSHHost) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by `docker dockbridge up` (and its wake) for environment %q: the server now. Do not edit.\n", h.Env)
	kv := [][2]string{{"HostName", h.Addr}, {"Port", strconv.Itoa(h.Port)}}
	if cp := p.ControlPath(h); cp != "" && !h.NoControlMaster {
		kv = append(kv, [2]string{"ControlPath", p.sshPath(cp)})
	}
	for _, e := range kv {
		fmt.Fprintf(&b, "  %s %s\n", e[0], e[1])
	}
	return b.Bytes()
}

// renderWakeScript is wake.sh: ssh runs it before it connects.
func (p Paths) renderWakeScript(h SSHHost) []byte {
	return []byte(fmt.Sprintf(`#!/bin/sh
# Written by docker dockbridge up for environment %[1]q: ssh runs it before it connects to
# %[2]s (the Match line of ssh_config). While the shared connection lives, the server is up
# and this is all it does; else docker-dockbridge wake brings the server up when it is down.
[ -n "$DOCKBRIDGE_NO_WAKE" ] && exit 0
[ -S %[3]s ] && exit 0
# When a CLI plugin (docker compose, docker dockbridge ssh) runs ssh, docker's variables for
# that plugin would make docker-dockbridge believe docker started it.
unset DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND DOCKER_CLI_PLUGIN_SOCKET
DOCKER_CONFIG=%[4]s exec %[5]s wake --name %[1]s
`, h.Env, SSHAlias(h.Env), shellQuote(p.ControlPath(h)), shellQuote(filepath.Dir(p.Root)), shellQuote(h.Wake)))
}

func quoteSSH(s string) string {
	if strings.ContainsAny(s, " \t\"") {
		return strconv.Quote(s)
	}
	return s
}

// IncludeLine is the line EnsureInclude adds to the user's ssh config.
func (p Paths) IncludeLine() string { return "Include " + p.sshPath(p.SSHConfigGlob()) }

// IncludeBlock is exactly what EnsureInclude adds at the top of the user's ssh config: a
// comment line, the Include line and an empty line.
func (p Paths) IncludeBlock() string { return includeComment + "\n" + p.IncludeLine() + "\n\n" }

const includeComment = "# Added by docker dockbridge: its hosts (dockbridge-<env>) with pinned host keys. Must stay above any Host/Match line."

// EnsureInclude adds the Include line at the top of the user's ssh config unless it is
// already there. It returns whether it changed the file. The rest of the file is kept
// byte for byte, and so is its mode.
func EnsureInclude(p Paths) (bool, error) {
	path := p.UserSSHConfig
	line := p.IncludeLine()
	old, err := os.ReadFile(path)
	mode := os.FileMode(0o600)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return false, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
		}
	case err != nil:
		return false, fmt.Errorf("read %s: %w", path, err)
	default:
		for _, l := range strings.Split(string(old), "\n") {
			if strings.TrimSpace(l) == line {
				return false, nil
			}
		}
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	newContent := []byte(p.IncludeBlock())
	newContent = append(newContent, old...)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config.dockbridge-*")
	if err != nil {
		return false, fmt.Errorf("update %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(newContent); err != nil {
		tmp.Close()
		return false, fmt.Errorf("update %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, fmt.Errorf("update %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("update %s: %w", path, err)
	}
	// Follow a symlinked ~/.ssh/config (dotfile managers) instead of replacing the link.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("update %s: %w", path, err)
	}
	return true, nil
}

// SSHCommand returns an `ssh` command that uses only the environment's config file
// (so it works even without the Include line) for alias and args.
func SSHCommand(ctx context.Context, p Paths, env string, args ...string) *exec.Cmd {
	return NodeSSHCommand(ctx, p, env, 1, args...)
}

// NodeSSHCommand is SSHCommand for node n of the environment.
func NodeSSHCommand(ctx context.Context, p Paths, env string, n int, args ...string) *exec.Cmd {
	a := append([]string{"-F", p.SSHConfigFile(env), "--", NodeAlias(env, n)}, args...)
	return exec.CommandContext(ctx, "ssh", a...)
}

// StopControlMaster ends the shared connection of an environment, if any (best effort:
// after `down` the address is gone and a stale master would only time out).
func StopControlMaster(ctx context.Context, p Paths, env string) {
	if !p.sharesConnections() {
		return
	}
	if _, err := os.Stat(p.SSHConfigFile(env)); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, _ := os.ReadFile(p.SSHConfigFile(env))
	for _, line := range strings.Split(string(b), "\n") {
		if alias, ok := strings.CutPrefix(line, "Host "); ok {
			cmd := exec.CommandContext(ctx, "ssh", "-F", p.SSHConfigFile(env), "-O", "exit", strings.TrimSpace(alias))
			cmd.Env = append(os.Environ(), "DOCKBRIDGE_NO_WAKE=1") // ending a connection wakes nothing
			_ = cmd.Run()
		}
	}
}

// SSHOptions reads back the options WriteSSHConfig wrote for env's host (its `Host` block only,
// and the server's own file, ssh_server.conf, when there is one; never the user's
// ~/.ssh/config nor a Match line), as ssh's `-o Key=Value` arguments. The laptop agent connects
// with them (`ssh -F /dev/null -o ...`) when it makes the shared connection itself: to the
// server the environment has now, with the pinned key, without anything the configuration runs
// before connecting (the wake). It also returns the ControlPath.
func SSHOptions(p Paths, env string) (opts []string, controlPath string, err error) {
	b, err := os.ReadFile(p.SSHConfigFile(env))
	if err != nil {
		return nil, "", err
	}
	add := func(line string) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			return
		}
		v = strings.TrimSpace(v)
		opts = append(opts, "-o", k+"="+v) // quoted as in the file: ssh parses -o as a config line
		if k == "ControlPath" {
			controlPath = v
			if uq, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
				controlPath = uq
			}
		}
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "Host "):
			in = strings.TrimSpace(strings.TrimPrefix(line, "Host ")) == SSHAlias(env)
		case strings.HasPrefix(line, "  ") && in:
			add(line)
		case strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#"):
			in = false
		}
	}
	if len(opts) == 0 {
		return nil, "", fmt.Errorf("%s has no Host %s block", p.SSHConfigFile(env), SSHAlias(env))
	}
	// The server's address, port and connection path, in a file of their own when the
	// configuration runs a wake before reading them.
	if sb, err := os.ReadFile(filepath.Join(p.EnvDir(env), "ssh_server.conf")); err == nil {
		for _, line := range strings.Split(string(sb), "\n") {
			if strings.HasPrefix(line, "  ") {
				add(line)
			}
		}
	}
	return opts, controlPath, nil
}
