// Package cmdrun runs the disk tools (blkid, mkfs, losetup, ...) for internal/mount and its
// sub-packages: binary lookup without a shell, a C locale for parseable output, and errors
// that carry the command line and its combined output.
package cmdrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// sbinDirs are searched after PATH: a managed plugin's rootfs or a non-login root shell may
// have a PATH without the sbin directories where util-linux and e2fsprogs install their tools.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// LookPath finds name in PATH, then in the usual sbin directories.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH (%s) or in %s: install it (util-linux, e2fsprogs or xfsprogs)",
		name, os.Getenv("PATH"), strings.Join(sbinDirs, ", "))
}

// Error is a command that failed: its command line, exit code (-1 if it did not run to an exit)
// and combined output.
type Error struct {
	Cmd      string
	ExitCode int
	Output   string
	Err      error
}

func (e *Error) Error() string {
	out := strings.TrimSpace(e.Output)
	if out == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, out)
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode returns the exit code of a failed command run by Run, or -1.
func ExitCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.ExitCode
	}
	return -1
}

// Run runs name with args, stdin empty, LC_ALL=C, and returns its stdout. On failure the
// error is an *Error with stdout and stderr combined.
func Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path, err := LookPath(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout bytes.Buffer
	combined := &lockedBuffer{}
	cmd.Stdout = &tee{&stdout, combined}
	cmd.Stderr = combined
	err = cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	code := -1
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return stdout.Bytes(), &Error{
		Cmd:      name + " " + strings.Join(args, " "),
		ExitCode: code,
		Output:   combined.String(),
		Err:      err,
	}
}

// tee writes stdout to its own buffer and to the interleaved one.
type tee struct {
	stdout   *bytes.Buffer
	combined *lockedBuffer
}

func (t *tee) Write(p []byte) (int, error) {
	t.stdout.Write(p)
	return t.combined.Write(p)
}

// lockedBuffer is written by the stdout and stderr copiers of os/exec, two goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
