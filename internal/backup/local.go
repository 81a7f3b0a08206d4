package backup

import (
	"context"
	"fmt"
	"io"
)

// WriteCompressed writes root's archive through the codec c to w (see WriteTree).
func WriteCompressed(ctx context.Context, w io.Writer, root string, meta Metadata, c Compression, opts WriteOptions) (Metadata, Stats, error) {
	meta.Compression = c
	if meta.Encryption == "" {
		meta.Encryption = "none"
	}
	zw, err := NewCompressor(w, c)
	if err != nil {
		return meta, Stats{}, err
	}
	m, st, err := WriteTree(ctx, zw, root, meta, opts)
	if cerr := zw.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: %w", c, cerr)
	}
	return m, st, err
}

// ExtractCompressed decompresses r with c and extracts it into dir (see Extract).
func ExtractCompressed(ctx context.Context, r io.Reader, c Compression, dir string, opts ExtractOptions) (Metadata, Stats, error) {
	d, err := NewDecompressor(r, c)
	if err != nil {
		return Metadata{}, Stats{}, err
	}
	defer d.Close()
	return Extract(ctx, d, dir, opts)
}
