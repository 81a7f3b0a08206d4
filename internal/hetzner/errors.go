package hetzner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// Sentinel errors. Callers branch with errors.Is; the error's text keeps the API's
// own message so a person can act on it.
var (
	ErrNotFound        = errors.New("not found")
	ErrUnauthorized    = errors.New("token rejected")
	ErrForbidden       = errors.New("token lacks permission")
	ErrLocked          = errors.New("locked by a running action")
	ErrRateLimited     = errors.New("API rate limit exhausted")
	ErrConflict        = errors.New("conflict")
	ErrAlreadyExists   = errors.New("already exists")
	ErrAlreadyAttached = errors.New("already attached") // a volume to a server, a server to a network
	ErrAddressTaken    = errors.New("private address not available")
	ErrProtected       = errors.New("protected")
	ErrLimitExceeded   = errors.New("resource limit exceeded")
	ErrInvalidInput    = errors.New("invalid input")
	ErrUnavailable     = errors.New("API unavailable")
	ErrNotAvailable    = errors.New("not available there now") // resource_unavailable: e.g. a server type out of stock in a location
	ErrActionFailed    = errors.New("action failed")
	ErrAPI             = errors.New("API error") // a code this package does not know
	// ErrMoved: a conditional detach (DetachVolumeFrom) found the volume no longer attached to
	// the server it named: detached meanwhile, or attached elsewhere.
	ErrMoved = errors.New("volume no longer attached to that server")
)

// APIError is an error answered by the Hetzner Cloud API (or the failure to reach it),
// mapped onto one of the sentinels above.
type APIError struct {
	Op       string // what we were doing, e.g. "attach volume 42 to server 7"
	Code     string // the API's error code, e.g. "locked"; empty for network errors
	Message  string // the API's message
	Fields   map[string][]string
	sentinel error
	cause    error
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.sentinel.Error())
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	for name, msgs := range e.Fields {
		fmt.Fprintf(&b, "; %s: %s", name, strings.Join(msgs, ", "))
	}
	if hint := hintFor(e.sentinel); hint != "" {
		b.WriteString(". ")
		b.WriteString(hint)
	}
	return b.String()
}

// Unwrap exposes both the sentinel and the underlying cause (hcloud.Error, net.Error, ...).
func (e *APIError) Unwrap() []error { return []error{e.sentinel, e.cause} }

func hintFor(sentinel error) string {
	switch sentinel {
	case ErrUnauthorized:
		return "Check the token: create a read/write API token in the Hetzner Cloud console (Security > API tokens) and set HCLOUD_TOKEN (or HCLOUD_TOKEN_FILE)"
	case ErrForbidden:
		return "The token is read-only: create a read/write API token"
	case ErrUnavailable:
		return "Check the endpoint (HCLOUD_ENDPOINT) and the network, then retry"
	case ErrNotAvailable:
		return "Nothing was created: Hetzner cannot place it there right now; choose another location (or server type), or try again later"
	}
	return ""
}

// wrap turns an error from hcloud-go into an *APIError carrying a sentinel.
// A nil error stays nil; context errors pass through unchanged.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	op := fmt.Sprintf(format, args...)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var already *APIError
	if errors.As(err, &already) {
		return fmt.Errorf("%s: %w", op, err)
	}
	e := &APIError{Op: op, cause: err}
	var herr hcloud.Error
	var aerr hcloud.ActionError
	var nerr net.Error
	switch {
	case errors.As(err, &herr):
		e.Code, e.Message = string(herr.Code), herr.Message
		e.sentinel = sentinelFor(herr.Code, statusOf(herr))
		if details, ok := herr.Details.(hcloud.ErrorDetailsInvalidInput); ok {
			e.Fields = map[string][]string{}
			for _, f := range details.Fields {
				e.Fields[f.Name] = f.Messages
			}
		}
	case errors.As(err, &aerr):
		e.Code, e.Message = aerr.Code, aerr.Message
		e.sentinel = ErrActionFailed
	case errors.Is(err, hcloud.ErrStatusCode):
		e.sentinel, e.Message = ErrUnavailable, err.Error()
	case errors.As(err, &nerr):
		e.sentinel, e.Message = ErrUnavailable, err.Error()
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
	return e
}

func statusOf(herr hcloud.Error) int {
	if resp := herr.Response(); resp != nil && resp.Response != nil {
		return resp.StatusCode
	}
	return 0
}

func sentinelFor(code hcloud.ErrorCode, status int) error {
	switch code {
	case hcloud.ErrorCodeNotFound:
		return ErrNotFound
	case hcloud.ErrorCodeUnauthorized:
		return ErrUnauthorized
	case hcloud.ErrorCodeForbidden:
		return ErrForbidden
	case hcloud.ErrorCodeLocked, hcloud.ErrorCodeResourceLocked:
		return ErrLocked
	case hcloud.ErrorCodeRateLimitExceeded:
		return ErrRateLimited
	case hcloud.ErrorCodeConflict:
		return ErrConflict
	case hcloud.ErrorCodeUniquenessError:
		return ErrAlreadyExists
	case hcloud.ErrorCodeVolumeAlreadyAttached, hcloud.ErrorCodeServerAlreadyAttached:
		return ErrAlreadyAttached
	case hcloud.ErrorCodeIPNotAvailable, hcloud.ErrorCodeNoSubnetAvailable, hcloud.ErrorCodeNetworksOverlap:
		return ErrAddressTaken
	case hcloud.ErrorCodeProtected:
		return ErrProtected
	case hcloud.ErrorCodeResourceLimitExceeded, hcloud.ErrorCodeNoSpaceLeftInLocation:
		return ErrLimitExceeded
	case hcloud.ErrorCodeInvalidInput, hcloud.ErrorCodeJSONError:
		return ErrInvalidInput
	case hcloud.ErrorCodeResourceUnavailable:
		return ErrNotAvailable
	case hcloud.ErrorCodeServiceError, hcloud.ErrorCodeServerError, hcloud.ErrorCodeBadGateway,
		hcloud.ErrorCodeTimeout, hcloud.ErrorCodeMaintenance,
		hcloud.ErrorCodeUnknownError, hcloud.ErrorCodeRobotUnavailable, "unavailable":
		return ErrUnavailable
	}
	if status >= 500 {
		return ErrUnavailable
	}
	return ErrAPI
}
