package hetzner

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Budget is the rate-limit budget as the API last reported it (RateLimit-* headers).
type Budget struct {
	Limit     int       // requests per window (3600 per hour on Hetzner)
	Remaining int       // requests left now
	Reset     time.Time // when the budget is full again
	Seen      bool      // false until an answer carried the headers
}

// refillInterval is the time one request takes to come back, derived from the headers:
// the missing requests come back evenly until Reset.
func (b Budget) refillInterval(now time.Time) time.Duration {
	missing := b.Limit - b.Remaining
	if !b.Seen || missing <= 0 {
		return 0
	}
	return max(b.Reset.Sub(now)/time.Duration(missing), 0)
}

// RequestEvent describes one HTTP request sent to the API, for metrics.
type RequestEvent struct {
	Method   string
	Endpoint string // path template, e.g. "/volumes/{id}/actions/attach"
	Status   int    // 0 when no answer came
	Duration time.Duration
}

// transport sits under hcloud-go. It records the budget, reports requests, waits on 429
// for the next request the budget allows (bounded), and retries idempotent requests
// after 5xx answers and network errors with backoff.
type transport struct {
	base        http.RoundTripper
	maxWait     time.Duration
	maxRetries  int
	retryBase   time.Duration
	defaultWait time.Duration // wait after a 429 without usable headers
	observer    func(RequestEvent)
	log         logrus.FieldLogger
	now         func() time.Time
	sleep       func(context.Context, time.Duration) error

	mu     sync.Mutex
	latest Budget
}

func (t *transport) budget() Budget {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.latest
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var waited time.Duration
	retries := 0
	for {
		attempt := req
		if req.Body != nil && req.GetBody != nil && (waited > 0 || retries > 0) {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			attempt = req.Clone(ctx)
			attempt.Body = body
		}
		start := t.now()
		resp, err := t.base.RoundTrip(attempt)
		status := 0
		if resp != nil {
			status = resp.StatusCode
			t.record(resp.Header)
		}
		if t.observer != nil {
			t.observer(RequestEvent{Method: req.Method, Endpoint: endpointTemplate(req.URL.Path), Status: status, Duration: t.now().Sub(start)})
		}
		replayable := req.Body == nil || req.GetBody != nil

		switch {
		case err == nil && status == http.StatusTooManyRequests && replayable:
			d := t.rateLimitWait()
			if waited+d > t.maxWait {
				return resp, nil // hcloud-go turns it into rate_limit_exceeded; callers see ErrRateLimited
			}
			b := t.budget()
			t.log.WithFields(logrus.Fields{"endpoint": endpointTemplate(req.URL.Path), "wait": d.Round(time.Millisecond)}).
				Warnf("Hetzner API rate limit reached (%d of %d requests left, full again at %s): waiting for the budget", b.Remaining, b.Limit, b.Reset.Format(time.TimeOnly))
			drain(resp)
			if err := t.sleep(ctx, d); err != nil {
				return nil, err
			}
			waited += d
			continue
		case retries < t.maxRetries && idempotent(req.Method) && (err != nil && ctx.Err() == nil || status >= 500):
			d := t.backoff(retries)
			t.log.WithFields(logrus.Fields{"endpoint": endpointTemplate(req.URL.Path), "status": status, "retry": retries + 1}).
				Debugf("retrying after %s: %v", d, errOrStatus(err, status))
			if resp != nil {
				drain(resp)
			}
			if err := t.sleep(ctx, d); err != nil {
				return nil, err
			}
			retries++
			continue
		}
		return resp, err
	}
}

func (t *transport) record(h http.Header) {
	limit, err1 := strconv.Atoi(h.Get("RateLimit-Limit"))
	remaining, err2 := strconv.Atoi(h.Get("RateLimit-Remaining"))
	reset, err3 := strconv.ParseInt(h.Get("RateLimit-Reset"), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return
	}
	t.mu.Lock()
	t.latest = Budget{Limit: limit, Remaining: remaining, Reset: time.Unix(reset, 0), Seen: true}
	t.mu.Unlock()
}

// rateLimitWait is how long to wait after a 429: until one request has come back,
// plus a little jitter so parallel callers do not all retry in the same instant.
func (t *transport) rateLimitWait() time.Duration {
	d := t.budget().refillInterval(t.now())
	if d <= 0 {
		d = t.defaultWait
	}
	return d + time.Duration(rand.Int64N(int64(d/4)+1))
}

func (t *transport) backoff(retries int) time.Duration {
	d := t.retryBase << retries
	d = min(d, 10*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func idempotent(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}

func errOrStatus(err error, status int) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("HTTP %d", status)
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
}

// endpointTemplate turns "/v1/volumes/42/actions/attach" into "/volumes/{id}/actions/attach"
// so that metrics have a bounded number of label values.
func endpointTemplate(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) > 0 && parts[0] == "v1" {
		parts = parts[1:]
	}
	for i, p := range parts {
		if _, err := strconv.ParseInt(p, 10, 64); err == nil {
			parts[i] = "{id}"
		}
	}
	return "/" + strings.Join(parts, "/")
}
