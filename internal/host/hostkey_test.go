package host

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// state reads the environment's state file.
func (e *simEnv) state(env string) envState {
	e.t.Helper()
	st, err := loadState(e.deps.Paths, env)
	must(e.t, err)
	return st
}

// presents is the HostKeyLabel of the key the fake server presents now.
func (e *simEnv) presents(id int64) string {
	e.disk.mu.Lock()
	defer e.disk.mu.Unlock()
	return e.disk.hostKeys[id].current
}

// The host key of the user-data is worthless after the first up: the server presents a key it
// made itself, the client pins that one, the server's label still names the key it was
// created with (so the next up adopts it), and nothing more happens on the next up.
func TestUpReplacesTheUserDataHostKey(t *testing.T) {
	e := newSimEnv(t)
	ctx := t.Context()
	res, err := e.up(ctx, "default")
	must(t, err)
	st := e.state("default")
	created, err1 := ParseAuthorizedKey(st.CreatedHostKey)
	pinned, err2 := ParseAuthorizedKey(st.HostKey)
	if err1 != nil || err2 != nil || st.NextHostKey != "" {
		t.Fatalf("state after up: %+v", st)
	}
	srv, err := e.api.Server(ctx, res.ServerID)
	must(t, err)
	if srv.Labels[LabelHostKey] != HostKeyLabel(created) {
		t.Errorf("the server's label does not name the key it was created with")
	}
	if HostKeyLabel(pinned) == HostKeyLabel(created) || e.presents(res.ServerID) != HostKeyLabel(pinned) {
		t.Fatalf("the server presents %s, the client pins %s, the user-data had %s: want the pinned key, a new one",
			e.presents(res.ServerID), HostKeyLabel(pinned), HostKeyLabel(created))
	}
	if _, err := e.dial(ctx, Target{Addr: srv.IPv4 + ":22", HostKey: created}); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("the user-data's key still authenticates the server: %v", err)
	}
	cfg, err := os.ReadFile(e.deps.Paths.KnownHostsFile("default"))
	must(t, err)
	if !strings.Contains(string(cfg), authorizedKey(pinned)) || strings.Contains(string(cfg), authorizedKey(created)) {
		t.Errorf("known_hosts of the docker context:\n%s\nwant only the new key", cfg)
	}
	if !strings.Contains(e.stderr.String(), "Replacing the host key of the user-data") {
		t.Errorf("progress does not show the step:\n%s", e.stderr)
	}

	e.disk.cmds = nil
	e.stderr.Reset()
	again, err := e.up(ctx, "default")
	must(t, err)
	for _, c := range e.disk.cmds {
		if strings.HasPrefix(c, "bash -s -- ") {
			t.Errorf("the second up touched the host key again: %q", c)
		}
	}
	if again.ServerID != res.ServerID || e.state("default").HostKey != st.HostKey {
		t.Errorf("the second up changed the server or the pin")
	}

	// down/up: a new server, its own user-data key, replaced the same way.
	_, err = Down(ctx, e.deps, DownOptions{Env: "default"})
	must(t, err)
	if st := e.state("default"); st.HostKey != "" || st.CreatedHostKey != "" || st.NextHostKey != "" {
		t.Errorf("down left host keys in the state: %+v", st)
	}
	second, err := e.up(ctx, "default")
	must(t, err)
	st2 := e.state("default")
	if second.ServerID == res.ServerID || st2.CreatedHostKey == "" || st2.CreatedHostKey == st.CreatedHostKey || st2.HostKey == st.HostKey {
		t.Fatalf("up after down: server %d, state %+v", second.ServerID, st2)
	}
	if k, _ := ParseAuthorizedKey(st2.HostKey); e.presents(second.ServerID) != HostKeyLabel(k) {
		t.Errorf("the new server does not present the pinned key")
	}
}

// An up interrupted at any point of the rotation (the connection lost, Ctrl-C) leaves a state
// the next up finishes: the server and the client end up with the same new key.
func TestInterruptedHostKeyRotationResumes(t *testing.T) {
	lost := errors.New("connection lost")
	for _, tc := range []struct {
		name  string
		step  string // prefix of the command
		after bool   // the server carried the command out before the connection was lost
	}{
		{"before prepare", "bash -s -- prepare", false},
		{"after prepare (the key made, the answer lost)", "bash -s -- prepare", true},
		{"before commit", "bash -s -- commit", false},
		{"after commit (the server switched, the answer lost)", "bash -s -- commit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSimEnv(t)
			ctx := t.Context()
			e.disk.fault = func(cmd string, after bool) error {
				if strings.HasPrefix(cmd, tc.step) && after == tc.after {
					return lost
				}
				return nil
			}
			res, err := e.up(ctx, "default")
			if !errors.Is(err, lost) || !strings.Contains(err.Error(), "EXISTS AND IS BILLED") {
				t.Fatalf("interrupted up: %v", err)
			}
			e.disk.fault = nil
			again, err := e.up(ctx, "default")
			if err != nil {
				t.Fatalf("the next up: %v", err)
			}
			st := e.state("default")
			pinned, err := ParseAuthorizedKey(st.HostKey)
			must(t, err)
			if again.ServerCreated || st.CreatedHostKey == "" || st.NextHostKey != "" || e.presents(res.ServerID) != HostKeyLabel(pinned) {
				t.Fatalf("after the next up: state %+v, server presents %s", st, e.presents(res.ServerID))
			}
		})
	}

	// Ctrl-C while the client proves the switch with a fresh connection.
	t.Run("during the check with the new key", func(t *testing.T) {
		e := newSimEnv(t)
		ctx, cancel := context.WithCancel(t.Context())
		e.dialErr = func(n int) error {
			if n == 2 { // 1: waiting for SSH; 2: the fresh connection with the new key
				cancel()
				return ctx.Err()
			}
			return nil
		}
		res, err := e.up(ctx, "default")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted up: %v", err)
		}
		st := e.state("default")
		if st.NextHostKey == "" || st.CreatedHostKey != "" {
			t.Fatalf("state after the interruption: %+v, want the new key pinned next to the old", st)
		}
		e.dialErr = nil
		if _, err := e.up(t.Context(), "default"); err != nil {
			t.Fatalf("the next up: %v", err)
		}
		st = e.state("default")
		pinned, err := ParseAuthorizedKey(st.HostKey)
		must(t, err)
		if st.NextHostKey != "" || e.presents(res.ServerID) != HostKeyLabel(pinned) {
			t.Fatalf("after the next up: %+v", st)
		}
	})
}
