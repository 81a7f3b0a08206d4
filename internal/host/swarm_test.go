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

// pausedRemote is node 1 of a formed swarm of two, both paused: node 1 by dockbridge (the
// idle agent's self-down, which this machine's state does not know: label dockbridge.paused),
// node 2 by the user (no label). It records the commands run.
type pausedRemote struct{ cmds []string }

func (r *pausedRemote) Close() error { return nil }

func (r *pausedRemote) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	r.cmds = append(r.cmds, cmd)
	switch {
	case strings.HasPrefix(cmd, "docker info"):
		return []byte(`{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":true}`), nil
	case strings.HasPrefix(cmd, "docker node ls"):
		return []byte(`{"ID":"n1","Hostname":"e-1","Status":"Ready","Availability":"Pause","ManagerStatus":"Leader","Self":true}` + "\n" +
			`{"ID":"n2","Hostname":"e-2","Status":"Ready","Availability":"Pause"}` + "\n"), nil
	case strings.HasPrefix(cmd, "docker swarm join-token -q "):
		return []byte("SWMTKN-1-x\n"), nil
	case strings.HasPrefix(cmd, "docker node inspect") && strings.HasSuffix(cmd, " n1"):
		return []byte("idle\n"), nil
	case strings.HasPrefix(cmd, "docker node inspect"):
		return []byte("\n"), nil
	case strings.HasPrefix(cmd, "docker node update"):
		return nil, nil
	}
	return nil, &RemoteError{Cmd: cmd, ExitCode: 127, Stderr: "unexpected command"}
}

// TestUpActivatesNodesDockbridgePaused: up makes active again a node paused by dockbridge (the
// label), which the idle agent's self-down did on the servers, and leaves a node the user
// paused as it is.
func TestUpActivatesNodesDockbridgePaused(t *testing.T) {
	lead := &pausedRemote{}
	nodes := []*upNode{
		{plannedNode: &plannedNode{N: 1, Role: SwarmManager}, srv: &hetzner.Server{Name: "e-1"}, remote: lead},
		// node 2 answers as a member of this swarm already (its NodeID is the manager's n2)
		{plannedNode: &plannedNode{N: 2, Role: SwarmWorker}, srv: &hetzner.Server{Name: "e-2"}, remote: &memberOf{id: "n2"}},
	}
	var out strings.Builder
	d := &Deps{Progress: ui.NewProgress(&out, false), Now: time.Now}
	if err := formSwarm(context.Background(), d, "e", &envState{}, nodes); err != nil {
		t.Fatal(err)
	}
	var updates []string
	for _, c := range lead.cmds {
		if strings.HasPrefix(c, "docker node update") {
			updates = append(updates, c)
		}
	}
	if len(updates) != 1 || !strings.Contains(updates[0], "--availability active") || !strings.Contains(updates[0], " n1 ") {
		t.Fatalf("node updates %q: want node 1 (paused by dockbridge) active again, node 2 (the user's pause) left", updates)
	}
}

// memberOf is a node that is a member of the swarm already, as id.
type memberOf struct{ id string }

func (m *memberOf) Close() error { return nil }

func (m *memberOf) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	if strings.HasPrefix(cmd, "docker info") {
		return []byte(`{"NodeID":"` + m.id + `","LocalNodeState":"active"}`), nil
	}
	return nil, &RemoteError{Cmd: cmd, ExitCode: 127, Stderr: "unexpected command"}
}
