package localagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mutagen-io/mutagen/pkg/logging"
	"github.com/mutagen-io/mutagen/pkg/selection"
	"github.com/mutagen-io/mutagen/pkg/synchronization"
	"github.com/mutagen-io/mutagen/pkg/synchronization/core"
	"github.com/mutagen-io/mutagen/pkg/synchronization/endpoint/remote"
	_ "github.com/mutagen-io/mutagen/pkg/synchronization/protocols/local" // the laptop's endpoint
	urlpkg "github.com/mutagen-io/mutagen/pkg/url"

	"github.com/dockbridge/dockbridge/internal/fswatch"
	"github.com/dockbridge/dockbridge/internal/link"
)

// Folders are synchronized with Mutagen's engine, used as a library (MIT-licensed packages only):
// one session per shared folder, alpha the laptop's folder, beta its copy on the server, in
// two-way-safe mode (a change on one side goes to the other; when both changed a file, or one
// deleted what the other changed, nothing is overwritten or deleted: the conflict is kept on both
// sides and reported). The endpoints do not watch by themselves (their portable watch is a full
// scan every 10 s); a cycle starts when this laptop's folder changes (internal/fswatch), when the
// server says its copy changed (its own inotify watch, link.TypeChanged), and every 5 minutes.
// The server's endpoint is served at the far end of a stream of the link's multiplexer, never
// by a process Mutagen installs.

// syncProtocol is the URL protocol of the server's endpoints. Mutagen's own SSH protocol
// handler (which installs its agent over ssh) is never imported: this one takes its place.
type linkProtocol struct{ a *Agent }

func (h linkProtocol) Connect(ctx context.Context, logger *logging.Logger, url *urlpkg.URL, _ string, session string,
	version synchronization.Version, cfg *synchronization.Configuration, alpha bool) (synchronization.Endpoint, error) {
	laptopPath, ok := h.a.sync.laptopPath(url.Path)
	if !ok {
		return nil, fmt.Errorf("%s is not the copy of a shared folder the server named in this session", url.Path)
	}
	st, err := h.a.openStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := link.WriteHeader(st, link.SyncHeader{Path: laptopPath}); err != nil {
		st.Close()
		return nil, err
	}
	return remote.NewEndpoint(logger, st, url.Path, session, version, cfg, alpha)
}

// Syncer runs the synchronization sessions of the shared folders.
type Syncer struct {
	a   *Agent
	Log *log.Logger
	mgr *synchronization.Manager

	mu       sync.Mutex
	attachMu sync.Mutex
	shares   map[string]*share
	ctx      context.Context
}

type share struct {
	cfg     ShareConfig
	copy    string // where the server keeps its copy (its reply to TypeShare)
	id      string // the Mutagen session
	ready   bool   // the server knows its first synchronization is complete
	err     string
	cancel  context.CancelFunc // the laptop watch
	kick    chan struct{}
	cycleAt time.Time
}

// ShareStatus is one shared folder as `share ls` shows it.
type ShareStatus struct {
	Path string `json:"path"`
	// State: "ready", "syncing" (first synchronization under way), "offline" (no server now),
	// "halted" (Mutagen stopped it to protect data: a side's folder was deleted or emptied),
	// "error".
	State     string   `json:"state"`
	Status    string   `json:"status,omitempty"` // Mutagen's, e.g. "Watching for changes"
	Files     uint64   `json:"files"`
	Bytes     uint64   `json:"bytes"`
	Conflicts []string `json:"conflicts,omitempty"`
	Problems  []string `json:"problems,omitempty"`
	Error     string   `json:"error,omitempty"`
	// LastCycle is when the last synchronization cycle ended.
	LastCycle time.Time `json:"last_cycle,omitzero"`
}

func newSyncer(ctx context.Context, a *Agent, dataDir string, l *log.Logger) (*Syncer, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	// Mutagen reads its data directory from the environment, once per call: one agent, one
	// environment, one directory.
	if err := os.Setenv("MUTAGEN_DATA_DIRECTORY", dataDir); err != nil {
		return nil, err
	}
	synchronization.ProtocolHandlers[urlpkg.Protocol_SSH] = linkProtocol{a: a}
	mgr, err := synchronization.NewManager(logging.NewLogger(logging.LevelWarn, &logWriter{l: l, prefix: "sync: "}))
	if err != nil {
		return nil, fmt.Errorf("synchronization: %w", err)
	}
	return &Syncer{a: a, Log: l, mgr: mgr, shares: map[string]*share{}, ctx: ctx}, nil
}

func shareName(p string) string {
	sum := sha256.Sum256([]byte(p))
	return "share-" + hex.EncodeToString(sum[:6])
}

// sessions lists Mutagen's sessions by the laptop folder.
func (s *Syncer) sessions() map[string]*synchronization.State {
	_, states, err := s.mgr.List(s.ctx, &selection.Selection{All: true}, 0)
	out := map[string]*synchronization.State{}
	if err != nil {
		return out
	}
	for _, st := range states {
		if st.Session != nil && st.Session.Alpha != nil {
			out[st.Session.Alpha.Path] = st
		}
	}
	return out
}

// Configure makes the shares those of cfg: a folder no longer there loses its session (its
// copy on the server is the server's business: share rm).
func (s *Syncer) Configure(cfg []ShareConfig) {
	s.mu.Lock()
	want := map[string]ShareConfig{}
	for _, c := range cfg {
		want[c.Path] = c
	}
	var gone []*share
	for p, sh := range s.shares {
		if _, ok := want[p]; !ok {
			gone = append(gone, sh)
			delete(s.shares, p)
		}
	}
	for p, c := range want {
		if sh, ok := s.shares[p]; ok {
			sh.cfg = c
			continue
		}
		s.shares[p] = &share{cfg: c, kick: make(chan struct{}, 1)}
	}
	s.mu.Unlock()
	for _, sh := range gone {
		s.end(sh)
	}
}

// end stops a share that is no longer in s.shares: its watch and its session. Not under s.mu:
// ending a session waits for its loop, which may be connecting (laptopPath takes s.mu).
func (s *Syncer) end(sh *share) {
	s.mu.Lock()
	cancel, id, p := sh.cancel, sh.id, sh.cfg.Path
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if id != "" {
		if err := s.mgr.Terminate(s.ctx, &selection.Selection{Specifications: []string{id}}, ""); err != nil {
			s.Log.Printf("share %s: end its synchronization: %v", p, err)
		}
	}
}

// Attached starts (or resumes) every share's session over the link that just came up. One at a
// time: the engine's start and a reload may both ask, and a folder must get one session.
func (s *Syncer) Attached(ctx context.Context, ls *linkSession) {
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	existing := s.sessions()
	s.mu.Lock()
	paths := make([]string, 0, len(s.shares))
	for p := range s.shares {
		paths = append(paths, p)
	}
	s.mu.Unlock()
	slices.Sort(paths)
	for _, p := range paths {
		s.attachShare(ctx, ls, p, existing[p])
	}
}

func (s *Syncer) attachShare(ctx context.Context, ls *linkSession, p string, st *synchronization.State) {
	s.mu.Lock()
	sh, ok := s.shares[p]
	s.mu.Unlock()
	if !ok {
		return
	}
	setErr := func(err error) {
		s.mu.Lock()
		sh.err = err.Error()
		s.mu.Unlock()
		s.Log.Printf("share %s: %v", p, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	reply, err := ls.call(cctx, link.Message{Type: link.TypeShare, Path: p})
	cancel()
	if err != nil {
		setErr(fmt.Errorf("the server refused it: %w", err))
		return
	}
	if reply.Path == "" {
		setErr(errors.New("the server did not say where it keeps its copy: is its dockbridge-server older than this docker-dockbridge? run `docker dockbridge up`"))
		return
	}
	s.mu.Lock()
	sh.copy = reply.Path
	s.mu.Unlock()
	if st != nil && st.Session.Beta.GetPath() != reply.Path {
		// The server keeps the copy elsewhere now: a new session (the old one's ancestor was of
		// another place).
		if err := s.mgr.Terminate(ctx, &selection.Selection{Specifications: []string{st.Session.Identifier}}, ""); err != nil {
			setErr(fmt.Errorf("end the synchronization with the old copy: %w", err))
			return
		}
		st = nil
	}
	if st != nil {
		s.mu.Lock()
		sh.id = st.Session.Identifier
		s.mu.Unlock()
		if err := s.mgr.Resume(ctx, &selection.Selection{Specifications: []string{st.Session.Identifier}}, ""); err != nil {
			setErr(fmt.Errorf("resume its synchronization: %w", err))
			return
		}
	} else {
		cfg := &synchronization.Configuration{
			SynchronizationMode: core.SynchronizationMode_SynchronizationModeTwoWaySafe,
			WatchMode:           synchronization.WatchMode_WatchModeNoWatch,
			Ignores:             sh.cfg.Ignores,
		}
		alpha := &urlpkg.URL{Kind: urlpkg.Kind_Synchronization, Protocol: urlpkg.Protocol_Local, Path: p}
		beta := &urlpkg.URL{Kind: urlpkg.Kind_Synchronization, Protocol: urlpkg.Protocol_SSH, Host: s.a.alias(), Path: reply.Path}
		id, err := s.mgr.Create(ctx, alpha, beta, cfg, &synchronization.Configuration{}, &synchronization.Configuration{}, shareName(p),
			map[string]string{"dockbridge": "share"}, false, "")
		if err != nil {
			setErr(fmt.Errorf("start its synchronization: %w", err))
			return
		}
		s.mu.Lock()
		sh.id = id
		s.mu.Unlock()
	}
	s.mu.Lock()
	sh.err = ""
	if sh.cancel == nil {
		wctx, cancel := context.WithCancel(s.ctx)
		sh.cancel = cancel
		go s.loop(wctx, p, sh)
		go func() {
			if err := fswatch.Watch(wctx, p, fswatch.Options{}, func() { s.Kick(p) }); err != nil {
				s.Log.Printf("share %s: watch: %v", p, err)
			}
		}()
	}
	s.mu.Unlock()
	s.Kick(p)
}

// laptopPath is the shared folder whose copy on the server is at copyPath.
func (s *Syncer) laptopPath(copyPath string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, sh := range s.shares {
		if sh.copy == copyPath {
			return p, true
		}
	}
	return "", false
}

// CopyPath is where the server keeps p's copy ("" before the server has said).
func (s *Syncer) CopyPath(p string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh, ok := s.shares[p]; ok {
		return sh.copy
	}
	return ""
}

// Detached pauses every session: no connection until the link is back.
func (s *Syncer) Detached() {
	if err := s.mgr.Pause(s.ctx, &selection.Selection{All: true}, ""); err != nil {
		s.Log.Printf("pause the synchronizations: %v", err)
	}
}

// Kick asks for a synchronization cycle of p (coalesced with one already asked for).
func (s *Syncer) Kick(p string) {
	s.mu.Lock()
	sh, ok := s.shares[p]
	s.mu.Unlock()
	if !ok {
		return
	}
	select {
	case sh.kick <- struct{}{}:
	default:
	}
}

// loop runs p's cycles: one per kick, one every 5 minutes; after the first complete one, it tells
// the server the folder is ready.
func (s *Syncer) loop(ctx context.Context, p string, sh *share) {
	var retry time.Duration
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-sh.kick:
		case <-time.After(5 * time.Minute):
		}
		ls := s.a.currentLink()
		s.mu.Lock()
		id := sh.id
		s.mu.Unlock()
		if ls == nil || id == "" {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		err := s.mgr.Flush(fctx, &selection.Selection{Specifications: []string{id}}, "", false)
		cancel()
		s.mu.Lock()
		sh.cycleAt = time.Now()
		s.mu.Unlock()
		if err != nil {
			// Right after a resume the session may not synchronize yet (it connects, then its loop
			// starts): try again soon, less often while it keeps failing.
			if ctx.Err() == nil && s.a.currentLink() != nil {
				if err.Error() != lastErr {
					s.Log.Printf("share %s: cycle: %v (trying again)", p, err)
					lastErr = err.Error()
				}
				retry = min(max(2*retry, 200*time.Millisecond), 5*time.Second)
				time.AfterFunc(retry, func() { s.Kick(p) })
			}
			continue
		}
		retry, lastErr = 0, ""
		s.mu.Lock()
		ready := sh.ready
		s.mu.Unlock()
		if !ready {
			st := s.sessions()[p]
			if st != nil && st.SuccessfulCycles > 0 && st.LastError == "" {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := ls.call(cctx, link.Message{Type: link.TypeReady, Path: p})
				cancel()
				if err == nil {
					s.mu.Lock()
					sh.ready = true
					s.mu.Unlock()
					s.Log.Printf("share %s: ready (%d files)", p, st.AlphaState.GetFiles())
				}
			}
		}
	}
}

// Status lists the shares.
func (s *Syncer) Status(attached bool) []ShareStatus {
	states := s.sessions()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ShareStatus, 0, len(s.shares))
	for p, sh := range s.shares {
		ss := ShareStatus{Path: p, Error: sh.err, LastCycle: sh.cycleAt}
		st := states[p]
		switch {
		case sh.err != "":
			ss.State = "error"
		case !attached:
			ss.State = "offline"
		case st != nil && st.Status <= synchronization.Status_HaltedOnRootTypeChange && st.Status != synchronization.Status_Disconnected:
			ss.State = "halted"
		case sh.ready:
			ss.State = "ready"
		default:
			ss.State = "syncing"
		}
		if st != nil {
			ss.Status = st.Status.Description()
			if st.AlphaState != nil {
				ss.Files, ss.Bytes = st.AlphaState.Files, st.AlphaState.TotalFileSize
				for _, pr := range st.AlphaState.ScanProblems {
					ss.Problems = append(ss.Problems, "laptop: "+pr.Path+": "+pr.Error)
				}
				for _, pr := range st.AlphaState.TransitionProblems {
					ss.Problems = append(ss.Problems, "laptop: "+pr.Path+": "+pr.Error)
				}
			}
			if st.BetaState != nil {
				for _, pr := range st.BetaState.ScanProblems {
					ss.Problems = append(ss.Problems, "server: "+pr.Path+": "+pr.Error)
				}
				for _, pr := range st.BetaState.TransitionProblems {
					ss.Problems = append(ss.Problems, "server: "+pr.Path+": "+pr.Error)
				}
			}
			for _, c := range st.Conflicts {
				ss.Conflicts = append(ss.Conflicts, c.Root)
			}
			if st.LastError != "" && ss.Error == "" && attached {
				ss.Error = st.LastError
			}
		}
		out = append(out, ss)
	}
	slices.SortFunc(out, func(a, b ShareStatus) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Unshare ends p's session and asks the server to stop showing it (keepCopy: its copy stays on
// the data volume).
func (s *Syncer) Unshare(ctx context.Context, ls *linkSession, p string, keepCopy bool) error {
	s.mu.Lock()
	sh, ok := s.shares[p]
	delete(s.shares, p)
	s.mu.Unlock()
	if ok {
		s.end(sh)
	}
	if ls == nil {
		return errors.New("the server is not up: run `docker dockbridge up` first (its copy of the folder is on the data volume)")
	}
	_, err := ls.call(ctx, link.Message{Type: link.TypeUnshare, Path: p, KeepCopy: keepCopy})
	return err
}

// Shutdown stops every session (they are saved; the next agent resumes them).
func (s *Syncer) Shutdown() { s.mgr.Shutdown() }

type logWriter struct {
	l      *log.Logger
	prefix string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.l.Print(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
