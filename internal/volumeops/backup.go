package volumeops

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"filippo.io/age"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/version"
	"github.com/dockbridge/dockbridge/internal/volumeops/helper"
)

// BackupOptions says what to back up where.
type BackupOptions struct {
	Volumes     []string
	All         bool
	Store       backup.Store
	Compression backup.Compression
	Recipients  []age.Recipient
	KeepRunning bool
	Now         func() time.Time
	// Label scopes offen's labels (see offen.go): the containers whose stop-during-backup or
	// exec-label value is Label are included, besides those labelled "true" and those without
	// exec-label. A schedule's id; empty for a backup by hand.
	Label string
	// ContinueOnError backs up the other volumes when one fails: every volume gets a result,
	// the failed ones with Error set (scheduled runs); without it the backup stops at the
	// first failure.
	ContinueOnError bool
}

// BackupResult is one stored backup.
type BackupResult struct {
	Volume   string          `json:"volume"`
	Archive  backup.Result   `json:"archive"`
	Location string          `json:"location"`
	Metadata backup.Metadata `json:"metadata"`
	Warnings []string        `json:"warnings,omitempty"`
	// Stopped lists the containers stopped for the backup (and started again).
	Stopped []string `json:"stopped,omitempty"`
	// HelperMaxRSS is the helper container's peak memory.
	HelperMaxRSS int64 `json:"helper_max_rss_bytes"`
	// Seconds is how long the volume's archive took, from the helper's start to the commit.
	Seconds float64 `json:"seconds"`
	// Error is why this volume's backup failed (only with ContinueOnError).
	Error string `json:"error,omitempty"`
}

// Backup backs up volumes: offen's archive-pre commands run, the running containers that use
// the volumes (unless KeepRunning) and those offen's stop labels name are stopped, every
// volume is streamed through a helper container into the store, and the stopped containers
// are started again in reverse order, also when the backup fails or ctx is cancelled; then the
// archive-post commands run. It returns the results of the volumes done so far along with the
// first error (every volume's result and all errors with ContinueOnError). A failed
// archive-post command comes back as a *HookError after the results: the archives are stored.
func (e *Engine) Backup(ctx context.Context, opts BackupOptions) (results []BackupResult, err error) {
	if opts.Store == nil {
		return nil, errors.New("no backup destination: give --to DIR or s3://bucket/prefix")
	}
	if opts.Compression == "" {
		opts.Compression = backup.Zstd
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	vols, err := e.resolveVolumes(ctx, opts.Volumes, opts.All)
	if err != nil {
		return nil, err
	}
	if _, err := e.HelperImage(ctx); err != nil {
		return nil, err
	}
	for _, w := range e.unsupportedHooks(ctx) {
		e.progressf("warning: %s", w)
	}
	if err := e.RunHooks(ctx, HookArchivePre, opts.Label); err != nil {
		return nil, fmt.Errorf("nothing was backed up: %w", err)
	}
	defer func() {
		// Like the restart of the containers, the post commands run also after Ctrl-C or a
		// deadline: they undo what the pre commands did.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if herr := e.RunHooks(pctx, HookArchivePost, opts.Label); herr != nil {
			err = errors.Join(err, herr)
		}
	}()
	var toStop []ContainerRef
	if !opts.KeepRunning {
		names := make([]string, len(vols))
		for i, v := range vols {
			names[i] = v.Name
		}
		if toStop, err = e.runningUsers(ctx, names); err != nil {
			return nil, err
		}
	}
	labelled, noRestart, err := e.labelledStops(ctx, opts.Label)
	if err != nil {
		return nil, err
	}
	for _, r := range labelled {
		if !slices.ContainsFunc(toStop, func(x ContainerRef) bool { return x.ID == r.ID }) {
			toStop = append(toStop, r)
		}
	}
	st, err := e.stopContainers(ctx, toStop, noRestart)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, v := range vols {
		if cerr := ctx.Err(); cerr != nil {
			errs = append(errs, cerr)
			break
		}
		r, verr := e.backupOne(ctx, v, opts)
		r.Stopped = st.names()
		if verr != nil {
			verr = fmt.Errorf("back up volume %s: %w", v.Name, verr)
			errs = append(errs, verr)
			if !opts.ContinueOnError {
				break
			}
			r.Error = verr.Error()
		}
		results = append(results, r)
	}
	if opts.ContinueOnError {
		// Volumes not reached (ctx ended) failed too.
		for _, v := range vols[len(results):] {
			results = append(results, BackupResult{Volume: v.Name, Location: opts.Store.String(), Error: "not backed up: the run was interrupted"})
		}
	}
	if rerr := st.restart(ctx); rerr != nil {
		errs = append(errs, rerr)
	}
	return results, errors.Join(errs...)
}

func (e *Engine) resolveVolumes(ctx context.Context, names []string, all bool) ([]Volume, error) {
	switch {
	case all && len(names) > 0:
		return nil, errors.New("give volume names or --all, not both")
	case all:
		all, err := e.ListVolumes(ctx)
		if err != nil {
			return nil, err
		}
		var vols []Volume
		for _, v := range all {
			if v.Labels[DrillLabel] == "" { // a restore drill's scratch volume
				vols = append(vols, v)
			}
		}
		if len(vols) == 0 {
			return nil, errors.New("the engine of this context has no volumes")
		}
		return vols, nil
	case len(names) == 0:
		return nil, errors.New("name the volumes to back up, or give --all")
	}
	var out []Volume
	for _, n := range names {
		v, err := e.InspectVolume(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (e *Engine) backupOne(ctx context.Context, v Volume, opts BackupOptions) (BackupResult, error) {
	now := opts.Now().UTC()
	encrypted := len(opts.Recipients) > 0
	meta := backup.Metadata{
		ToolVersion: version.Version, Volume: v.Name, Driver: v.Driver, DriverOptions: v.Options,
		Labels: v.Labels, SourceContext: e.Context, Compression: opts.Compression,
		Encryption: "none", KeepRunning: opts.KeepRunning,
	}
	if encrypted {
		meta.Encryption = "age"
	}
	if h, err := os.Hostname(); err == nil {
		meta.SourceHost = h
	}
	mj, err := json.Marshal(meta)
	if err != nil {
		return BackupResult{}, err
	}
	name := backup.ArchiveName(v.Name, now, opts.Compression, encrypted)
	res := BackupResult{Volume: v.Name, Location: opts.Store.String()}
	e.progressf("Backing up volume %s to %s", v.Name, opts.Store)
	aw, err := backup.NewArchiveWriter(ctx, opts.Store, name, opts.Recipients)
	if err != nil {
		return res, err
	}
	// Frames from the engine are small: batch them into large writes.
	buffered := bufio.NewWriterSize(aw, 1<<20)
	counter := &countingWriter{w: buffered}
	args := []string{"backup", "--compression", string(opts.Compression), "--meta", base64.StdEncoding.EncodeToString(mj)}
	if !opts.KeepRunning {
		args = append(args, "--strict")
	}
	var hr helper.BackupResult
	start := time.Now()
	res.Warnings, err = e.runHelper(ctx, helperRun{volume: v.Name, readOnly: true, args: args, stdout: counter}, &hr)
	if err != nil {
		aw.Abort()
		return res, err
	}
	if err := buffered.Flush(); err != nil {
		aw.Abort()
		return res, err
	}
	// End-to-end checks before the archive becomes visible.
	if hr.CompressedBytes != counter.n {
		aw.Abort()
		return res, fmt.Errorf("helper wrote %d bytes but %d arrived: the stream was cut", hr.CompressedBytes, counter.n)
	}
	if hr.Stats.Entries == 0 {
		// Nothing read: ask the engine (or the volume plugin) independently whether the volume is
		// really empty, so an unmounted or wrong volume never yields an empty "successful" backup.
		if used := e.engineUsage(ctx, v); used > 64<<10 {
			aw.Abort()
			return res, fmt.Errorf("the backup read nothing but the engine reports %d bytes in the volume: refusing to store an empty backup", used)
		}
	}
	if err := ctx.Err(); err != nil {
		aw.Abort()
		return res, err
	}
	res.Archive, err = aw.Commit()
	if err != nil {
		return res, err
	}
	res.Metadata = hr.Metadata
	res.HelperMaxRSS = hr.MaxRSSBytes
	el := time.Since(start).Seconds()
	res.Seconds = el
	e.progressf("Stored %s: %s, %d MB archive in %.1fs (%.0f MB/s of data)", name, hr.Stats, res.Archive.Size>>20, el, float64(hr.Stats.Bytes)/1e6/max(el, 1e-3))
	return res, nil
}

type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// engineUsage is the engine's own figure for a volume's size (docker system df for the local
// driver, the plugin's used_bytes in Status for hetzner volumes), -1 when unknown.
func (e *Engine) engineUsage(ctx context.Context, v Volume) int64 {
	if v.UsedBytes >= 0 {
		return v.UsedBytes
	}
	if iv, err := e.InspectVolume(ctx, v.Name); err == nil && iv.UsedBytes >= 0 {
		return iv.UsedBytes
	}
	du, err := e.API.DiskUsage(ctx, client.DiskUsageOptions{Volumes: true, Verbose: true})
	if err != nil {
		return -1
	}
	for _, dv := range du.Volumes.Items {
		if dv.Name == v.Name && dv.UsageData != nil {
			return dv.UsageData.Size
		}
	}
	return -1
}
