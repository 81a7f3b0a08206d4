package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// Where things are on a dockbridge host. The binary and the backup directory are on the data
// volume, so a new server after `down`/`up` finds both (up installs only the timer again).
const (
	// DefaultBinary is where up and `backup schedule` put the server binary on the host.
	DefaultBinary = "/var/lib/docker/dockbridge/bin/dockbridge-server"
	// DefaultDir holds schedules.json, state.json, metrics.prom and the run lock.
	DefaultDir = "/var/lib/docker/dockbridge/backup"
	// DefaultSecretsDir holds each schedule's S3 credentials (see SecretFile).
	DefaultSecretsDir = "/etc/dockbridge/secrets"
	// DefaultMountPoint is the data volume's mount point.
	DefaultMountPoint = "/var/lib/docker"
)

// Main is `dockbridge-server backup ARGS` on a dockbridge host: what the timer, the health
// check and `docker dockbridge backup schedule` (over SSH) call. It returns the exit status.
//
//	run-due [--within DURATION] [--due-by TIME]   every backup that is due (the timer's job)
//	run ID [--drill]                              one schedule now, due or not
//	drill ID                                      a restore drill of the schedule's newest archives
//	health                                        WARNING/CRITICAL lines for the health check
//	status [-o json|prometheus]                   schedules, volumes, health
//	set                                           store the schedule (JSON on stdin), check its bucket
//	rm ID                                         remove a schedule and its credentials
//	install-timer                                 (re)write and start the timer (up calls it)
//
// --now TIME (RFC 3339) makes any of them act at another time: archives are named and the
// retention applied as then (drills of the retention, tests).
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := serve(ctx, args, os.Stdin, os.Stdout, os.Stderr); err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			return int(ex)
		}
		fmt.Fprintf(os.Stderr, "dockbridge-server backup: %v\n", err)
		return 1
	}
	return 0
}

type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func serve(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("say what: run-due, run ID, drill ID, health, status, set, rm ID, install-timer")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", envOr("DOCKBRIDGE_BACKUP_DIR", DefaultDir), "the backup directory")
	secrets := fs.String("secrets-dir", envOr("DOCKBRIDGE_SECRETS_DIR", DefaultSecretsDir), "the secrets directory")
	nowFlag := fs.String("now", "", "act as if it were this time (RFC 3339)")
	within := fs.Duration("within", 0, "run-due: stop after this long (a backup still going is stopped and recorded as failed)")
	dueBy := fs.String("due-by", "", "run-due: also run what falls due until this time (RFC 3339)")
	drill := fs.Bool("drill", false, "run: a restore drill after the backup")
	output := fs.String("o", "text", "status: text, json or prometheus")
	noCheck := fs.Bool("no-check", false, "set: do not open the bucket to check it")
	// Flags may come after the schedule id.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	clock := time.Now
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return fmt.Errorf("--now %q: %w", *nowFlag, err)
		}
		clock = func() time.Time { return t }
	}
	h := &Host{Dir: *dir, SecretsDir: *secrets, Log: stderr}
	needEngine := func() error {
		c, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return err
		}
		host, _ := os.Hostname()
		h.Engine = &volumeops.Engine{API: c, Context: "dockbridge-host:" + host, Progress: stderr}
		return nil
	}
	one := func() (string, error) {
		if len(pos) != 1 {
			return "", fmt.Errorf("%s takes one schedule id", cmd)
		}
		return pos[0], nil
	}
	switch cmd {
	case "run-due", "run", "drill":
		o := RunOptions{Now: clock}
		switch cmd {
		case "run-due":
			if len(pos) > 0 {
				return errors.New("run-due takes no schedule id (run ID runs one)")
			}
			if *within > 0 {
				o.Deadline = time.Now().Add(*within)
			}
			if *dueBy != "" {
				t, err := time.Parse(time.RFC3339, *dueBy)
				if err != nil {
					return fmt.Errorf("--due-by %q: %w", *dueBy, err)
				}
				o.DueBy = t
			}
		case "run", "drill":
			id, err := one()
			if err != nil {
				return err
			}
			o.Only, o.Drill, o.NoBackup = []string{id}, *drill || cmd == "drill", cmd == "drill"
		}
		if err := needEngine(); err != nil {
			return err
		}
		rep, err := h.RunDue(ctx, o)
		_ = json.NewEncoder(stdout).Encode(rep)
		if err != nil {
			return err
		}
		if ferr := rep.Failed(); ferr != nil {
			fmt.Fprintf(stderr, "%v\n", ferr)
			return exitError(1)
		}
		return nil
	case "health":
		c, st, err := h.load()
		if err != nil {
			fmt.Fprintf(stdout, "%s scheduled backups: %v\n", Warning, oneLine(err.Error()))
			return nil
		}
		for _, f := range Assess(c, st, clock()) {
			fmt.Fprintf(stdout, "%s %s\n", f.Level, oneLine(f.Message))
		}
		return nil
	case "status":
		c, st, err := h.load()
		if err != nil {
			return err
		}
		var vols []string
		if needEngine() == nil {
			if list, err := h.Engine.ListVolumes(ctx); err == nil {
				for _, v := range list {
					vols = append(vols, v.Name)
				}
			}
		}
		s := MakeStatus(c, st, clock(), vols, h.Running())
		switch *output {
		case "json":
			return json.NewEncoder(stdout).Encode(s)
		case "prometheus":
			m := volumeops.Metrics{Backups: s.Metrics()}
			return m.WritePrometheus(stdout)
		}
		return writeStatusText(stdout, s)
	case "set":
		var s Schedule
		if err := json.NewDecoder(io.LimitReader(stdin, 1<<20)).Decode(&s); err != nil {
			return fmt.Errorf("read the schedule (JSON on stdin): %w", err)
		}
		row, err := h.Set(ctx, s, clock(), !*noCheck)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(row)
	case "rm":
		id, err := one()
		if err != nil {
			return err
		}
		left, err := h.Remove(ctx, id)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(map[string]any{"removed": id, "remaining": left})
	case "install-timer":
		return h.InstallTimer(ctx)
	}
	return fmt.Errorf("unknown command %q: run-due, run ID, drill ID, health, status, set, rm ID, install-timer", cmd)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (h *Host) load() (Config, State, error) {
	c, err := h.LoadConfig()
	if err != nil {
		return c, State{}, err
	}
	st, err := h.LoadState()
	return c, st, err
}

// Set stores a schedule (a new one, or a new version of one with the same id, whose state
// stays), after checking that its bucket opens with its credentials (the secret file must be
// written first), and starts the timer. It returns the schedule with its next run.
func (h *Host) Set(ctx context.Context, s Schedule, now time.Time, check bool) (ScheduleStatus, error) {
	if s.Created.IsZero() {
		s.Created = now.UTC().Truncate(time.Second)
	}
	if err := s.Validate(); err != nil {
		return ScheduleStatus{}, err
	}
	if check {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, _, err := h.Store(cctx, s)
		cancel()
		if err != nil {
			return ScheduleStatus{}, fmt.Errorf("the server cannot open %s: %w", s.To, err)
		}
	}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return ScheduleStatus{}, err
	}
	unlock, err := lock(ctx, filepath.Join(h.Dir, configLock))
	if err != nil {
		return ScheduleStatus{}, err
	}
	defer unlock()
	c, err := h.LoadConfig()
	if err != nil {
		return ScheduleStatus{}, err
	}
	if i := slices.IndexFunc(c.Schedules, func(x Schedule) bool { return x.ID == s.ID }); i >= 0 {
		old := c.Schedules[i]
		if old.Every == s.Every && old.Cron == s.Cron {
			s.Created = old.Created // the same slots: the state's last slot still counts
		}
		c.Schedules[i] = s
	} else {
		c.Schedules = append(c.Schedules, s)
	}
	if err := writeJSON(filepath.Join(h.Dir, SchedulesFile), c); err != nil {
		return ScheduleStatus{}, err
	}
	if err := h.InstallTimer(ctx); err != nil {
		return ScheduleStatus{}, err
	}
	st, _ := h.LoadState()
	for _, row := range MakeStatus(c, st, now, nil, false).Schedules {
		if row.ID == s.ID {
			return row, nil
		}
	}
	return ScheduleStatus{}, errors.New("the schedule was stored but is not listed")
}

// Remove removes a schedule and its credentials; with none left the timer is stopped. It
// returns how many schedules are left.
func (h *Host) Remove(ctx context.Context, id string) (int, error) {
	if err := ValidateID(id); err != nil {
		return 0, err
	}
	unlock, err := lock(ctx, filepath.Join(h.Dir, configLock))
	if err != nil {
		return 0, err
	}
	defer unlock()
	c, err := h.LoadConfig()
	if err != nil {
		return 0, err
	}
	i := slices.IndexFunc(c.Schedules, func(x Schedule) bool { return x.ID == id })
	if i < 0 {
		var ids []string
		for _, s := range c.Schedules {
			ids = append(ids, s.ID)
		}
		return len(c.Schedules), fmt.Errorf("no schedule %q on this host (there are: %s)", id, strings.Join(ids, ", "))
	}
	c.Schedules = slices.Delete(c.Schedules, i, i+1)
	if err := writeJSON(filepath.Join(h.Dir, SchedulesFile), c); err != nil {
		return len(c.Schedules) + 1, err
	}
	if err := os.Remove(SecretFile(h.SecretsDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return len(c.Schedules), fmt.Errorf("remove the credentials of %s: %w", id, err)
	}
	if len(c.Schedules) == 0 {
		_ = exec.CommandContext(ctx, "systemctl", "disable", "--now", TimerUnit).Run()
	}
	return len(c.Schedules), nil
}

// InstallTimer writes the service and timer units for this binary and starts the timer.
func (h *Host) InstallTimer(ctx context.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	svc, tmr := HostUnits(bin, DefaultMountPoint)
	for name, text := range map[string]string{ServiceUnit: svc, TimerUnit: tmr} {
		path := filepath.Join(UnitDir, name)
		if old, err := os.ReadFile(path); err == nil && string(old) == text {
			continue
		}
		if err := writeFileAtomic(path, []byte(text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", "--now", TimerUnit}} {
		if out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// writeStatusText is `status` for a person on the host.
func writeStatusText(w io.Writer, s Status) error {
	if len(s.Schedules) == 0 {
		fmt.Fprintln(w, "no backup schedules on this host")
	}
	for _, sc := range s.Schedules {
		fmt.Fprintf(w, "%s: %s to %s, %s; next run %s\n", sc.ID, sc.What(), sc.To, sc.When, sc.NextRun.UTC().Format(time.RFC3339))
	}
	for _, v := range s.Volumes {
		last := "never"
		if !v.LastSuccess.IsZero() {
			last = v.LastSuccess.UTC().Format(time.RFC3339) + " " + v.LastArchive
		}
		fmt.Fprintf(w, "  %s (%s): %s, last backup %s, %d failures in a row\n", v.Volume, v.Schedule, v.Level, last, v.ConsecutiveFailures)
	}
	for _, f := range s.Findings {
		fmt.Fprintf(w, "%s %s\n", f.Level, f.Message)
	}
	return nil
}
