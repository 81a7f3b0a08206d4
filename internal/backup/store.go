package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Object is one file in a store.
type Object struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Store holds archives: a local directory or an S3-compatible bucket prefix.
type Store interface {
	// Create starts writing name; nothing is visible under name until Commit.
	Create(ctx context.Context, name string) (ObjectWriter, error)
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// ReadSmall reads a small object (a checksum file), at most 64 KiB.
	ReadSmall(ctx context.Context, name string) ([]byte, error)
	List(ctx context.Context) ([]Object, error)
	Delete(ctx context.Context, name string) error
	// String is the location as a user wrote it.
	String() string
}

// ObjectWriter is an object being written: Commit publishes it atomically, Abort discards it.
type ObjectWriter interface {
	io.Writer
	Commit() error
	Abort()
}

// ErrNotFound is returned by Open and ReadSmall for a missing object.
var ErrNotFound = errors.New("not found")

// ErrNoStore is returned by OpenStore for a directory or bucket that does not exist.
var ErrNoStore = errors.New("no such backup location")

// OpenStore opens an existing store, s3://bucket/prefix or a directory, to read from (and to
// delete from, as prune does). It never creates anything: a missing directory or bucket is an
// error, so that a typo in a path lists nothing instead of making a directory.
func OpenStore(ctx context.Context, location string, s3 S3Config) (Store, error) {
	if rest, ok := strings.CutPrefix(location, "s3://"); ok {
		return NewS3Store(ctx, rest, s3)
	}
	if strings.Contains(location, "://") {
		return nil, fmt.Errorf("backup location %q: use a directory or s3://bucket/prefix", location)
	}
	return NewDirStore(location)
}

// OpenDestination opens a store to write backups into. A missing local directory is created
// (0700, with its parents), and created says so; a bucket must exist (it is never created).
func OpenDestination(ctx context.Context, location string, s3 S3Config) (s Store, created bool, err error) {
	if strings.HasPrefix(location, "s3://") || strings.Contains(location, "://") {
		s, err = OpenStore(ctx, location, s3)
		return s, false, err
	}
	return CreateDirStore(location)
}

// DirStore is a local directory.
type DirStore struct{ dir string }

// NewDirStore uses dir, which must be an existing directory.
func NewDirStore(dir string) (*DirStore, error) {
	if dir == "" {
		return nil, errors.New("backup directory is empty: give --to DIR or s3://bucket/prefix")
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("backup directory %s does not exist: %w", dir, ErrNoStore)
	case err != nil:
		return nil, fmt.Errorf("backup directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("backup directory %s is not a directory", dir)
	}
	return &DirStore{dir: dir}, nil
}

// CreateDirStore uses dir, creating it (0700, with its parents) when it is missing.
func CreateDirStore(dir string) (s *DirStore, created bool, err error) {
	if dir != "" {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, false, fmt.Errorf("create backup directory: %w", err)
			}
			created = true
		}
	}
	s, err = NewDirStore(dir)
	return s, created, err
}

func (d *DirStore) String() string { return d.dir }

func (d *DirStore) path(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("invalid backup name %q", name)
	}
	return filepath.Join(d.dir, name), nil
}

// Create writes to a hidden temp file (mode 0600) renamed into place by Commit.
func (d *DirStore) Create(_ context.Context, name string) (ObjectWriter, error) {
	final, err := d.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(d.dir, "."+name+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", final, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &dirWriter{f: f, out: newArchiveFile(f), final: final}, nil
}

type dirWriter struct {
	f     *os.File
	out   archiveFile
	final string
	done  bool
}

func (w *dirWriter) Write(p []byte) (int, error) { return w.out.Write(p) }

func (w *dirWriter) Commit() error {
	w.done = true
	if err := w.out.finish(); err != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		return fmt.Errorf("write %s: %w", w.final, err)
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		return fmt.Errorf("sync %s: %w", w.final, err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("close %s: %w", w.final, err)
	}
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("rename into %s: %w", w.final, err)
	}
	if dir, err := os.Open(filepath.Dir(w.final)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}

func (w *dirWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.out.abort()
	w.f.Close()
	os.Remove(w.f.Name())
}

func (d *DirStore) Open(_ context.Context, name string) (io.ReadCloser, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	return f, err
}

func (d *DirStore) ReadSmall(ctx context.Context, name string) ([]byte, error) {
	rc, err := d.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 64<<10))
}

func (d *DirStore) List(_ context.Context) ([]Object, error) {
	des, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.dir, err)
	}
	var out []Object
	for _, de := range des {
		if !de.Type().IsRegular() || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		out = append(out, Object{Name: de.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, nil
}

func (d *DirStore) Delete(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// WriteObject stores small data atomically.
func WriteObject(ctx context.Context, s Store, name string, data []byte) error {
	w, err := s.Create(ctx, name)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", name, err)
	}
	return w.Commit()
}

// List returns the backups in s, newest first.
func List(ctx context.Context, s Store) ([]Backup, error) {
	objs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	return backupsFromObjects(objs), nil
}
