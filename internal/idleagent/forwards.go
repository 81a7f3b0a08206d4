package idleagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/dockbridge/dockbridge/internal/link"
)

// Forwards reads what the laptop agent's port forwards carried (link.ForwardsFile, which the
// agent's link session writes from the agent's reports, once a second while there is any): a
// connection or traffic since the previous look is activity, and a connection open through
// them goes on as activity. The forwards' channels are sshd's TCP connections too, which SSHD
// sees while they last; this also sees those shorter than a look, on the agent's connection,
// whose traffic SSHD cannot tell from the link's own.
type Forwards struct {
	// File is link.ForwardsFile by default.
	File string

	last link.ForwardsRecord
	seen bool // a look has read the file (or seen it missing): later totals are news
}

func (f *Forwards) Name() string { return "port forwards" }

func (f *Forwards) Look(_ context.Context, _ time.Time) (Look, error) {
	var look Look
	if f.File == "" {
		f.File = link.ForwardsFile
	}
	b, err := os.ReadFile(f.File)
	if errors.Is(err, fs.ErrNotExist) {
		f.seen = true
		return look, nil
	}
	if err != nil {
		return look, err
	}
	var rec link.ForwardsRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return look, fmt.Errorf("%s: %w", f.File, err)
	}
	if rec.Open > 0 {
		look.ongoing("laptop-forwards", fmt.Sprintf("%d connection(s) open through the laptop's port forwards", rec.Open))
	}
	if f.seen && (rec.Connections > f.last.Connections || rec.Bytes > f.last.Bytes) {
		look.Happened = append(look.Happened, fmt.Sprintf("%d connection(s), %d bytes through the laptop's port forwards",
			rec.Connections-f.last.Connections, rec.Bytes-f.last.Bytes))
	}
	f.last, f.seen = rec, true
	return look, nil
}
