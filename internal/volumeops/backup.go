package volumeops

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
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
}

// Backup backs up volumes: the running containers that use them are stopped (unless
// KeepRunning), every volume is streamed through a helper container into the store, and the
// stopped containers are started again in reverse order, also when the backup fails or ctx is
// cancelled. It returns the results of the volumes done so far along with the first error.
func (e *Engine) Backup(ctx context.Context, opts BackupOptions) ([]BackupResult, error) {
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
	var st *stopped
	if !opts.KeepRunning {
		names := make([]string, len(vols))
		for i, v := range vols {
			names[i] = v.Name
		}
		if st, err = e.stopUsers(ctx, names); err != nil {
			return nil, err
		}
	}
	var results []BackupResult
	for _, v := range vols {
		if err = ctx.Err(); err != nil {
			break
		}
		var r BackupResult
		r, err = e.backupOne(ctx, v, opts)
		r.Stopped = st.names()
		if err != nil {
			err = fmt.Errorf("back up volume %s: %w", v.Name, err)
			break
		}
		results = append(results, r)
	}
	if rerr := st.restart(ctx); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return results, err
}

func (e *Engine) resolveVolumes(ctx context.Context, names []string, all bool) ([]Volume, error) {
	switch {
	case all && len(names) > 0:
		return nil, errors.New("give volume names or --all, not both")
	case all:
		vols, err := e.ListVolumes(ctx)
		if err != nil {
			return nil, err
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
