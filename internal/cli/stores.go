package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/backup"
)

// storeFlags are the S3 settings; credentials come only from the environment
// (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or ~/.aws/credentials, never from flags.
type storeFlags struct {
	endpoint string
	region   string
	partSize string
}

// add adds the S3 flags; uploads: the command writes archives, so --s3-part-size matters.
func (s *storeFlags) add(fs *pflag.FlagSet, uploads bool) {
	fs.StringVar(&s.endpoint, "s3-endpoint", "", "S3-compatible endpoint URL (default $AWS_ENDPOINT_URL, else AWS); credentials from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY")
	fs.StringVar(&s.region, "s3-region", "", "S3 region (default $AWS_REGION)")
	if uploads {
		fs.StringVar(&s.partSize, "s3-part-size", "16MiB", "multipart upload part size for s3:// destinations (an archive holds at most 10000 parts)")
	}
}

func (s *storeFlags) config(location string) (backup.S3Config, error) {
	cfg := backup.S3Config{Endpoint: s.endpoint, Region: s.region}
	if s.partSize != "" && strings.HasPrefix(location, "s3://") {
		n, err := units.RAMInBytes(s.partSize)
		if err != nil || n < 5<<20 {
			return cfg, errorf("--s3-part-size %q: give a size of at least 5MiB, e.g. 64MiB", s.partSize)
		}
		cfg.PartSize = uint64(n)
	}
	return cfg, nil
}

// open opens a store to read from: it must exist, nothing is created.
func (s *storeFlags) open(ctx context.Context, location string) (backup.Store, error) {
	cfg, err := s.config(location)
	if err != nil {
		return nil, err
	}
	return backup.OpenStore(ctx, location, cfg)
}

// destination opens a store to write backups into; a missing directory is made, and said so on w.
func (s *storeFlags) destination(ctx context.Context, location string, w io.Writer) (backup.Store, error) {
	cfg, err := s.config(location)
	if err != nil {
		return nil, err
	}
	st, created, err := backup.OpenDestination(ctx, location, cfg)
	if created && w != nil {
		fmt.Fprintf(w, "Created the backup directory %s\n", location)
	}
	return st, err
}

// configuredStore is where backups are looked for when no path is given: --from, else
// $DOCKBRIDGE_BACKUP_TO; "" when neither is set.
func configuredStore(from string) string {
	if from != "" {
		return from
	}
	return os.Getenv("DOCKBRIDGE_BACKUP_TO")
}

// fromOrEnv is where `backup ls`, prune and the completion of archive names look: the
// configured store, else the current directory.
func fromOrEnv(from string) string {
	if loc := configuredStore(from); loc != "" {
		return loc
	}
	return "."
}

// archive finds ARCHIVE as `restore` and `backup verify` take it: DIR/NAME or
// s3://bucket/prefix/NAME in that store; a bare NAME, exactly as `backup ls` prints it, in the
// configured store (--from, else $DOCKBRIDGE_BACKUP_TO) and then in the current directory.
// Nothing is created; a name found nowhere is a *backup.NoBackupError with the nearest names.
func (s *storeFlags) archive(ctx context.Context, arg, from string) (backup.Store, string, error) {
	locs, name := archiveLocations(arg, from)
	var stores []backup.Store
	var unreadable []string
	for _, loc := range locs {
		st, err := s.open(ctx, loc)
		switch {
		case errors.Is(err, backup.ErrNoStore):
			unreadable = append(unreadable, fmt.Sprintf("%s (it does not exist)", loc))
			continue
		case err != nil:
			return nil, "", err
		}
		stores = append(stores, st)
	}
	st, err := backup.Locate(ctx, name, stores...)
	var nb *backup.NoBackupError
	if errors.As(err, &nb) {
		nb.Where = append(nb.Where, unreadable...)
	}
	return st, name, err
}

// archiveLocations says where ARCHIVE may be, in order, and its name.
func archiveLocations(arg, from string) (locations []string, name string) {
	if rest, ok := strings.CutPrefix(arg, "s3://"); ok {
		dir, base := path.Split(rest)
		return []string{"s3://" + dir}, base
	}
	if strings.Contains(arg, "/") {
		dir, base := filepath.Split(arg)
		if dir == "" {
			dir = "."
		}
		return []string{dir}, base
	}
	loc := configuredStore(from)
	if loc == "" || sameDir(loc, ".") {
		return []string{"."}, arg
	}
	return []string{loc, "."}, arg
}

func sameDir(a, b string) bool {
	if strings.Contains(a, "://") || strings.Contains(b, "://") {
		return a == b
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// identities reads an age identity file (--identity); none when file is empty.
func identities(file string) ([]age.Identity, error) {
	if file == "" {
		return nil, nil
	}
	return backup.ParseIdentities(file)
}

// archiveArgHelp says how ARCHIVE is found (restore, backup verify).
const archiveArgHelp = `ARCHIVE is a path (DIR/NAME, s3://bucket/prefix/NAME) or a name exactly as ` + "`backup ls`" + ` prints
it, looked for in --from (default $DOCKBRIDGE_BACKUP_TO) and then in the current directory.
Nothing is created: a directory or bucket that does not exist is an error.`
