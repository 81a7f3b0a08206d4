package hcloudsim

import (
	"math"
	"sync"
	"time"
)

// Clock is the simulator's time source; tests inject a fake one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// bucket is the API's token bucket: Limit requests per hour, refilled gradually
// (Limit/3600 per second, i.e. one per second at the default 3600).
type bucket struct {
	mu        sync.Mutex
	clock     Clock
	limit     int
	tokens    float64
	last      time.Time
	perSecond float64
}

func newBucket(clock Clock, limit int) *bucket {
	if limit <= 0 {
		limit = 3600
	}
	b := &bucket{clock: clock}
	b.set(limit, limit)
	return b
}

// set changes the limit and the remaining tokens (remaining < 0 keeps the current
// count, capped at the new limit).
func (b *bucket) set(limit, remaining int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if limit <= 0 {
		limit = 3600
	}
	b.refill()
	b.limit = limit
	b.perSecond = float64(limit) / 3600
	if remaining >= 0 {
		b.tokens = float64(remaining)
	}
	if b.tokens > float64(limit) {
		b.tokens = float64(limit)
	}
	b.last = b.clock.Now()
}

func (b *bucket) refill() {
	now := b.clock.Now()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = math.Min(float64(b.limit), b.tokens+now.Sub(b.last).Seconds()*b.perSecond)
	}
	b.last = now
}

// take consumes one token. It returns whether the request may proceed and the values
// of the RateLimit-Limit, -Remaining and -Reset headers (reset: unix seconds at which
// the bucket is full again).
func (b *bucket) take() (ok bool, limit, remaining int, reset int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	if b.tokens >= 1 {
		b.tokens--
		ok = true
	}
	remaining = int(math.Floor(b.tokens))
	missing := float64(b.limit) - b.tokens
	reset = b.clock.Now().Add(time.Duration(math.Ceil(missing/b.perSecond)) * time.Second).Unix()
	return ok, b.limit, remaining, reset
}

func (b *bucket) status() (limit, remaining int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	return b.limit, int(math.Floor(b.tokens))
}
