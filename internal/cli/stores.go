package cli

import (
	"context"
	"path"
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

func (s *storeFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&s.endpoint, "s3-endpoint", "", "S3-compatible endpoint URL (default $AWS_ENDPOINT_URL, else AWS); credentials from $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY")
	fs.StringVar(&s.region, "s3-region", "", "S3 region (default $AWS_REGION)")
	fs.StringVar(&s.partSize, "s3-part-size", "16MiB", "multipart upload part size (an archive holds at most 10000 parts)")
}

func (s *storeFlags) open(ctx context.Context, location string) (backup.Store, error) {
	cfg := backup.S3Config{Endpoint: s.endpoint, Region: s.region}
	if s.partSize != "" {
		n, err := units.RAMInBytes(s.partSize)
		if err != nil || n < 5<<20 {
			return nil, errorf("--s3-part-size %q: give a size of at least 5MiB, e.g. 64MiB", s.partSize)
		}
		cfg.PartSize = uint64(n)
	}
	return backup.OpenStore(ctx, location, cfg)
}

// splitArchive turns DIR/NAME, s3://bucket/prefix/NAME or NAME (in --from, default the current
// directory) into a store location and an archive name.
func splitArchive(arg, from string) (location, name string) {
	if rest, ok := strings.CutPrefix(arg, "s3://"); ok {
		dir, base := path.Split(rest)
		return "s3://" + dir, base
	}
	if strings.Contains(arg, "/") {
		dir, base := path.Split(arg)
		if dir == "" {
			dir = "."
		}
		return dir, base
	}
	if from == "" {
		from = "."
	}
	return from, arg
}

// identities reads an age identity file (--identity); none when file is empty.
func identities(file string) ([]age.Identity, error) {
	if file == "" {
		return nil, nil
	}
	return backup.ParseIdentities(file)
}
