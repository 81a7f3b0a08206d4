package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dockbridge/dockbridge/cloudinit"
)

// rotateHostKey retires the host key of the user-data. The client generates that key so it
// can pin it before the server exists, but the metadata service hands the user-data, and
// with it the key's private half, to whatever reaches it for the server's whole life: the key
// must stop proving the server's identity once it has done its job.
//
// Over remote, which the pinned key authenticated, the server makes a new key
// (cloudinit/scripts/rotate-host-key.sh) and prints its public half. The client pins it
// (the state is saved) BEFORE the server switches to it; then the server puts it in the place
// of the old one and reloads sshd; a fresh connection that accepts only the new key proves the
// switch, and only then does the client forget the old key. An interruption at any point
// leaves a state the next up finishes: until then both keys are accepted, and the script's
// steps can be run again.
//
// It returns the fresh connection (remote is closed), or remote itself when the key was
// retired before.
func rotateHostKey(ctx context.Context, d *Deps, env string, st *envState, n *nodeState, remote Remote, target Target) (Remote, error) {
	if n.CreatedHostKey != "" {
		return remote, nil
	}
	script := cloudinit.HostKeyRotationScript
	out, err := remote.Run(ctx, "bash -s -- prepare "+shellQuote(n.NextHostKey), strings.NewReader(script))
	if err != nil {
		return remote, fmt.Errorf("have the server make a new host key: %w", err)
	}
	next, err := ParseAuthorizedKey(strings.TrimSpace(string(out)))
	if err != nil || next.Type() != ssh.KeyAlgoED25519 {
		return remote, fmt.Errorf("have the server make a new host key: it answered %q, not an ed25519 public key", strings.TrimSpace(string(out)))
	}
	if text := authorizedKey(next); n.NextHostKey != text {
		n.NextHostKey = text
		if err := saveState(d.Paths, env, *st); err != nil {
			return remote, fmt.Errorf("pin the server's new host key: %w", err)
		}
	}
	if _, err := remote.Run(ctx, "bash -s -- commit", strings.NewReader(script)); err != nil {
		return remote, fmt.Errorf("have the server use its new host key: %w", err)
	}

	// sshd loads the new key when it has re-executed itself on the reload: a connection in that
	// moment is refused, or may still meet the old listener and its old key, so a failure is
	// tried again every 200 ms for a few seconds before it counts.
	target.HostKey, target.NextHostKey = next, nil
	var fresh Remote
	deadline := time.Now().Add(15 * time.Second)
	for {
		fresh, err = d.Dial(ctx, target)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(d.SSHPoll, 200*time.Millisecond)):
		}
	}
	if err != nil {
		if errors.Is(err, ErrHostKeyMismatch) {
			err = fmt.Errorf("the server still presents its old host key after the switch: %w", err)
		}
		return remote, fmt.Errorf("connect with the server's new host key %s: %w", ssh.FingerprintSHA256(next), err)
	}
	n.CreatedHostKey, n.HostKey, n.NextHostKey = n.HostKey, n.NextHostKey, ""
	if err := saveState(d.Paths, env, *st); err != nil {
		fresh.Close()
		return remote, fmt.Errorf("pin the server's new host key: %w", err)
	}
	remote.Close()
	return fresh, nil
}

// authorizedKey is a public key's authorized_keys form without comment or newline.
func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
