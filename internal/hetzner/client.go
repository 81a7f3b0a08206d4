// Package hetzner is the only package that imports hcloud-go. It turns hcloud types into
// the project's own types and hcloud error codes into the sentinel errors of errors.go,
// waits for actions without polling faster than the rate limit allows, and honours 429
// answers by waiting for the next request the budget allows.
package hetzner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"github.com/sirupsen/logrus"

	"github.com/dockbridge/dockbridge/internal/version"
)

// DefaultEndpoint is the public Hetzner Cloud API.
const DefaultEndpoint = hcloud.Endpoint

// Config configures a Client. Endpoint and Token come from the caller (flags, settings,
// plugin env); this package never reads the environment.
type Config struct {
	Endpoint string // default DefaultEndpoint
	Token    string // required; never logged
	// Application names the caller in the User-Agent, e.g. "dockbridge-volume-plugin".
	Application string
	Logger      logrus.FieldLogger
	HTTPClient  *http.Client // default: a client with RequestTimeout
	// RequestTimeout bounds one HTTP request (default 30s).
	RequestTimeout time.Duration
	// MaxRateLimitWait bounds how long one request waits in total for the rate-limit
	// budget after 429 answers before it fails with ErrRateLimited (default 2m).
	MaxRateLimitWait time.Duration
	// MaxRetries bounds retries of idempotent requests after 5xx or network errors (default 4).
	MaxRetries int
	// RetryBase is the first backoff of those retries (default 500ms, doubled each time, capped at 10s).
	RetryBase time.Duration
	// PollBase and PollMax shape the backoff while waiting for actions (defaults 500ms and 5s).
	PollBase, PollMax time.Duration
	// LockedTimeout bounds how long a mutation is retried while the resource is locked
	// by another action (default 2m).
	LockedTimeout time.Duration
	// Observer, when set, is told of every HTTP request sent (metrics).
	Observer func(RequestEvent)
}

// Client is a Hetzner Cloud API client bound to one project token.
type Client struct {
	api       *hcloud.Client
	transport *transport
	cfg       Config
	log       logrus.FieldLogger
}

// New returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	cfg.Token = strings.TrimSpace(cfg.Token)
	if cfg.Token == "" {
		return nil, fmt.Errorf("no Hetzner Cloud API token: %w. Set HCLOUD_TOKEN (or HCLOUD_TOKEN_FILE) to a read/write token from the Hetzner Cloud console (Security > API tokens)", ErrUnauthorized)
	}
	for _, r := range cfg.Token {
		if r < 0x21 || r > 0x7e {
			return nil, fmt.Errorf("the Hetzner Cloud API token contains a space or a non-printable character: %w. Copy the token again without quotes or line breaks", ErrUnauthorized)
		}
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if !strings.HasPrefix(cfg.Endpoint, "http://") && !strings.HasPrefix(cfg.Endpoint, "https://") {
		return nil, fmt.Errorf("API endpoint %q: want an http:// or https:// URL such as %s", cfg.Endpoint, DefaultEndpoint)
	}
	if cfg.Application == "" {
		cfg.Application = "dockbridge"
	}
	if cfg.Logger == nil {
		l := logrus.New()
		l.SetLevel(logrus.WarnLevel)
		cfg.Logger = l
	}
	setDefault(&cfg.RequestTimeout, 30*time.Second)
	setDefault(&cfg.MaxRateLimitWait, 2*time.Minute)
	setDefault(&cfg.RetryBase, 500*time.Millisecond)
	setDefault(&cfg.PollBase, 500*time.Millisecond)
	setDefault(&cfg.PollMax, 5*time.Second)
	setDefault(&cfg.LockedTimeout, 2*time.Minute)
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 4
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}

	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: cfg.RequestTimeout}
	}
	base := httpClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	t := &transport{
		base:        base,
		maxWait:     cfg.MaxRateLimitWait,
		maxRetries:  cfg.MaxRetries,
		retryBase:   cfg.RetryBase,
		observer:    cfg.Observer,
		log:         cfg.Logger,
		now:         time.Now,
		sleep:       sleepCtx,
		defaultWait: time.Second,
	}
	wrapped := *httpClient
	wrapped.Transport = t

	c := &Client{transport: t, cfg: cfg, log: cfg.Logger}
	c.api = hcloud.NewClient(
		hcloud.WithEndpoint(cfg.Endpoint),
		hcloud.WithToken(cfg.Token),
		hcloud.WithApplication(cfg.Application, version.Version),
		hcloud.WithHTTPClient(&wrapped),
		// Retries are ours (transport.go): hcloud-go's would retry 429 blindly and
		// compound with ours.
		hcloud.WithRetryOpts(hcloud.RetryOpts{BackoffFunc: hcloud.ConstantBackoff(0), MaxRetries: 0}),
		hcloud.WithPollOpts(hcloud.PollOpts{BackoffFunc: c.pollBackoff}),
	)
	return c, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Budget returns what the API last said about the rate-limit budget.
func (c *Client) Budget() Budget { return c.transport.budget() }

// pollBackoff grows from PollBase to PollMax, and never polls faster than the
// budget refills when less than a fifth of it is left.
func (c *Client) pollBackoff(retries int) time.Duration {
	d := c.cfg.PollBase
	for i := 0; i < retries && d < c.cfg.PollMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.PollMax)
	b := c.transport.budget()
	if b.Limit > 0 && b.Remaining < b.Limit/5 {
		d = max(d, 2*b.refillInterval(c.transport.now()))
	}
	return d
}

// wait waits for actions to finish; a failed action becomes ErrActionFailed.
func (c *Client) wait(ctx context.Context, op string, actions ...*hcloud.Action) error {
	var list []*hcloud.Action
	for _, a := range actions {
		if a != nil {
			list = append(list, a)
		}
	}
	if len(list) == 0 {
		return nil
	}
	return wrap(c.api.Action.WaitFor(ctx, list...), "%s", op)
}

// retryLocked runs a mutation, retrying with backoff while the resource is locked by
// another action or the API reports a conflict, for at most LockedTimeout.
func (c *Client) retryLocked(ctx context.Context, op string, f func() error) error {
	deadline := c.transport.now().Add(c.cfg.LockedTimeout)
	delay := time.Second
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || !(errors.Is(err, ErrLocked) || errors.Is(err, ErrConflict)) {
			return err
		}
		if c.transport.now().Add(delay).After(deadline) {
			return fmt.Errorf("%w (still locked after %d attempts over %s; another action is running on it, retry later)", err, attempt, c.cfg.LockedTimeout)
		}
		c.log.WithField("op", op).WithField("attempt", attempt).Infof("resource locked by a running action, retrying in %s", delay)
		if err := c.transport.sleep(ctx, delay); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
