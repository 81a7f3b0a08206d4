package hcloudsim

import (
	"strconv"
	"sync"
)

// Stats is the JSON document served at GET /_sim/stats.
type Stats struct {
	// Total counts every API and metadata request (not /_sim requests).
	Total int64 `json:"total"`
	// ByEndpoint counts per "METHOD /path/template", e.g. "GET /v1/volumes/{id}".
	ByEndpoint map[string]int64 `json:"by_endpoint"`
	// ByStatus counts per HTTP status code.
	ByStatus map[string]int64 `json:"by_status"`
	// RateLimited counts 429 answers caused by the token bucket (not injected ones).
	RateLimited int64 `json:"rate_limited"`
	// FaultsInjected counts injected faults (HTTP and action failures).
	FaultsInjected int64 `json:"faults_injected"`
	// Actions counts started actions per command.
	Actions map[string]int64 `json:"actions"`
	// UncleanDeletes counts server deletes that came while the server still had a volume's
	// filesystem mounted: on Hetzner such a delete is a power cut. The container backend reads
	// the server's mount table; the other backends count the delete of a server that is not
	// off and has a volume attached. A server that unmounted everything before it was
	// deleted (by someone else or by itself) is a clean delete.
	UncleanDeletes int64 `json:"unclean_deletes"`
	// DetachesWhileMounted counts detach actions on a volume whose filesystem the server still
	// had mounted: on Hetzner a hot-unplug under a live filesystem. Only backends that see the
	// guest's mounts (GuestBackend: the container backend) count them.
	DetachesWhileMounted int64 `json:"detaches_while_mounted"`
}

type statsRecorder struct {
	mu sync.Mutex
	s  Stats
}

func newStatsRecorder() *statsRecorder {
	r := &statsRecorder{}
	r.reset()
	return r
}

func (r *statsRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s = Stats{ByEndpoint: map[string]int64{}, ByStatus: map[string]int64{}, Actions: map[string]int64{}}
}

func (r *statsRecorder) record(endpoint string, status int, rateLimited bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Total++
	r.s.ByEndpoint[endpoint]++
	r.s.ByStatus[strconv.Itoa(status)]++
	if rateLimited {
		r.s.RateLimited++
	}
}

func (r *statsRecorder) fault() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.FaultsInjected++
}

func (r *statsRecorder) uncleanDelete() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.UncleanDeletes++
}

func (r *statsRecorder) detachWhileMounted() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.DetachesWhileMounted++
}

func (r *statsRecorder) action(cmd string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Actions[cmd]++
}

func (r *statsRecorder) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := Stats{Total: r.s.Total, RateLimited: r.s.RateLimited, FaultsInjected: r.s.FaultsInjected, UncleanDeletes: r.s.UncleanDeletes,
		DetachesWhileMounted: r.s.DetachesWhileMounted,
		ByEndpoint:           map[string]int64{}, ByStatus: map[string]int64{}, Actions: map[string]int64{}}
	for k, v := range r.s.ByEndpoint {
		out.ByEndpoint[k] = v
	}
	for k, v := range r.s.ByStatus {
		out.ByStatus[k] = v
	}
	for k, v := range r.s.Actions {
		out.Actions[k] = v
	}
	return out
}
