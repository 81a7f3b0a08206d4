package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"filippo.io/age"
)

// ParseRecipients reads age recipients: an "age1..." string, or the path of a recipients file.
func ParseRecipients(spec string) ([]age.Recipient, error) {
	if strings.HasPrefix(spec, "age1") {
		r, err := age.ParseX25519Recipient(spec)
		if err != nil {
			return nil, fmt.Errorf("age recipient %q: %w", spec, err)
		}
		return []age.Recipient{r}, nil
	}
	b, err := os.ReadFile(spec)
	if err != nil {
		return nil, fmt.Errorf("--encrypt-to %q is neither an age1... recipient nor a readable recipients file: %w", spec, err)
	}
	rs, err := age.ParseRecipients(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("age recipients file %s: %w", spec, err)
	}
	return rs, nil
}

// ParseIdentities reads an age identity file (as written by age-keygen).
func ParseIdentities(file string) ([]age.Identity, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("age identity file: %w", err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("age identity file %s: %w", file, err)
	}
	return ids, nil
}

// Result describes a stored archive.
type Result struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ArchiveWriter takes a compressed archive stream and stores it: age-encrypted if recipients are
// given, hashed on the way, committed atomically, then the .sha256 sidecar. Nothing touches the
// local disk in between; memory is the store's buffers.
type ArchiveWriter struct {
	ctx   context.Context
	store Store
	name  string
	obj   ObjectWriter
	hw    *hashingWriter
	enc   io.WriteCloser
	w     io.Writer
}

// NewArchiveWriter starts name in s.
func NewArchiveWriter(ctx context.Context, s Store, name string, recipients []age.Recipient) (*ArchiveWriter, error) {
	obj, err := s.Create(ctx, name)
	if err != nil {
		return nil, err
	}
	a := &ArchiveWriter{ctx: ctx, store: s, name: name, obj: obj}
	a.hw = newHashingWriter(obj)
	a.w = a.hw
	if len(recipients) > 0 {
		enc, err := age.Encrypt(a.hw, recipients...)
		if err != nil {
			obj.Abort()
			return nil, fmt.Errorf("age: %w", err)
		}
		a.enc, a.w = enc, enc
	}
	return a, nil
}

func (a *ArchiveWriter) Write(p []byte) (int, error) { return a.w.Write(p) }

// Commit finishes the archive and writes its checksum file.
func (a *ArchiveWriter) Commit() (Result, error) {
	if a.enc != nil {
		if err := a.enc.Close(); err != nil {
			a.obj.Abort()
			return Result{}, fmt.Errorf("age: %w", err)
		}
	}
	if err := a.obj.Commit(); err != nil {
		return Result{}, err
	}
	sum := a.hw.h.Sum(nil)
	if err := WriteObject(a.ctx, a.store, ChecksumName(a.name), ChecksumLine(sum, a.name)); err != nil {
		return Result{}, fmt.Errorf("write checksum of %s: %w", a.name, err)
	}
	return Result{Name: a.name, Size: a.hw.n, SHA256: fmt.Sprintf("%x", sum)}, nil
}

// Abort discards the archive.
func (a *ArchiveWriter) Abort() { a.obj.Abort() }

// VerifyChecksum hashes the stored archive and compares it with its sidecar.
func VerifyChecksum(ctx context.Context, s Store, name string) error {
	want, err := ReadChecksum(ctx, s, name)
	if err != nil {
		return err
	}
	cr, err := OpenChecked(ctx, s, name, want)
	if err != nil {
		return err
	}
	defer cr.Close()
	return cr.Verify()
}

// CheckedReader reads a stored archive and hashes it on the way, so that one pass can both use
// the archive and check it (restore extracts and checks at once). Verify says whether what was
// read is the archive its .sha256 describes.
type CheckedReader struct {
	rc   io.ReadCloser
	name string
	want []byte
	h    hash.Hash
	n    int64
	err  error // the first read error, io.EOF at the end
}

// OpenChecked opens name for reading, to be checked against want (from ReadChecksum).
func OpenChecked(ctx context.Context, s Store, name string, want []byte) (*CheckedReader, error) {
	rc, err := s.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return &CheckedReader{rc: rc, name: name, want: want, h: sha256.New()}, nil
}

func (c *CheckedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}

// Close closes the archive.
func (c *CheckedReader) Close() error { return c.rc.Close() }

// Verify reads what is left of the archive and compares its SHA-256 with the sidecar's: nil only
// when the whole archive was read and matches.
func (c *CheckedReader) Verify() error {
	if c.err == nil {
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 256<<10)); err != nil {
			return fmt.Errorf("read %s: %w", c.name, err)
		}
	}
	if c.err != io.EOF {
		return fmt.Errorf("read %s: %w", c.name, c.err)
	}
	if got := c.h.Sum(nil); !bytes.Equal(got, c.want) {
		return fmt.Errorf("%w: %s has SHA-256 %x but %s records %x: the archive is damaged or was changed", ErrChecksum, c.name, got, ChecksumName(c.name), c.want)
	}
	return nil
}

// ReadChecksum returns the SHA-256 that name's .sha256 sidecar records; an archive without one
// is an interrupted backup (ErrNoChecksum).
func ReadChecksum(ctx context.Context, s Store, name string) ([]byte, error) {
	b, err := s.ReadSmall(ctx, ChecksumName(name))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has no %s (an interrupted backup?)", ErrNoChecksum, name, ChecksumName(name))
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ChecksumName(name), err)
	}
	return ParseChecksum(b, name)
}

// OpenCompressed opens a stored archive and returns its compressed tar stream, decrypted when
// the archive is encrypted (identities required then).
func OpenCompressed(ctx context.Context, s Store, name string, ids []age.Identity) (io.ReadCloser, Compression, error) {
	if _, _, ok := compressionFromName(name); !ok {
		return nil, "", errNotArchiveName(name)
	}
	rc, err := s.Open(ctx, name)
	if err != nil {
		return nil, "", err
	}
	return CompressedStream(rc, name, ids)
}

func errNotArchiveName(name string) error {
	return fmt.Errorf("%s: not a backup archive name (NAME.tar, .tar.zst, .tar.gz, optionally .age)", name)
}

// CompressedStream turns rc, the stored bytes of archive name, into its compressed tar stream
// (decrypted when the archive is encrypted; identities required then). Closing the result
// closes rc; on error rc is closed.
func CompressedStream(rc io.ReadCloser, name string, ids []age.Identity) (io.ReadCloser, Compression, error) {
	c, encrypted, ok := compressionFromName(name)
	if !ok {
		rc.Close()
		return nil, "", errNotArchiveName(name)
	}
	if !encrypted {
		return rc, c, nil
	}
	if len(ids) == 0 {
		rc.Close()
		return nil, "", fmt.Errorf("%s is encrypted: give --identity FILE with the age key", name)
	}
	r, err := age.Decrypt(rc, ids...)
	if err != nil {
		rc.Close()
		return nil, "", fmt.Errorf("decrypt %s: %w", name, err)
	}
	return readCloser{r, rc}, c, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// OpenTar opens a stored archive as a plain tar stream.
func OpenTar(ctx context.Context, s Store, name string, ids []age.Identity) (io.ReadCloser, error) {
	rc, c, err := OpenCompressed(ctx, s, name, ids)
	if err != nil {
		return nil, err
	}
	d, err := NewDecompressor(rc, c)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return readCloser{d, closers{d, rc}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ReadArchiveMetadata reads only the metadata of a stored archive.
func ReadArchiveMetadata(ctx context.Context, s Store, name string, ids []age.Identity) (Metadata, error) {
	rc, err := OpenTar(ctx, s, name, ids)
	if err != nil {
		return Metadata{}, err
	}
	defer rc.Close()
	m, err := ReadMetadata(rc)
	if err != nil {
		return m, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Name     string   `json:"name"`
	Checksum string   `json:"checksum"` // "ok"
	Walked   bool     `json:"walked"`   // false: encrypted and no identity given
	Metadata Metadata `json:"metadata"`
	Stats    Stats    `json:"stats"`
}

// Verify checks the checksum, then decrypts (when identities are given), decompresses and walks
// the whole tar, checking names and counts against the metadata.
func Verify(ctx context.Context, s Store, name string, ids []age.Identity) (VerifyReport, error) {
	rep := VerifyReport{Name: name}
	if err := VerifyChecksum(ctx, s, name); err != nil {
		return rep, err
	}
	rep.Checksum = "ok"
	if _, encrypted, _ := compressionFromName(name); encrypted && len(ids) == 0 {
		return rep, nil
	}
	rc, err := OpenTar(ctx, s, name, ids)
	if err != nil {
		return rep, err
	}
	defer rc.Close()
	m, st, err := Walk(rc)
	rep.Metadata, rep.Stats = m, st
	if err != nil {
		return rep, fmt.Errorf("%s: %w", name, err)
	}
	rep.Walked = true
	return rep, nil
}
