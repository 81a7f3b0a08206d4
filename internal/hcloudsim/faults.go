package hcloudsim

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// FaultRule injects one kind of fault into matching requests or actions.
type FaultRule struct {
	// Kind: "500" (server_error), "502" (bad_gateway), "503" (unavailable),
	// "504" (timeout), "429" (rate_limit_exceeded), "locked" (423 locked, as while another
	// action runs on the resource), "timeout" (hold the request until the
	// client gives up or MaxDelay passes, then answer 504), "action_error" (the action
	// ends with status "error"), "hold" (the action stays running, progress 0, until it is
	// released: Sim.Release, POST /_sim/release), or "ignore_shutdown" (the server's OS
	// ignores a shutdown action's ACPI request: the action succeeds and the server stays
	// running).
	Kind string `json:"kind"`
	// Rate is the probability in [0,1] that a matching request/action gets the fault.
	Rate float64 `json:"rate"`
	// Method matches the HTTP method ("" or "*" = any).
	Method string `json:"method,omitempty"`
	// Path is a glob ("*" matches anything, including "/") matched against the route
	// template ("/v1/volumes/{id}/actions/attach") and the request path. "" = any.
	Path string `json:"path,omitempty"`
	// Command is a glob on the action command for "action_error" and "hold" ("" = any).
	Command string `json:"command,omitempty"`
	// Resource is a glob on the action's resources, written "type:id" (e.g. "volume:42",
	// "server:*"), for "action_error" and "hold": one of them must match ("" = any).
	Resource string `json:"resource,omitempty"`
	// Count limits how many times the rule fires (0 = unlimited).
	Count int `json:"count,omitempty"`
	// MaxDelay bounds a "timeout" fault, as a Go duration ("30s" when empty).
	MaxDelay string `json:"max_delay,omitempty"`

	fired int
}

// FaultConfig is the body of POST /_sim/faults and the value of Config.Faults.
type FaultConfig struct {
	Seed  uint64      `json:"seed"`
	Rules []FaultRule `json:"rules"`
}

var faultKinds = map[string]bool{"500": true, "502": true, "503": true, "504": true, "429": true, "locked": true, "timeout": true, "action_error": true, "hold": true, "ignore_shutdown": true}

// requestKind says whether a fault kind applies to HTTP requests (the others to actions).
func requestKind(kind string) bool {
	return kind != "action_error" && kind != "hold" && kind != "ignore_shutdown"
}

func (c FaultConfig) validate() error {
	for i, r := range c.Rules {
		if !faultKinds[r.Kind] {
			return fmt.Errorf("rule %d: unknown kind %q (want 500, 502, 503, 504, 429, locked, timeout, action_error, hold or ignore_shutdown)", i, r.Kind)
		}
		if r.Rate < 0 || r.Rate > 1 {
			return fmt.Errorf("rule %d: rate %v is outside [0,1]", i, r.Rate)
		}
		if r.MaxDelay != "" {
			if _, err := time.ParseDuration(r.MaxDelay); err != nil {
				return fmt.Errorf("rule %d: max_delay: %w", i, err)
			}
		}
	}
	return nil
}

type faultInjector struct {
	mu  sync.Mutex
	cfg FaultConfig
	rng *rand.Rand
}

func newFaultInjector(cfg FaultConfig) *faultInjector {
	f := &faultInjector{}
	f.set(cfg)
	return f
}

func (f *faultInjector) set(cfg FaultConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg.Rules = append([]FaultRule(nil), cfg.Rules...)
	f.cfg = cfg
	f.rng = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
}

func (f *faultInjector) get() FaultConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.cfg
	out.Rules = append([]FaultRule(nil), f.cfg.Rules...)
	return out
}

func globMatch(pattern, s string) bool {
	if pattern == "" || pattern == "*" {
		return true
	}
	var b strings.Builder
	b.WriteString("^")
	for _, part := range strings.Split(pattern, "*") {
		b.WriteString(regexp.QuoteMeta(part))
		b.WriteString(".*")
	}
	re := strings.TrimSuffix(b.String(), ".*") + "$"
	ok, _ := regexp.MatchString(re, s)
	return ok
}

// forRequest returns the first request fault that fires, or nil.
func (f *faultInjector) forRequest(method, template, path string) *FaultRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.cfg.Rules {
		r := &f.cfg.Rules[i]
		if !requestKind(r.Kind) || r.Rate <= 0 {
			continue
		}
		if r.Method != "" && r.Method != "*" && !strings.EqualFold(r.Method, method) {
			continue
		}
		if !globMatch(r.Path, template) && !globMatch(r.Path, path) {
			continue
		}
		if r.Count > 0 && r.fired >= r.Count {
			continue
		}
		if f.rng.Float64() < r.Rate {
			r.fired++
			cp := *r
			return &cp
		}
	}
	return nil
}

// forAction reports whether an action with this command and these resources must fail.
func (f *faultInjector) forAction(command string, resources []schema.ActionResourceReference) bool {
	return f.forActionKind("action_error", command, resources)
}

// forHold reports whether an action with this command and these resources must be held.
func (f *faultInjector) forHold(command string, resources []schema.ActionResourceReference) bool {
	return f.forActionKind("hold", command, resources)
}

func (f *faultInjector) forActionKind(kind, command string, resources []schema.ActionResourceReference) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.cfg.Rules {
		r := &f.cfg.Rules[i]
		if r.Kind != kind || r.Rate <= 0 || !globMatch(r.Command, command) || !r.matchesResource(resources) {
			continue
		}
		if r.Count > 0 && r.fired >= r.Count {
			continue
		}
		if f.rng.Float64() < r.Rate {
			r.fired++
			return true
		}
	}
	return false
}

func (r *FaultRule) matchesResource(resources []schema.ActionResourceReference) bool {
	if r.Resource == "" || r.Resource == "*" {
		return true
	}
	for _, res := range resources {
		if globMatch(r.Resource, fmt.Sprintf("%s:%d", res.Type, res.ID)) {
			return true
		}
	}
	return false
}

// ignoresShutdown reports whether the OS of a server getting a shutdown request ignores it.
func (f *faultInjector) ignoresShutdown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.cfg.Rules {
		r := &f.cfg.Rules[i]
		if r.Kind != "ignore_shutdown" || r.Rate <= 0 || (r.Count > 0 && r.fired >= r.Count) {
			continue
		}
		if f.rng.Float64() < r.Rate {
			r.fired++
			return true
		}
	}
	return false
}

func (r *FaultRule) apiError() *apiError {
	switch r.Kind {
	case "500":
		return newError("server_error", "injected fault: error within the API backend")
	case "502":
		return newError("bad_gateway", "injected fault: the request could not be answered by the API backend, please retry")
	case "503":
		return newError("unavailable", "injected fault: service currently not available")
	case "429":
		return newError("rate_limit_exceeded", "injected fault: limit of requests per hour exceeded")
	case "locked":
		return newError("locked", "injected fault: the resource is locked: another action is running; wait for it to finish")
	default:
		return newError("timeout", "injected fault: the request could not be answered in time, please retry")
	}
}

func (r *FaultRule) maxDelay() time.Duration {
	if d, err := time.ParseDuration(r.MaxDelay); err == nil && d > 0 {
		return d
	}
	return 30 * time.Second
}
