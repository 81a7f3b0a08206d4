package host

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/context/store"
)

func testPaths(t *testing.T) Paths {
	dir := t.TempDir()
	return Paths{Root: filepath.Join(dir, "docker", "dockbridge"), UserSSHConfig: filepath.Join(dir, "home", ".ssh", "config")}
}

func writeHost(t *testing.T, p Paths, env string, s *testSSHD, noCM bool, hostKey string) {
	t.Helper()
	if hostKey == "" {
		hostKey = s.HostKey.Public
	}
	must(t, WriteSSHConfig(p, SSHHost{Env: env, Addr: "127.0.0.1", Port: s.Port, User: "root", KeyFile: s.UserKeyFile, HostKey: hostKey, NoControlMaster: noCM}))
	t.Cleanup(func() { StopControlMaster(context.Background(), p, env) })
}

func TestSSHConfigPinnedKeyAndSharedConnection(t *testing.T) {
	s := startSSHD(t)
	p := testPaths(t)
	writeHost(t, p, "pin", s, false, "")
	for _, f := range []string{p.SSHConfigFile("pin"), p.KnownHostsFile("pin")} {
		fi, err := os.Stat(f)
		must(t, err)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
	var out, errb bytes.Buffer
	if err := SSH(t.Context(), p, "pin", []string{"echo", "ok", "-n"}, nil, &out, &errb); err != nil {
		t.Fatalf("ssh with the pinned key: %v\n%s", err, errb.String())
	}
	if out.String() != "ok -n\n" {
		t.Fatalf("remote output %q (arguments must reach the remote command, not ssh)", out.String())
	}
	check := exec.Command("ssh", "-F", p.SSHConfigFile("pin"), "-O", "check", SSHAlias("pin"))
	if b, err := check.CombinedOutput(); err != nil {
		t.Fatalf("the shared connection is not running after the first ssh: %v: %s", err, b)
	}
	err := SSH(t.Context(), p, "pin", []string{"exit", "7"}, nil, &out, &errb)
	var exit *ExitError
	if !errorsAs(err, &exit) || exit.Code != 7 {
		t.Fatalf("want remote exit status 7, got %v", err)
	}

	// The same server with another pinned key: ssh must refuse to connect.
	other, err := GenerateEd25519("impostor")
	must(t, err)
	writeHost(t, p, "wrong", s, false, other.Public)
	errb.Reset()
	err = SSH(t.Context(), p, "wrong", []string{"true"}, nil, &out, &errb)
	if !errorsAs(err, &exit) || exit.Code != 255 || !strings.Contains(errb.String(), "Host key verification failed") {
		t.Fatalf("want ssh to refuse a host key other than the pinned one, got %v: %s", err, errb.String())
	}
}

// TestSSHConnectionReuseRatio measures `ssh host true` with and without the shared
// connection and prints the ratio (no wall-clock assertion).
func TestSSHConnectionReuseRatio(t *testing.T) {
	s := startSSHD(t)
	p := testPaths(t)
	writeHost(t, p, "cm", s, false, "")
	writeHost(t, p, "nocm", s, true, "")
	run := func(env string) {
		if b, err := SSHCommand(t.Context(), p, env, "true").CombinedOutput(); err != nil {
			t.Fatalf("ssh %s: %v: %s", env, err, b)
		}
	}
	run("cm") // starts the master
	const n = 10
	measure := func(env string) time.Duration {
		start := time.Now()
		for range n {
			run(env)
		}
		return time.Since(start) / n
	}
	shared, fresh := measure("cm"), measure("nocm")
	t.Logf("ssh round trip: %v with ControlMaster reuse, %v with a new connection each time: reuse is %.1fx faster", shared, fresh, float64(fresh)/float64(shared))
}

// TestDockerContextOverPinnedSSH drives the real docker CLI through the context dockbridge
// writes: docker's ssh connection helper runs `ssh`, which finds our host through the
// Include line in the user's ssh config (here a test file: a wrapper passes it with -F,
// as ~/.ssh/config would be read by default).
func TestDockerContextOverPinnedSSH(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("docker CLI missing: %v", err)
	}
	s := startSSHD(t)
	dockerCfg := filepath.Join(t.TempDir(), "docker")
	p := Paths{Root: filepath.Join(dockerCfg, "dockbridge"), UserSSHConfig: filepath.Join(t.TempDir(), ".ssh", "config")}

	// The user's own config is kept byte for byte below our line.
	userConf := "Host *\n  ServerAliveInterval 99\n"
	must(t, os.MkdirAll(filepath.Dir(p.UserSSHConfig), 0o700))
	must(t, os.WriteFile(p.UserSSHConfig, []byte(userConf), 0o640))
	changed, err := EnsureInclude(p)
	must(t, err)
	again, err := EnsureInclude(p)
	must(t, err)
	b, _ := os.ReadFile(p.UserSSHConfig)
	if !changed || again || !strings.HasPrefix(string(b), includeComment+"\n"+p.IncludeLine()+"\n") || !strings.HasSuffix(string(b), userConf) {
		t.Fatalf("EnsureInclude: changed=%v again=%v, file:\n%s", changed, again, b)
	}
	if fi, _ := os.Stat(p.UserSSHConfig); fi.Mode().Perm() != 0o640 {
		t.Errorf("EnsureInclude changed the mode of the user's ssh config to %04o", fi.Mode().Perm())
	}

	writeHost(t, p, "ctx", s, false, "")
	writeHost(t, p, "ctxnocm", s, true, "")
	cs := store.New(filepath.Join(dockerCfg, "contexts"), command.DefaultContextStoreConfig())
	for _, env := range []string{"ctx", "ctxnocm"} {
		changed, err := EnsureContext(cs, env)
		if err != nil || !changed {
			t.Fatalf("EnsureContext(%s): changed=%v err=%v", env, changed, err)
		}
		if changed, err := EnsureContext(cs, env); err != nil || changed {
			t.Fatalf("EnsureContext(%s) twice: changed=%v err=%v", env, changed, err)
		}
	}

	bin := t.TempDir()
	sshPath, _ := exec.LookPath("ssh")
	must(t, os.WriteFile(filepath.Join(bin, "ssh"), []byte("#!/bin/sh\nexec "+sshPath+" -F '"+p.UserSSHConfig+"' \"$@\"\n"), 0o755))
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("DOCKER_CONFIG", dockerCfg)
	docker := func(ctxName string) string {
		cmd := exec.CommandContext(t.Context(), "docker", "--context", ctxName, "version", "--format", "{{.Server.Version}}")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker --context %s version: %v: %s", ctxName, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if v := docker(ContextName("ctx")); v == "" {
		t.Fatal("no server version over the context")
	}
	const n = 5
	measure := func(name string) time.Duration {
		start := time.Now()
		for range n {
			docker(name)
		}
		return time.Since(start) / n
	}
	shared, fresh := measure(ContextName("ctx")), measure(ContextName("ctxnocm"))
	t.Logf("docker --context X version: %v with ControlMaster reuse, %v without: ratio %.2fx", shared, fresh, float64(fresh)/float64(shared))

	removed, err := RemoveContext(cs, "ctx")
	if err != nil || !removed {
		t.Fatalf("RemoveContext: %v %v", removed, err)
	}
}

// SSHOptions gives the laptop agent the environment's own options only: what ssh -G then
// resolves is the server's address, port, key, pinned known_hosts and connection path.
func TestSSHOptionsResolveToTheServer(t *testing.T) {
	p := testPaths(t)
	hk, err := GenerateEd25519("h")
	must(t, err)
	h := SSHHost{Env: "opt", Addr: "203.0.113.7", Port: 2222, User: "root", KeyFile: "/keys/id ed25519", HostKey: hk.Public}
	must(t, WriteSSHConfig(p, h))
	opts, cp, err := SSHOptions(p, "opt")
	must(t, err)
	if cp != p.ControlPath(h) {
		t.Fatalf("control path %q, want %q", cp, p.ControlPath(h))
	}
	out, err := exec.Command("ssh", append(append([]string{"-F", os.DevNull}, opts...), "-G", SSHAlias("opt"))...).Output()
	if err != nil {
		t.Fatalf("ssh -G: %v", err)
	}
	for _, want := range []string{"hostname 203.0.113.7", "port 2222", "user root", "identityfile /keys/id ed25519", "hostkeyalias dockbridge-opt",
		"stricthostkeychecking true", "controlpath " + cp, "userknownhostsfile " + p.KnownHostsFile("opt")} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("ssh -G lacks %q:\n%s", want, out)
		}
	}
	// The server's part in a file of its own (a configuration that runs a wake first) is read too.
	must(t, os.WriteFile(filepath.Join(p.EnvDir("opt"), "ssh_server.conf"), []byte("# x\n  HostName 198.51.100.9\n"), 0o600))
	opts, _, err = SSHOptions(p, "opt")
	must(t, err)
	out, _ = exec.Command("ssh", append(append([]string{"-F", os.DevNull}, opts...), "-G", SSHAlias("opt"))...).Output()
	if !strings.Contains(string(out), "hostname 203.0.113.7\n") && !strings.Contains(string(out), "hostname 198.51.100.9\n") {
		t.Errorf("hostname:\n%s", out)
	}
}

// TestWakeRunsBeforeSSHConnects: ssh runs the wake (the Match exec line) before it connects and
// reads the server's address only afterwards, so a wake that replaced the server (here: a fake
// that points ssh_server.conf at the real sshd instead of a dead port) is what ssh connects to;
// while the shared connection lives the wake does not run, and ending the connection
// (StopControlMaster) wakes nothing.
func TestWakeRunsBeforeSSHConnects(t *testing.T) {
	s := startSSHD(t)
	p := testPaths(t)
	dir := t.TempDir()
	count := filepath.Join(dir, "wakes")
	fake := filepath.Join(dir, "docker-dockbridge")
	must(t, os.WriteFile(fake, []byte(fmt.Sprintf(`#!/bin/sh
[ "$1 $2 $3" = "wake --name wk" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
echo "$DOCKER_CONFIG" >> %s
sed -i 's/^ *Port .*/  Port %d/' %s
`, count, s.Port, p.SSHServerFile("wk"))), 0o755))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	dead := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	must(t, WriteSSHConfig(p, SSHHost{Env: "wk", Addr: "127.0.0.1", Port: dead, User: "root", KeyFile: s.UserKeyFile, HostKey: s.HostKey.Public, Wake: fake}))
	t.Cleanup(func() { StopControlMaster(context.Background(), p, "wk") })
	wakes := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "\n")
	}
	var out, errb bytes.Buffer
	if err := SSH(t.Context(), p, "wk", []string{"echo", "ok"}, nil, &out, &errb); err != nil || out.String() != "ok\n" {
		t.Fatalf("ssh after the wake: %v %q: %s", err, out.String(), errb.String())
	}
	if b, _ := os.ReadFile(count); wakes() != 1 || strings.TrimSpace(string(b)) != filepath.Dir(p.Root) {
		t.Fatalf("wakes: %q (want one, with DOCKER_CONFIG=%s)", b, filepath.Dir(p.Root))
	}
	for range 3 {
		if err := SSH(t.Context(), p, "wk", []string{"true"}, nil, &out, &errb); err != nil {
			t.Fatalf("ssh over the shared connection: %v: %s", err, errb.String())
		}
	}
	if n := wakes(); n != 1 {
		t.Fatalf("%d wakes while the shared connection lived, want 1", n)
	}
	StopControlMaster(t.Context(), p, "wk")
	if n := wakes(); n != 1 {
		t.Fatalf("StopControlMaster woke the server (%d wakes)", n)
	}
	if err := SSH(t.Context(), p, "wk", []string{"true"}, nil, &out, &errb); err != nil || wakes() != 2 {
		t.Fatalf("without the shared connection: %v, %d wakes (want 2): %s", err, wakes(), errb.String())
	}
}

// TestSwarmWakeIsNodeOnes: a swarm's ssh_config runs the wake for node 1 (the context's
// host) alone, before its address is read from ssh_server.conf, which the wake (the same up,
// every node back) rewrites; the other nodes' Host blocks hold their address inline and wake
// nothing.
func TestSwarmWakeIsNodeOnes(t *testing.T) {
	p := testPaths(t)
	dir := t.TempDir()
	count := filepath.Join(dir, "wakes")
	fake := filepath.Join(dir, "docker-dockbridge")
	must(t, os.WriteFile(fake, []byte(fmt.Sprintf(`#!/bin/sh
[ "$1 $2 $3" = "wake --name sw" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
echo woke >> %s
sed -i 's/^ *HostName .*/  HostName 198.51.100.1/' %s
`, count, p.SSHServerFile("sw"))), 0o755))
	var hosts []SSHHost
	for n := 1; n <= 3; n++ {
		hk, err := GenerateEd25519("h")
		must(t, err)
		hosts = append(hosts, SSHHost{Env: "sw", Node: n, Addr: fmt.Sprintf("203.0.113.%d", n), Port: 22, User: "root", KeyFile: "/keys/id", HostKey: hk.Public, Wake: fake})
	}
	must(t, WriteSSHConfig(p, hosts...))
	resolve := func(alias string) string {
		t.Helper()
		out, err := exec.Command("ssh", "-F", p.SSHConfigFile("sw"), "-G", alias).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh -G %s: %v: %s", alias, err, out)
		}
		return string(out)
	}
	wakes := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "\n")
	}
	if out := resolve(NodeAlias("sw", 2)); !strings.Contains(out, "hostname 203.0.113.2\n") || wakes() != 0 {
		t.Fatalf("node 2: %d wakes (want 0), ssh -G:\n%s", wakes(), out)
	}
	if out := resolve(NodeAlias("sw", 3)); !strings.Contains(out, "hostname 203.0.113.3\n") || !strings.Contains(out, "controlpath "+p.ControlPath(hosts[2])+"\n") {
		t.Fatalf("node 3, ssh -G:\n%s", out)
	}
	if out := resolve(SSHAlias("sw")); !strings.Contains(out, "hostname 198.51.100.1\n") || wakes() != 1 {
		t.Fatalf("node 1: %d wakes (want 1), ssh -G (want the address the wake wrote):\n%s", wakes(), out)
	}
}
