package hcloudsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// RateLimitStatus is the body of GET/POST /_sim/ratelimit.
type RateLimitStatus struct {
	Limit     int `json:"limit"`
	Remaining int `json:"remaining"`
}

// serveControl answers the test-harness endpoints under /_sim/. They need no token and
// are not rate limited or counted:
//
//	GET  /_sim/stats       request statistics (Stats)
//	POST /_sim/reset       forget all resources, actions and statistics
//	GET  /_sim/faults      current FaultConfig; POST replaces it
//	GET  /_sim/ratelimit   {"limit","remaining"}; POST sets them (remaining -1 keeps it)
//	POST /_sim/wait        block until no action runs (?timeout=30s)
//	GET  /_sim/held        actions a "hold" fault keeps running (?command=glob&wait=30s
//	                       blocks until one matching is held)
//	POST /_sim/release     let held actions go on, or fail them (ReleaseRequest)
//	GET  /_sim/health      200 "ok"
//	GET  /_sim/catalog     catalog changes made; POST applies CatalogRequest (servertypes.go)
func (s *Sim) serveControl(w http.ResponseWriter, r *http.Request) {
	bad := func(msg string) { writeError(w, newError("invalid_input", "%s", msg)) }
	switch r.Method + " " + r.URL.Path {
	case "GET /_sim/catalog", "POST /_sim/catalog":
		s.serveCatalogControl(w, r)
	case "GET /_sim/health":
		writeJSON(w, 200, map[string]string{"status": "ok"})
	case "GET /_sim/stats":
		writeJSON(w, 200, s.Stats())
	case "POST /_sim/reset":
		if err := s.Reset(); err != nil {
			writeError(w, newError("server_error", "reset: %v", err))
			return
		}
		writeJSON(w, 200, map[string]string{"status": "reset"})
	case "GET /_sim/faults":
		writeJSON(w, 200, s.faults.get())
	case "POST /_sim/faults":
		var cfg FaultConfig
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&cfg); err != nil {
			bad("fault configuration: " + err.Error())
			return
		}
		if err := s.SetFaults(cfg); err != nil {
			bad(err.Error())
			return
		}
		writeJSON(w, 200, s.faults.get())
	case "GET /_sim/ratelimit":
		l, rem := s.bucket.status()
		writeJSON(w, 200, RateLimitStatus{Limit: l, Remaining: rem})
	case "POST /_sim/ratelimit":
		req := RateLimitStatus{Remaining: -1}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil {
			bad("rate limit: " + err.Error())
			return
		}
		if req.Limit <= 0 {
			l, _ := s.bucket.status()
			req.Limit = l
		}
		s.SetRateLimit(req.Limit, req.Remaining)
		l, rem := s.bucket.status()
		writeJSON(w, 200, RateLimitStatus{Limit: l, Remaining: rem})
	case "GET /_sim/held":
		q := r.URL.Query()
		if v := q.Get("wait"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				bad("wait: want a positive duration such as 30s")
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			_, _ = s.WaitHeld(ctx, q.Get("command")) // none held in time: the list is empty
		}
		out := HeldList{Held: []HeldAction{}}
		for _, h := range s.HeldActions() {
			if globMatch(q.Get("command"), h.Command) {
				out.Held = append(out.Held, h)
			}
		}
		writeJSON(w, 200, out)
	case "POST /_sim/release":
		var req ReleaseRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			bad("release: " + err.Error())
			return
		}
		out := HeldList{Held: []HeldAction{}}
		out.Held = append(out.Held, s.Release(req)...)
		writeJSON(w, 200, out)
	case "POST /_sim/wait":
		d := 30 * time.Second
		if v := r.URL.Query().Get("timeout"); v != "" {
			if pd, err := time.ParseDuration(v); err == nil {
				d = pd
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		if err := s.Wait(ctx); err != nil {
			writeError(w, newError("timeout", "actions still running after %s", d))
			return
		}
		writeJSON(w, 200, map[string]string{"status": "idle"})
	default:
		writeError(w, newError("not_found", "no control endpoint %s %s", r.Method, r.URL.Path))
	}
}
