package volumeops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/volumeops/helper"
)

// RestoreOptions says what to restore where.
type RestoreOptions struct {
	Store   backup.Store
	Archive string
	// Volume is the target; default the volume named in the backup.
	Volume string
	// Force replaces the content of an existing volume that holds data, after a safety backup.
	Force        bool
	Identities   []age.Identity
	AllowDevices bool
	// SafetyStore receives the safety backup (default Store).
	SafetyStore backup.Store
	Now         func() time.Time
	// Scratch, when set, is how a missing target volume is made instead of the backup's driver,
	// options and labels (a restore drill's scratch volume).
	Scratch *ScratchVolume
}

// ScratchVolume is a throwaway volume for a restore drill.
type ScratchVolume struct {
	Driver string
	Labels map[string]string
}

// RestoreResult reports a restore.
type RestoreResult struct {
	Volume       string          `json:"volume"`
	Created      bool            `json:"created"`
	SafetyBackup *BackupResult   `json:"safety_backup,omitempty"`
	Metadata     backup.Metadata `json:"metadata"`
	Stats        backup.Stats    `json:"stats"`
	Stopped      []string        `json:"stopped,omitempty"`
	Warnings     []string        `json:"warnings,omitempty"`
	HelperMaxRSS int64           `json:"helper_max_rss_bytes"`
}

// Restore restores an archive into a volume: a missing volume is created with the backup's
// driver, options and labels; an existing volume with data is refused unless Force, which
// verifies the checksum first, stops the containers using it and takes a safety backup while
// they are stopped (and aborts if that fails). The helper extracts safely and checks the counts against the metadata.
//
// The archive is read once: it is hashed while it streams to the helper, and the helper keeps
// what it extracted only when the plugin confirms the checksum at the end (otherwise it empties
// the volume again, and a volume this restore created is removed). Only a volume that held data
// (Force) costs a second read: its checksum is verified before anything is changed.
func (e *Engine) Restore(ctx context.Context, opts RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SafetyStore == nil {
		opts.SafetyStore = opts.Store
	}
	// An archive without its .sha256 is an interrupted backup: refused before anything.
	sum, err := backup.ReadChecksum(ctx, opts.Store, opts.Archive)
	if err != nil {
		return res, err
	}
	meta, err := backup.ReadArchiveMetadata(ctx, opts.Store, opts.Archive, opts.Identities)
	if err != nil {
		return res, err
	}
	res.Metadata = meta
	target := opts.Volume
	if target == "" {
		target = meta.Volume
	}
	res.Volume = target
	if _, err := e.HelperImage(ctx); err != nil {
		return res, err
	}

	existing, err := e.InspectVolume(ctx, target)
	var st *stopped
	clear := false
	switch {
	case err != nil && cerrdefs.IsNotFound(errors.Unwrap(err)) || err != nil && cerrdefs.IsNotFound(err):
		create := client.VolumeCreateOptions{Name: target, Driver: meta.Driver, DriverOpts: meta.DriverOptions, Labels: meta.Labels}
		if opts.Scratch != nil {
			create = client.VolumeCreateOptions{Name: target, Driver: opts.Scratch.Driver, Labels: opts.Scratch.Labels}
		}
		e.progressf("Creating volume %s (driver %s)", target, create.Driver)
		if _, err := e.API.VolumeCreate(ctx, create); err != nil {
			return res, fmt.Errorf("create volume %s with driver %s: %w (is the %s volume plugin installed and enabled?)", target, create.Driver, err, create.Driver)
		}
		res.Created = true
	case err != nil:
		return res, err
	default:
		if existing.Driver != meta.Driver {
			res.Warnings = append(res.Warnings, fmt.Sprintf("volume %s uses driver %s; the backup came from a %s volume", target, existing.Driver, meta.Driver))
		}
		probe, err := e.Probe(ctx, target, false)
		if err != nil {
			return res, err
		}
		if probe.Entries > 0 {
			if !opts.Force {
				return res, fmt.Errorf("volume %s exists and holds %d files: restore into a new volume with --volume NAME, or replace its content with --force (a safety backup is taken first)", target, probe.Entries)
			}
			e.progressf("Verifying checksum of %s before replacing the content of %s", opts.Archive, target)
			if err := backup.VerifyChecksum(ctx, opts.Store, opts.Archive); err != nil {
				return res, fmt.Errorf("%w; volume %s was not changed", err, target)
			}
			if st, err = e.stopUsers(ctx, []string{target}); err != nil {
				return res, err
			}
			defer func() {
				if rerr := st.restart(ctx); rerr != nil {
					res.Warnings = append(res.Warnings, rerr.Error())
				}
			}()
			res.Stopped = st.names()
			e.progressf("Taking a safety backup of %s before replacing its content", target)
			safety, err := e.backupOne(ctx, existing, BackupOptions{Store: opts.SafetyStore, Compression: backup.Zstd,
				Now: opts.Now, KeepRunning: false})
			if err != nil {
				return res, fmt.Errorf("safety backup of %s failed, nothing was changed: %w", target, err)
			}
			res.SafetyBackup = &safety
			clear = true
		}
	}

	raw, err := backup.OpenChecked(ctx, opts.Store, opts.Archive, sum)
	if err != nil {
		return res, e.undoCreate(ctx, &res, err)
	}
	stream, c, err := backup.CompressedStream(raw, opts.Archive, opts.Identities)
	if err != nil {
		return res, e.undoCreate(ctx, &res, err)
	}
	defer stream.Close()
	framed := helper.NewFramedSource(stream, raw.Verify)
	args := []string{"restore", "--compression", string(c)}
	if clear {
		args = append(args, "--clear")
	}
	if opts.AllowDevices {
		args = append(args, "--allow-devices")
	}
	e.progressf("Restoring %s into volume %s", opts.Archive, target)
	var hr helper.RestoreResult
	warnings, err := e.runHelper(ctx, helperRun{volume: target, args: args, stdin: framed}, &hr)
	res.Warnings = append(res.Warnings, warnings...)
	if cerr := framed.CheckErr(); cerr != nil {
		// The helper emptied the volume again when it got the verdict.
		err = fmt.Errorf("%w (nothing of it was kept: %v)", cerr, err)
	}
	if err != nil {
		err = fmt.Errorf("restore %s into volume %s: %w", opts.Archive, target, err)
		if res.SafetyBackup != nil {
			err = fmt.Errorf("%w; the previous content is in %s%s", err, opts.SafetyStore, res.SafetyBackup.Archive.Name)
		}
		return res, e.undoCreate(ctx, &res, err)
	}
	res.Stats = hr.Stats
	res.HelperMaxRSS = hr.MaxRSS
	if hr.Metadata.Volume != meta.Volume || hr.Stats.Bytes != meta.Bytes || hr.Stats.Entries != meta.Entries {
		return res, fmt.Errorf("restore %s: the helper read another archive than the one checked (%s vs %s)", opts.Archive, hr.Stats, meta.Volume)
	}
	return res, nil
}

// undoCreate removes a volume this restore created, so a failed restore leaves nothing half done.
func (e *Engine) undoCreate(ctx context.Context, res *RestoreResult, err error) error {
	if !res.Created {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, rerr := e.API.VolumeRemove(rctx, res.Volume, client.VolumeRemoveOptions{}); rerr != nil {
		return fmt.Errorf("%w (and removing the volume %s it created failed: %v)", err, res.Volume, rerr)
	}
	return fmt.Errorf("%w (the volume %s it created was removed)", err, res.Volume)
}
