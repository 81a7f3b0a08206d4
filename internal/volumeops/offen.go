package volumeops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// The labels of offen/docker-volume-backup, honoured so that a user moving from it keeps their
// compose files (cmd/backup/stop_restart.go and exec.go there):
//
//   - docker-volume-backup.stop-during-backup=true: the running container is stopped for the
//     backup and started again afterwards, whether or not it uses a volume being backed up;
//     -no-restart: stopped, not started again. Both on one container is an error, as in offen.
//     A value other than "true" names the backups that stop it: offen's
//     BACKUP_STOP_DURING_BACKUP_LABEL, here a schedule's id (BackupOptions.Label).
//   - docker-volume-backup.archive-pre / archive-post (and the deprecated exec-pre / exec-post):
//     a command run inside the running container before the containers are stopped, and after
//     they are started again (also when the backup failed); prune-pre / prune-post around a
//     schedule's prune. A failed pre command stops the backup before anything is stopped. The
//     command is split into words as a shell would, but not run by one (use /bin/sh -c '...'
//     for redirections, as offen says); .user (archive-pre.user=git) runs it as that user.
//   - docker-volume-backup.exec-label=NAME: the container's commands run only in the backups
//     labelled NAME (offen's EXEC_LABEL; here a schedule's id). Without it they run in every
//     backup.
//
// process-pre/post and copy-pre/post have no step of their own here (the archive is
// compressed, encrypted and uploaded in one stream): a container carrying them gets a warning,
// and they are not run.
const (
	offenPrefix          = "docker-volume-backup."
	LabelStopDuring      = offenPrefix + "stop-during-backup"
	LabelStopNoRestart   = offenPrefix + "stop-during-backup-no-restart"
	LabelExecScope       = offenPrefix + "exec-label"
	offenDeprecatedPre   = offenPrefix + "exec-pre"
	offenDeprecatedPost  = offenPrefix + "exec-post"
	maxHookOutput        = 4 << 10
	hookOutputInProgress = 2 << 10
)

// Hook phases: the labels docker-volume-backup.<phase>.
const (
	HookArchivePre  = "archive-pre"
	HookArchivePost = "archive-post"
	HookPrunePre    = "prune-pre"
	HookPrunePost   = "prune-post"
)

// HookError is a failed labelled command.
type HookError struct {
	Phase     string
	Container string
	Command   string
	Err       error
	Output    string
}

func (h *HookError) Error() string {
	s := fmt.Sprintf("%s command of container %s (%s): %v", h.Phase, h.Container, h.Command, h.Err)
	if h.Output != "" {
		s += ": " + h.Output
	}
	return s
}

func (h *HookError) Unwrap() error { return h.Err }

// labelMatches is offen's scoping of a label's value: "true" for every backup, else the name
// of the backups it belongs to.
func labelMatches(value, label string) bool {
	return value == "true" || (label != "" && value == label)
}

// labelledStops lists the running containers that offen's stop labels ask to stop for a backup
// labelled label (see LabelStopDuring); noRestart says which are not to be started again.
func (e *Engine) labelledStops(ctx context.Context, label string) (refs []ContainerRef, noRestart map[string]bool, err error) {
	noRestart = map[string]bool{}
	seen := map[string]bool{}
	for _, key := range []string{LabelStopDuring, LabelStopNoRestart} {
		res, err := e.API.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", key)})
		if err != nil {
			return nil, nil, fmt.Errorf("list containers labelled %s: %w", key, err)
		}
		for _, c := range res.Items {
			if seen[c.ID] || c.Labels[helperLabel] != "" {
				continue
			}
			stop, hasStop := c.Labels[LabelStopDuring]
			nr, hasNR := c.Labels[LabelStopNoRestart]
			stopIt, norestart := hasStop && labelMatches(stop, label), hasNR && labelMatches(nr, label)
			if !stopIt && !norestart {
				continue
			}
			seen[c.ID] = true
			ref := ContainerRef{ID: c.ID, State: string(c.State), Created: c.Created}
			if len(c.Names) > 0 {
				ref.Name = strings.TrimPrefix(c.Names[0], "/")
			}
			if stopIt && norestart {
				return nil, nil, fmt.Errorf("container %s carries both %s and %s: offen refuses that too; keep one", ref.Name, LabelStopDuring, LabelStopNoRestart)
			}
			noRestart[c.ID] = norestart
			refs = append(refs, ref)
		}
	}
	return refs, noRestart, nil
}

// RunHooks runs the labelled commands of phase (HookArchivePre, ...) in the running containers
// that carry them, for a backup labelled label (see LabelExecScope), one after the other in
// container name order. It stops at the first command that fails, with a *HookError.
func (e *Engine) RunHooks(ctx context.Context, phase, label string) error {
	keys := []string{offenPrefix + phase}
	switch phase {
	case HookArchivePre:
		keys = append(keys, offenDeprecatedPre)
	case HookArchivePost:
		keys = append(keys, offenDeprecatedPost)
	}
	type hook struct {
		ref            ContainerRef
		key, cmd, user string
	}
	var hooks []hook
	seen := map[string]bool{}
	for _, key := range keys {
		res, err := e.API.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", key)})
		if err != nil {
			return fmt.Errorf("list containers labelled %s: %w", key, err)
		}
		for _, c := range res.Items {
			if seen[c.ID] || c.Labels[helperLabel] != "" {
				continue
			}
			if scope, ok := c.Labels[LabelExecScope]; ok && scope != label {
				continue
			}
			seen[c.ID] = true
			ref := ContainerRef{ID: c.ID, State: string(c.State)}
			if len(c.Names) > 0 {
				ref.Name = strings.TrimPrefix(c.Names[0], "/")
			}
			hooks = append(hooks, hook{ref: ref, key: key, cmd: c.Labels[key], user: c.Labels[key+".user"]})
		}
	}
	slices.SortFunc(hooks, func(a, b hook) int { return strings.Compare(a.ref.Name, b.ref.Name) })
	for _, h := range hooks {
		if h.key == offenDeprecatedPre || h.key == offenDeprecatedPost {
			e.progressf("note: container %s uses %s, which offen deprecated for %s%s", h.ref.Name, h.key, offenPrefix, phase)
		}
		e.progressf("Running the %s command of container %s: %s", phase, h.ref.Name, h.cmd)
		if err := e.execHook(ctx, phase, h.ref, h.cmd, h.user); err != nil {
			return err
		}
	}
	return nil
}

// unsupportedHooks warns about the phases offen has and dockbridge does not run.
func (e *Engine) unsupportedHooks(ctx context.Context) []string {
	var out []string
	for _, phase := range []string{"process-pre", "process-post", "copy-pre", "copy-post"} {
		res, err := e.API.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", offenPrefix+phase)})
		if err != nil {
			continue
		}
		for _, c := range res.Items {
			name := c.ID[:min(12, len(c.ID))]
			if len(c.Names) > 0 {
				name = strings.TrimPrefix(c.Names[0], "/")
			}
			out = append(out, fmt.Sprintf("container %s: %s%s is not run: dockbridge compresses, encrypts and uploads the archive in one stream (archive-pre/post and prune-pre/post are run)", name, offenPrefix, phase))
		}
	}
	return out
}

// execHook runs one command in a container and waits for it.
func (e *Engine) execHook(ctx context.Context, phase string, ref ContainerRef, command, user string) error {
	fail := func(err error, out string) error {
		return &HookError{Phase: phase, Container: ref.Name, Command: command, Err: err, Output: out}
	}
	args, err := SplitWords(command)
	if err != nil {
		return fail(err, "")
	}
	if len(args) == 0 {
		return fail(errors.New("the label holds no command"), "")
	}
	created, err := e.API.ExecCreate(ctx, ref.ID, client.ExecCreateOptions{Cmd: args, User: user, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return fail(err, "")
	}
	att, err := e.API.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return fail(err, "")
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, func() { att.Close() })
	defer stop()
	out := &limitedBuffer{max: maxHookOutput}
	if _, err := stdcopy.StdCopy(out, out, att.Reader); err != nil && ctx.Err() == nil {
		return fail(fmt.Errorf("read its output: %w", err), tail(out.String()))
	}
	if ctx.Err() != nil {
		return fail(ctx.Err(), tail(out.String()))
	}
	// The stream ends when the command does; its exit code may take a moment to be recorded.
	for range 50 {
		res, err := e.API.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return fail(err, tail(out.String()))
		}
		if !res.Running {
			if res.ExitCode != 0 {
				return fail(fmt.Errorf("exited with status %d", res.ExitCode), tail(out.String()))
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fail(errors.New("still running after its output ended"), tail(out.String()))
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > hookOutputInProgress {
		s = "..." + s[len(s)-hookOutputInProgress:]
	}
	return s
}

// SplitWords splits a command line into words as a POSIX shell does for quoting (single and
// double quotes, backslash escapes), without any expansion: what offen's labels hold.
func SplitWords(s string) ([]string, error) {
	var words []string
	var cur bytes.Buffer
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					cur.WriteByte(s[i])
				}
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
