package volumedriver

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// explain adds what a person can do about an API error to err.
func (d *Driver) explain(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, hetzner.ErrUnauthorized):
		return fmt.Errorf("%w. The token must be a valid read/write token. %s", err, d.tokenHint())
	case errors.Is(err, hetzner.ErrRateLimited):
		msg := "the plugin waited for the Hetzner API budget (3600 requests/hour per project) and it is still exhausted"
		if b := d.cloud.Budget(); b.Seen {
			msg = fmt.Sprintf("%s: %d of %d requests left, full again at %s (in %s)", msg, b.Remaining, b.Limit,
				b.Reset.UTC().Format(time.RFC3339), time.Until(b.Reset).Round(time.Second))
		}
		return fmt.Errorf("%w. %s; retry later, and look for other users of the same project's token", err, msg)
	case errors.Is(err, hetzner.ErrUnavailable):
		ep := d.s.Endpoint
		if ep == "" {
			ep = hetzner.DefaultEndpoint
		}
		return fmt.Errorf("%w (the Hetzner API at %s could not be reached or failed; reads were retried with backoff, changes are not repeated blindly: run the command again)", err, ep)
	}
	return err
}

var evalSymlinks = func(p string) (string, error) {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	return filepath.Abs(r)
}
