// Package hcloudsim is a stateful simulator of the Hetzner Cloud API (and its server
// metadata service) that hcloud-go and the official hcloud CLI can use unmodified.
// Request and response bodies are hcloud-go's own schema structs. See README.md for
// what is modelled and the choices made where the public documentation is silent.
package hcloudsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// Config configures a simulator. The zero value is a working in-memory simulator that
// accepts any non-empty bearer token.
type Config struct {
	// Token, when set, is the only bearer token accepted. When empty any non-empty
	// token is accepted. A request without "Authorization: Bearer ..." is always 401.
	Token string
	// StateDir keeps the state across restarts (state.json, 0600). Empty: in memory.
	StateDir string
	// Backend makes resources real; nil means the "none" backend.
	Backend Backend
	// LocalServer, when set, is the name of a server that is ensured to exist and run at
	// start (the machine the simulator runs on, for the local backend). Its id is stable
	// across restarts when StateDir is set.
	LocalServer string
	// LocalLocation is the location of LocalServer (default fsn1).
	LocalLocation string
	// ActionProfile selects action durations: "fast" (default, 20-100 ms) or
	// "realistic" (seconds, like the real API).
	ActionProfile string
	// ActionDurations overrides durations per command, e.g. {"attach_volume": 3s}.
	ActionDurations map[string]time.Duration
	// RateLimit is the bucket size per hour (default 3600, refill limit/3600 per second).
	RateLimit int
	// ServerLimit is the project's server quota (default 100): more servers answer
	// resource_limit_exceeded.
	ServerLimit int
	// Faults is the initial fault injection configuration.
	Faults FaultConfig
	// Catalog changes the server-type catalog at start (CatalogChange: a type out of
	// stock, deprecated or removed in some location); POST /_sim/catalog does it later.
	Catalog []CatalogChange
	// Clock is the time source for timestamps and the rate limit (default: real time).
	Clock Clock
	// MetadataResolver maps a metadata request to a server id. It overrides the
	// backend's ServerForRequest; when both answer nothing the LocalServer is used.
	MetadataResolver func(*http.Request) (serverID int64, ok bool)
	// Logger receives one line per request at debug level and problems at warn level.
	Logger *slog.Logger
}

// Sim is a running simulator; it is an http.Handler.
type Sim struct {
	cfg     Config
	clock   Clock
	log     *slog.Logger
	backend Backend

	mu    sync.Mutex // guards st and locks
	st    *state
	locks map[lockKey]int64

	bucket  *bucket
	faults  *faultInjector
	holds   *holdRegistry
	catalog *serverCatalog
	stats   *statsRecorder
	api     router

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// watchers wait for servers to power off after a shutdown request (not actions: /_sim/wait
	// does not wait for them, and a server whose OS ignores the request never ends its wait).
	watchers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

type lockKey struct {
	typ string
	id  int64
}

// New builds a simulator from cfg, loads the state from cfg.StateDir and lets the
// backend restore what it must (e.g. loop devices of attached volumes).
func New(ctx context.Context, cfg Config) (*Sim, error) {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Backend == nil {
		cfg.Backend = noneBackend{}
	}
	if cfg.LocalLocation == "" {
		cfg.LocalLocation = "fsn1"
	}
	if _, ok := locationByName(cfg.LocalLocation); !ok {
		return nil, fmt.Errorf("local location %q is unknown (use fsn1, nbg1, hel1, ash, hil or sin)", cfg.LocalLocation)
	}
	if cfg.ServerLimit <= 0 {
		cfg.ServerLimit = 100
	}
	switch cfg.ActionProfile {
	case "":
		cfg.ActionProfile = "fast"
	case "fast", "realistic":
	default:
		return nil, fmt.Errorf("action profile %q is unknown (use fast or realistic)", cfg.ActionProfile)
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, fmt.Errorf("fault configuration: %w", err)
	}
	st, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Sim{
		cfg: cfg, clock: cfg.Clock, log: cfg.Logger, backend: cfg.Backend,
		st: st, locks: map[lockKey]int64{},
		bucket: newBucket(cfg.Clock, cfg.RateLimit),
		faults: newFaultInjector(cfg.Faults),
		holds:  newHoldRegistry(),
		stats:  newStatsRecorder(),
	}
	s.catalog = newServerCatalog(cfg.Clock.Now)
	if err := s.catalog.apply(cfg.Catalog); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.routes()

	s.mu.Lock()
	s.recoverInterruptedLocked()
	if cfg.LocalServer != "" {
		if err := s.ensureLocalServerLocked(); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	rs := s.restoreStateLocked()
	err = s.saveLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := s.backend.Restore(ctx, rs); err != nil {
		return nil, fmt.Errorf("restore %s backend: %w", s.backend.Name(), err)
	}
	return s, nil
}

func (s *Sim) saveLocked() error { return s.st.save(s.cfg.StateDir) }

// persistLocked saves the state, logging (not failing) on error: an API call that
// changed the state in memory has already happened.
func (s *Sim) persistLocked() {
	if err := s.saveLocked(); err != nil {
		s.log.Warn("persist state", "err", err)
	}
}

// recoverInterruptedLocked ends actions that were running when the simulator stopped:
// they are marked "error" and transient statuses are settled.
func (s *Sim) recoverInterruptedLocked() {
	now := s.clock.Now()
	for _, a := range s.st.Actions {
		if a.Status == "running" {
			a.Status = "error"
			a.Progress = 100
			a.Finished = &now
			a.Error = &schema.ActionError{Code: "action_failed", Message: "the simulator restarted while the action was running"}
		}
	}
	for _, sv := range s.st.Servers {
		// An attach cut off by the stop never happened.
		sv.PrivateNets = slices.DeleteFunc(sv.PrivateNets, func(pn privateNet) bool { return pn.Pending })
		switch sv.Status {
		case "initializing", "starting", "rebuilding", "migrating":
			sv.Status = "running"
		case "stopping":
			sv.Status = "off"
		}
	}
	for _, v := range s.st.Volumes {
		if v.Status == "creating" {
			v.Status = "available"
		}
	}
}

func (s *Sim) ensureLocalServerLocked() error {
	for _, sv := range s.st.Servers {
		if sv.Name == s.cfg.LocalServer {
			s.st.LocalServerID = sv.ID
			return nil
		}
	}
	if s.st.LocalServerID != 0 {
		// The local server was deleted through the API: bring it back with the same id.
		s.st.Servers[s.st.LocalServerID] = s.newLocalServer(s.st.LocalServerID)
		return nil
	}
	id := s.st.newID()
	s.st.Servers[id] = s.newLocalServer(id)
	s.st.LocalServerID = id
	return nil
}

func (s *Sim) newLocalServer(id int64) *server {
	st, _ := specByName("cx23")
	return &server{
		ID: id, Name: s.cfg.LocalServer, Status: "running", Created: s.clock.Now().UTC(),
		ServerTypeID: st.id, Location: s.cfg.LocalLocation, ImageID: imageByName("docker-ce", "x86").id,
		IPv4: s.st.nextIPv4(), IPv6: fmt.Sprintf("2001:db8:%x::/64", id&0xffff),
		Labels: map[string]string{}, Volumes: []int64{}, Firewalls: []int64{}, SSHKeys: []int64{},
	}
}

func (s *Sim) restoreStateLocked() RestoreState {
	rs := RestoreState{LocalServerID: s.st.LocalServerID}
	for _, sv := range s.st.Servers {
		r := RestoreServer{ID: sv.ID, Name: sv.Name, Status: sv.Status, Volumes: append([]int64(nil), sv.Volumes...)}
		for _, pn := range sv.PrivateNets {
			if n, ok := s.st.Networks[pn.Network]; ok {
				r.PrivateNets = append(r.PrivateNets, pn.backendNet(n))
			}
		}
		rs.Servers = append(rs.Servers, r)
	}
	for _, v := range s.st.Volumes {
		rv := RestoreVolume{ID: v.ID, SizeGB: v.Size}
		if v.Server != nil {
			rv.Server = *v.Server
		}
		rs.Volumes = append(rs.Volumes, rv)
	}
	return rs
}

// LocalServerID returns the id of the --local-server (0 if none).
func (s *Sim) LocalServerID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.LocalServerID
}

// Stats returns a snapshot of the request statistics.
func (s *Sim) Stats() Stats { return s.stats.snapshot() }

// SetFaults replaces the fault injection configuration.
func (s *Sim) SetFaults(cfg FaultConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	s.faults.set(cfg)
	return nil
}

// SetRateLimit sets the bucket size (per hour) and the remaining tokens (-1 keeps them).
func (s *Sim) SetRateLimit(limit, remaining int) { s.bucket.set(limit, remaining) }

// Reset forgets every resource, action and statistic; the local server is recreated, with a
// new id. IDs keep increasing, as on Hetzner, where no id is ever given twice: a client still
// holding an id from before never finds another resource under it.
func (s *Sim) Reset() error {
	s.Release(ReleaseRequest{Error: "the simulator was reset"})
	s.mu.Lock()
	defer s.mu.Unlock()
	next, nextAction := s.st.NextID, s.st.NextActionID
	s.st = newState()
	s.st.NextID, s.st.NextActionID = next, nextAction
	s.locks = map[lockKey]int64{}
	if s.cfg.LocalServer != "" {
		if err := s.ensureLocalServerLocked(); err != nil {
			return err
		}
	}
	s.stats.reset()
	return s.saveLocked()
}

// Wait blocks until no action is running (or ctx ends).
func (s *Sim) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ListenAndServe serves on addr until ctx ends, then shuts down.
func (s *Sim) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down.
func (s *Sim) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// Close stops running actions (they stay "running" in the saved state and are marked
// failed at the next start) and releases the backend.
// Close is idempotent.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.watchers.Wait()
		s.mu.Lock()
		err := s.saveLocked()
		s.mu.Unlock()
		s.closeErr = errors.Join(err, s.backend.Close())
	})
	return s.closeErr
}

// statusWriter records the status for the statistics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP dispatches /v1/... (the API), /hetzner/v1/metadata... (metadata service,
// no token, no rate limit) and /_sim/... (control endpoints, no token, no rate limit).
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/_sim/"):
		s.serveControl(w, r)
	case p == "/hetzner/v1/metadata" || strings.HasPrefix(p, "/hetzner/v1/metadata/") || p == "/hetzner/v1/userdata":
		sw := &statusWriter{ResponseWriter: w}
		endpoint := s.serveMetadata(sw, r)
		s.stats.record(r.Method+" "+endpoint, sw.status, false)
	default:
		sw := &statusWriter{ResponseWriter: w}
		endpoint, rl := s.serveAPI(sw, r)
		s.stats.record(endpoint, sw.status, rl)
	}
}

func (s *Sim) serveAPI(w *statusWriter, r *http.Request) (endpoint string, rateLimited bool) {
	rt, params, pathMatched := s.api.match(r.Method, r.URL.Path)
	endpoint = r.Method + " (unknown)"
	if rt != nil {
		endpoint = r.Method + " " + rt.template
	}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("handler panic", "endpoint", endpoint, "panic", v, "stack", string(debug.Stack()))
			if w.status == 0 {
				writeError(w, newError("server_error", "internal simulator error"))
			}
		}
	}()

	ok, limit, remaining, reset := s.bucket.take()
	h := w.Header()
	h.Set("RateLimit-Limit", fmt.Sprint(limit))
	h.Set("RateLimit-Remaining", fmt.Sprint(remaining))
	h.Set("RateLimit-Reset", fmt.Sprint(reset))
	h.Set("X-Correlation-Id", fmt.Sprintf("sim-%d", time.Now().UnixNano()))
	if !ok {
		writeError(w, newError("rate_limit_exceeded", "limit of %d requests per hour reached", limit))
		return endpoint, true
	}

	if e := s.authenticate(r); e != nil {
		writeError(w, e)
		return endpoint, false
	}

	tmpl := ""
	if rt != nil {
		tmpl = rt.template
	}
	if f := s.faults.forRequest(r.Method, tmpl, r.URL.Path); f != nil {
		s.stats.fault()
		if f.Kind == "timeout" {
			t := time.NewTimer(f.maxDelay())
			select {
			case <-r.Context().Done():
			case <-t.C:
			case <-s.ctx.Done():
			}
			t.Stop()
		}
		writeError(w, f.apiError())
		return endpoint, false
	}

	if rt == nil {
		if pathMatched {
			writeError(w, newError("method_not_allowed", "method %s is not allowed on %s", r.Method, r.URL.Path))
		} else {
			writeError(w, newError("not_found", "no API endpoint %s %s", r.Method, r.URL.Path))
		}
		return endpoint, false
	}

	status, body, aerr := rt.h(r, params)
	switch {
	case aerr != nil:
		writeError(w, aerr)
	case status == http.StatusNoContent:
		w.WriteHeader(status)
	case status != 0:
		writeJSON(w, status, body)
	}
	s.log.Debug("api request", "endpoint", endpoint, "status", w.status)
	return endpoint, false
}

func (s *Sim) authenticate(r *http.Request) *apiError {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		return newError("unauthorized", "unable to authenticate: send the API token as 'Authorization: Bearer <token>'")
	}
	if s.cfg.Token != "" && tok != s.cfg.Token {
		return newError("unauthorized", "unable to authenticate: the token is invalid or unknown")
	}
	return nil
}
