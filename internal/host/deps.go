package host

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/serverbin"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// Deps are what the lifecycle functions need; the CLI builds them, tests fill in fakes.
type Deps struct {
	API      API
	Paths    Paths
	Config   Config // resolved settings; the token goes only to the volume plugin on the server
	Contexts ContextStore
	// UseContext makes a context the current one (docker context use); nil: unsupported.
	UseContext func(name string) error
	Progress   *ui.Progress
	Dial       Dialer // default DialSSH
	SSHPort    int    // default 22
	SSHUser    string // default root
	// BootTimeout bounds the wait for SSH and for cloud-init (default 15m each).
	BootTimeout time.Duration
	// SSHPoll is the pause between SSH attempts while the server boots (default 2s).
	SSHPoll time.Duration
	// AttachWait bounds the wait for an existing server's data volume to attach, in case an
	// interrupted create is still attaching it (default 2m).
	AttachWait time.Duration
	// Stop bounds the steps of the clean stop before a server is deleted (zero: defaults).
	Stop  StopBounds
	Now   func() time.Time
	Stdin io.Reader
	// Interactive says a person can answer questions on Stdin.
	Interactive bool
	Stdout      io.Writer
	Stderr      io.Writer
	// WakeBinary is the docker-dockbridge that ssh runs to wake the server before it connects
	// (wake.go); "" sets up no wake.
	WakeBinary string
	// ServerBinary returns the server binary for an architecture (uname -m): the volume
	// plugin that up assembles on the server. Default: the one this CLI carries
	// (serverbin.Load); tests fake it.
	ServerBinary func(arch string) (*serverbin.Binary, error)

	newType  newServerType                // the server type of a new server, chosen once (servertype.go)
	binaries map[string]*serverbin.Binary // ServerBinary's answers, by Go architecture
	warnings []string                     // said on stderr, and returned in results
}

func (d *Deps) defaults() {
	if d.Dial == nil {
		d.Dial = DialSSH
	}
	if d.SSHPort == 0 {
		d.SSHPort = 22
	}
	if d.SSHUser == "" {
		d.SSHUser = "root"
	}
	if d.BootTimeout == 0 {
		d.BootTimeout = 15 * time.Minute
	}
	if d.SSHPoll == 0 {
		d.SSHPoll = 2 * time.Second
	}
	if d.AttachWait == 0 {
		d.AttachWait = 2 * time.Minute
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Progress == nil {
		d.Progress = ui.NewProgress(d.Stderr, false)
	}
	if d.Stdout == nil {
		d.Stdout = io.Discard
	}
	if d.Stderr == nil {
		d.Stderr = io.Discard
	}
}

func (d *Deps) sshAddr(ip string) string { return net.JoinHostPort(ip, fmt.Sprint(d.SSHPort)) }

// explainAPI adds what to do to errors every command can meet.
func (d *Deps) explainAPI(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, hetzner.ErrUnauthorized):
		src := d.Config.TokenSource
		if src == "" {
			src = "?"
		}
		return fmt.Errorf("the Hetzner Cloud API rejected the token (taken from %s): %w\nSet a valid read/write token with `export HCLOUD_TOKEN=...` or `docker dockbridge settings set token`", src, err)
	case errors.Is(err, hetzner.ErrForbidden):
		return fmt.Errorf("the token is read-only: %w\nCreate a read/write API token in the Hetzner Cloud console", err)
	}
	return err
}

// ServerRunningError is returned when a step after the server's creation failed: the
// server exists and is billed. The message says so, and how to go on or delete it.
type ServerRunningError struct {
	Env    string
	Server *hetzner.Server
	// More are the environment's other servers (nodes) that exist too.
	More []*hetzner.Server
	Err  error
}

func (e *ServerRunningError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v\n\n", e.Err)
	fmt.Fprintf(&b, "!! Server %s (id %d", e.Server.Name, e.Server.ID)
	if e.Server.IPv4 != "" {
		fmt.Fprintf(&b, ", %s", e.Server.IPv4)
	}
	fmt.Fprintf(&b, ") EXISTS AND IS BILLED while it exists.\n")
	for _, m := range e.More {
		fmt.Fprintf(&b, "!! So does server %s (id %d).\n", m.Name, m.ID)
	}
	fmt.Fprintf(&b, "!! Run `docker dockbridge up%s` again to continue with it, or delete it with `docker dockbridge down%s` (the data volume is kept).", nameFlag(e.Env), nameFlag(e.Env))
	return b.String()
}

func (e *ServerRunningError) Unwrap() error { return e.Err }

func nameFlag(env string) string {
	if env == DefaultEnv {
		return ""
	}
	return " --name " + env
}

// loadServerBinary is ServerBinary (default serverbin.Load) for arch, loaded once: the plugin
// and the idle agent take the same binary.
func (d *Deps) loadServerBinary(arch string) (*serverbin.Binary, error) {
	goarch, err := serverbin.GoArch(arch)
	if err != nil {
		return nil, err
	}
	if b := d.binaries[goarch]; b != nil {
		return b, nil
	}
	load := d.ServerBinary
	if load == nil {
		load = serverbin.Load
	}
	b, err := load(arch)
	if err != nil {
		return nil, err
	}
	if d.binaries == nil {
		d.binaries = map[string]*serverbin.Binary{}
	}
	d.binaries[goarch] = b
	return b, nil
}
