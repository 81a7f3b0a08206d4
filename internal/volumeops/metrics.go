package volumeops

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/dockbridge/dockbridge/internal/backup"
)

// VolumeMetrics is what we export per volume. Filesystem size and free space are left to
// node_exporter (node_filesystem_*), which already sees the engine's and the volumes' mounts.
type VolumeMetrics struct {
	Volume            string `json:"volume"`
	Driver            string `json:"driver"`
	HetznerID         int64  `json:"hetzner_id,omitempty"`
	ProvisionedBytes  int64  `json:"provisioned_bytes,omitempty"`
	UsedBytes         int64  `json:"used_bytes"` // -1: not measured
	Files             int64  `json:"files"`      // -1: not measured
	ContainersRunning int    `json:"containers_running"`
	ContainersStopped int    `json:"containers_stopped"`
}

// BackupMetrics summarises a volume's backups: from a store's listing (Count, LastSuccess,
// LastSize), or from a schedule's runs on a dockbridge host (Schedule set: also the duration,
// the failures in a row, the last verified restore, the next run and the health level).
type BackupMetrics struct {
	Volume      string    `json:"volume"`
	Count       int       `json:"count,omitempty"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastSize    int64     `json:"last_size_bytes,omitempty"`

	Schedule            string    `json:"schedule,omitempty"`
	LastDuration        float64   `json:"last_duration_seconds,omitempty"`
	ConsecutiveFailures *int      `json:"consecutive_failures,omitempty"`
	LastRestoreVerified time.Time `json:"last_restore_verified,omitzero"`
	NextRun             time.Time `json:"next_run,omitzero"`
	// Health is OK, WARNING or CRITICAL, as the host's health check judges the schedule.
	Health string `json:"health,omitempty"`
}

// Metrics is the whole report.
type Metrics struct {
	Volumes []VolumeMetrics `json:"volumes"`
	Backups []BackupMetrics `json:"backups,omitempty"`
	Store   string          `json:"backup_store,omitempty"`
}

// MetricsOptions chooses what to measure.
type MetricsOptions struct {
	// Usage measures used bytes and files with a helper container per volume (exact, costs a
	// walk); without it, the engine's figure is used where it has one.
	Usage bool
	// Store, if set, gives the backup metrics. A backup counts once its checksum file exists.
	Store backup.Store
}

// CollectMetrics gathers the metrics.
func (e *Engine) CollectMetrics(ctx context.Context, opts MetricsOptions) (Metrics, error) {
	var m Metrics
	vols, err := e.ListVolumes(ctx)
	if err != nil {
		return m, err
	}
	for _, v := range vols {
		vm := VolumeMetrics{Volume: v.Name, Driver: v.Driver, UsedBytes: v.UsedBytes, Files: -1}
		if v.Hetzner != nil {
			vm.HetznerID, vm.ProvisionedBytes = v.Hetzner.ID, v.Hetzner.SizeGB<<30
		}
		refs, err := e.ContainersUsing(ctx, v.Name)
		if err != nil {
			return m, err
		}
		for _, r := range refs {
			if isRunning(r.State) {
				vm.ContainersRunning++
			} else {
				vm.ContainersStopped++
			}
		}
		if opts.Usage {
			p, err := e.Probe(ctx, v.Name, false)
			if err != nil {
				return m, err
			}
			vm.UsedBytes, vm.Files = p.UsedBytes, p.Entries
		}
		m.Volumes = append(m.Volumes, vm)
	}
	if opts.Store != nil {
		m.Store = opts.Store.String()
		bs, err := backup.List(ctx, opts.Store)
		if err != nil {
			return m, err
		}
		byVol := map[string]*BackupMetrics{}
		var order []string
		for _, b := range bs { // newest first
			if !b.HasChecksum {
				continue
			}
			bm, ok := byVol[b.Volume]
			if !ok {
				bm = &BackupMetrics{Volume: b.Volume, LastSuccess: b.Time, LastSize: b.Size}
				byVol[b.Volume] = bm
				order = append(order, b.Volume)
			}
			bm.Count++
		}
		slices.Sort(order)
		for _, v := range order {
			m.Backups = append(m.Backups, *byVol[v])
		}
	}
	return m, nil
}

func gauge(name, help string) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: dto.MetricType_GAUGE.Enum()}
}

func sample(mf *dto.MetricFamily, v float64, labels ...string) {
	m := &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(v)}}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	mf.Metric = append(mf.Metric, m)
}

// Families returns the metrics as Prometheus metric families.
func (m Metrics) Families() []*dto.MetricFamily {
	info := gauge("dockbridge_volume_info", "Docker volume known to the engine (value 1), with its driver and Hetzner volume id.")
	used := gauge("dockbridge_volume_used_bytes", "Bytes allocated by the volume's files.")
	files := gauge("dockbridge_volume_files", "Files, directories and links in the volume.")
	prov := gauge("dockbridge_volume_provisioned_bytes", "Size of the Hetzner Cloud volume backing the Docker volume.")
	ctrs := gauge("dockbridge_volume_containers", "Containers that mount the volume, by state.")
	for _, v := range m.Volumes {
		if v.HetznerID != 0 {
			sample(info, 1, "volume", v.Volume, "driver", v.Driver, "hetzner_id", fmt.Sprint(v.HetznerID))
		} else {
			sample(info, 1, "volume", v.Volume, "driver", v.Driver)
		}
		if v.UsedBytes >= 0 {
			sample(used, float64(v.UsedBytes), "volume", v.Volume)
		}
		if v.Files >= 0 {
			sample(files, float64(v.Files), "volume", v.Volume)
		}
		if v.ProvisionedBytes > 0 {
			sample(prov, float64(v.ProvisionedBytes), "volume", v.Volume)
		}
		sample(ctrs, float64(v.ContainersRunning), "volume", v.Volume, "state", "running")
		sample(ctrs, float64(v.ContainersStopped), "volume", v.Volume, "state", "stopped")
	}
	last := gauge("dockbridge_backup_last_success_timestamp_seconds", "Time of the newest complete backup (archive and checksum stored), Unix seconds.")
	size := gauge("dockbridge_backup_last_size_bytes", "Size of the newest complete backup archive.")
	count := gauge("dockbridge_backups", "Complete backups in the store.")
	dur := gauge("dockbridge_backup_last_duration_seconds", "How long the newest scheduled backup took.")
	fails := gauge("dockbridge_backup_consecutive_failures", "Scheduled backups that failed in a row (0 after a success).")
	restored := gauge("dockbridge_backup_last_restore_verified_timestamp_seconds", "Time of the last restore drill that passed (restored into a scratch volume and compared with the metadata), Unix seconds.")
	next := gauge("dockbridge_backup_next_run_timestamp_seconds", "When the schedule runs next, Unix seconds.")
	health := gauge("dockbridge_backup_health", "The host's health verdict on the volume's scheduled backups: 0 OK, 1 WARNING (older than twice the interval), 2 CRITICAL (failed twice in a row, or a restore drill failed).")
	for _, b := range m.Backups {
		l := []string{"volume", b.Volume}
		if b.Schedule != "" {
			l = append(l, "schedule", b.Schedule)
		}
		if !b.LastSuccess.IsZero() {
			sample(last, float64(b.LastSuccess.Unix()), l...)
			sample(size, float64(b.LastSize), l...)
		}
		if b.Schedule == "" {
			sample(count, float64(b.Count), l...)
			continue
		}
		if b.LastDuration > 0 {
			sample(dur, b.LastDuration, l...)
		}
		if b.ConsecutiveFailures != nil {
			sample(fails, float64(*b.ConsecutiveFailures), l...)
		}
		if !b.LastRestoreVerified.IsZero() {
			sample(restored, float64(b.LastRestoreVerified.Unix()), l...)
		}
		if !b.NextRun.IsZero() {
			sample(next, float64(b.NextRun.Unix()), l...)
		}
		switch b.Health {
		case "OK":
			sample(health, 0, l...)
		case "WARNING":
			sample(health, 1, l...)
		case "CRITICAL":
			sample(health, 2, l...)
		}
	}
	var out []*dto.MetricFamily
	for _, mf := range []*dto.MetricFamily{info, used, files, prov, ctrs, last, size, count, dur, fails, restored, next, health} {
		if len(mf.Metric) > 0 {
			out = append(out, mf)
		}
	}
	return out
}

// WritePrometheus writes the text exposition format.
func (m Metrics) WritePrometheus(w io.Writer) error {
	for _, mf := range m.Families() {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return err
		}
	}
	return nil
}

// WriteTextfile writes the Prometheus text atomically (temp file, fsync, rename) for
// node_exporter's textfile collector, mode 0644.
func (m Metrics) WriteTextfile(path string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("textfile: %w", err)
	}
	defer os.Remove(f.Name())
	if err := m.WritePrometheus(f); err != nil {
		f.Close()
		return fmt.Errorf("textfile: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("textfile: %w", err)
	}
	return nil
}
