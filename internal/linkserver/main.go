package linkserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockbridge/dockbridge/internal/link"
	"github.com/dockbridge/dockbridge/internal/mount"
)

// Server-side files of the bind check.
const (
	AuthzSocket     = "/run/docker/plugins/" + AuthzPluginName + ".sock"
	authzSocketUnit = "/etc/systemd/system/" + AuthzPluginName + ".socket"
	authzUnit       = "/etc/systemd/system/" + AuthzPluginName + ".service"
	daemonJSONPath  = "/etc/docker/daemon.json"
	// SharesDropIn runs the shares' boot script before dockerd (the user-data writes the same
	// file on every new server: cloudinit).
	SharesDropIn = "/etc/systemd/system/docker.service.d/30-dockbridge-shares.conf"
)

// SharesDropInContent is the drop-in's text, for a server whose user-data has no such line (made
// by an older docker-dockbridge): the user-data's docker.service drop-in runs the same script.
const SharesDropInContent = "[Service]\nExecStartPre=-/bin/sh " + Root + "/boot.sh\n"

// GoingDownSignal is what the idle agent sends a link session before it closes the laptop's
// connection to stop the server (Server.GoingDown).
const GoingDownSignal = syscall.SIGUSR1

// Main is `dockbridge-server local session|authz|install`.
func Main(args []string, stdout, stderr io.Writer) int {
	logger := log.New(stderr, "", 0)
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: dockbridge-server local session|authz|install")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	shares := &Shares{Root: Root, Mounter: mount.New()}
	switch args[0] {
	case "session":
		// Mutagen's staging and caches beside the copies, on the data volume.
		_ = os.Setenv("MUTAGEN_DATA_DIRECTORY", shares.MutagenDir())
		logger.SetPrefix("dockbridge-server local session: ")
		goingDown := make(chan os.Signal, 1)
		signal.Notify(goingDown, GoingDownSignal)
		s := &Server{Shares: shares, DockerSocket: DockerSocket, IdleState: IdleStateFile, Forwards: link.ForwardsFile, Log: logger,
			InUse: func(ctx context.Context, p string) []string { return containersUsing(ctx, DockerSocket, p) }, GoingDown: goingDown}
		if err := s.Serve(ctx, stdio{}); err != nil {
			logger.Print(err)
			return 1
		}
		return 0
	case "authz":
		return serveAuthz(ctx, shares, logger)
	case "install":
		out, err := Install(ctx, shares)
		fmt.Fprintln(stdout, out)
		if err != nil {
			logger.Print(err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "dockbridge-server local: unknown command %q (session|authz|install)\n", args[0])
	return 2
}

type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error {
	os.Stdin.Close()
	return os.Stdout.Close()
}

// serveAuthz serves the bind check on the socket systemd passes (LISTEN_FDS), else on AuthzSocket.
func serveAuthz(ctx context.Context, shares *Shares, logger *log.Logger) int {
	var ln net.Listener
	var err error
	if os.Getenv("LISTEN_FDS") == "1" && os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		ln, err = net.FileListener(os.NewFile(3, "systemd socket"))
	} else {
		_ = os.MkdirAll(filepath.Dir(AuthzSocket), 0o755)
		_ = os.Remove(AuthzSocket)
		ln, err = net.Listen("unix", AuthzSocket)
	}
	if err != nil {
		logger.Print(err)
		return 1
	}
	srv := &http.Server{Handler: &AuthzPlugin{Shares: shares}, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Print(err)
		return 1
	}
	return 0
}

const authzSocketUnitText = `[Unit]
Description=dockbridge bind check (a Docker authorization plugin): its socket
Before=docker.service

[Socket]
ListenStream=` + AuthzSocket + `
SocketMode=0600

[Install]
WantedBy=sockets.target
`

const authzUnitText = `[Unit]
Description=dockbridge bind check: refuses bind mounts of laptop folders that are not shared (docker dockbridge share)
Requires=` + AuthzPluginName + `.socket

[Service]
ExecStart=` + link.ServerBinary + ` local authz
Restart=always
`

// Install sets the server up for the laptop agent (run by `docker dockbridge up` over SSH, every
// time; idempotent): the bind check's socket and service, its name in daemon.json's
// authorization-plugins (dockerd reloads it), the drop-in that makes the shares' mounts before
// dockerd starts, and those mounts now.
func Install(ctx context.Context, shares *Shares) (string, error) {
	var notes []string
	changedUnits := false
	for _, f := range []struct{ path, text string }{
		{authzSocketUnit, authzSocketUnitText}, {authzUnit, authzUnitText}, {SharesDropIn, SharesDropInContent},
	} {
		if f.path == SharesDropIn && sharesDropInPresent() {
			continue // the user-data's drop-in runs it (cloudinit)
		}
		if b, err := os.ReadFile(f.path); err == nil && string(b) == f.text {
			continue
		}
		if err := writeAtomic(f.path, []byte(f.text), 0o644); err != nil {
			return "", err
		}
		changedUnits = true
	}
	if changedUnits {
		if out, err := exec.CommandContext(ctx, "systemctl", "daemon-reload").CombinedOutput(); err != nil {
			return "", fmt.Errorf("systemctl daemon-reload: %v: %s", err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "systemctl", "enable", "--now", AuthzPluginName+".socket").CombinedOutput(); err != nil {
		return "", fmt.Errorf("enable the bind check's socket: %v: %s", err, out)
	}
	// A new binary or unit: the running check (if any) is replaced at its next request.
	_ = exec.CommandContext(ctx, "systemctl", "try-restart", AuthzPluginName+".service").Run()

	changed, err := addAuthzPlugin(daemonJSONPath)
	if err != nil {
		return "", err
	}
	if changed {
		notes = append(notes, "bind check added to "+daemonJSONPath)
	}
	if EngineRunning() {
		if changed {
			if out, err := exec.CommandContext(ctx, "systemctl", "reload", "docker.service").CombinedOutput(); err != nil {
				return "", fmt.Errorf("reload Docker (for its authorization plugin): %v: %s", err, out)
			}
		}
		if err := waitAuthzActive(ctx, DockerSocket); err != nil {
			return "", err
		}
	}
	if err := shares.ShowAll(); err != nil {
		return "", fmt.Errorf("show the shared folders: %w", err)
	}
	reg, _ := shares.Load()
	notes = append(notes, fmt.Sprintf("bind check on; %d shared folder(s)", len(reg.Shares)))
	return strings.Join(notes, "; "), nil
}

// addAuthzPlugin names the bind check in daemon.json's authorization-plugins, keeping every
// other key; it reports whether the file changed.
func addAuthzPlugin(path string) (bool, error) {
	cfg := map[string]any{}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return false, fmt.Errorf("%s: %w", path, err)
		}
	}
	var plugins []string
	if v, ok := cfg["authorization-plugins"].([]any); ok {
		for _, p := range v {
			if s, ok := p.(string); ok {
				plugins = append(plugins, s)
			}
		}
	}
	if slices.Contains(plugins, AuthzPluginName) {
		return false, nil
	}
	cfg["authorization-plugins"] = append(plugins, AuthzPluginName)
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return false, err
	}
	return true, writeAtomic(path, append(out, '\n'), 0o644)
}

// waitAuthzActive waits until the engine asks the bind check (its probe is refused with
// ProbeAnswer). Docker's /info does not list a plugin added by a reload (Engine 20.10), so the
// probe is the proof.
func waitAuthzActive(ctx context.Context, socket string) error {
	e := newEngine(socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://docker/version?"+ProbeQuery, nil)
		resp, err := e.hc.Do(req)
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		if err == nil && strings.Contains(string(body), ProbeAnswer) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("docker does not ask the bind check after a reload (GET /version answered %q, %v)", strings.TrimSpace(string(body)), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containersUsing names the running containers that bind p or something in it.
func containersUsing(ctx context.Context, socket, p string) []string {
	e := newEngine(socket)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/json", nil)
	resp, err := e.hc.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var cs []struct {
		Names  []string `json:"Names"`
		Mounts []struct {
			Type   string `json:"Type"`
			Source string `json:"Source"`
		} `json:"Mounts"`
	}
	if json.NewDecoder(resp.Body).Decode(&cs) != nil {
		return nil
	}
	var out []string
	for _, c := range cs {
		for _, m := range c.Mounts {
			if m.Type == "bind" && (m.Source == p || strings.HasPrefix(m.Source, p+"/")) && len(c.Names) > 0 {
				out = append(out, strings.TrimPrefix(c.Names[0], "/"))
				break
			}
		}
	}
	return out
}

// sharesDropInPresent reports whether a docker.service drop-in runs the shares' boot script.
func sharesDropInPresent() bool {
	ents, _ := os.ReadDir(filepath.Dir(SharesDropIn))
	for _, e := range ents {
		if e.Name() == filepath.Base(SharesDropIn) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(SharesDropIn), e.Name())); err == nil && strings.Contains(string(b), Root+"/boot.sh") {
			return true
		}
	}
	return false
}
