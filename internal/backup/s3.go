package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says how to reach an S3-compatible service. Empty fields come from the environment:
// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (e.g. https://fsn1.your-objectstorage.com), AWS_REGION,
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials).
type S3Config struct {
	Endpoint  string // URL; http:// means no TLS
	Region    string
	AccessKey string
	SecretKey string
	// SessionToken goes with temporary credentials.
	SessionToken string
	// PartSize of multipart uploads (default 16 MiB; an object holds at most 10000 parts).
	PartSize uint64
	// Threads uploading parts in parallel (default 2); memory is about PartSize × (Threads+1).
	Threads uint
}

func (c S3Config) withEnv() S3Config {
	first := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	c.Endpoint = first(c.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"), "https://s3.amazonaws.com")
	c.Region = first(c.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	if c.PartSize == 0 {
		c.PartSize = 16 << 20
	}
	if c.Threads == 0 {
		c.Threads = 2
	}
	return c
}

// S3Store is a bucket and a key prefix.
type S3Store struct {
	client *minio.Client
	bucket string
	prefix string // "" or ending in /
	cfg    S3Config
}

// NewS3Store opens bucket[/prefix].
func NewS3Store(ctx context.Context, bucketPrefix string, cfg S3Config) (*S3Store, error) {
	cfg = cfg.withEnv()
	bucket, prefix, _ := strings.Cut(bucketPrefix, "/")
	if bucket == "" {
		return nil, errors.New("s3 location has no bucket: use s3://bucket/prefix")
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("s3 endpoint %q is not an http(s) URL: set AWS_ENDPOINT_URL, e.g. https://fsn1.your-objectstorage.com", cfg.Endpoint)
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{},
		})
	}
	client, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: cfg.Region})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.Endpoint, err)
	}
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 bucket %s at %s: %w", bucket, cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3 bucket %s does not exist at %s: create it first: %w", bucket, cfg.Endpoint, ErrNoStore)
	}
	return &S3Store{client: client, bucket: bucket, prefix: prefix, cfg: cfg}, nil
}

func (s *S3Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

func (s *S3Store) key(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("invalid backup name %q", name)
	}
	return s.prefix + name, nil
}

// Create streams a multipart upload; the object appears only when Commit completes it, and
// Abort (or any error) aborts the upload.
func (s *S3Store) Create(ctx context.Context, name string) (ObjectWriter, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	w := &s3Writer{pw: pw, done: make(chan error, 1), name: s.String() + name}
	go func() {
		_, err := s.client.PutObject(ctx, s.bucket, key, pr, -1, minio.PutObjectOptions{
			PartSize: s.cfg.PartSize, NumThreads: s.cfg.Threads, ConcurrentStreamParts: s.cfg.Threads > 1,
			ContentType: "application/octet-stream",
		})
		pr.CloseWithError(err) // unblock a writer if the upload failed
		w.done <- err
	}()
	return w, nil
}

type s3Writer struct {
	pw       *io.PipeWriter
	done     chan error
	name     string
	finished bool
}

func (w *s3Writer) Write(p []byte) (int, error) {
	n, err := w.pw.Write(p)
	if err != nil {
		return n, fmt.Errorf("upload %s: %w", w.name, err)
	}
	return n, nil
}

func (w *s3Writer) Commit() error {
	w.finished = true
	w.pw.Close()
	if err := <-w.done; err != nil {
		return fmt.Errorf("upload %s: %w", w.name, err)
	}
	return nil
}

var errAborted = errors.New("backup aborted")

func (w *s3Writer) Abort() {
	if w.finished {
		return
	}
	w.finished = true
	w.pw.CloseWithError(errAborted)
	<-w.done
}

func (s *S3Store) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if _, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey || minio.ToErrorResponse(err).StatusCode == 404 {
			return nil, fmt.Errorf("%s%s: %w", s, name, ErrNotFound)
		}
		return nil, fmt.Errorf("stat %s%s: %w", s, name, err)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("download %s%s: %w", s, name, err)
	}
	return obj, nil
}

func (s *S3Store) ReadSmall(ctx context.Context, name string) ([]byte, error) {
	rc, err := s.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 64<<10))
}

func (s *S3Store) List(ctx context.Context) ([]Object, error) {
	var out []Object
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s: %w", s, o.Err)
		}
		name := strings.TrimPrefix(o.Key, s.prefix)
		if name == "" || strings.Contains(name, "/") || path.Base(name) != name {
			continue
		}
		out = append(out, Object{Name: name, Size: o.Size, ModTime: o.LastModified})
	}
	return out, nil
}

func (s *S3Store) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s%s: %w", s, name, err)
	}
	return nil
}

var (
	_ Store = (*S3Store)(nil)
	_ Store = (*DirStore)(nil)
)

// EnvCredentials are the S3 credentials this process would use: $AWS_ACCESS_KEY_ID and
// $AWS_SECRET_ACCESS_KEY (and $AWS_SESSION_TOKEN), MinIO's variables, or ~/.aws/credentials
// ($AWS_PROFILE). A schedule on a dockbridge host takes them to the server.
func EnvCredentials() (access, secret, session string, err error) {
	v, err := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{},
	}).Get()
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return "", "", "", errors.New("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or put them in ~/.aws/credentials); they are never taken from flags")
	}
	return v.AccessKeyID, v.SecretAccessKey, v.SessionToken, nil
}

// EndpointFromEnv is the S3 endpoint and region the environment gives (AWS_ENDPOINT_URL_S3,
// AWS_ENDPOINT_URL, AWS_REGION), with AWS's endpoint as the default.
func EndpointFromEnv(endpoint, region string) (string, string) {
	c := S3Config{Endpoint: endpoint, Region: region}.withEnv()
	return c.Endpoint, c.Region
}

// StaleUploads is a store that can abort the uploads a killed backup left unfinished.
type StaleUploads interface {
	AbortStaleUploads(ctx context.Context, olderThan time.Duration, now time.Time) (int, error)
}

// AbortStaleUploads aborts the multipart uploads of archives under the prefix that started
// more than olderThan before now and were never completed (a backup killed in the middle of
// its upload): S3 keeps their parts, never listed but billed, until they are aborted. It
// returns how many objects' uploads it aborted.
func (s *S3Store) AbortStaleUploads(ctx context.Context, olderThan time.Duration, now time.Time) (int, error) {
	n := 0
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, s.prefix, false) {
		if u.Err != nil {
			return n, fmt.Errorf("list unfinished uploads in %s: %w", s, u.Err)
		}
		name := strings.TrimPrefix(u.Key, s.prefix)
		if _, ok := ParseArchiveName(name); !ok || strings.Contains(name, "/") || now.Sub(u.Initiated) < olderThan {
			continue
		}
		if err := s.client.RemoveIncompleteUpload(ctx, s.bucket, u.Key); err != nil {
			return n, fmt.Errorf("abort the unfinished upload of %s%s: %w", s, name, err)
		}
		n++
	}
	return n, nil
}
