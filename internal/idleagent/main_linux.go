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
		fmt.Fprintln(stderr, "usage: dockbridge-server idle run|status")
		return 2
	}
	switch args[0] {
	case "run":
		return run(stderr)
	case "status":
		return probe(stdout, stderr)
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

// probe prints the agent's last state and marks this SSH connection as a probe (no activity).
func probe(stdout, stderr io.Writer) int {
	if err := MarkProbe("", ""); err != nil {
		fmt.Fprintf(stderr, "note: %v\n", err)
	}
	b, err := os.ReadFile(StatePath)
	if err != nil {
		fmt.Fprintf(stderr, "the idle agent has written no state (%v): `systemctl status %s`\n", err, UnitName)
		return 1
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		fmt.Fprintf(stderr, "the idle agent's state %s: %v\n", StatePath, err)
		return 1
	}
	running := exec.Command("systemctl", "is-active", "-q", UnitName).Run() == nil
	out := struct {
		State
		AgentRunning bool `json:"agent_running"`
	}{st, running}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return 1
	}
	return 0
}
