package idleagent

import (
	"context"
	"time"
)

// A Source is one kind of activity the agent watches. Look is called every Interval; it says
// what is going on now and what happened since the previous look that is over already (a
// command of 100 ms between two looks a second apart). A new kind of activity (say, a tunnel
// that does not go through sshd) is one more Source in Agent.Sources.
type Source interface {
	// Name names the source in the agent's log.
	Name() string
	Look(ctx context.Context, now time.Time) (Look, error)
}

// Look is what one source saw.
type Look struct {
	// Ongoing is what keeps the server busy now, by a key that stays the same while it goes on
	// (a session's process, a container's id) to the text status shows.
	Ongoing map[string]string
	// Happened are things that began and ended since the previous look, as status texts.
	Happened []string
	// LeftStopped (a swarm member's look) says its Docker was stopped on node 1's word and
	// neither started again nor followed by the server's shutdown: a self-down of the swarm
	// that did not finish (node 1's agent ended in the middle of it).
	LeftStopped bool `json:",omitempty"`
}

func (l *Look) ongoing(key, reason string) {
	if l.Ongoing == nil {
		l.Ongoing = map[string]string{}
	}
	l.Ongoing[key] = reason
}
