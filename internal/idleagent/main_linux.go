package idleagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/serverstop"
)

// runDueBackups runs every scheduled backup that is due, within the deadline, before the
// self-delete's stop: `dockbridge-server backup run-due --within` (internal/schedule), this same
// binary. Only what is due now: while the server is down its volumes do not change. A failure
// is returned with the end of its output (the agent writes it to the health log and deletes all
// the same).
func runDueBackups(ctx context.Context, deadline time.Time) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	within := time.Until(deadline).Round(time.Second)
	out, err := exec.CommandContext(ctx, self, "backup", "run-due", "--within", within.String()).CombinedOutput()
	if err != nil {
		tail := strings.TrimSpace(string(out))
		if len(tail) > 400 {
			tail = "..." + tail[len(tail)-400:]
		}
		return fmt.Errorf("backup run-due: %v: %s", err, tail)
	}
	return nil
}

// Main is `dockbridge-server idle run|status`.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: dockbridge-server idle run|status ["+OwnConnectionFlag+"]")
		return 2
	}
	switch args[0] {
	case "run":
		return run(stderr)
	case "status":
		own := false
		for _, a := range args[1:] {
			if a != OwnConnectionFlag {
				fmt.Fprintf(stderr, "dockbridge-server idle status: unknown argument %q (%s)\n", a, OwnConnectionFlag)
				return 2
			}
			own = true
		}
		return probe(own, stdout, stderr)
	}
	fmt.Fprintf(stderr, "dockbridge-server idle: unknown command %q (run|status)\n", args[0])
	return 2
}

func run(stderr io.Writer) int {
	logger := log.New(stderr, "", 0) // the journal stamps the lines
	cfg, err := LoadConfig(ConfigPath)
	if err != nil {
		logger.Print(err)
		return 1
	}
	sshd := &SSHD{}
	a := &Agent{
		Config:  cfg,
		Sources: []Source{sshd, &Logins{Log: logger}, &KeepAlive{}, &Forwards{}},
		Stop:    runServerStop,
		NewCloud: func(token string) (Cloud, error) {
			return hetzner.New(hetzner.Config{Endpoint: cfg.Endpoint, Token: token, Application: "dockbridge-idle-agent"})
		},
		RunDueBackups:    runDueBackups,
		CloseConnections: sshd.CloseIdle,
		Log:              logger,
		HealthLog:        cloudinit.HealthLogPath,
	}
	if sw := cfg.Swarm; sw != nil && sw.Role == RoleDecider {
		secret, err := readSecret(sw.SecretFile)
		if err != nil {
			logger.Print(err)
			return 1
		}
		a.Members = &HTTPMembers{Secret: secret, Port: sw.port()}
		a.Swarm = dockerSwarm{}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := a.Run(ctx); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

// runServerStop runs internal/serverstop's script with verb on this server, bounded as over
// SSH (the script bounds each of its steps; this bounds the whole).
func runServerStop(ctx context.Context, verb string) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", serverstop.Command(verb))
	out, err := cmd.Output()
	rep := serverstop.Parse(out)
	summary := strings.Join(strings.Fields(strings.ReplaceAll(string(out), "\n", "; ")), " ")
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 && strings.Contains(string(out), "result=") {
		err = nil // the report says what is left
	}
	return rep.OK, summary, err
}

// probe prints the agent's last state, the data volume's usage and the last health line (all
// that `docker dockbridge status` asks the server). Its own session is no activity; with own
// (OwnConnectionFlag: status and the wake, each on a connection of its own) it also marks this
// SSH connection as a probe's, on which nothing counts. A user's run over the shared
// connection marks nothing: the docker commands and forwards on it still count.
func probe(own bool, stdout, stderr io.Writer) int {
	if own {
		if err := MarkProbe("", ""); err != nil {
			fmt.Fprintf(stderr, "note: %v\n", err)
		}
	}
	out := ProbeReport{AgentRunning: exec.Command("systemctl", "is-active", "-q", UnitName).Run() == nil}
	if b, err := os.ReadFile(StatePath); err != nil {
		out.StateError = fmt.Sprintf("the idle agent has written no state (%v): `systemctl status %s`", err, UnitName)
	} else if err := json.Unmarshal(b, &out.State); err != nil {
		out.StateError = fmt.Sprintf("the idle agent's state %s: %v", StatePath, err)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(cloudinit.DefaultMountPoint, &fs); err == nil {
		out.DiskTotalBytes = int64(fs.Blocks) * int64(fs.Bsize)
		out.DiskUsedBytes = int64(fs.Blocks-fs.Bfree) * int64(fs.Bsize)
	}
	if b, err := os.ReadFile(cloudinit.HealthLogPath); err == nil {
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		out.HealthLastLine = lines[len(lines)-1]
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return 1
	}
	return 0
}

// dockerSwarm runs the decider's Swarm commands with the docker CLI on node 1 (a manager).
type dockerSwarm struct{}

func (dockerSwarm) Pause(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "node", "ls", "--format", "{{.ID}} {{.Availability}}").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("docker node ls: %v: %s", err, strings.TrimSpace(string(out)))
	}
	var paused []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		id, avail, _ := strings.Cut(strings.TrimSpace(line), " ")
		if id == "" || avail != "Active" {
			continue
		}
		if out, err := exec.CommandContext(ctx, "docker", "node", "update", "--availability", "pause", "--label-add", PausedLabel+"=idle", id).CombinedOutput(); err != nil {
			return paused, fmt.Errorf("pause node %s: %v: %s", id, err, strings.TrimSpace(string(out)))
		}
		paused = append(paused, id)
	}
	return paused, nil
}

func (dockerSwarm) Paused(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "node", "ls", "-q").Output()
	if err != nil {
		return nil, fmt.Errorf("docker node ls: %w", err)
	}
	var paused []string
	for _, id := range strings.Fields(string(out)) {
		label, err := exec.CommandContext(ctx, "docker", "node", "inspect", "-f", `{{index .Spec.Labels "`+PausedLabel+`"}}`, id).Output()
		if err != nil {
			return paused, fmt.Errorf("docker node inspect %s: %w", id, err)
		}
		if strings.TrimSpace(string(label)) != "" {
			paused = append(paused, id)
		}
	}
	return paused, nil
}

func (dockerSwarm) Unpause(ctx context.Context, ids []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var errs []error
	for _, id := range ids {
		if out, err := exec.CommandContext(ctx, "docker", "node", "update", "--availability", "active", "--label-rm", PausedLabel, id).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %v: %s", id, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}
