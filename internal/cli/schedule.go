package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/schedule"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// scheduleTarget is where a schedule runs: the server of a dockbridge environment (env set),
// or nowhere we manage (the local engine, any other context): then it is printed.
type scheduleTarget struct {
	env     string
	context string // the docker context in use
}

// scheduleEnv decides where `backup schedule` acts: the environment --name names, else the
// one whose context is the current docker context; "" for any other context.
func scheduleEnv(d deps, hf hostFlags, nameSet bool) (scheduleTarget, error) {
	cur := ""
	if d.cli != nil {
		cur = d.cli.CurrentContext()
	}
	if nameSet {
		if err := host.ValidateEnvName(hf.env); err != nil {
			return scheduleTarget{}, fmt.Errorf("--name: %w", err)
		}
		return scheduleTarget{env: hf.env, context: host.ContextName(hf.env)}, nil
	}
	if env, ok := envOfContext(cur); ok {
		return scheduleTarget{env: env, context: cur}, nil
	}
	return scheduleTarget{context: cur}, nil
}

// envOfContext is the environment whose docker context name is ctxName, if it is one this
// machine has (dockbridge, dockbridge-NAME).
func envOfContext(ctxName string) (string, bool) {
	env := ""
	switch {
	case ctxName == host.ContextName(host.DefaultEnv):
		env = host.DefaultEnv
	case strings.HasPrefix(ctxName, "dockbridge-"):
		env = strings.TrimPrefix(ctxName, "dockbridge-")
	default:
		return "", false
	}
	if host.ValidateEnvName(env) != nil {
		return "", false
	}
	paths, err := hostPaths()
	if err != nil {
		return "", false
	}
	if _, err := os.Stat(paths.SSHConfigFile(env)); err != nil {
		return "", false
	}
	return env, true
}

// scheduleResult is what `backup schedule` prints: the stored schedule, or the units to install.
type scheduleResult struct {
	Env      string                   `json:"env,omitempty"`
	Schedule *schedule.ScheduleStatus `json:"schedule,omitempty"`
	// Install is for an engine that is not a dockbridge host: systemd units or a cron line.
	Install string   `json:"install,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

func backupScheduleCmd(d deps) *cobra.Command {
	var (
		hf          hostFlags
		sf          storeFlags
		id          string
		to          string
		all         bool
		every       time.Duration
		cronExpr    string
		keep        backup.PrunePolicy
		compression string
		encryptTo   []string
		keepRunning bool
		drillEvery  time.Duration
	)
	cmd := spec[*scheduleResult]{
		Use:   "schedule [OPTIONS] VOLUME... | --all",
		Short: "Back volumes up on a schedule, from where they live: on a dockbridge host the server uploads to the bucket itself",
		Long: `Back volumes up on a schedule, from where they live.

On a dockbridge host (the current context is one, or --name says which), the schedule runs on
the server: a systemd timer there starts the backups that are due, and the archive goes from
the server straight to the S3-compatible bucket (Hetzner Object Storage is next to it), not
through this machine. The S3 credentials come from this machine's environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials) and are kept on the server
as carefully as the API token: a root-only 0600 file on the data volume, never in the
user-data, never logged. The schedule lives on the data volume too, so after down and up it
runs again on the new server, and a slot missed while the server was gone runs at once.

After each backup the retention (--keep-*: grandfather-father-son, as backup prune) is
applied to the schedule's own volumes; the newest verified archive is never deleted.
--verify-restore-every runs a restore drill of each volume's newest archive (backup verify
--restore) on the server. The host's health check turns WARNING when a volume's last backup is
older than twice the interval, CRITICAL after two failed runs in a row or a failed drill;
status, backup schedule ls and metrics show each volume's state.

For any other engine (the local one), it prints a systemd timer (--every) or a cron line
(--cron) to install, running this CLI there.

--every D runs at once and then every D; --cron takes five fields (minute hour day month
weekday) or @daily/@weekly/..., in UTC unless it starts with CRON_TZ=Zone. Containers are
handled as for backup, with offen's labels scoped to the schedule's id (--id).`,
		Example: `  docker dockbridge backup schedule db_data --to s3://my-bucket/host1 --every 24h
  docker dockbridge backup schedule --all --to s3://my-bucket/host1 --cron '0 3 * * *' --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --verify-restore-every 168h
  docker dockbridge backup schedule ls
  docker dockbridge backup schedule run db_data
  docker dockbridge backup schedule rm db_data`,
		Args:     cobra.ArbitraryArgs,
		Complete: completeVolumes(d, true),
		Formats:  tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			hf.add(cmd)
			f.StringVar(&id, "id", "", "the schedule's name (default: the volume's name, or all for --all)")
			f.StringVar(&to, "to", "", "destination: s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO); a directory only for an engine that is not a dockbridge host")
			f.BoolVar(&all, "all", false, "back up every volume of the engine (also those made later)")
			f.DurationVar(&every, "every", 0, "run at once, then every DURATION (e.g. 24h; at least 1m)")
			f.StringVar(&cronExpr, "cron", "", "run at the times of a cron expression (e.g. '0 3 * * *', UTC unless CRON_TZ=Zone ...)")
			retentionFlags(f, &keep, backup.PrunePolicy{KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 6})
			f.StringVar(&compression, "compression", "zstd", "zstd, gzip or none")
			f.StringArrayVar(&encryptTo, "encrypt-to", nil, "encrypt with age for this recipient (age1...); the key never goes to the server")
			f.BoolVar(&keepRunning, "keep-running", false, "do not stop the containers using the volumes (the copy may be inconsistent)")
			f.DurationVar(&drillEvery, "verify-restore-every", 0, "run a restore drill of each volume's newest archive after a backup when the last drill is this old (e.g. 168h)")
			sf.add(f, true)
		},
		Run: func(ctx context.Context, cmd *cobra.Command, args []string) (*scheduleResult, error) {
			target, err := scheduleEnv(d, hf, cmd.Flags().Changed("name"))
			if err != nil {
				return nil, err
			}
			if to == "" {
				to = os.Getenv("DOCKBRIDGE_BACKUP_TO")
			}
			if id == "" && (all || len(args) > 0) {
				if id, err = schedule.DefaultID(args, all); err != nil {
					return nil, err
				}
			}
			s := schedule.Schedule{ID: id, Volumes: args, All: all, To: to, Every: schedule.Duration(every), Cron: cronExpr,
				Retention: schedule.RetentionOf(keep), EncryptTo: encryptTo, KeepRunning: keepRunning,
				VerifyRestoreEvery: schedule.Duration(drillEvery), Context: target.context}
			if compression != "zstd" {
				s.Compression = compression
			}
			if strings.HasPrefix(to, "s3://") {
				cfg, err := sf.config(to)
				if err != nil {
					return nil, err
				}
				s.S3.Endpoint, s.S3.Region = backup.EndpointFromEnv(sf.endpoint, sf.region)
				s.S3.PartSize = cfg.PartSize
			}
			for _, r := range encryptTo {
				if _, err := backup.ParseRecipients(r); err != nil {
					return nil, err
				}
			}
			if target.env == "" {
				if err := s.ValidateLocal(); err != nil {
					return nil, err
				}
				return &scheduleResult{Install: schedule.LocalInstructions(s, dockerCommand(target.context))}, nil
			}
			if err := s.Validate(); err != nil {
				return nil, err
			}
			ak, sk, tok, err := backup.EnvCredentials()
			if err != nil {
				return nil, err
			}
			res := &scheduleResult{Env: target.env}
			if tok != "" {
				res.Notes = append(res.Notes, "warning: these are temporary credentials (a session token): the schedule fails once they expire")
			}
			hd, err := d.host(hf, host.Flags{}, false)
			if err != nil {
				return nil, err
			}
			row, notes, err := host.ScheduleBackups(ctx, hd, target.env, s, schedule.Credentials{AccessKey: ak, SecretKey: sk, SessionToken: tok}, pluginDir(""))
			res.Notes = append(res.Notes, notes...)
			if err != nil {
				return nil, err
			}
			res.Schedule = row
			return res, nil
		},
		Print: func(w io.Writer, _ string, r *scheduleResult) error {
			if r.Install != "" {
				_, err := io.WriteString(w, r.Install)
				return err
			}
			s := r.Schedule
			fmt.Fprintf(w, "Schedule %s on the server of environment %s: %s to %s, %s; keep %s\n", s.ID, r.Env, s.What(), s.To, s.When, s.Retention.Policy())
			if s.VerifyRestoreEvery > 0 {
				fmt.Fprintf(w, "Restore drill every %s.\n", s.VerifyRestoreEvery)
			}
			fmt.Fprintf(w, "The server uploads the archives to the bucket itself. Next run: %s (%s).\n", s.NextRun.Local().Format(time.RFC3339), until(time.Now(), s.NextRun))
			for _, n := range r.Notes {
				fmt.Fprintf(w, "%s\n", n)
			}
			return nil
		},
	}.build(d.out)
	cmd.AddCommand(backupScheduleLsCmd(d), backupScheduleRmCmd(d), backupScheduleRunCmd(d))
	cmd.SetHelpFunc(bothUsages(cmd))
	return cmd
}

// dockerCommand is how a timer or cron job on this machine calls docker for context ctx.
func dockerCommand(ctx string) string {
	bin := "docker"
	if p, err := exec.LookPath("docker"); err == nil && filepath.IsAbs(p) {
		bin = p
	}
	if ctx != "" && ctx != "default" {
		bin += " --context " + ctx
	}
	return bin
}

// until says how far t is from now.
func until(now, t time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "due now: the timer looks every minute"
	}
	return "in " + d.Round(time.Second).String()
}

// onSchedules is the Run of a schedule command that needs a dockbridge host.
func onSchedules[R any](d deps, hf *hostFlags, fn func(context.Context, *host.Deps, string, []string) (R, error)) func(context.Context, *cobra.Command, []string) (R, error) {
	return func(ctx context.Context, cmd *cobra.Command, args []string) (R, error) {
		var zero R
		target, err := scheduleEnv(d, *hf, cmd.Flags().Changed("name"))
		if err != nil {
			return zero, err
		}
		if target.env == "" {
			return zero, fmt.Errorf("the current context %q is not a dockbridge host: its schedules are the systemd timers or cron lines `docker dockbridge backup schedule` printed, installed on this machine (give --name ENV for an environment's server)", target.context)
		}
		hd, err := d.host(*hf, host.Flags{}, false)
		if err != nil {
			return zero, err
		}
		return fn(ctx, hd, target.env, args)
	}
}

func backupScheduleLsCmd(d deps) *cobra.Command {
	var hf hostFlags
	return spec[*schedule.Status]{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List the backup schedules on the server, and every volume's backup state",
		Formats: tableOrJSON,
		Flags:   func(cmd *cobra.Command, _ *pflag.FlagSet) { hf.add(cmd) },
		Run: onSchedules(d, &hf, func(ctx context.Context, hd *host.Deps, env string, _ []string) (*schedule.Status, error) {
			st, err := host.BackupStatus(ctx, hd, env)
			if err == nil && st == nil {
				st = &schedule.Status{Level: schedule.OK}
			}
			return st, err
		}),
		Print: func(w io.Writer, _ string, st *schedule.Status) error { return printSchedules(w, st) },
	}.build(d.out)
}

func printSchedules(w io.Writer, st *schedule.Status) error {
	if len(st.Schedules) == 0 {
		fmt.Fprintln(w, "No backup schedules on this server (docker dockbridge backup schedule --help).")
	} else {
		var rows [][]string
		for _, s := range st.Schedules {
			last := "-"
			if !s.LastRunEnd.IsZero() {
				last = s.LastRunEnd.Local().Format(time.RFC3339)
			}
			rows = append(rows, []string{s.ID, s.What(), s.To, s.When, s.Retention.Policy().String(), last, s.NextRun.Local().Format(time.RFC3339)})
		}
		if err := ui.Table(w, []string{"schedule", "volumes", "to", "when", "keep", "last run", "next run"}, rows); err != nil {
			return err
		}
	}
	if len(st.Volumes) > 0 {
		fmt.Fprintln(w)
		var rows [][]string
		for _, v := range st.Volumes {
			rows = append(rows, volumeBackupRow(st.Now, v))
		}
		if err := ui.Table(w, []string{"volume", "schedule", "health", "last backup", "size", "took", "failures", "restore verified"}, rows); err != nil {
			return err
		}
	}
	for _, v := range st.Unscheduled {
		fmt.Fprintf(w, "%s: no backup schedule\n", v)
	}
	for _, f := range st.Findings {
		fmt.Fprintf(w, "%s %s\n", f.Level, f.Message)
	}
	return nil
}

func volumeBackupRow(now time.Time, v schedule.VolumeStatus) []string {
	last, size, took := "never", "-", "-"
	if !v.LastSuccess.IsZero() {
		last = fmt.Sprintf("%s ago (%s)", ago(now, v.LastSuccess), v.LastArchive)
		size = humanBytes(v.LastSizeBytes)
		took = fmt.Sprintf("%.1fs", v.LastDurationSeconds)
	}
	failures := fmt.Sprint(v.ConsecutiveFailures)
	if v.ConsecutiveFailures > 0 {
		failures += ": " + v.LastError
	}
	drill := "never"
	if !v.LastRestoreVerified.IsZero() {
		drill = ago(now, v.LastRestoreVerified) + " ago"
	}
	if v.DrillError != "" {
		drill = "FAILED: " + v.DrillError
	}
	return []string{v.Volume, v.Schedule, v.Level, last, size, took, failures, drill}
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

type scheduleRemoved struct {
	Removed   string `json:"removed"`
	Remaining int    `json:"remaining"`
}

func backupScheduleRmCmd(d deps) *cobra.Command {
	var hf hostFlags
	return spec[*scheduleRemoved]{
		Use:     "rm [OPTIONS] SCHEDULE",
		Aliases: []string{"remove"},
		Short:   "Remove a backup schedule and its S3 credentials from the server (the archives stay)",
		Args:    cli.ExactArgs(1),
		Formats: tableOrJSON,
		Flags:   func(cmd *cobra.Command, _ *pflag.FlagSet) { hf.add(cmd) },
		Run: onSchedules(d, &hf, func(ctx context.Context, hd *host.Deps, env string, args []string) (*scheduleRemoved, error) {
			n, err := host.RemoveBackupSchedule(ctx, hd, env, args[0])
			if err != nil {
				return nil, err
			}
			return &scheduleRemoved{Removed: args[0], Remaining: n}, nil
		}),
		Print: func(w io.Writer, _ string, r *scheduleRemoved) error {
			_, err := fmt.Fprintf(w, "Removed schedule %s (%s left; its archives stay in the bucket)\n", r.Removed, plural(r.Remaining, "schedule", "schedules"))
			return err
		},
	}.build(d.out)
}

func backupScheduleRunCmd(d deps) *cobra.Command {
	var (
		hf    hostFlags
		drill bool
	)
	return spec[*schedule.RunReport]{
		Use:   "run [OPTIONS] SCHEDULE",
		Short: "Run a backup schedule on the server now, due or not (and wait for it)",
		Args:  cli.ExactArgs(1),
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			hf.add(cmd)
			f.BoolVar(&drill, "drill", false, "also run a restore drill of each volume's newest archive")
		},
		Formats: tableOrJSON,
		Run: onSchedules(d, &hf, func(ctx context.Context, hd *host.Deps, env string, args []string) (*schedule.RunReport, error) {
			rep, err := host.RunBackupSchedule(ctx, hd, env, args[0], drill)
			if err != nil {
				return nil, err
			}
			if ferr := rep.Failed(); ferr != nil {
				return rep, afterOutput(ferr)
			}
			return rep, nil
		}),
		Print: func(w io.Writer, _ string, rep *schedule.RunReport) error {
			if rep.Skipped != "" {
				_, err := fmt.Fprintln(w, rep.Skipped)
				return err
			}
			var rows [][]string
			for _, run := range rep.Runs {
				for _, v := range run.Volumes {
					state := "ok"
					if v.Error != "" {
						state = "FAILED: " + v.Error
					}
					rows = append(rows, []string{run.Schedule, v.Volume, v.Archive, humanBytes(v.Size), fmt.Sprintf("%.1fs", v.Seconds), state})
				}
				for _, dr := range run.Drills {
					state := "restore drill ok: " + dr.Found.String()
					if dr.Error != "" {
						state = "restore drill FAILED: " + dr.Error
					}
					rows = append(rows, []string{run.Schedule, dr.Volume, dr.Archive, "", fmt.Sprintf("%.1fs", dr.Seconds), state})
				}
				if len(run.Deleted) > 0 {
					rows = append(rows, []string{run.Schedule, "", fmt.Sprintf("retention deleted %d", len(run.Deleted)), "", "", strings.Join(run.Deleted, " ")})
				}
			}
			if len(rows) == 0 {
				return errors.New("the server ran nothing")
			}
			return ui.Table(w, []string{"schedule", "volume", "archive", "size", "took", "result"}, rows)
		},
	}.build(d.out)
}
