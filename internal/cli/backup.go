package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"filippo.io/age"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// backupCmd is `docker dockbridge backup VOLUME... | --all` and `backup ls|prune|verify`.
func backupCmd(d deps) *cobra.Command {
	var (
		sf          storeFlags
		to          string
		all         bool
		compression string
		encryptTo   string
		keepRunning bool
		label       string
	)
	cmd := spec[[]volumeops.BackupResult]{
		Use:   "backup [OPTIONS] VOLUME... | --all",
		Short: "Back up volumes to a directory or an S3-compatible bucket",
		Long: `Back up volumes to a directory or an S3-compatible bucket.

The running containers that use the volumes are stopped first and started again afterwards, in
reverse order, also when the backup fails or is interrupted (--keep-running skips that: faster,
but the copy may be inconsistent). Each volume becomes NAME-TIME.tar.zst with a .sha256 next to
it; the first entry of the tar is dockbridge-backup.json and the files follow under data/, so
` + "`sha256sum -c`, `zstd -d` and `tar -x`" + ` restore it without this tool.`,
		Example: `  docker dockbridge backup db_data --to /srv/backups
  docker dockbridge backup --all --to s3://my-bucket/host1 --encrypt-to age1...`,
		Args:     cobra.ArbitraryArgs,
		Complete: completeVolumes(d, true),
		Formats:  tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&to, "to", "", "destination: a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO)")
			f.BoolVar(&all, "all", false, "back up every volume of the context")
			f.StringVar(&compression, "compression", "zstd", "zstd, gzip or none")
			f.StringVar(&encryptTo, "encrypt-to", "", "encrypt with age for this recipient (age1...) or recipients file")
			f.BoolVar(&keepRunning, "keep-running", false, "do not stop the containers using the volumes (the copy may be inconsistent)")
			f.StringVar(&label, "label", "", "offen's labels: also stop the containers labelled docker-volume-backup.stop-during-backup=NAME and run the commands of those with exec-label=NAME")
			sf.add(f, true)
			completeFlag(cmd, "to", completeDirs)
			completeFlag(cmd, "encrypt-to", completeFiles)
		},
		Run: func(ctx context.Context, cmd *cobra.Command, args []string) ([]volumeops.BackupResult, error) {
			c, err := backup.ParseCompression(compression)
			if err != nil {
				return nil, err
			}
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			if err := volumesExist(ctx, cmd, e, args); err != nil {
				return nil, err
			}
			if to == "" {
				to = os.Getenv("DOCKBRIDGE_BACKUP_TO")
			}
			if to == "" {
				return nil, errors.New("where to? give --to DIR or --to s3://bucket/prefix (or set DOCKBRIDGE_BACKUP_TO)")
			}
			var rcpt []age.Recipient
			if encryptTo != "" {
				if rcpt, err = backup.ParseRecipients(encryptTo); err != nil {
					return nil, err
				}
			}
			store, err := sf.destination(ctx, to, d.errOut)
			if err != nil {
				return nil, err
			}
			res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: args, All: all, Store: store,
				Compression: c, Recipients: rcpt, KeepRunning: keepRunning, Label: label})
			for _, r := range res {
				for _, w := range r.Warnings {
					fmt.Fprintf(d.errOut, "warning: %s: %s\n", r.Volume, w)
				}
			}
			return res, afterOutput(err)
		},
		Print: func(w io.Writer, _ string, res []volumeops.BackupResult) error {
			if len(res) == 0 {
				return nil
			}
			var rows [][]string
			for _, r := range res {
				rows = append(rows, []string{r.Volume, r.Archive.Name, humanBytes(r.Archive.Size),
					fmt.Sprint(r.Metadata.Files), humanBytes(r.Metadata.Bytes)})
			}
			return ui.Table(w, []string{"volume", "archive", "size", "files", "data"}, rows)
		},
	}.build(d.out)
	cmd.AddCommand(backupLsCmd(d), backupPruneCmd(d), backupVerifyCmd(d), backupScheduleCmd(d))
	cmd.SetHelpFunc(bothUsages(cmd))
	return cmd
}

// bothUsages is the help of a command that takes arguments and also has commands (backup):
// Docker's usage line for it would be only `backup [OPTIONS] COMMAND`, which hides
// `VOLUME... | --all`; it shows both lines.
func bothUsages(cmd *cobra.Command) func(*cobra.Command, []string) {
	const docker = `{{- if .HasSubCommands}}  {{ .CommandPath}}{{- if .HasAvailableFlags}} [OPTIONS]{{end}} COMMAND{{end}}`
	const both = `{{- if .HasSubCommands}}  {{.UseLine}}
        {{.CommandPath}} COMMAND{{end}}`
	return func(c *cobra.Command, args []string) {
		if c == cmd { // its commands (backup ls, ...) inherit this help function
			c.SetUsageTemplate(strings.Replace(c.Parent().UsageTemplate(), docker, both, 1))
		}
		cmd.Parent().HelpFunc()(c, args)
	}
}

// volumesExist checks the VOLUME words of `backup`: a word that names no volume is an error
// that says so, with the command it may have been meant as (`backup lst`: ls).
func volumesExist(ctx context.Context, cmd *cobra.Command, e *volumeops.Engine, names []string) error {
	for _, n := range names {
		_, err := e.InspectVolume(ctx, n)
		switch {
		case cerrdefs.IsNotFound(err):
			return fmt.Errorf("%s: no volume named %q in context %s (docker volume ls lists them)%s\n\nRun '%s --help' for more information",
				cmd.Root().Name(), n, e.Context, suggestions(cmd, n), cmd.CommandPath())
		case err != nil:
			return err
		}
	}
	return nil
}

func backupLsCmd(d deps) *cobra.Command {
	var (
		sf   storeFlags
		from string
	)
	return spec[[]backup.Backup]{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List the backups in a directory or bucket, newest first",
		Formats: tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&from, "from", "", "a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO, else .)")
			sf.add(f, false)
			completeFlag(cmd, "from", completeDirs)
		},
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) ([]backup.Backup, error) {
			store, err := sf.open(ctx, fromOrEnv(from))
			if err != nil {
				return nil, err
			}
			return backup.List(ctx, store)
		},
		Print: func(w io.Writer, _ string, bs []backup.Backup) error {
			var rows [][]string
			for _, b := range bs {
				state := "complete"
				if !b.HasChecksum {
					state = "INCOMPLETE (no .sha256)"
				}
				rows = append(rows, []string{b.Name, b.Volume, b.Time.Format(time.RFC3339), humanBytes(b.Size),
					string(b.Compression), yesNo(b.Encrypted), state})
			}
			return ui.Table(w, []string{"archive", "volume", "time", "size", "compression", "encrypted", "state"}, rows)
		},
	}.build(d.out)
}

// clock is the time source of prune (tests replace it).
var clock = time.Now

func backupPruneCmd(d deps) *cobra.Command {
	var (
		sf     storeFlags
		from   string
		p      backup.PrunePolicy
		dryRun bool
		force  bool
		// deleted: the plan was carried out (else the table says "would delete")
		deleted bool
	)
	return spec[[]backup.Decision]{
		Use:   "prune [OPTIONS]",
		Short: "Delete old backups; per volume, keep what the --keep-* rules say, and always the newest verified one",
		Long: `Delete old backups; per volume, keep what the --keep-* rules say, and always the newest verified one.

A backup is kept when any rule keeps it: the newest N (--keep-last), those younger than a
duration (--keep-within), and grandfather-father-son: the newest backup of each of the last N
days, ISO weeks and months that have one (--keep-daily, --keep-weekly, --keep-monthly; UTC,
as in the archives' names). An archive without its .sha256 counts for no rule; it is kept
for a day (it may still be being written), then deleted as an interrupted backup.

It shows what it would delete and asks first, on a terminal, as ` + "`docker system prune`" + ` does;
-f/--force deletes without asking (without a terminal, --force is required), --dry-run only shows.`,
		Example: `  docker dockbridge backup prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --dry-run
  docker dockbridge backup prune --keep-last 7 --keep-within 720h --dry-run
  docker dockbridge backup prune --from s3://my-bucket/host1 --keep-last 7 --force   # in a cron job`,
		Formats: tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&from, "from", "", "a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO, else .)")
			completeFlag(cmd, "from", completeDirs)
			retentionFlags(f, &p, backup.PrunePolicy{})
			f.BoolVar(&dryRun, "dry-run", false, "only show what would be deleted")
			f.BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
			sf.add(f, false)
		},
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) ([]backup.Decision, error) {
			store, err := sf.open(ctx, fromOrEnv(from))
			if err != nil {
				return nil, err
			}
			plan, err := backup.Prune(ctx, store, p, clock(), true)
			doomed := 0
			for _, dc := range plan {
				if !dc.Keep {
					doomed++
				}
			}
			if err != nil || dryRun || doomed == 0 {
				return plan, afterOutput(err)
			}
			if !force {
				if err := confirmPrune(ctx, d, store, plan, doomed); err != nil {
					return plan, afterOutput(err)
				}
			}
			deleted = true
			return plan, afterOutput(backup.ApplyPrune(ctx, store, plan))
		},
		Print: func(w io.Writer, _ string, plan []backup.Decision) error {
			var rows [][]string
			for _, dc := range plan {
				action := "keep"
				if !dc.Keep {
					action = "would delete"
					if deleted {
						action = "delete"
					}
				}
				rows = append(rows, []string{dc.Name, action, dc.Reason})
			}
			if len(rows) == 0 {
				return nil
			}
			return ui.Table(w, []string{"archive", "action", "why"}, rows)
		},
	}.build(d.out)
}

// retentionFlags adds the --keep-* flags with their defaults.
func retentionFlags(f *pflag.FlagSet, p *backup.PrunePolicy, def backup.PrunePolicy) {
	f.IntVar(&p.KeepLast, "keep-last", def.KeepLast, "keep the newest N backups of each volume")
	f.DurationVar(&p.KeepWithin, "keep-within", def.KeepWithin, "keep backups younger than this (e.g. 720h)")
	f.IntVar(&p.KeepDaily, "keep-daily", def.KeepDaily, "keep the newest backup of each of the last N days that have one")
	f.IntVar(&p.KeepWeekly, "keep-weekly", def.KeepWeekly, "keep the newest backup of each of the last N weeks that have one")
	f.IntVar(&p.KeepMonthly, "keep-monthly", def.KeepMonthly, "keep the newest backup of each of the last N months that have one")
}

// confirmPrune asks on a terminal before backups are deleted; without one, --force is needed.
func confirmPrune(ctx context.Context, d deps, store backup.Store, plan []backup.Decision, doomed int) error {
	what := plural(doomed, "backup", "backups")
	if !d.interactive {
		return fmt.Errorf("backup prune would delete %s in %s and there is no terminal to ask on: pass -f/--force (or --dry-run to list them)", what, store)
	}
	fmt.Fprintf(d.errOut, "WARNING! This will delete %s in %s:\n", what, store)
	for _, dc := range plan {
		if !dc.Keep {
			fmt.Fprintf(d.errOut, "  - %s (%s)\n", dc.Name, dc.Reason)
		}
	}
	ok, err := confirm(ctx, d.in, d.errOut, "Are you sure you want to continue?")
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("backup prune cancelled: nothing was deleted")
	}
	return nil
}

// verifyResult is what `backup verify` prints: the archive's check and, with --restore, the
// restore drill.
type verifyResult struct {
	backup.VerifyReport
	Drill *volumeops.DrillResult `json:"restore_drill,omitempty"`
}

func backupVerifyCmd(d deps) *cobra.Command {
	var (
		sf       storeFlags
		from     string
		identity string
		restore  bool
	)
	return spec[*verifyResult]{
		Use:   "verify [OPTIONS] ARCHIVE",
		Short: "Check an archive: its checksum, then decompress and walk the whole tar against its metadata; --restore: a restore drill",
		Long: `Check an archive: its checksum, then decompress and walk the whole tar against its metadata.

With --restore it is a restore drill, on the engine of the current context: the archive is
restored into a new scratch volume (local driver) exactly as ` + "`restore`" + ` would restore it, the
scratch volume is walked again and compared with the archive's metadata (entries, files,
bytes), and it is removed, whatever happened. A backup that was never restored is a hope, not
a backup; ` + "`backup schedule --verify-restore-every`" + ` runs drills on the schedule.

` + archiveArgHelp,
		Example: `  docker dockbridge backup verify db_data-20251017T143025Z.tar.zst
  docker dockbridge backup verify --restore s3://my-bucket/host1/db_data-20251017T143025Z.tar.zst`,
		Args:     cli.ExactArgs(1),
		Complete: completeArchives(&from, &sf),
		Formats:  tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&from, "from", "", "where to look for ARCHIVE when it is a bare name: a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO; then .)")
			f.StringVar(&identity, "identity", "", "age identity file, to check the content of an encrypted archive")
			f.BoolVar(&restore, "restore", false, "restore into a scratch volume, compare it with the metadata, remove it (a restore drill)")
			sf.add(f, false)
			completeFlag(cmd, "from", completeDirs)
			completeFlag(cmd, "identity", completeFiles)
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*verifyResult, error) {
			ids, err := identities(identity)
			if err != nil {
				return nil, err
			}
			store, name, err := sf.archive(ctx, args[0], from)
			if err != nil {
				return nil, err
			}
			if !restore {
				rep, err := backup.Verify(ctx, store, name, ids)
				if err != nil {
					return nil, err
				}
				return &verifyResult{VerifyReport: rep}, nil
			}
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			dr, err := e.VerifyRestore(ctx, volumeops.DrillOptions{Store: store, Archive: name, Identities: ids})
			if err != nil {
				return nil, err
			}
			for _, w := range dr.Warnings {
				fmt.Fprintf(d.errOut, "warning: %s\n", w)
			}
			return &verifyResult{VerifyReport: backup.VerifyReport{Name: name, Checksum: "ok", Walked: true,
				Metadata: dr.Metadata, Stats: dr.Restored}, Drill: &dr}, nil
		},
		Print: func(w io.Writer, _ string, rep *verifyResult) error {
			if !rep.Walked {
				fmt.Fprintf(w, "%s: checksum OK; encrypted, content not checked (give --identity FILE)\n", rep.Name)
				return nil
			}
			m := rep.Metadata
			kv := [][2]string{{"Volume", m.Volume}, {"Driver", m.Driver},
				{"Taken", m.StartedAt.Format(time.RFC3339)}, {"Context", m.SourceContext},
				{"Content", rep.Stats.String()}, {"Compression", string(m.Compression)}, {"Encryption", m.Encryption},
				{"Tool version", m.ToolVersion}}
			if dr := rep.Drill; dr != nil {
				fmt.Fprintf(w, "%s: OK, restored and compared\n", rep.Name)
				kv = append(kv, [2]string{"Restore drill", fmt.Sprintf("restored into %s, found %s as the metadata says, removed the volume (%.1fs)",
					dr.ScratchVolume, dr.Found, dr.Seconds)})
			} else {
				fmt.Fprintf(w, "%s: OK\n", rep.Name)
			}
			return ui.KeyValues(w, kv)
		},
	}.build(d.out)
}
