// Package linkserver is the server end of the laptop agent's link (internal/link): the
// background session `dockbridge-server local session` that tells the laptop which ports the
// containers publish and when shared folders change, registers and mounts shared folders, serves
// their synchronization endpoints, and records what the laptop's port forwards carried for the
// idle agent; and the bind check (`dockbridge-server local authz`, a Docker authorization plugin)
// that refuses a bind mount of a folder that is not shared.
package linkserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mutagen-io/mutagen/pkg/logging"
	"github.com/mutagen-io/mutagen/pkg/synchronization/endpoint/remote"

	"github.com/dockbridge/dockbridge/internal/fswatch"
	"github.com/dockbridge/dockbridge/internal/idleagent"
	"github.com/dockbridge/dockbridge/internal/link"
)

// IdleStateFile is where the idle agent writes its phase (internal/idleagent.StatePath).
const IdleStateFile = "/run/dockbridge/idle.json"

// Server serves one link session.
type Server struct {
	Shares       *Shares
	DockerSocket string
	// IdleState and Forwards are the idle agent's files (IdleStateFile, link.ForwardsFile).
	IdleState string
	Forwards  string
	Log       *log.Logger
	// InUse names the running containers that bind something under a path (Unregister refuses
	// those); nil: none.
	InUse func(ctx context.Context, path string) []string

	// GoingDown fires when the idle agent is about to close the laptop's connection and stop
	// the server (it sends GoingDownSignal to the session first): the laptop is told, so that its
	// agent waits for the next server instead of making the connection again, and the session
	// ends. (The session's own look at the idle agent's phase, once a second, can miss a stop
	// that closes the connection sooner.)
	GoingDown <-chan os.Signal

	mu       sync.Mutex
	watches  map[string]context.CancelFunc
	streams  map[io.Closer]bool // the folders' synchronization streams being served
	forwards link.ForwardsRecord
}

// Serve runs the session on rw (the session's stdin and stdout) until the laptop goes or ctx ends.
func (s *Server) Serve(ctx context.Context, rw io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mux := link.Mux(rw, true)
	defer mux.Close()
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	ctl, err := mux.AcceptStream(actx)
	acancel()
	if err != nil {
		return fmt.Errorf("no control stream: %w", err)
	}
	conn := link.NewConn(ctl)
	hello, err := conn.Recv()
	if err != nil || hello.Type != link.TypeHello {
		return fmt.Errorf("no hello from the laptop (%v)", err)
	}
	host, _ := os.Hostname()
	if err := conn.Send(link.Message{ID: hello.ID, Type: link.TypeHello, Version: link.Version, Server: host}); err != nil {
		return err
	}
	s.Log.Printf("laptop agent connected (protocol %d)", hello.Version)
	// The agent's reconnections are no activity for the idle agent (what goes through them is).
	if mark, err := idleagent.MarkLink(""); err == nil {
		defer os.Remove(mark)
	}
	defer func() {
		// Nothing is open through the forwards of a laptop that is gone.
		s.recordForwards(link.Message{Open: 0})
	}()
	var send func(m link.Message) error
	send = func(m link.Message) error {
		if m.Type == link.TypeEngine {
			// Docker stops before the data volume is unmounted (the clean stop of down, or of the
			// idle agent): nothing of the link stays open on it, and Docker's start brings it back.
			if m.Engine == "running" {
				s.watchAll(ctx, send)
			} else {
				s.releaseAll()
			}
		}
		err := conn.Send(m)
		if err != nil {
			cancel()
		}
		return err
	}

	s.watches = map[string]context.CancelFunc{}
	s.streams = map[io.Closer]bool{}
	// The totals go on from an earlier session's (a reconnect is not fewer connections).
	if b, err := os.ReadFile(s.Forwards); err == nil {
		_ = json.Unmarshal(b, &s.forwards)
	}
	go WatchPorts(ctx, s.DockerSocket, send)
	go s.watchIdle(ctx, send)
	if s.GoingDown != nil {
		go func() {
			select {
			case <-ctx.Done():
			case <-s.GoingDown:
				s.Log.Print("the idle agent closes this connection: the laptop is told the server goes down")
				_ = send(link.Message{Type: link.TypeGoingDown})
				// Let the multiplexer write it out, then end: the idle agent closes the
				// connection once this process has ended.
				time.Sleep(300 * time.Millisecond)
				cancel()
				mux.Close()
			}
		}()
	}
	go func() {
		for {
			st, err := mux.AcceptStream(ctx)
			if err != nil {
				cancel()
				return
			}
			s.mu.Lock()
			s.streams[st] = true
			s.mu.Unlock()
			go func() {
				s.serveSync(st)
				s.mu.Lock()
				delete(s.streams, st)
				s.mu.Unlock()
			}()
		}
	}()
	go func() {
		<-mux.Closed()
		cancel()
	}()

	for {
		m, err := conn.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				s.Log.Print("laptop agent gone")
				return nil
			}
			return fmt.Errorf("control stream: %w", err)
		}
		reply := link.Message{ID: m.ID, Type: link.TypeReply}
		switch m.Type {
		case link.TypeShare:
			if _, err := s.Shares.Register(m.Path); err != nil {
				reply.Error = err.Error()
			} else {
				reply.Path = s.Shares.CopyPath(m.Path)
				s.watch(ctx, m.Path, send)
				s.Log.Printf("sharing %s (copy at %s)", m.Path, reply.Path)
			}
		case link.TypeReady:
			if err := s.Shares.MarkReady(m.Path); err != nil {
				reply.Error = err.Error()
			}
		case link.TypeUnshare:
			var inUse []string
			if s.InUse != nil {
				inUse = s.InUse(ctx, m.Path)
			}
			s.unwatch(m.Path)
			if err := s.Shares.Unregister(m.Path, m.KeepCopy, inUse); err != nil {
				reply.Error = err.Error()
				s.watch(ctx, m.Path, send)
			}
		case link.TypeForwarded:
			s.recordForwards(m)
			continue // no reply: a report
		default:
			reply.Error = fmt.Sprintf("unknown message type %q (is the server's dockbridge-server older than this docker-dockbridge? run `docker dockbridge up`)", m.Type)
		}
		if m.ID != 0 {
			if err := conn.Send(reply); err != nil {
				return nil
			}
		}
	}
}

// watch reports changes in p's copy (a container wrote there) to the laptop.
func (s *Server) watch(ctx context.Context, p string, send func(link.Message) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.watches[p]; ok {
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	s.watches[p] = cancel
	go func() {
		err := fswatch.Watch(wctx, s.Shares.CopyPath(p), fswatch.Options{}, func() {
			_ = send(link.Message{Type: link.TypeChanged, Paths: []string{p}})
		})
		if err != nil {
			s.Log.Printf("watch %s: %v", p, err)
		}
	}()
}

// watchAll watches every registered folder's copy.
func (s *Server) watchAll(ctx context.Context, send func(link.Message) error) {
	reg, err := s.Shares.Load()
	if err != nil {
		s.Log.Print(err)
		return
	}
	for _, sh := range reg.Shares {
		s.watch(ctx, sh.Path, send)
	}
}

// releaseAll ends the watches and the synchronization streams.
func (s *Server) releaseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, cancel := range s.watches {
		cancel()
		delete(s.watches, p)
	}
	for st := range s.streams {
		st.Close()
	}
}

func (s *Server) unwatch(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cancel, ok := s.watches[p]; ok {
		cancel()
		delete(s.watches, p)
	}
}

// serveSync serves one folder's synchronization endpoint on a stream.
func (s *Server) serveSync(st io.ReadWriteCloser) {
	var h link.SyncHeader
	if err := link.ReadHeader(st, &h); err != nil {
		s.Log.Printf("sync stream: %v", err)
		st.Close()
		return
	}
	reg, err := s.Shares.Load()
	if _, ok := reg.Find(h.Path); err != nil || !ok {
		s.Log.Printf("sync stream for %s, which is not a shared folder here", h.Path)
		st.Close()
		return
	}
	logger := logging.NewLogger(logging.LevelWarn, &logWriter{s.Log, "sync " + h.Path + ": "})
	if err := remote.ServeEndpoint(logger, st); err != nil && !errors.Is(err, io.EOF) {
		s.Log.Printf("sync %s: %v", h.Path, err)
	}
}

// recordForwards adds a report of the laptop's forwards to the file the idle agent reads.
func (s *Server) recordForwards(m link.Message) {
	s.mu.Lock()
	s.forwards.Connections += m.Connections
	s.forwards.Bytes += m.Bytes
	s.forwards.Open = m.Open
	s.forwards.Last = time.Now().UTC()
	b, _ := json.Marshal(s.forwards)
	s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(s.Forwards), 0o755); err == nil {
		_ = writeAtomic(s.Forwards, append(b, '\n'), 0o644)
	}
}

// watchIdle tells the laptop when the idle agent begins to take the server down.
func (s *Server) watchIdle(ctx context.Context, send func(link.Message) error) {
	said := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		var st struct {
			Phase string `json:"phase"`
		}
		b, err := os.ReadFile(s.IdleState)
		if err != nil || json.Unmarshal(b, &st) != nil {
			continue
		}
		going := st.Phase == "going down" || st.Phase == "deleting"
		if going && !said {
			_ = send(link.Message{Type: link.TypeGoingDown})
		}
		said = going
	}
}

type logWriter struct {
	l      *log.Logger
	prefix string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.l.Print(w.prefix + string(p))
	return len(p), nil
}
