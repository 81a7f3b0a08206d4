package cmdrun

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestRunReportsCommandAndOutput(t *testing.T) {
	// ls of a missing path: exit 2 on GNU coreutils, and an error message on stderr.
	_, err := Run(t.Context(), "ls", "/definitely/not/here")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want *Error", err)
	}
	if e.ExitCode == 0 || ExitCode(err) != e.ExitCode {
		t.Errorf("exit code %d / ExitCode %d", e.ExitCode, ExitCode(err))
	}
	for _, want := range []string{"ls /definitely/not/here", "No such file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Errorf("error does not unwrap to *exec.ExitError")
	}
}

func TestRunReturnsStdoutOnly(t *testing.T) {
	out, err := Run(t.Context(), "ls", "-d", "/")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "/\n" {
		t.Errorf("stdout %q, want %q", out, "/\n")
	}
}

func TestLookPathNamesTheMissingTool(t *testing.T) {
	_, err := Run(t.Context(), "no-such-disk-tool-xyz")
	if err == nil || !strings.Contains(err.Error(), "no-such-disk-tool-xyz not found") {
		t.Fatalf("got %v", err)
	}
	if ExitCode(err) != -1 {
		t.Errorf("ExitCode of a tool that never ran = %d, want -1", ExitCode(err))
	}
}
