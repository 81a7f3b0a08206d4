package cloudinit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testParams returns valid Params using the TEST-ONLY keys in testdata.
func testParams(t *testing.T) Params {
	t.Helper()
	read := func(name string) string { return readTestdata(t, name) }
	return Params{
		EnvName:        "test",
		Labels:         map[string]string{"managed-by": "dockbridge", "env": "test"},
		Volume:         Volume{ID: 4711},
		AuthorizedKeys: []string{read("test_client_ed25519_key.pub")},
		HostKeys: []HostKey{{
			Type:    "ed25519",
			Private: read("test_host_ed25519_key"),
			Public:  read("test_host_ed25519_key.pub"),
		}},
	}
}

// variants are the rendered documents that get golden files and the schema check.
func variants(t *testing.T) map[string]Params {
	base := testParams(t)
	v := map[string]Params{}
	v["ext4_default"] = base

	xfs := testParams(t)
	xfs.Volume.Filesystem = "xfs"
	v["xfs"] = xfs

	noInstall := testParams(t)
	noInstall.Docker.NoInstall = true
	v["ext4_no_docker_install"] = noInstall

	uuid := testParams(t)
	uuid.Volume.ExpectedUUID = "0b6e2a4c-3f1d-4e5a-9c7b-8d2f1e0a9b3c"
	v["ext4_expected_uuid"] = uuid

	custom := testParams(t)
	custom.Volume.Filesystem = "xfs"
	custom.Volume.ExpectedUUID = "0B6E2A4C-3F1D-4E5A-9C7B-8D2F1E0A9B3C"
	custom.Volume.Device = "/dev/sdb"
	custom.Volume.MountPoint = "/mnt/docker-data"
	custom.Volume.DeviceTimeout = 45 * time.Second
	custom.Health = Health{WarningPercent: 60, CriticalPercent: 95}
	custom.Docker = Docker{LogMaxSize: "50m", LogMaxFile: 5, ExtraDaemonConfig: map[string]any{
		"default-address-pools": []map[string]any{{"base": "10.200.0.0/16", "size": 24}},
		"features":              map[string]bool{"buildkit": true},
	}}
	v["xfs_custom_thresholds"] = custom

	// Three host key types and many authorized keys do not fit in 32 KiB with readable
	// scripts: Render switches to gzip+base64 scripts.
	big := testParams(t)
	for _, typ := range []string{"rsa", "ecdsa"} {
		big.HostKeys = append(big.HostKeys, HostKey{Type: typ,
			Private: readTestdata(t, "test_host_"+typ+"_key"), Public: readTestdata(t, "test_host_"+typ+"_key.pub")})
	}
	for range 8 {
		big.AuthorizedKeys = append(big.AuthorizedKeys, readTestdata(t, "test_host_rsa_key.pub"))
	}
	v["ext4_compressed_scripts"] = big

	node := testParams(t)
	node.PrivateIP = "10.0.0.3"
	v["swarm_node"] = node
	return v
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderGolden(t *testing.T) {
	for name, p := range variants(t) {
		t.Run(name, func(t *testing.T) {
			got, err := Render(p)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cloudinit -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered %s differs from %s; run go test ./cloudinit -update and review the diff", name, golden)
			}
		})
	}
}

// requireTool finds a tool; a missing tool fails the test unless -short.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testing.Short() {
			t.Skipf("%s not installed (-short)", name)
		}
		t.Fatalf("%s is required for this test and is not installed: %v", name, err)
	}
	return p
}

// cloudInitSchema runs the real validator; cloud-init 22.4 takes -c/--config-file.
func cloudInitSchema(t *testing.T, doc []byte) (string, error) {
	t.Helper()
	bin := requireTool(t, "cloud-init")
	f := filepath.Join(t.TempDir(), "user-data.yaml")
	if err := os.WriteFile(f, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "schema", "--config-file", f)
	cmd.Dir = t.TempDir() // not the package dir: ./cloudinit would shadow the python package
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRenderPassesCloudInitSchema(t *testing.T) {
	for name, p := range variants(t) {
		t.Run(name, func(t *testing.T) {
			doc, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			out, err := cloudInitSchema(t, doc)
			if err != nil || !strings.Contains(out, "Valid cloud-config") {
				t.Fatalf("cloud-init schema rejects the %s document: %v\n%s", name, err, out)
			}
		})
	}
}

// The validator itself must be able to say no, or the test above proves nothing.
func TestCloudInitSchemaRejectsBrokenDocument(t *testing.T) {
	doc, err := Render(testParams(t))
	if err != nil {
		t.Fatal(err)
	}
	broken := bytes.Replace(doc, []byte("ssh_pwauth: false"), []byte("ssh_pwauth: [1, 2]"), 1)
	broken = bytes.Replace(broken, []byte("ssh_deletekeys: true"), []byte("ssh_deletekeys: {a: b}"), 1)
	out, err := cloudInitSchema(t, broken)
	if err == nil || strings.Contains(out, "Valid cloud-config") {
		t.Fatalf("cloud-init schema accepted a broken document:\n%s", out)
	}
}

func TestShellcheckEmbeddedScripts(t *testing.T) {
	bin := requireTool(t, "shellcheck")
	dir := extractScripts(t)
	names, err := fs.Glob(scriptsFS, "scripts/*.sh")
	if err != nil || len(names) < 4 {
		t.Fatalf("embedded scripts: %v %v", names, err)
	}
	for _, n := range names {
		t.Run(filepath.Base(n), func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, "--external-sources", "--shell=bash", "--severity=style", filepath.Base(n))
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s: %v\n%s", n, err, out)
			}
		})
	}
}

// extractScripts writes the embedded scripts (the exact bytes shipped) into a temp dir.
func extractScripts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	names, err := fs.Glob(scriptsFS, "scripts/*.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := fs.ReadFile(scriptsFS, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(n)), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRenderCompressesScriptsOnlyWhenNeeded(t *testing.T) {
	for name, p := range variants(t) {
		doc, err := Render(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(doc) > UserDataLimit {
			t.Errorf("%s: %d bytes, over the %d limit", name, len(doc), UserDataLimit)
		}
		var cc cloudConfig
		if err := yaml.Unmarshal(doc, &cc); err != nil {
			t.Fatal(err)
		}
		// A swarm node's drop-in takes the document over 32 KiB with readable scripts.
		compressed := name == "ext4_compressed_scripts" || name == "swarm_node"
		for _, f := range cc.WriteFiles {
			script := ""
			switch {
			case f.Path == HealthCheckPath:
				script = "docker-volume-health-check.sh"
			case strings.HasPrefix(f.Path, libDir+"/"):
				script = filepath.Base(f.Path)
			default:
				if f.Encoding != "" {
					t.Errorf("%s: %s is encoded %q; only scripts may be", name, f.Path, f.Encoding)
				}
				continue
			}
			want, _ := fs.ReadFile(scriptsFS, "scripts/"+script)
			got := f.Content
			if compressed {
				if f.Encoding != "gz+b64" {
					t.Fatalf("%s: %s encoding %q, want gz+b64", name, f.Path, f.Encoding)
				}
				raw, err := base64.StdEncoding.DecodeString(f.Content)
				if err != nil {
					t.Fatal(err)
				}
				zr, err := gzip.NewReader(bytes.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(zr)
				if err != nil {
					t.Fatal(err)
				}
				got = string(b)
			} else if f.Encoding != "" {
				t.Errorf("%s: %s is encoded %q although the document fits", name, f.Path, f.Encoding)
			}
			if got != string(want) {
				t.Errorf("%s: %s does not carry scripts/%s byte for byte", name, f.Path, script)
			}
		}
	}

	p := testParams(t)
	for range 200 {
		p.AuthorizedKeys = append(p.AuthorizedKeys, readTestdata(t, "test_host_rsa_key.pub"))
	}
	if _, err := Render(p); err == nil || !errors.Is(err, ErrInvalidParams) || !strings.Contains(err.Error(), "over Hetzner's limit") {
		t.Errorf("200 authorized keys: got %v, want a clear size error", err)
	}
}

// TestRenderedDocument reads the YAML back and checks what the document promises.
func TestRenderedDocument(t *testing.T) {
	p := testParams(t)
	doc, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(doc, []byte("#cloud-config\n")) {
		t.Fatalf("document does not start with #cloud-config:\n%.80s", doc)
	}
	// Hetzner accepts at most 32 KiB of user_data.
	if len(doc) > 32*1024 {
		t.Errorf("document is %d bytes; Hetzner's user_data limit is 32768", len(doc))
	}
	var cc cloudConfig
	if err := yaml.Unmarshal(doc, &cc); err != nil {
		t.Fatalf("rendered YAML does not parse: %v", err)
	}
	if cc.DisableRoot || cc.SSHPwauth || !cc.SSHDeleteKeys {
		t.Errorf("ssh settings: disable_root=%v ssh_pwauth=%v ssh_deletekeys=%v", cc.DisableRoot, cc.SSHPwauth, cc.SSHDeleteKeys)
	}
	if cc.SSHKeys["ed25519_private"] != strings.TrimSpace(p.HostKeys[0].Private)+"\n" ||
		cc.SSHKeys["ed25519_public"] != strings.TrimSpace(p.HostKeys[0].Public) {
		t.Errorf("host keys do not round-trip: %v", cc.SSHKeys)
	}
	if len(cc.SSHAuthorizedKeys) != 1 || cc.SSHAuthorizedKeys[0] != strings.TrimSpace(p.AuthorizedKeys[0]) {
		t.Errorf("authorized keys: %q", cc.SSHAuthorizedKeys)
	}
	if len(cc.Runcmd) != 1 || cc.Runcmd[0][0] != setupScriptPath {
		t.Errorf("runcmd: %q", cc.Runcmd)
	}
	if len(cc.Bootcmd) != 1 || !strings.Contains(strings.Join(cc.Bootcmd[0], " "), "systemctl mask --runtime docker.service docker.socket") {
		t.Errorf("bootcmd does not mask docker for the first boot: %q", cc.Bootcmd)
	}

	files := map[string]writeFile{}
	for _, f := range cc.WriteFiles {
		files[f.Path] = f
	}
	// Every script arrives byte for byte (so the YAML indentation is right).
	for path, name := range map[string]string{
		libDir + "/lib.sh":            "lib.sh",
		libDir + "/prepare-volume.sh": "prepare-volume.sh",
		setupScriptPath:               "dockbridge-setup.sh",
		HealthCheckPath:               "docker-volume-health-check.sh",
	} {
		want, _ := fs.ReadFile(scriptsFS, "scripts/"+name)
		if files[path].Content != string(want) {
			t.Errorf("write_files %s does not carry scripts/%s byte for byte", path, name)
		}
	}
	// Scripts stay readable in the document: literal blocks, not quoted one-liners.
	if n := bytes.Count(doc, []byte("content: |")); n != len(cc.WriteFiles) {
		t.Errorf("%d of %d write_files use a literal block; a tab or trailing space in a template forces quoting", n, len(cc.WriteFiles))
	}

	sshd := files["/etc/ssh/sshd_config.d/10-dockbridge.conf"].Content
	for _, want := range []string{"PermitRootLogin prohibit-password\n", "PasswordAuthentication no\n", "KbdInteractiveAuthentication no\n", "HostKey /etc/ssh/ssh_host_ed25519_key\n"} {
		if !strings.Contains(sshd, want) {
			t.Errorf("sshd drop-in lacks %q:\n%s", want, sshd)
		}
	}
	for _, unit := range []string{"docker.service", "docker.socket"} {
		c := files["/etc/systemd/system/"+unit+".d/10-dockbridge-volume.conf"].Content
		if !strings.Contains(c, "[Unit]\nRequiresMountsFor=/var/lib/docker\nAssertPathIsMountPoint=/var/lib/docker\n") {
			t.Errorf("%s drop-in: %q", unit, c)
		}
	}
	// The metadata firewall is in place whenever dockerd starts (ExecStartPre fails closed).
	if c := files["/etc/systemd/system/docker.service.d/20-dockbridge-metadata.conf"].Content; !strings.Contains(c,
		"[Service]\nExecStartPre=/bin/sh -c 'iptables -w -N DOCKER-USER 2>/dev/null; iptables -w -C DOCKER-USER -d 169.254.169.254/32 -j REJECT 2>/dev/null || iptables -w -I DOCKER-USER -d 169.254.169.254/32 -j REJECT'\n") {
		t.Errorf("docker.service metadata drop-in: %q", c)
	}
	if !strings.Contains(files["/etc/systemd/system/docker-volume-health.timer"].Content, "OnUnitActiveSec=5min") {
		t.Errorf("health timer does not run every 5 minutes")
	}

	var daemon map[string]any
	if err := json.Unmarshal([]byte(files["/etc/docker/daemon.json"].Content), &daemon); err != nil {
		t.Fatalf("daemon.json: %v", err)
	}
	if _, ok := daemon["hosts"]; ok {
		t.Errorf("daemon.json sets hosts (a TCP listener?): %v", daemon["hosts"])
	}
	if daemon["data-root"] != "/var/lib/docker" || daemon["live-restore"] != false || daemon["log-driver"] != "json-file" || daemon["storage-driver"] != "overlay2" {
		t.Errorf("daemon.json: %v", daemon)
	}
	if lo, _ := daemon["log-opts"].(map[string]any); lo["max-size"] != "10m" || lo["max-file"] != "3" {
		t.Errorf("daemon.json log-opts: %v", daemon["log-opts"])
	}

	env := files[configPath].Content
	for _, want := range []string{"DOCKBRIDGE_VOLUME_ID='4711'\n", "DOCKBRIDGE_DEVICE='/dev/disk/by-id/scsi-0HC_Volume_4711'\n",
		"DOCKBRIDGE_FS_TYPE='ext4'\n", "DOCKBRIDGE_MOUNTPOINT='/var/lib/docker'\n", "DOCKBRIDGE_DEVICE_TIMEOUT='300'\n",
		"DOCKBRIDGE_WARN_PCT='70'\n", "DOCKBRIDGE_CRIT_PCT='85'\n", "DOCKBRIDGE_INSTALL_DOCKER=yes\n",
		"DOCKBRIDGE_LABELS='env=test,managed-by=dockbridge'\n", "DOCKBRIDGE_EXPECTED_UUID=''\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("dockbridge.env lacks %q:\n%s", want, env)
		}
	}
}

// No script may ever force mkfs over an existing signature.
func TestScriptsNeverForceMkfs(t *testing.T) {
	force := regexp.MustCompile(`mkfs[.a-z0-9]*(\s[^\n]*)?\s-(-force|[a-zA-Z]*[fF])\b`)
	names, _ := fs.Glob(scriptsFS, "scripts/*.sh")
	for _, n := range names {
		b, _ := fs.ReadFile(scriptsFS, n)
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if m := force.FindString(line); m != "" {
				t.Errorf("%s:%d forces mkfs: %q", n, i+1, m)
			}
		}
	}
	if !force.MatchString("mkfs.ext4 -q -F /dev/x") || !force.MatchString("mkfs.xfs -f /dev/x") {
		t.Fatal("the mkfs -F detector does not detect")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(p *Params)
		want string // substring of the error
	}{
		{"zero volume id", func(p *Params) { p.Volume.ID = 0 }, "volume id 0"},
		{"negative volume id", func(p *Params) { p.Volume.ID = -5 }, "volume id -5"},
		{"ntfs", func(p *Params) { p.Volume.Filesystem = "ntfs" }, `filesystem "ntfs"`},
		{"relative device", func(p *Params) { p.Volume.Device = "sdb" }, `device "sdb"`},
		{"device with space", func(p *Params) { p.Volume.Device = "/dev/sd b" }, "volume device"},
		{"device with quote", func(p *Params) { p.Volume.Device = "/dev/sdb'; rm -rf /" }, "volume device"},
		{"mount point root", func(p *Params) { p.Volume.MountPoint = "/" }, "mount point"},
		{"mount point dotdot", func(p *Params) { p.Volume.MountPoint = "/var/../etc" }, "mount point"},
		{"bad uuid", func(p *Params) { p.Volume.ExpectedUUID = "not-a-uuid" }, "expected UUID"},
		{"timeout too short", func(p *Params) { p.Volume.DeviceTimeout = 500 * time.Millisecond }, "device timeout"},
		{"timeout fractional", func(p *Params) { p.Volume.DeviceTimeout = 1500 * time.Millisecond }, "device timeout"},
		{"warn equals crit", func(p *Params) { p.Health = Health{WarningPercent: 80, CriticalPercent: 80} }, "warning 80% must be below critical 80%"},
		{"warn above crit", func(p *Params) { p.Health = Health{WarningPercent: 90, CriticalPercent: 80} }, "must be below critical"},
		{"crit above 100", func(p *Params) { p.Health.CriticalPercent = 101 }, "critical threshold 101%"},
		{"no authorized key", func(p *Params) { p.AuthorizedKeys = nil }, "at least one SSH public key"},
		{"garbage authorized key", func(p *Params) { p.AuthorizedKeys = []string{"hello"} }, "authorized key 0"},
		{"authorized key bad base64", func(p *Params) { p.AuthorizedKeys = []string{"ssh-ed25519 !!!"} }, "not base64"},
		{"multi-line authorized key", func(p *Params) { p.AuthorizedKeys[0] = "ssh-ed25519 AAAA\nssh-rsa BBBB" }, "single line"},
		{"no host key", func(p *Params) { p.HostKeys = nil }, "ed25519 host key pair is required"},
		{"host key type unknown", func(p *Params) { p.HostKeys[0].Type = "dsa" }, `type "dsa"`},
		{"host private key not PEM", func(p *Params) { p.HostKeys[0].Private = "secret" }, "OPENSSH PRIVATE KEY"},
		{"host public key of another pair", func(p *Params) {
			b, _ := os.ReadFile("testdata/test_client_ed25519_key.pub")
			p.HostKeys[0].Public = string(b)
		}, "does not belong to the private key"},
		{"host key type mismatch", func(p *Params) { p.HostKeys[0].Type = "rsa" }, `want one of [ssh-rsa]`},
		{"bad log size", func(p *Params) { p.Docker.LogMaxSize = "10 MB" }, "log max size"},
		{"bad log files", func(p *Params) { p.Docker.LogMaxFile = -1 }, "log max file -1"},
		{"hosts in extra daemon config", func(p *Params) {
			p.Docker.ExtraDaemonConfig = map[string]any{"hosts": []string{"tcp://0.0.0.0:2376"}}
		}, `key "hosts"`},
		{"data-root in extra daemon config", func(p *Params) { p.Docker.ExtraDaemonConfig = map[string]any{"data-root": "/x"} }, `key "data-root"`},
		{"env name upper case", func(p *Params) { p.EnvName = "Prod" }, `env name "Prod"`},
		{"label with space", func(p *Params) { p.Labels = map[string]string{"a": "b c"} }, `label "a" value "b c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testParams(t)
			tt.edit(&p)
			_, err := Render(p)
			if err == nil {
				t.Fatalf("Render accepted bad params")
			}
			if !errors.Is(err, ErrInvalidParams) {
				t.Errorf("error does not wrap ErrInvalidParams: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}

	t.Run("valid with defaults", func(t *testing.T) {
		if err := testParams(t).Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("all problems at once", func(t *testing.T) {
		err := Params{Volume: Volume{Filesystem: "ntfs"}}.Validate()
		for _, want := range []string{"volume id 0", "ntfs", "authorized keys", "host keys"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not mention %q", err, want)
			}
		}
	})
}

func TestParseHealthLine(t *testing.T) {
	r, err := ParseHealthLine(`2025-03-04T05:06:07Z level=WARNING mount=/var/lib/docker used_pct=72 size_bytes=100 used_bytes=72 avail_bytes=28 warn_pct=70 crit_pct=85 msg="volume 72% full (warning at 70%)"` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := HealthRecord{Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), Level: HealthWarning, MountPoint: "/var/lib/docker",
		UsedPct: 72, SizeBytes: 100, UsedBytes: 72, AvailBytes: 28, WarnPct: 70, CritPct: 85, Message: "volume 72% full (warning at 70%)"}
	if r != want {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
	for _, bad := range []string{
		"",
		"garbage",
		`2025-03-04T05:06:07Z level=BAD mount=/x used_pct=1 size_bytes=1 used_bytes=1 avail_bytes=1 warn_pct=1 crit_pct=2 msg="x"`,
		`2025-03-04T05:06:07Z level=OK mount=/x used_pct=1 size_bytes=1 used_bytes=1 avail_bytes=1 warn_pct=1 msg="x"`,
		`2025-03-04T05:06:07Z level=OK mount=/x used_pct=1 size_bytes=1 used_bytes=1 avail_bytes=1 warn_pct=1 crit_pct=2`,
	} {
		if _, err := ParseHealthLine(bad); err == nil {
			t.Errorf("ParseHealthLine(%q) accepted it", bad)
		}
	}
}
