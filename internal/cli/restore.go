package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// restoreCmd is `docker dockbridge restore ARCHIVE`.
func restoreCmd(d deps) *cobra.Command {
	var (
		sf           storeFlags
		from         string
		vol          string
		force        bool
		identity     string
		allowDevices bool
		safetyTo     string
		name         string // the archive's name, for the output
	)
	return spec[*volumeops.RestoreResult]{
		Use:   "restore [OPTIONS] ARCHIVE",
		Short: "Restore a backup into a volume",
		Long: `Restore a backup into a volume.

The archive is read once and its checksum checked as it streams: only a complete archive whose
SHA-256 matches its .sha256 is kept; otherwise the volume is emptied again (or removed, if the
restore created it). A missing volume is created with the driver, driver options and labels it
had. A volume that holds data is refused unless --force: then the checksum is verified before
anything changes, the containers using the volume are stopped, a safety backup of its content is
taken while they are stopped, so that it is consistent (if that fails, nothing is changed and they
are started again), its content is replaced, and the containers are started again.

` + archiveArgHelp,
		Example: `  docker dockbridge restore /srv/backups/db_data-20251017T143025Z.tar.zst
  docker dockbridge restore s3://my-bucket/host1/db_data-20251017T143025Z.tar.zst --volume db_copy`,
		Args:     cli.ExactArgs(1),
		Complete: completeArchives(&from, &sf),
		Formats:  tableOrJSON,
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&from, "from", "", "where to look for ARCHIVE when it is a bare name: a directory or s3://bucket/prefix (default $DOCKBRIDGE_BACKUP_TO; then .)")
			f.StringVar(&vol, "volume", "", "restore into this volume (default: the volume the backup came from)")
			f.BoolVar(&force, "force", false, "replace the content of a volume that holds data (its containers stopped, after a safety backup)")
			f.StringVar(&identity, "identity", "", "age identity file for an encrypted archive")
			f.BoolVar(&allowDevices, "allow-devices", false, "create device files found in the archive")
			f.StringVar(&safetyTo, "safety-to", "", "where the --force safety backup goes (default: next to ARCHIVE)")
			sf.add(f, true)
			completeFlag(cmd, "from", completeDirs)
			completeFlag(cmd, "volume", completeVolumes(d, false))
			completeFlag(cmd, "identity", completeFiles)
			completeFlag(cmd, "safety-to", completeDirs)
		},
		Run: func(ctx context.Context, _ *cobra.Command, args []string) (*volumeops.RestoreResult, error) {
			ids, err := identities(identity)
			if err != nil {
				return nil, err
			}
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			var store backup.Store
			store, name, err = sf.archive(ctx, args[0], from)
			if err != nil {
				return nil, err
			}
			safety := store
			if safetyTo != "" {
				if safety, err = sf.destination(ctx, safetyTo, d.errOut); err != nil {
					return nil, err
				}
			}
			res, err := e.Restore(ctx, volumeops.RestoreOptions{Store: store, Archive: name, Volume: vol, Force: force,
				Identities: ids, AllowDevices: allowDevices, SafetyStore: safety})
			for _, w := range res.Warnings {
				fmt.Fprintf(d.errOut, "warning: %s\n", w)
			}
			if err != nil {
				return nil, err
			}
			return &res, nil
		},
		Print: func(w io.Writer, _ string, res *volumeops.RestoreResult) error {
			kv := [][2]string{{"Volume", res.Volume}, {"Created", yesNo(res.Created)}, {"Restored", res.Stats.String()},
				{"From", name}}
			if res.SafetyBackup != nil {
				kv = append(kv, [2]string{"Safety backup", res.SafetyBackup.Location + res.SafetyBackup.Archive.Name})
			}
			return ui.KeyValues(w, kv)
		},
	}.build(d.out)
}
