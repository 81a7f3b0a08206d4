//go:build !unix

package backup

import (
	"context"
	"fmt"
	"io"
	"runtime"
)

// A volume's files are read and written by the helper, a Linux container on the engine; the
// CLI on Windows only moves and checks archives, so it has no file-tree code.

func errTreeUnsupported() error {
	return fmt.Errorf("reading or writing a volume's files is not supported on %s: it runs in the Linux helper container", runtime.GOOS)
}

// WriteTree is Unix only.
func WriteTree(context.Context, io.Writer, string, Metadata, WriteOptions) (Metadata, Stats, error) {
	return Metadata{}, Stats{}, errTreeUnsupported()
}

// Extract is Unix only.
func Extract(context.Context, io.Reader, string, ExtractOptions) (Metadata, Stats, error) {
	return Metadata{}, Stats{}, errTreeUnsupported()
}
