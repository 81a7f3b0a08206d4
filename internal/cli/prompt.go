package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/cli/cli/streams"
	"github.com/moby/term"
)

// readLine reads one line from in (at most 4 KiB), giving up when ctx ends (Ctrl-C).
func readLine(ctx context.Context, in io.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
		done <- result{strings.TrimSpace(line), err}
	}()
	select {
	case r := <-done:
		return r.line, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// readSecret reads a line without echo when in is a terminal (as `docker login` reads a
// password), prompting on errOut; from a pipe it reads the line as it is.
func readSecret(ctx context.Context, in *streams.In, errOut io.Writer, prompt string) (string, error) {
	if !in.IsTerminal() {
		return readLine(ctx, in)
	}
	state, err := term.SaveState(in.FD())
	if err != nil {
		return "", fmt.Errorf("read from the terminal: %w", err)
	}
	if err := term.DisableEcho(in.FD(), state); err != nil {
		return "", fmt.Errorf("turn off the terminal's echo: %w", err)
	}
	defer term.RestoreTerminal(in.FD(), state)
	fmt.Fprint(errOut, prompt)
	line, err := readLine(ctx, in)
	fmt.Fprintln(errOut) // the Enter was not echoed either
	return line, err
}

// confirm asks a yes/no question on a terminal; anything but y or yes is no.
func confirm(ctx context.Context, in io.Reader, errOut io.Writer, question string) (bool, error) {
	fmt.Fprint(errOut, question+" [y/N] ")
	line, err := readLine(ctx, in)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(line) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
