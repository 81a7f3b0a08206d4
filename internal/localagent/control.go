package localagent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/host"
)

// The agent answers on a Unix socket (Files.Socket) with HTTP: the CLI asks it for its status,
// tells it to read its configuration again, waits for a folder's first synchronization, and
// stops it. The socket is the single-instance lock too: an agent that finds another answering
// there exits.

// RunProcess is `docker-dockbridge agent run`: the agent of env in this process, logging to
// its log file, until ctx ends, the environment is destroyed, or it is told to stop.
func RunProcess(ctx context.Context, p host.Paths, env string) error {
	f := FilesFor(p, env)
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	if _, err := Query(p, env); err == nil {
		return nil // one is running
	}
	rotate(f.LogFile())
	lf, err := os.OpenFile(f.LogFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	logger := log.New(lf, "", log.LstdFlags|log.Lmicroseconds)
	sock := f.Socket()
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return err
	}
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("the agent's socket %s: %w", sock, err)
	}
	defer os.Remove(sock)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &Agent{Paths: p, Env: env, Log: logger}
	srv := &http.Server{Handler: a.handler(cancel), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	logger.Printf("agent of environment %q started (pid %d)", env, os.Getpid())
	err = a.Run(ctx)
	logger.Printf("agent ends (%v)", err)
	return err
}

func rotate(path string) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > 4<<20 {
		_ = os.Rename(path, path+".1")
	}
}

func (a *Agent) handler(stop context.CancelFunc) http.Handler {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(w http.ResponseWriter, err error) {
		w.WriteHeader(http.StatusConflict)
		writeJSON(w, map[string]string{"error": err.Error()})
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		if a.sync == nil {
			fail(w, errors.New("the agent is starting"))
			return
		}
		writeJSON(w, a.Status())
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Reload(); err != nil {
			fail(w, err)
			return
		}
		a.Poke()
		writeJSON(w, map[string]string{})
	})
	mux.HandleFunc("POST /server-down", func(w http.ResponseWriter, r *http.Request) {
		a.ServerDown()
		writeJSON(w, map[string]string{})
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{})
		stop()
	})
	// wait-share streams the folder's status, one JSON line a second, until it is ready (or
	// halted, or in error), or the request's timeout.
	mux.HandleFunc("POST /wait-share", func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Query().Get("path")
		timeout, _ := time.ParseDuration(r.URL.Query().Get("timeout"))
		if timeout <= 0 {
			timeout = time.Hour
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		fl, _ := w.(http.Flusher)
		for {
			st := a.Status()
			var ss *ShareStatus
			for i := range st.Shares {
				if st.Shares[i].Path == path {
					ss = &st.Shares[i]
				}
			}
			if ss == nil {
				_ = enc.Encode(ShareStatus{Path: path, State: "error", Error: "not a shared folder of this environment"})
				return
			}
			_ = enc.Encode(ss)
			if fl != nil {
				fl.Flush()
			}
			switch ss.State {
			case "ready", "halted", "error":
				return
			case "offline":
				if st.State == StateWaiting {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	mux.HandleFunc("POST /unshare", func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Query().Get("path")
		keep := r.URL.Query().Get("keep") == "1"
		note, err := a.unshare(r.Context(), path, keep)
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, map[string]string{"note": note})
	})
	return mux
}

// unshare ends a folder's synchronization after one last cycle, and asks the server to stop
// showing it; the server's copy is removed only when that cycle found nothing to reconcile
// (no conflicts, no problems), else it stays on the data volume and the note says where.
func (a *Agent) unshare(ctx context.Context, path string, keep bool) (string, error) {
	ls := a.currentLink()
	if ls == nil {
		return "", errors.New("the server is not up: run `docker dockbridge up` first, then share rm again (nothing was changed)")
	}
	for _, ss := range a.sync.Status(true) {
		if ss.Path != path {
			continue
		}
		if ss.State != "ready" || len(ss.Conflicts) > 0 || len(ss.Problems) > 0 {
			keep = true
		}
	}
	copyPath := a.sync.CopyPath(path)
	if err := a.sync.Unshare(ctx, ls, path, keep); err != nil {
		return "", err
	}
	cfg, err := LoadConfig(a.files)
	if err == nil {
		kept := cfg.Shares[:0]
		for _, s := range cfg.Shares {
			if s.Path != path {
				kept = append(kept, s)
			}
		}
		cfg.Shares = kept
		err = SaveConfig(a.files, cfg)
	}
	a.mu.Lock()
	a.cfg.Shares = cfg.Shares
	a.mu.Unlock()
	if keep {
		return fmt.Sprintf("its copy stays on the server's data volume at %s", copyPath), err
	}
	return "its copy on the server is removed", err
}

// client talks to env's agent.
func client(p host.Paths, env string, timeout time.Duration) *http.Client {
	sock := FilesFor(p, env).Socket()
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// ErrNotRunning means env has no agent now.
var ErrNotRunning = errors.New("the agent is not running")

func do(p host.Paths, env, method, path string, timeout time.Duration, out any) error {
	req, _ := http.NewRequest(method, "http://agent"+path, nil)
	resp, err := client(p, env, timeout).Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && !ne.Timeout() || errors.Is(err, os.ErrNotExist) {
			return ErrNotRunning
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			return ErrNotRunning
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return errors.New(e.Error)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Query asks env's agent for its status.
func Query(p host.Paths, env string) (Status, error) {
	var st Status
	err := do(p, env, http.MethodGet, "/status", 5*time.Second, &st)
	return st, err
}

// Stop ends env's agent (nothing running is not an error) and returns once its process has
// exited: its control socket closes first, while it still ends its connections.
func Stop(p host.Paths, env string) error {
	st, err := Query(p, env)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	err = do(p, env, http.MethodPost, "/stop", 5*time.Second, nil)
	if errors.Is(err, ErrNotRunning) {
		err = nil
	}
	if err != nil {
		return err
	}
	for range 100 {
		if _, err := Query(p, env); errors.Is(err, ErrNotRunning) && !processAlive(st.PID) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if processAlive(st.PID) {
		terminate(st.PID)
		return fmt.Errorf("the agent (pid %d) did not end within 10 s of being asked to: ended it", st.PID)
	}
	return errors.New("the agent did not stop within 10 s")
}

// WaitEnded waits up to d for the agent process pid to end, and ends it then: an agent whose
// environment folder was deleted ends by itself within a second.
func WaitEnded(pid int, d time.Duration) {
	for deadline := time.Now().Add(d); processAlive(pid) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if processAlive(pid) {
		terminate(pid)
	}
}

// ServerDown tells env's agent that its server goes (down): it waits for the next one.
func ServerDown(p host.Paths, env string) {
	_ = do(p, env, http.MethodPost, "/server-down", 5*time.Second, nil)
}

// Ensure makes env's agent run with its configuration as saved: a running one reads it again,
// else one is started (exe agent run --name env, in its own session, detached) and waited for.
// It reports whether it started one.
func Ensure(ctx context.Context, p host.Paths, env, exe string) (bool, error) {
	if err := do(p, env, http.MethodPost, "/reload", 10*time.Second, nil); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNotRunning) {
		return false, err
	}
	f := FilesFor(p, env)
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return false, err
	}
	lf, err := os.OpenFile(f.LogFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return false, err
	}
	defer lf.Close()
	cmd := exec.Command(exe, "agent", "run", "--name", env)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Not a plugin run by the docker CLI: a plugin process ends with the CLI that started it
	// (its socket), and the agent outlives this command.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_CLI_PLUGIN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start the agent: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := Query(p, env); err == nil {
			return true, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return true, fmt.Errorf("the agent did not answer within 10 s: see %s", f.LogFile())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitShare follows path's first synchronization, calling progress with its status, until it
// is ready (nil), halted or failed (an error), or ctx ends.
func WaitShare(ctx context.Context, p host.Paths, env, path string, progress func(ShareStatus)) (ShareStatus, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent/wait-share?path="+url.QueryEscape(path), nil)
	resp, err := client(p, env, 0).Do(req)
	if err != nil {
		return ShareStatus{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var last ShareStatus
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			return last, err
		}
		if progress != nil {
			progress(last)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return last, err
	}
	switch last.State {
	case "ready":
		return last, nil
	case "offline":
		return last, errors.New("the server is not up: the folder is synchronized when it is (the next docker command wakes it, or `docker dockbridge up`)")
	}
	if last.Error != "" {
		return last, errors.New(last.Error)
	}
	if ctx.Err() != nil {
		return last, ctx.Err()
	}
	return last, fmt.Errorf("the folder's synchronization is %s (%s)", last.State, last.Status)
}

// Unshare asks env's agent to stop sharing path; it returns what became of the server's copy.
func Unshare(p host.Paths, env, path string, keepCopy bool) (string, error) {
	var out struct {
		Note string `json:"note"`
	}
	k := "0"
	if keepCopy {
		k = "1"
	}
	err := do(p, env, http.MethodPost, "/unshare?path="+url.QueryEscape(path)+"&keep="+k, 2*time.Minute, &out)
	return out.Note, err
}
