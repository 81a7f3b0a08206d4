package backuptest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// VersityInstall is the command CI runs to get the S3 server the tests start.
const VersityInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// S3Server is a real S3-compatible server (versitygw in posix mode) on 127.0.0.1.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Bucket    string
	Dir       string // posix root; the bucket is Dir/Bucket
	cmd       *exec.Cmd
}

// Stop kills the server (to test an unreachable destination).
func (s *S3Server) Stop(t testing.TB) {
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
}

// StartS3 starts versitygw for the test and creates a bucket. A missing binary fails the test
// with the install command (skipped only under -short).
func StartS3(t testing.TB) *S3Server { return StartS3With(t, S3Options{}) }

// S3Options place the server elsewhere than a free port on 127.0.0.1.
type S3Options struct {
	// Listen is host:port (default 127.0.0.1 and a free port).
	Listen string
	// Prefix runs the server under a command, e.g. ip netns exec NS.
	Prefix []string
}

// VersityBinary is the path of versitygw; a missing binary fails the test with the install
// command (skipped only under -short).
func VersityBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs versitygw (skipped with -short)")
	}
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			if out, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
				gopath = strings.TrimSpace(string(out))
			}
		}
		cand := filepath.Join(gopath, "bin", "versitygw")
		if _, serr := os.Stat(cand); serr != nil {
			t.Fatalf("versitygw (a real S3-compatible server) is not installed: run `%s`", VersityInstall)
		}
		bin = cand
	}
	return bin
}

// StartS3With starts versitygw as o says and creates a bucket.
func StartS3With(t testing.TB, o S3Options) *S3Server {
	t.Helper()
	bin := VersityBinary(t)
	dir := t.TempDir()
	s := &S3Server{AccessKey: "dockbridgetest", SecretKey: "dockbridge-test-secret", Bucket: "backups", Dir: dir}
	if err := os.Mkdir(filepath.Join(dir, s.Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := o.Listen
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	s.Endpoint = "http://" + addr
	logf, _ := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	args := append(append([]string{}, o.Prefix...), bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr, "--quiet", "posix", dir)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	s.cmd = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("versitygw did not listen on %s within 30 s: %s", addr, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Location is the s3:// URL of a prefix in the test bucket.
func (s *S3Server) Location(prefix string) string {
	return fmt.Sprintf("s3://%s/%s", s.Bucket, prefix)
}
