package volumeops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/backup"
)

// DrillLabel marks the scratch volumes of restore drills; one left behind by a killed drill
// is removed by the next (RemoveDrillLeftovers).
const DrillLabel = "dockbridge.drill"

// DrillOptions says which archive a restore drill restores.
type DrillOptions struct {
	Store      backup.Store
	Archive    string
	Identities []age.Identity
	// Driver of the scratch volume (default "local": on the engine's own disk, no cloud
	// volume to pay for).
	Driver string
}

// DrillResult is what a restore drill found.
type DrillResult struct {
	Archive       string          `json:"archive"`
	Volume        string          `json:"volume"` // the volume the archive was made from
	ScratchVolume string          `json:"scratch_volume"`
	Metadata      backup.Metadata `json:"metadata"`
	// Restored is what the restore wrote; Found what a separate walk of the scratch volume
	// found afterwards. Both must equal the metadata's counts.
	Restored backup.Stats `json:"restored"`
	Found    backup.Stats `json:"found"`
	Seconds  float64      `json:"seconds"`
	Warnings []string     `json:"warnings,omitempty"`
}

// VerifyRestore is a restore drill: it restores the archive into a new scratch volume
// (checksum, safe extraction and the metadata's counts, as a real restore does), walks the
// scratch volume again and compares what is there with the metadata (entries, regular files
// and their bytes), and removes the scratch volume, whatever happened.
func (e *Engine) VerifyRestore(ctx context.Context, o DrillOptions) (res DrillResult, err error) {
	start := time.Now()
	res.Archive = o.Archive
	if o.Driver == "" {
		o.Driver = "local"
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	b, _ := backup.ParseArchiveName(o.Archive)
	scratch := fmt.Sprintf("dockbridge-drill-%s-%s", sanitize(b.Volume), hex.EncodeToString(rnd[:]))
	res.ScratchVolume = scratch
	if _, err := e.API.VolumeInspect(ctx, scratch, client.VolumeInspectOptions{}); err == nil {
		return res, fmt.Errorf("restore drill: a volume named %s exists already", scratch)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, rerr := e.API.VolumeRemove(rctx, scratch, client.VolumeRemoveOptions{Force: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove the drill's scratch volume %s: %w", scratch, rerr))
		}
		res.Seconds = time.Since(start).Seconds()
	}()
	rr, err := e.Restore(ctx, RestoreOptions{Store: o.Store, Archive: o.Archive, Volume: scratch, Identities: o.Identities,
		Scratch: &ScratchVolume{Driver: o.Driver, Labels: map[string]string{DrillLabel: "1"}}})
	res.Metadata, res.Restored, res.Warnings = rr.Metadata, rr.Stats, rr.Warnings
	res.Volume = rr.Metadata.Volume
	if err != nil {
		// A damaged archive often fails in the middle of the extraction (the codec's own check),
		// before the stream's SHA-256 is known: name the cause when the checksum says it.
		if !errors.Is(err, backup.ErrChecksum) && ctx.Err() == nil {
			if cerr := backup.VerifyChecksum(ctx, o.Store, o.Archive); errors.Is(cerr, backup.ErrChecksum) {
				err = fmt.Errorf("%w; the restore failed: %v", cerr, err)
			}
		}
		return res, fmt.Errorf("restore drill of %s: %w", o.Archive, err)
	}
	p, err := e.Probe(ctx, scratch, false)
	if err != nil {
		return res, fmt.Errorf("restore drill of %s: walk the restored volume: %w", o.Archive, err)
	}
	res.Found = backup.Stats{Entries: p.Entries, Files: p.Files, Bytes: p.FileBytes}
	m := res.Metadata
	if res.Found.Entries != m.Entries || res.Found.Files != m.Files || res.Found.Bytes != m.Bytes {
		return res, fmt.Errorf("restore drill of %s: %w: the metadata says %d entries, %d files, %d bytes; the restored volume holds %s",
			o.Archive, backup.ErrMetadataMismatch, m.Entries, m.Files, m.Bytes, res.Found)
	}
	e.progressf("Restore drill of %s: restored and compared, %s as the metadata says (scratch volume %s removed)", o.Archive, res.Found, scratch)
	return res, nil
}

// RemoveDrillLeftovers removes the scratch volumes of restore drills that were killed before
// they could remove them (unused volumes labelled DrillLabel).
func (e *Engine) RemoveDrillLeftovers(ctx context.Context) {
	res, err := e.API.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", DrillLabel)})
	if err != nil {
		return
	}
	for _, v := range res.Items {
		if refs, err := e.ContainersUsing(ctx, v.Name); err == nil && len(refs) == 0 {
			_, _ = e.API.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{})
		}
	}
}

// RemoveStaleHelpers removes helper containers that are no longer running: those of a backup
// or restore whose process was killed before it could remove them.
func (e *Engine) RemoveStaleHelpers(ctx context.Context) {
	res, err := e.API.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", helperLabel+"=run").Add("status", "exited").Add("status", "dead")})
	if err != nil {
		return
	}
	for _, c := range res.Items {
		_, _ = e.API.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
	}
}
