package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"filippo.io/age"
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// newBackupCommand is `docker dockbridge backup VOLUME... | --all` and `backup ls|prune|verify`.
func newBackupCommand(dockerCli command.Cli) *cobra.Command {
	return backupCmd(volumeDepsFrom(dockerCli))
}

func backupCmd(d volumeDeps) *cobra.Command {
	var (
		sf          storeFlags
		to          string
		all         bool
		compression string
		encryptTo   string
		keepRunning bool
		output      string
	)
	cmd := &cobra.Command{
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
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := ui.ParseFormat(output)
			if err != nil {
				return err
			}
			c, err := backup.ParseCompression(compression)
			if err != nil {
				return err
			}
			if to == "" {
				to = os.Getenv("DOCKBRIDGE_BACKUP_TO")
			}
			if to == "" {
				return errors.New("where to? give --to DIR or --to s3://bucket/prefix (or set DOCKBRIDGE_BACKUP_TO)")
			}
			var rcpt []age.Recipient
			if encryptTo != "" {
				if rcpt, err = backup.ParseRecipients(encryptTo); err != nil {
					return err
				}
			}
			e, err := d.engine()
			if err != nil {
				return err
			}
			ctx, cancel := interruptible(cmd)
			defer cancel()
			store, err := sf.open(ctx, to)
			if err != nil {
				return err
			}
			res, err := e.Backup(ctx, volumeops.BackupOptions{Volumes: args, All: all, Store: store,
				Compression: c, Recipients: rcpt, KeepRunning: keepRunning})
			for _, r := range res {
				for _, w := range r.Warnings {
					fmt.Fprintf(d.errOut, "warning: %s: %s\n", r.Volume, w)
				}
			}
			if format == ui.FormatJSON {
				if res == nil {
					res = []volumeops.BackupResult{}
				}
				if jerr := ui.JSON(d.out, res); jerr != nil && err == nil {
					err = jerr
				}
			} else if len(res) > 0 {
				var rows [][]string
				for _, r := range res {
					rows = append(rows, []string{r.Volume, r.Archive.Name, humanBytes(r.Archive.Size),
						fmt.Sprint(r.Metadata.Files), humanBytes(r.Metadata.Bytes)})
				}
				_ = ui.Table(d.out, []string{"volume", "archive", "size", "files", "data"}, rows)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "destination: a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO)")
	f.BoolVar(&all, "all", false, "back up every volume of the context")
	f.StringVar(&compression, "compression", "zstd", "zstd, gzip or none")
	f.StringVar(&encryptTo, "encrypt-to", "", "encrypt with age for this recipient (age1...) or recipients file")
	f.BoolVar(&keepRunning, "keep-running", false, "do not stop the containers using the volumes (the copy may be inconsistent)")
	f.StringVarP(&output, "output", "o", "", "output format: table or json")
	sf.add(f)
	cmd.AddCommand(backupLsCmd(d), backupPruneCmd(d), backupVerifyCmd(d))
	return cmd
}

func backupLsCmd(d volumeDeps) *cobra.Command {
	var (
		sf     storeFlags
		from   string
		output string
	)
	cmd := &cobra.Command{
		Use:   "ls [OPTIONS]",
		Short: "List the backups in a directory or bucket, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := ui.ParseFormat(output)
			if err != nil {
				return err
			}
			ctx, cancel := interruptible(cmd)
			defer cancel()
			store, err := sf.open(ctx, fromOrEnv(from))
			if err != nil {
				return err
			}
			bs, err := backup.List(ctx, store)
			if err != nil {
				return err
			}
			if format == ui.FormatJSON {
				if bs == nil {
					bs = []backup.Backup{}
				}
				return ui.JSON(d.out, bs)
			}
			var rows [][]string
			for _, b := range bs {
				state := "complete"
				if !b.HasChecksum {
					state = "INCOMPLETE (no .sha256)"
				}
				rows = append(rows, []string{b.Name, b.Volume, b.Time.Format(time.RFC3339), humanBytes(b.Size),
					string(b.Compression), yesNo(b.Encrypted), state})
			}
			return ui.Table(d.out, []string{"archive", "volume", "time", "size", "compression", "encrypted", "state"}, rows)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO, else .)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: table or json")
	sf.add(cmd.Flags())
	return cmd
}

func fromOrEnv(from string) string {
	if from == "" {
		from = os.Getenv("DOCKBRIDGE_BACKUP_TO")
	}
	if from == "" {
		from = "."
	}
	return from
}

// clock is the time source of prune (tests replace it).
var clock = time.Now

func backupPruneCmd(d volumeDeps) *cobra.Command {
	var (
		sf     storeFlags
		from   string
		p      backup.PrunePolicy
		dryRun bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Delete old backups; per volume, keep the last N and those within a duration, and always the newest verified one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := ui.ParseFormat(output)
			if err != nil {
				return err
			}
			ctx, cancel := interruptible(cmd)
			defer cancel()
			store, err := sf.open(ctx, fromOrEnv(from))
			if err != nil {
				return err
			}
			plan, err := backup.Prune(ctx, store, p, clock(), dryRun)
			if format == ui.FormatJSON {
				if plan == nil {
					plan = []backup.Decision{}
				}
				if jerr := ui.JSON(d.out, plan); jerr != nil && err == nil {
					err = jerr
				}
				return err
			}
			var rows [][]string
			for _, dc := range plan {
				action := "keep"
				if !dc.Keep {
					action = "delete"
					if dryRun {
						action = "would delete"
					}
				}
				rows = append(rows, []string{dc.Name, action, dc.Reason})
			}
			if len(rows) > 0 {
				_ = ui.Table(d.out, []string{"archive", "action", "why"}, rows)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO, else .)")
	f.IntVar(&p.KeepLast, "keep-last", 0, "keep the newest N backups of each volume")
	f.DurationVar(&p.KeepWithin, "keep-within", 0, "keep backups younger than this (e.g. 720h)")
	f.BoolVar(&dryRun, "dry-run", false, "only show what would be deleted")
	f.StringVarP(&output, "output", "o", "", "output format: table or json")
	sf.add(f)
	return cmd
}

func backupVerifyCmd(d volumeDeps) *cobra.Command {
	var (
		sf       storeFlags
		from     string
		identity string
		output   string
	)
	cmd := &cobra.Command{
		Use:   "verify [OPTIONS] ARCHIVE",
		Short: "Check an archive: its checksum, then decompress and walk the whole tar against its metadata",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := ui.ParseFormat(output)
			if err != nil {
				return err
			}
			var ids []age.Identity
			if identity != "" {
				if ids, err = backup.ParseIdentities(identity); err != nil {
					return err
				}
			}
			ctx, cancel := interruptible(cmd)
			defer cancel()
			loc, name := splitArchive(args[0], from)
			store, err := sf.open(ctx, loc)
			if err != nil {
				return err
			}
			rep, err := backup.Verify(ctx, store, name, ids)
			if err != nil {
				return err
			}
			if format == ui.FormatJSON {
				return ui.JSON(d.out, rep)
			}
			if !rep.Walked {
				fmt.Fprintf(d.out, "%s: checksum OK; encrypted, content not checked (give --identity FILE)\n", name)
				return nil
			}
			m := rep.Metadata
			fmt.Fprintf(d.out, "%s: OK\n", name)
			return ui.KeyValues(d.out, [][2]string{{"Volume", m.Volume}, {"Driver", m.Driver},
				{"Taken", m.StartedAt.Format(time.RFC3339)}, {"Context", m.SourceContext},
				{"Content", rep.Stats.String()}, {"Compression", string(m.Compression)}, {"Encryption", m.Encryption},
				{"Tool version", m.ToolVersion}})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "where ARCHIVE is when it is a bare name (default .)")
	cmd.Flags().StringVar(&identity, "identity", "", "age identity file, to check the content of an encrypted archive")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: table or json")
	sf.add(cmd.Flags())
	return cmd
}
