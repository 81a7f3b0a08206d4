package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// ExitError carries the exit status of a remote command run by `ssh`.
type ExitError struct{ Code int }

func (e *ExitError) Error() string {
	return fmt.Sprintf("remote command exited with status %d", e.Code)
}

// SSH runs the system ssh with the environment's own config (pinned host key, our key,
// the shared connection): a shell when args is empty, else the command.
func SSH(ctx context.Context, p Paths, env string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return NodeSSH(ctx, p, env, 1, args, stdin, stdout, stderr)
}

// NodeSSH is SSH to node n of the environment (1: its first or only server).
func NodeSSH(ctx context.Context, p Paths, env string, n int, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := ValidateEnvName(env); err != nil {
		return err
	}
	if _, err := os.Stat(p.SSHConfigFile(env)); err != nil {
		return fmt.Errorf("environment %q has no SSH configuration on this machine (%s): run `docker dockbridge up%s` first", env, p.SSHConfigFile(env), nameFlag(env))
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		return errors.New("the OpenSSH client (ssh) is not installed: install it (apt-get install openssh-client), docker's ssh contexts need it too")
	}
	cmd := NodeSSHCommand(ctx, p, env, n, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return &ExitError{Code: exit.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("ssh %s: %w", NodeAlias(env, n), err)
	}
	return nil
}
