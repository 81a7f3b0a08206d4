package host

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/idleagent"
)

// TestUpInstallsTheIdleAgent: up puts the servers' binary on the host (uploaded once, onto the
// data volume), the agent's configuration (this server, the API endpoint, the token file, the
// environment's idle settings) and its unit; a second up changes nothing; a new server after
// down copies the binary from the volume without an upload.
func TestUpInstallsTheIdleAgent(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	res, err := Up(ctx, e.deps, UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir(), IdleTimeout: "45m", BillingPeriod: "2m"})
	if err != nil {
		t.Fatal(err)
	}
	d := e.disk
	if d.agentUploads != 1 || d.agentBin == "" || d.agentBin != d.agentCache || !d.agentActive {
		t.Fatalf("after the first up: uploads %d, bin %q, cache %q, active %v", d.agentUploads, d.agentBin, d.agentCache, d.agentActive)
	}
	var cfg idleagent.Config
	if err := json.Unmarshal([]byte(d.agentConfig), &cfg); err != nil {
		t.Fatalf("agent config %q: %v", d.agentConfig, err)
	}
	srv, err := e.api.Server(ctx, res.ServerID)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerID != res.ServerID || !cfg.Created.Equal(srv.Created) || cfg.Endpoint != e.deps.Config.PluginEndpoint ||
		cfg.TokenFile != "/etc/dockbridge/secrets/hcloud-token" || cfg.Timeout != "45m0s" || cfg.BillingPeriod != "2m0s" || cfg.Env != DefaultEnv {
		t.Fatalf("agent config: %+v", cfg)
	}
	if strings.Contains(d.agentConfig, e.deps.Config.Token) {
		t.Fatal("the agent's configuration holds the token")
	}
	if step := stepNote(res, "Idle agent"); !strings.Contains(step, "uploaded") || !strings.Contains(step, "goes down after 45m0s idle, 10s before its paid 2m0s billing period ends") {
		t.Fatalf("progress note: %q", step)
	}
	es, err := LoadEnvSettings(e.deps.Paths, DefaultEnv)
	if err != nil || es.IdleTimeout != "45m0s" || es.BillingPeriod != "2m0s" || es.Up == nil || es.Up.PluginDir != e.pluginDir() {
		t.Fatalf("environment settings: %+v %v", es, err)
	}

	// Again: nothing to do.
	res, err = Up(ctx, e.deps, UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir()})
	if err != nil {
		t.Fatal(err)
	}
	if step := stepNote(res, "Idle agent"); !strings.HasSuffix(step, "already running") || d.agentUploads != 1 {
		t.Fatalf("second up: %q, uploads %d", step, d.agentUploads)
	}

	// A new server: its root disk is empty, the volume keeps the binary.
	if _, err := Down(ctx, e.deps, DownOptions{Env: DefaultEnv}); err != nil {
		t.Fatal(err)
	}
	d.agentBin, d.agentConfig, d.agentActive = "", "", false
	res, err = Up(ctx, e.deps, UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir()})
	if err != nil {
		t.Fatal(err)
	}
	if d.agentUploads != 1 || d.agentBin != d.agentCache || !d.agentActive {
		t.Fatalf("after down/up: uploads %d, bin %q", d.agentUploads, d.agentBin)
	}
	if err := json.Unmarshal([]byte(d.agentConfig), &cfg); err != nil || cfg.ServerID != res.ServerID || cfg.Timeout != "45m0s" {
		t.Fatalf("the new server's agent: %+v %v", cfg, err)
	}

	// settings set idle_timeout reaches the running server.
	es.IdleTimeout = ""
	must(t, es.Set("idle_timeout", "off"))
	must(t, SaveEnvSettings(e.deps.Paths, DefaultEnv, es))
	note, err := ApplyIdleSettings(ctx, e.deps, DefaultEnv)
	if err != nil || !strings.Contains(note, "idle timeout off") {
		t.Fatalf("ApplyIdleSettings: %q %v", note, err)
	}
	if err := json.Unmarshal([]byte(d.agentConfig), &cfg); err != nil || cfg.Timeout != "off" || cfg.ServerID != res.ServerID {
		t.Fatalf("after settings set: %+v %v", cfg, err)
	}
}

// TestNoTokenOnTheServer: with --idle-timeout off and --no-volume-plugin, up leaves no API
// token on the server (and removes one an earlier up wrote); with a timeout, the agent gets it.
func TestNoTokenOnTheServer(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	if _, err := Up(ctx, e.deps, UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir(), NoVolumePlugin: true}); err != nil {
		t.Fatal(err)
	}
	if e.disk.pluginToken != e.deps.Config.Token {
		t.Fatalf("the agent needs the token without the plugin: %q", e.disk.pluginToken)
	}
	res, err := Up(ctx, e.deps, UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir(), NoVolumePlugin: true, IdleTimeout: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if e.disk.pluginToken != "" || !strings.Contains(stepNote(res, "Idle agent"), "API token removed") {
		t.Fatalf("token left on the server: %q (%q)", e.disk.pluginToken, stepNote(res, "Idle agent"))
	}
}

// TestRotatedTokenReachesTheServer: with --no-volume-plugin, a token on the server that is not
// this up's (rotated since) is rewritten, else every self-delete fails with 401; one that is
// the same is left alone, and the token is in no note.
func TestRotatedTokenReachesTheServer(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	opts := UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir(), NoVolumePlugin: true}
	if _, err := Up(ctx, e.deps, opts); err != nil {
		t.Fatal(err)
	}
	e.disk.pluginToken = "the-token-before-rotation"
	res, err := Up(ctx, e.deps, opts)
	if err != nil {
		t.Fatal(err)
	}
	note := stepNote(res, "Idle agent")
	if e.disk.pluginToken != e.deps.Config.Token || !strings.Contains(note, "API token updated") {
		t.Fatalf("the server keeps the old token: %q (%q)", e.disk.pluginToken, note)
	}
	if strings.Contains(note, e.deps.Config.Token) {
		t.Fatalf("the note shows the token: %q", note)
	}
	res, err = Up(ctx, e.deps, opts)
	if err != nil {
		t.Fatal(err)
	}
	if note := stepNote(res, "Idle agent"); strings.Contains(note, "API token") {
		t.Fatalf("the same token written again: %q", note)
	}
}

// TestStatusShowsTheIdleAgent: status -o json's idle fields come from the server's probe.
func TestStatusShowsTheIdleAgent(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	st, err := GetStatus(ctx, e.deps, DefaultEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Idle || st.IdleSince != nil || st.DownAt != nil || st.KeepingUp == nil || st.IdleTimeout != "30m0s" {
		t.Fatalf("no server: %+v", st)
	}
	if _, err := Up(ctx, e.deps, UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir()}); err != nil {
		t.Fatal(err)
	}
	st, err = GetStatus(ctx, e.deps, DefaultEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 1, 1, 0, 55, 0, 0, time.UTC)
	if !st.Idle || st.IdleSince == nil || st.DownAt == nil || !st.DownAt.Equal(want) || st.Volume.UsedBytes != 1073741824 || st.Health == "" {
		t.Fatalf("status: %+v", st)
	}
	b, _ := json.Marshal(st)
	for _, k := range []string{`"idle":true`, `"idle_since":"2026-01-01T00:00:00Z"`, `"down_at":"2026-01-01T00:55:00Z"`, `"keeping_up":[]`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("status -o json lacks %s: %s", k, b)
		}
	}
}

func (e *simEnv) pluginDir() string { return os.Getenv("DOCKBRIDGE_TEST_PLUGIN_DIR") }

// TestForgetMember: after node rm, node 1's idle agent no longer lists the removed node (it
// would wait for it, or ask the API about it, at every look); the rest of its configuration
// stays, and the agent restarts with it.
func TestForgetMember(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	if _, err := Up(ctx, e.deps, UpOptions{Env: DefaultEnv, PluginDir: e.pluginDir(), IdleTimeout: "45m"}); err != nil {
		t.Fatal(err)
	}
	var cfg idleagent.Config
	must(t, json.Unmarshal([]byte(e.disk.agentConfig), &cfg))
	cfg.Swarm = &idleagent.SwarmConfig{Node: 1, Role: idleagent.RoleDecider, PrivateIP: nodeIP(1), SecretFile: idleagent.SwarmSecretPath,
		Members: []idleagent.Member{{Node: 2, ServerID: 102, PrivateIP: nodeIP(2)}, {Node: 3, ServerID: 103, PrivateIP: nodeIP(3), Manager: true}}}
	b, err := json.Marshal(cfg)
	must(t, err)
	e.disk.agentConfig = string(b)

	if note := forgetMember(ctx, e.deps, DefaultEnv, 2); !strings.Contains(note, "no longer waits for node 2") {
		t.Fatalf("forgetMember: %s", note)
	}
	var after idleagent.Config
	must(t, json.Unmarshal([]byte(e.disk.agentConfig), &after))
	if after.Swarm == nil || len(after.Swarm.Members) != 1 || after.Swarm.Members[0].Node != 3 || after.Timeout != cfg.Timeout || after.ServerID != cfg.ServerID {
		t.Fatalf("node 1's configuration after forgetting node 2: %s", e.disk.agentConfig)
	}
	if note := forgetMember(ctx, e.deps, DefaultEnv, 2); !strings.Contains(note, "did not know node 2") {
		t.Fatalf("forgetting node 2 again: %s", note)
	}
}
