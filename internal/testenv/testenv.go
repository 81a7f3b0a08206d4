// Package testenv holds the project's rule for tests that need something from the machine: a
// test whose root, device, tool or service is missing fails, and only under -short does it skip.
package testenv

import (
	"strings"
	"testing"
)

// Require ends t when missing is not empty: "needs" is what needs them ("the end-to-end tests
// need"), missing says what is missing and how to get it.
func Require(t testing.TB, needs string, missing []string) {
	t.Helper()
	if len(missing) == 0 {
		return
	}
	msg := needs + ": " + strings.Join(missing, "; ")
	if testing.Short() {
		t.Skip(msg + " (skipped under -short)")
	}
	t.Fatal(msg)
}
