package hetzner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI answers from a list of canned responses, one per request, then 200 {}.
type fakeAPI struct {
	t       *testing.T
	answers []func(w http.ResponseWriter)
	n       atomic.Int32
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(f.n.Add(1)) - 1
	w.Header().Set("Content-Type", "application/json")
	if i < len(f.answers) {
		f.answers[i](w)
		return
	}
	fmt.Fprint(w, `{"volume":{"id":7,"name":"v","size":10,"status":"available","location":{"name":"fsn1"},"protection":{"delete":false},"labels":{}}}`)
}

func apiError(status int, code, msg string, headers map[string]string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":%q,"details":null}}`, code, msg)
	}
}

// newTestClient returns a client against the fake whose sleeps are recorded, not slept.
func newTestClient(t *testing.T, f *fakeAPI, cfg Config) (*Client, *[]time.Duration, *[]RequestEvent) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	var events []RequestEvent
	cfg.Endpoint = srv.URL + "/v1"
	cfg.Token = "test-token"
	cfg.Observer = func(e RequestEvent) { mu.Lock(); events = append(events, e); mu.Unlock() }
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	c.transport.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		slept = append(slept, d)
		mu.Unlock()
		return ctx.Err()
	}
	return c, &slept, &events
}

func TestRateLimitWaitsForTheNextRequest(t *testing.T) {
	reset := time.Now().Add(2 * time.Second)
	headers := map[string]string{"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10)}
	f := &fakeAPI{t: t, answers: []func(http.ResponseWriter){
		apiError(429, "rate_limit_exceeded", "limit reached", headers),
		apiError(429, "rate_limit_exceeded", "limit reached", headers),
	}}
	c, slept, events := newTestClient(t, f, Config{})
	v, err := c.Volume(t.Context(), 7)
	if err != nil {
		t.Fatalf("Volume after two 429s: %v", err)
	}
	if v.ID != 7 {
		t.Fatalf("got volume %d, want 7", v.ID)
	}
	if len(*slept) != 2 {
		t.Fatalf("slept %v, want two waits", *slept)
	}
	for _, d := range *slept {
		// one request of 3600 comes back within the ~2 s until reset: wait a few ms, at most ~2.5 s
		if d <= 0 || d > 3*time.Second {
			t.Errorf("waited %s after 429; want the time until one request is back", d)
		}
	}
	if len(*events) != 3 || (*events)[0].Status != 429 || (*events)[2].Status != 200 || (*events)[0].Endpoint != "/volumes/{id}" {
		t.Errorf("observer saw %+v", *events)
	}
	if b := c.Budget(); !b.Seen || b.Limit != 3600 {
		t.Errorf("budget %+v", b)
	}
}

func TestRateLimitGivesUpAfterMaxWait(t *testing.T) {
	reset := time.Now().Add(time.Hour)
	headers := map[string]string{"RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": strconv.FormatInt(reset.Unix(), 10)}
	var answers []func(http.ResponseWriter)
	for range 10 {
		answers = append(answers, apiError(429, "rate_limit_exceeded", "limit reached", headers))
	}
	f := &fakeAPI{t: t, answers: answers}
	c, _, _ := newTestClient(t, f, Config{MaxRateLimitWait: time.Minute})
	_, err := c.Volume(t.Context(), 7)
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v, want ErrRateLimited", err)
	}
	if got := f.n.Load(); got != 1 {
		t.Errorf("sent %d requests; a 30-minute wait exceeds the 1-minute bound, so 1 request and no retry", got)
	}
}

func TestIdempotentRequestsRetry5xxButMutationsDoNot(t *testing.T) {
	f := &fakeAPI{t: t, answers: []func(http.ResponseWriter){
		apiError(503, "service_error", "try later", nil),
		apiError(502, "bad_gateway", "try later", nil),
	}}
	c, slept, _ := newTestClient(t, f, Config{})
	if _, err := c.Volume(t.Context(), 7); err != nil {
		t.Fatalf("GET after two 5xx: %v", err)
	}
	if len(*slept) != 2 {
		t.Errorf("backoffs %v, want 2", *slept)
	}

	f2 := &fakeAPI{t: t, answers: []func(http.ResponseWriter){apiError(503, "service_error", "try later", nil)}}
	c2, _, _ := newTestClient(t, f2, Config{})
	err := c2.DeleteVolume(t.Context(), 7)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("DELETE after 503: %v, want ErrUnavailable", err)
	}
	if f2.n.Load() != 1 {
		t.Errorf("DELETE sent %d times, want 1 (not idempotent at the HTTP layer)", f2.n.Load())
	}
}

func TestErrorsMapToSentinels(t *testing.T) {
	tests := []struct {
		status   int
		code     string
		sentinel error
	}{
		{404, "not_found", ErrNotFound},
		{401, "unauthorized", ErrUnauthorized},
		{403, "forbidden", ErrForbidden},
		{409, "uniqueness_error", ErrAlreadyExists},
		{409, "volume_already_attached", ErrAlreadyAttached},
		{403, "protected", ErrProtected},
		{403, "resource_limit_exceeded", ErrLimitExceeded},
		{400, "invalid_input", ErrInvalidInput},
		{400, "json_error", ErrInvalidInput},
		{503, "unavailable", ErrUnavailable},
		{412, "resource_unavailable", ErrNotAvailable},
		{500, "some_new_code", ErrUnavailable},
		{422, "some_new_code", ErrAPI},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.status, tt.code), func(t *testing.T) {
			f := &fakeAPI{t: t, answers: []func(http.ResponseWriter){apiError(tt.status, tt.code, "the message", nil)}}
			c, _, _ := newTestClient(t, f, Config{})
			err := c.DeleteVolume(t.Context(), 7)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Code != tt.code || apiErr.Message != "the message" {
				t.Errorf("APIError = %+v", apiErr)
			}
		})
	}
}

func TestLockedMutationIsRetriedWithABound(t *testing.T) {
	var answers []func(http.ResponseWriter)
	for range 3 {
		answers = append(answers, apiError(423, "locked", "server is locked", nil))
	}
	f := &fakeAPI{t: t, answers: answers}
	c, slept, _ := newTestClient(t, f, Config{})
	if err := c.DeleteVolume(t.Context(), 7); err != nil {
		t.Fatalf("delete after 3 locked answers: %v", err)
	}
	if len(*slept) != 3 {
		t.Errorf("waits %v, want 3", *slept)
	}

	answers = nil
	for range 100 {
		answers = append(answers, apiError(423, "locked", "server is locked", nil))
	}
	f2 := &fakeAPI{t: t, answers: answers}
	c2, _, _ := newTestClient(t, f2, Config{LockedTimeout: 5 * time.Second})
	err := c2.DeleteVolume(t.Context(), 7)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked after the bound", err)
	}
	if n := f2.n.Load(); n < 2 || n > 5 {
		t.Errorf("sent %d attempts within a 5 s bound", n)
	}
}

func TestTokenValidation(t *testing.T) {
	for _, tok := range []string{"", "   ", "abc def", "abc\x00"} {
		if _, err := New(Config{Token: tok}); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("New(token %q) = %v, want ErrUnauthorized", tok, err)
		}
	}
	_, err := New(Config{Token: "secret-token-value", Endpoint: "ftp://x"})
	if err == nil || strings.Contains(err.Error(), "secret-token-value") {
		t.Errorf("bad endpoint error %v must exist and must not show the token", err)
	}
}

func TestEndpointTemplate(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/volumes":                   "/volumes",
		"/v1/volumes/42":                "/volumes/{id}",
		"/v1/volumes/42/actions/attach": "/volumes/{id}/actions/attach",
		"/v1/actions":                   "/actions",
	} {
		if got := endpointTemplate(in); got != want {
			t.Errorf("endpointTemplate(%q) = %q, want %q", in, got, want)
		}
	}
}
