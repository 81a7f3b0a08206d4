package cloudinit

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"
)

//go:embed scripts/*.sh
var scriptsFS embed.FS

// HostKeyRotationScript is scripts/rotate-host-key.sh, which up runs over SSH (not part of the
// user-data) to replace the host key of the user-data with one the server makes.
var HostKeyRotationScript = func() string {
	b, err := scriptsFS.ReadFile("scripts/rotate-host-key.sh")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

//go:embed templates/*.tmpl
var templatesFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{"sh": shellQuote}).ParseFS(templatesFS, "templates/*.tmpl"))

// Where the document installs things on the server.
const (
	libDir          = "/usr/local/lib/dockbridge"
	configPath      = "/etc/dockbridge/dockbridge.env"
	setupScriptPath = libDir + "/dockbridge-setup.sh"
)

// cloudConfig is the #cloud-config document. Field order is output order.
type cloudConfig struct {
	DisableRoot       bool              `yaml:"disable_root"`
	SSHPwauth         bool              `yaml:"ssh_pwauth"`
	SSHDeleteKeys     bool              `yaml:"ssh_deletekeys"`
	SSHGenKeyTypes    []string          `yaml:"ssh_genkeytypes"`
	SSHKeys           map[string]string `yaml:"ssh_keys"`
	SSHAuthorizedKeys []string          `yaml:"ssh_authorized_keys"`
	Bootcmd           [][]string        `yaml:"bootcmd"`
	WriteFiles        []writeFile       `yaml:"write_files"`
	Runcmd            [][]string        `yaml:"runcmd"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
	Encoding    string `yaml:"encoding,omitempty"`
	Content     string `yaml:"content"`
}

// UserDataLimit is Hetzner's limit on a server's user_data. Render keeps the scripts
// readable (plain YAML literal blocks) when the document fits, and otherwise ships
// them gzip+base64 encoded, which cloud-init's write_files decodes.
const UserDataLimit = 32 * 1024

// templateData is what the templates see: the defaulted, validated Params plus derived values.
type templateData struct {
	Params
	LabelsText           string
	DeviceTimeoutSeconds int64
	HostKeyTypes         []string
	HealthCheckPath      string
	MetadataRule         string
	HealthLogPath        string
	SetupLogPath         string
}

// Render validates p, fills in defaults and returns the #cloud-config user-data.
// Validation errors wrap ErrInvalidParams and name every bad field.
func Render(p Params) ([]byte, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, err
	}
	data := newTemplateData(p)

	doc := cloudConfig{
		DisableRoot:   false,
		SSHPwauth:     false,
		SSHDeleteKeys: true,
		SSHKeys:       map[string]string{},
	}
	for _, hk := range p.HostKeys {
		doc.SSHGenKeyTypes = append(doc.SSHGenKeyTypes, hk.Type)
		doc.SSHKeys[hk.Type+"_private"] = strings.TrimSpace(hk.Private) + "\n"
		doc.SSHKeys[hk.Type+"_public"] = strings.TrimSpace(hk.Public)
	}
	slices.Sort(doc.SSHGenKeyTypes)
	for _, k := range p.AuthorizedKeys {
		doc.SSHAuthorizedKeys = append(doc.SSHAuthorizedKeys, strings.TrimSpace(k))
	}
	// bootcmd runs in cloud-init.service, before sysinit.target and so before docker.socket or
	// docker.service can start. Until setup has completed once, Docker is masked for this boot
	// (runtime mask, gone at reboot); dockbridge-setup.sh unmasks it when the volume is ready.
	doc.Bootcmd = [][]string{{"sh", "-c",
		"test -e " + CompleteMarkerPath + " || systemctl mask --runtime docker.service docker.socket"}}

	doc.Runcmd = [][]string{{setupScriptPath}}

	out, err := encodeDoc(p, doc, data, false)
	if err != nil {
		return nil, err
	}
	if len(out) > UserDataLimit {
		if out, err = encodeDoc(p, doc, data, true); err != nil {
			return nil, err
		}
	}
	if len(out) > UserDataLimit {
		return nil, fmt.Errorf("%w: the rendered user-data is %d bytes, over Hetzner's limit of %d even with compressed scripts: use fewer or shorter authorized keys and host keys",
			ErrInvalidParams, len(out), UserDataLimit)
	}
	return out, nil
}

func encodeDoc(p Params, doc cloudConfig, data templateData, compress bool) ([]byte, error) {
	files, err := renderFiles(data, compress)
	if err != nil {
		return nil, err
	}
	doc.WriteFiles = files

	var buf bytes.Buffer
	buf.WriteString("#cloud-config\n")
	buf.WriteString("# dockbridge Docker host, volume " + fmt.Sprint(p.Volume.ID) + ". Rendered by github.com/dockbridge/dockbridge/cloudinit; do not edit.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode cloud-config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode cloud-config: %w", err)
	}
	return buf.Bytes(), nil
}

func newTemplateData(p Params) templateData {
	d := templateData{
		Params:               p,
		DeviceTimeoutSeconds: int64(p.Volume.DeviceTimeout.Seconds()),
		HealthCheckPath:      HealthCheckPath,
		MetadataRule:         MetadataFirewallRule,
		HealthLogPath:        HealthLogPath,
		SetupLogPath:         SetupLogPath,
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		labels = append(labels, k+"="+p.Labels[k])
	}
	d.LabelsText = strings.Join(labels, ",")
	for _, hk := range p.HostKeys {
		d.HostKeyTypes = append(d.HostKeyTypes, hk.Type)
	}
	slices.Sort(d.HostKeyTypes)
	return d
}

// renderFiles returns the write_files entries, in a fixed order.
func renderFiles(d templateData, compress bool) ([]writeFile, error) {
	var files []writeFile
	add := func(path, perm, content string, isScript bool) error {
		f := writeFile{Path: path, Owner: "root:root", Permissions: perm, Content: content}
		if compress && isScript {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			if _, err := zw.Write([]byte(content)); err != nil {
				return fmt.Errorf("compress %s: %w", path, err)
			}
			if err := zw.Close(); err != nil {
				return fmt.Errorf("compress %s: %w", path, err)
			}
			f.Encoding = "gz+b64"
			f.Content = base64.StdEncoding.EncodeToString(b.Bytes())
		}
		files = append(files, f)
		return nil
	}
	tmpl := func(name string) (string, error) {
		var b bytes.Buffer
		if err := templates.ExecuteTemplate(&b, name, d); err != nil {
			return "", fmt.Errorf("render template %s: %w", name, err)
		}
		return b.String(), nil
	}
	script := func(name string) (string, error) {
		b, err := fs.ReadFile(scriptsFS, "scripts/"+name)
		if err != nil {
			return "", fmt.Errorf("read embedded script %s: %w", name, err)
		}
		return string(b), nil
	}

	type entry struct {
		path, perm string
		content    func() (string, error)
	}
	isScript := func(path string) bool { return strings.HasPrefix(path, libDir+"/") || path == HealthCheckPath }
	fromTmpl := func(n string) func() (string, error) { return func() (string, error) { return tmpl(n) } }
	fromScript := func(n string) func() (string, error) { return func() (string, error) { return script(n) } }
	daemon := func() (string, error) { return daemonJSON(d.Params) }
	dropIn := fromTmpl("docker-requires-volume.conf.tmpl")
	privateNet := entry{}
	if d.PrivateIP != "" {
		privateNet = entry{"/etc/systemd/system/docker.service.d/30-dockbridge-private-network.conf", "0644", fromTmpl("docker-private-network.conf.tmpl")}
	}
	for _, e := range []entry{
		{"/etc/ssh/sshd_config.d/10-dockbridge.conf", "0644", fromTmpl("sshd.conf.tmpl")},
		{configPath, "0644", fromTmpl("dockbridge.env.tmpl")},
		{libDir + "/lib.sh", "0644", fromScript("lib.sh")},
		{libDir + "/prepare-volume.sh", "0755", fromScript("prepare-volume.sh")},
		{setupScriptPath, "0755", fromScript("dockbridge-setup.sh")},
		{HealthCheckPath, "0755", fromScript("docker-volume-health-check.sh")},
		{"/etc/systemd/system/docker.service.d/10-dockbridge-volume.conf", "0644", dropIn},
		{"/etc/systemd/system/docker.socket.d/10-dockbridge-volume.conf", "0644", dropIn},
		// The metadata firewall, and (its second line) the laptop's shared folders (internal/
		// linkserver): their copies are shown at the laptop's paths before dockerd starts, so that a
		// container with a restart policy never starts on an empty directory; the script lives on
		// the data volume, written with the shares' registry. sshd.conf's MaxSessions 64: one
		// shared connection carries every docker command, compose's parallel ones and the laptop
		// agent's link, and OpenSSH's default of 10 sessions per connection refuses the eleventh.
		{"/etc/systemd/system/docker.service.d/20-dockbridge-metadata.conf", "0644", fromTmpl("docker-metadata-firewall.conf.tmpl")},
		privateNet,
		{"/etc/systemd/system/docker-volume-health.service", "0644", fromTmpl("docker-volume-health.service.tmpl")},
		{"/etc/systemd/system/docker-volume-health.timer", "0644", fromTmpl("docker-volume-health.timer.tmpl")},
		{"/etc/docker/daemon.json", "0644", daemon},
		{"/etc/logrotate.d/dockbridge", "0644", fromTmpl("logrotate.tmpl")},
	} {
		if e.path == "" {
			continue
		}
		c, err := e.content()
		if err != nil {
			return nil, err
		}
		if err := add(e.path, e.perm, c, isScript(e.path)); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// daemonJSON is /etc/docker/daemon.json: data-root on the volume, no TCP listener (the API is
// reached over SSH through the unix socket), bounded json-file logs, and live-restore OFF:
// stopping Docker (`systemctl stop docker`, and systemd's own shutdown on an ACPI request)
// must stop every container with its own stop timeout and then the volume plugins, before the
// volumes are unmounted. With live-restore dockerd exits and leaves containers and plugins
// running (its plugin manager keeps the setting it started with, so a reload cannot change it).
func daemonJSON(p Params) (string, error) {
	cfg := map[string]any{}
	maps.Copy(cfg, p.Docker.ExtraDaemonConfig)
	cfg["data-root"] = p.Volume.MountPoint
	cfg["live-restore"] = false
	cfg["log-driver"] = "json-file"
	cfg["log-opts"] = map[string]string{
		"max-size": p.Docker.LogMaxSize,
		"max-file": fmt.Sprint(p.Docker.LogMaxFile),
	}
	cfg["storage-driver"] = "overlay2"
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode daemon.json (extra daemon config must be JSON-encodable): %w", err)
	}
	return string(b) + "\n", nil
}

// shellQuote renders v as one single-quoted POSIX shell word.
func shellQuote(v any) string {
	return "'" + strings.ReplaceAll(fmt.Sprint(v), "'", `'\''`) + "'"
}
