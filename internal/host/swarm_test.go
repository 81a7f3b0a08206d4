package host

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// swarmRemote answers formSwarm's commands like a node's shell: the lead a manager of a swarm,
// the others outside one, whose `docker swarm join` fails the way a shell reports it (the
// command in the error, as RemoteError quotes it).
type swarmRemote struct {
	lead      bool
	joinStdin string
}

func (r *swarmRemote) Close() error { return nil }

func (r *swarmRemote) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	switch {
	case strings.HasPrefix(cmd, "docker info"):
		if r.lead {
			return []byte(`{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":true}`), nil
		}
		return []byte(`{"LocalNodeState":"inactive"}`), nil
	case strings.HasPrefix(cmd, "docker node ls"):
		return []byte(`{"ID":"n1","Hostname":"e-1","Status":"Ready","ManagerStatus":"Leader","Self":true}` + "\n"), nil
	case strings.HasPrefix(cmd, "docker swarm join-token -q "):
		return []byte("SWMTKN-1-secret" + strings.TrimPrefix(cmd, "docker swarm join-token -q ") + "\n"), nil
	case strings.HasPrefix(cmd, "docker swarm join "):
		if stdin != nil {
			b, _ := io.ReadAll(stdin)
			r.joinStdin = string(b)
		}
		return nil, &RemoteError{Cmd: cmd, Addr: "10.0.1.3:22", ExitCode: 1, Stderr: "Error response from daemon: Timeout was reached before node joined."}
	}
	return nil, &RemoteError{Cmd: cmd, Addr: "10.0.1.3:22", ExitCode: 127, Stderr: "unexpected command"}
}

// TestSwarmJoinTokenNotInErrors: a failed join's error (printed by up, saved in wake.json and
// wake.log) does not carry the join token; the token reaches the join on its stdin.
func TestSwarmJoinTokenNotInErrors(t *testing.T) {
	lead, worker := &swarmRemote{lead: true}, &swarmRemote{}
	nodes := []*upNode{
		{plannedNode: &plannedNode{N: 1, Role: SwarmManager}, srv: &hetzner.Server{Name: "e-1"}, remote: lead},
		{plannedNode: &plannedNode{N: 2, Role: SwarmWorker}, srv: &hetzner.Server{Name: "e-2"}, remote: worker},
	}
	var out strings.Builder
	d := &Deps{Progress: ui.NewProgress(&out, false), Now: time.Now}
	err := formSwarm(context.Background(), d, "e", &envState{}, nodes)
	if err == nil || !strings.Contains(err.Error(), "docker swarm join") {
		t.Fatalf("formSwarm with a failing join: %v; want the join's error", err)
	}
	if strings.Contains(err.Error(), "SWMTKN") || strings.Contains(out.String(), "SWMTKN") {
		t.Errorf("the join token is in the error or the output:\n%v\n%s", err, out.String())
	}
	if worker.joinStdin != "SWMTKN-1-secretworker" {
		t.Errorf("the join's stdin: %q, want the worker token", worker.joinStdin)
	}
}
