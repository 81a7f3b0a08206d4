// Package backup is the archive format and the plumbing around it: a streaming tar writer and a
// safe extractor, compression, age encryption, SHA-256 sidecars, stores (a local directory or an
// S3-compatible bucket), retention and verification.
//
// An archive is NAME.tar[.zst|.gz][.age] with NAME.tar....sha256 next to it in sha256sum format.
// The first tar entry is dockbridge-backup.json (Metadata); the volume's files follow under data/.
// A person without this tool restores one with `sha256sum -c`, `zstd -d` and `tar -x`.
package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const (
	// FormatVersion is the archive layout version written into the metadata.
	FormatVersion = 1
	// MetadataName is the name of the first tar entry.
	MetadataName = "dockbridge-backup.json"
	// DataDir is the directory in the archive holding the volume's files.
	DataDir = "data"
	// maxMetadataSize bounds the metadata entry a reader accepts.
	maxMetadataSize = 1 << 20
)

// Metadata describes a backup; it is the archive's first entry.
type Metadata struct {
	FormatVersion int    `json:"format_version"`
	ToolVersion   string `json:"tool_version"`

	Volume        string            `json:"volume"`
	Driver        string            `json:"driver"`
	DriverOptions map[string]string `json:"driver_options,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	SourceContext string            `json:"source_context,omitempty"`
	SourceHost    string            `json:"source_host,omitempty"`

	// Entries counts every tar entry under data/ except data/ itself; Files counts regular files
	// (hard links excluded) and Bytes their content.
	Entries int64 `json:"entries"`
	Files   int64 `json:"files"`
	Bytes   int64 `json:"bytes"`

	Compression Compression `json:"compression"`
	Encryption  string      `json:"encryption"` // "none" or "age"
	// KeepRunning records that containers kept writing during the backup.
	KeepRunning bool `json:"keep_running,omitempty"`

	// StartedAt is when the volume was read (the snapshot time); ScannedAt when its file list was
	// complete.
	StartedAt time.Time `json:"started_at"`
	ScannedAt time.Time `json:"scanned_at"`
}

// Validate checks a metadata read from an archive.
func (m *Metadata) Validate() error {
	switch {
	case m.FormatVersion != FormatVersion:
		return fmt.Errorf("archive format version %d is not supported (this dockbridge reads version %d): use a matching dockbridge release", m.FormatVersion, FormatVersion)
	case m.Volume == "":
		return errors.New("metadata has no volume name")
	case m.Entries < 0 || m.Files < 0 || m.Bytes < 0 || m.Files > m.Entries:
		return fmt.Errorf("metadata counts are inconsistent (entries %d, files %d, bytes %d)", m.Entries, m.Files, m.Bytes)
	}
	if _, err := ParseCompression(string(m.Compression)); err != nil {
		return err
	}
	return nil
}

func decodeMetadata(b []byte) (Metadata, error) {
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", MetadataName, err)
	}
	if err := m.Validate(); err != nil {
		return m, fmt.Errorf("%s: %w", MetadataName, err)
	}
	return m, nil
}

// Stats counts what was written or read.
type Stats struct {
	Entries int64 `json:"entries"`
	Files   int64 `json:"files"`
	Bytes   int64 `json:"bytes"`
}

func (s Stats) String() string {
	return fmt.Sprintf("%d entries, %d files, %d bytes", s.Entries, s.Files, s.Bytes)
}

// matches reports whether s is what m announced.
func (s Stats) matches(m Metadata) error {
	if s.Entries != m.Entries || s.Files != m.Files || s.Bytes != m.Bytes {
		return fmt.Errorf("%w: metadata says %d entries, %d files, %d bytes; archive holds %s",
			ErrMetadataMismatch, m.Entries, m.Files, m.Bytes, s)
	}
	return nil
}

// Sentinel errors; callers branch with errors.Is.
var (
	ErrMetadataMismatch = errors.New("archive content does not match its metadata")
	ErrUnsafeEntry      = errors.New("unsafe archive entry")
	// ErrDeviceFile: restore refuses a device file without --allow-devices (also ErrUnsafeEntry).
	ErrDeviceFile = fmt.Errorf("%w: device file", ErrUnsafeEntry)
	ErrChecksum   = errors.New("checksum mismatch")
	ErrNoChecksum = errors.New("no checksum file")
	ErrTooLarge   = errors.New("archive holds more than announced")
)
