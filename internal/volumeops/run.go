package volumeops

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/volumeops/helper"
)

// helperRun describes one helper container run.
type helperRun struct {
	volume   string
	readOnly bool
	args     []string
	stdin    io.Reader // nil: no stdin
	stdout   io.Writer // nil: discard
}

// helperReport is what the helper said on stderr.
type helperReport struct {
	warnings []string
	result   json.RawMessage
	errMsg   string
	other    []string
}

// runHelper creates the helper container with the volume at /data, attaches, starts it, streams
// stdin/stdout and waits for it; the container is removed whatever happens. Its log driver is
// "none" so the archive is never written to the engine's disk.
func (e *Engine) runHelper(ctx context.Context, r helperRun, into any) ([]string, error) {
	img, err := e.HelperImage(ctx)
	if err != nil {
		return nil, err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("dockbridge-helper-%s-%s", sanitize(r.volume), hex.EncodeToString(rnd[:]))
	cfg := &container.Config{
		Image:        img,
		Entrypoint:   []string{helperPath},
		Cmd:          r.args,
		Env:          []string{helper.EnvVar + "=1"},
		Labels:       map[string]string{helperLabel: "run", "dockbridge.volume": r.volume},
		AttachStdout: true,
		AttachStderr: true,
		WorkingDir:   "/",
	}
	if r.stdin != nil {
		cfg.AttachStdin, cfg.OpenStdin, cfg.StdinOnce = true, true, true
	}
	hc := &container.HostConfig{
		Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: r.volume, Target: helper.DataDir, ReadOnly: r.readOnly}},
		LogConfig:   container.LogConfig{Type: "none"},
		NetworkMode: "none",
	}
	created, err := e.API.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, Name: name})
	if err != nil && cerrdefs.IsNotFound(err) && e.helperGone(ctx, img) {
		// Another dockbridge version removed our image since we looked (see removeOldHelpers):
		// import it again, once.
		e.helperRef = ""
		if cfg.Image, err = e.HelperImage(ctx); err != nil {
			return nil, err
		}
		created, err = e.API.ContainerCreate(ctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, Name: name})
	}
	if err != nil {
		return nil, fmt.Errorf("create helper container for volume %s: %w", r.volume, err)
	}
	id := created.ID
	defer func() {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, _ = e.API.ContainerRemove(rmCtx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: false})
	}()
	att, err := e.API.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdin: r.stdin != nil, Stdout: true, Stderr: true})
	if err != nil {
		return nil, fmt.Errorf("attach helper container: %w", err)
	}
	defer att.Close()
	wait := e.API.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := e.API.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("start helper container for volume %s: %w", r.volume, err)
	}
	// The archive of a backup is read ahead of the writes to its destination.
	var in io.Reader = att.Reader
	interrupt := func() {}
	if r.stdin == nil {
		src := newStreamSource(att.Reader, att.Conn)
		interrupt = src.interrupt
		ra := newReadAhead(src)
		defer func() {
			src.interrupt() // ends the read-ahead's read if the stream has not ended
			ra.Close()
			src.release()
		}()
		in = ra
	}
	// Closing the connection when ctx ends unblocks the copies below.
	stopClose := context.AfterFunc(ctx, func() { interrupt(); att.Close() })
	defer stopClose()

	var stdinErr error
	var wg sync.WaitGroup
	if r.stdin != nil {
		wg.Go(func() {
			_, err := io.CopyBuffer(att.Conn, struct{ io.Reader }{r.stdin}, make([]byte, 1<<20))
			if err != nil {
				stdinErr = err
				att.Close() // the helper sees a truncated stream and fails
				return
			}
			stdinErr = att.CloseWrite()
		})
	}
	stdout := r.stdout
	if stdout == nil {
		stdout = io.Discard
	}
	stderr := &limitedBuffer{max: 4 << 20}
	_, copyErr := stdcopy.StdCopy(stdout, stderr, in)
	if copyErr != nil {
		// The helper is cut off, sees its output fail and ends.
		interrupt()
		att.Close()
	}
	// The helper's output has ended: it is done. A helper that stopped reading its stdin early
	// (a damaged archive: the extraction failed in the middle) leaves our stdin copy blocked on
	// a connection the engine no longer reads but keeps open (for two minutes, measured): close
	// it. Normally the copy has ended already (the helper reads to the end before it answers).
	copied := make(chan struct{})
	go func() { wg.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(time.Second):
		att.Close()
		<-copied
	}

	var exit int64 = -1
	select {
	case res := <-wait.Result:
		exit = res.StatusCode
		if res.Error != nil && res.Error.Message != "" {
			return nil, fmt.Errorf("helper container: %s", res.Error.Message)
		}
	case err := <-wait.Error:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("wait for helper container: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rep := parseReport(stderr.Bytes())
	switch {
	case ctx.Err() != nil:
		return rep.warnings, ctx.Err()
	case copyErr != nil:
		return rep.warnings, fmt.Errorf("stream from helper: %w", copyErr)
	case rep.errMsg != "":
		return rep.warnings, errors.New(rep.errMsg)
	case stdinErr != nil:
		return rep.warnings, fmt.Errorf("stream to helper: %w", stdinErr)
	case exit != 0:
		return rep.warnings, fmt.Errorf("helper exited with status %d: %s", exit, strings.Join(rep.other, "; "))
	case rep.result == nil:
		return rep.warnings, fmt.Errorf("helper gave no result: %s", strings.Join(rep.other, "; "))
	}
	if into != nil {
		if err := json.Unmarshal(rep.result, into); err != nil {
			return rep.warnings, fmt.Errorf("decode helper result: %w", err)
		}
	}
	return rep.warnings, nil
}

// helperGone tells whether the engine no longer has the helper image ref.
func (e *Engine) helperGone(ctx context.Context, ref string) bool {
	_, err := e.API.ImageInspect(ctx, ref)
	return cerrdefs.IsNotFound(err)
}

func parseReport(b []byte) helperReport {
	var rep helperReport
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var l helper.Line
		if json.Unmarshal(line, &l) != nil {
			rep.other = append(rep.other, string(line))
			continue
		}
		switch {
		case l.Warning != "":
			rep.warnings = append(rep.warnings, l.Warning)
		case l.Error != "":
			rep.errMsg = l.Error
		case l.Result != nil:
			rep.result = l.Result
		}
	}
	return rep
}

// limitedBuffer keeps the first max bytes.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() > 40 {
		return b.String()[:40]
	}
	return b.String()
}

// Probe measures a volume from inside a helper container.
func (e *Engine) Probe(ctx context.Context, vol string, writeTest bool) (helper.ProbeResult, error) {
	var res helper.ProbeResult
	args := []string{"probe"}
	if writeTest {
		args = append(args, "--write-test")
	}
	_, err := e.runHelper(ctx, helperRun{volume: vol, readOnly: !writeTest, args: args}, &res)
	if err != nil {
		return res, fmt.Errorf("probe volume %s: %w", vol, err)
	}
	return res, nil
}
