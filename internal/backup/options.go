package backup

import "time"

// WriteOptions tunes WriteTree.
type WriteOptions struct {
	// Warn receives non-fatal findings (changed files with --keep-running, skipped sockets).
	Warn func(string)
	// Strict makes a file that changed between scan and read an error instead of a warning:
	// with the containers stopped nothing may write to the volume.
	Strict bool
	// Now is the clock (tests).
	Now func() time.Time
}

// ExtractOptions tunes Extract.
type ExtractOptions struct {
	// MaxBytes refuses an archive whose metadata announces more content than this (the target's
	// free space); 0 means no limit besides the metadata itself.
	MaxBytes int64
	// AllowDevices lets the extractor create block and character devices.
	AllowDevices bool
	// Chown restores owners; without it files belong to the extracting user.
	Chown bool
	// Warn receives non-fatal findings (owners or xattrs the target refused).
	Warn func(string)
	// Before is called with the metadata before anything is written; an error stops the extraction.
	Before func(Metadata) error
}
