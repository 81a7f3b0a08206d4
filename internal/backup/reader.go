package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// archiveReader reads a dockbridge tar stream: the metadata first, then data/ entries whose names
// are checked and whose counts are bounded by the metadata.
type archiveReader struct {
	tr    *tar.Reader
	meta  Metadata
	stats Stats
	// limit is the most content bytes the reader lets through.
	limit int64
	// sawRoot: data/ itself was seen.
	sawRoot bool
	// tree is what the entries so far would make in an empty target.
	tree entryTree
}

// newArchiveReader reads and validates the metadata entry.
func newArchiveReader(r io.Reader) (*archiveReader, error) {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("read first entry: %w", truncated(err))
	}
	if h.Name != MetadataName || h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("first entry is %q, not %s: not a dockbridge backup", h.Name, MetadataName)
	}
	if h.Size > maxMetadataSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", MetadataName, h.Size, maxMetadataSize)
	}
	b, err := io.ReadAll(io.LimitReader(tr, maxMetadataSize))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", MetadataName, truncated(err))
	}
	m, err := decodeMetadata(b)
	if err != nil {
		return nil, err
	}
	return &archiveReader{tr: tr, meta: m, limit: m.Bytes, tree: entryTree{}}, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("archive is truncated: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// ReadMetadata returns the metadata of a (decompressed) archive stream, reading only its first
// entry.
func ReadMetadata(r io.Reader) (Metadata, error) {
	ar, err := newArchiveReader(r)
	if err != nil {
		return Metadata{}, err
	}
	return ar.meta, nil
}

// relName checks an entry name and returns its path relative to data/ ("." for data/ itself).
func relName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %q %s", ErrUnsafeEntry, name, why)
	}
	if strings.ContainsRune(name, 0) {
		return bad("contains a NUL byte")
	}
	if strings.HasPrefix(name, "/") {
		return bad("is an absolute path")
	}
	trimmed := strings.TrimSuffix(name, "/")
	if trimmed == DataDir {
		return ".", nil
	}
	rest, ok := strings.CutPrefix(trimmed, DataDir+"/")
	if !ok {
		return bad("is outside " + DataDir + "/")
	}
	for _, el := range strings.Split(rest, "/") {
		switch el {
		case "..":
			return bad("climbs out with ..")
		case "", ".":
			return bad("is not a clean path")
		}
	}
	if path.Clean(rest) != rest {
		return bad("is not a clean path")
	}
	return rest, nil
}

// next returns the next data entry, checked (its name, its place in the tree the archive
// builds, the counts), or io.EOF after the last one.
func (a *archiveReader) next() (*tar.Header, string, error) {
	for {
		h, err := a.tr.Next()
		if err == io.EOF {
			return nil, "", io.EOF
		}
		if err != nil {
			return nil, "", fmt.Errorf("read archive: %w", truncated(err))
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		rel, err := relName(h.Name)
		if err != nil {
			return nil, "", err
		}
		if rel == "." {
			if a.sawRoot || h.Typeflag != tar.TypeDir {
				return nil, "", fmt.Errorf("%w: %q appears twice or is not a directory", ErrUnsafeEntry, h.Name)
			}
			a.sawRoot = true
			return h, rel, nil
		}
		a.stats.Entries++
		if a.stats.Entries > a.meta.Entries {
			return nil, "", fmt.Errorf("%w: more than the %d entries its metadata announces (decompression bomb or lying metadata)", ErrTooLarge, a.meta.Entries)
		}
		if h.Typeflag == tar.TypeLink {
			if _, err := relName(h.Linkname); err != nil || h.Linkname == DataDir+"/" {
				return nil, "", fmt.Errorf("%w: hard link %q points to %q, outside %s/", ErrUnsafeEntry, h.Name, h.Linkname, DataDir)
			}
		}
		if err := a.tree.add(h, rel); err != nil {
			return nil, "", err
		}
		if isRegular(h) {
			if h.Size < 0 || h.Size > a.limit-a.stats.Bytes {
				return nil, "", fmt.Errorf("%w: %q would exceed the %d bytes its metadata announces (decompression bomb or lying metadata)", ErrTooLarge, h.Name, a.meta.Bytes)
			}
			a.stats.Files++
		}
		return h, rel, nil
	}
}

// copyContent copies the current entry's content to w, counting it.
func (a *archiveReader) copyContent(w io.Writer, h *tar.Header, buf []byte) error {
	n, err := io.CopyBuffer(w, io.LimitReader(a.tr, h.Size), buf)
	a.stats.Bytes += n
	if err != nil {
		return fmt.Errorf("extract %s: %w", h.Name, truncated(err))
	}
	if n != h.Size {
		return fmt.Errorf("extract %s: archive is truncated: %w", h.Name, io.ErrUnexpectedEOF)
	}
	return nil
}

// finish checks the end of the archive: the counts and nothing after the tar trailer but padding.
func (a *archiveReader) finish(rest io.Reader) error {
	if err := a.stats.matches(a.meta); err != nil {
		return err
	}
	if rest != nil {
		// Drain the stream: this is where a compressor's own checksum and a truncated frame show.
		if _, err := io.Copy(io.Discard, rest); err != nil {
			return fmt.Errorf("read end of archive: %w", truncated(err))
		}
	}
	return nil
}

// Walk reads a whole decompressed archive, checking every name and the counts against the
// metadata, without writing anything.
func Walk(r io.Reader) (Metadata, Stats, error) {
	ar, err := newArchiveReader(r)
	if err != nil {
		return Metadata{}, Stats{}, err
	}
	buf := make([]byte, 1<<20)
	for {
		h, _, err := ar.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ar.meta, ar.stats, err
		}
		if isRegular(h) {
			if err := ar.copyContent(io.Discard, h, buf); err != nil {
				return ar.meta, ar.stats, err
			}
		}
	}
	return ar.meta, ar.stats, ar.finish(r)
}

func isRegular(h *tar.Header) bool {
	return h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeGNUSparse || h.Typeflag == tar.TypeRegA //nolint:staticcheck // old archives
}
