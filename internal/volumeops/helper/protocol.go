package helper

import (
	"encoding/json"

	"github.com/dockbridge/dockbridge/internal/backup"
)

// The protocol between the CLI and the helper: the CLI, built for any OS, reads these; the
// commands that produce them (helper.go) are built for Unix only.

// EnvVar marks a process as the helper.
const EnvVar = "DOCKBRIDGE_HELPER"

// DataDir is where the volume is mounted in the helper container.
const DataDir = "/data"

// Line is one line of the helper's stderr.
type Line struct {
	Warning string          `json:"warning,omitempty"`
	Error   string          `json:"error,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
}

// BackupResult is the final report of `backup`.
type BackupResult struct {
	Metadata        backup.Metadata `json:"metadata"`
	Stats           backup.Stats    `json:"stats"`
	CompressedBytes int64           `json:"compressed_bytes"`
	MaxRSSBytes     int64           `json:"max_rss_bytes"`
}

// RestoreResult is the final report of `restore`.
type RestoreResult struct {
	Metadata backup.Metadata `json:"metadata"`
	Stats    backup.Stats    `json:"stats"`
	Cleared  int             `json:"cleared"`
	MaxRSS   int64           `json:"max_rss_bytes"`
}

// ProbeResult is the final report of `probe`.
type ProbeResult struct {
	Mounted    bool   `json:"mounted"`
	FSType     string `json:"fs_type,omitempty"`
	Writable   bool   `json:"writable"`
	WriteError string `json:"write_error,omitempty"`
	Entries    int64  `json:"entries"`
	// Files counts regular files (each hard-linked file once) and FileBytes their sizes: as a
	// backup's metadata counts them.
	Files       int64  `json:"files"`
	FileBytes   int64  `json:"file_bytes"`
	UsedBytes   int64  `json:"used_bytes"` // allocated blocks of the volume's files
	TotalBytes  uint64 `json:"total_bytes"`
	FreeBytes   uint64 `json:"free_bytes"` // available to unprivileged users
	TotalInodes uint64 `json:"total_inodes"`
	FreeInodes  uint64 `json:"free_inodes"`
}
