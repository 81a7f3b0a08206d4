// Package testproc ends what a test started that would outlive it: detached processes (the
// laptop agent, ssh ControlMasters, a wake) that no longer belong to the test's process tree,
// found by a mark in their command line or environment: a temporary directory of the test's (in
// a Go program's environment) or a ControlPath (in an ssh master's title: ssh overwrites its
// environment with it).
package testproc

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Process is one process found by Find.
type Process struct {
	PID     int
	Command string // its command line, arguments separated by spaces
}

// Find lists the processes other than this one whose command line or environment contains
// one of marks ("" marks nothing). It reads /proc: elsewhere it finds nothing.
func Find(marks ...string) []Process {
	var found []Process
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		for _, m := range marks {
			if m != "" && (bytes.Contains(cmdline, []byte(m)) || bytes.Contains(environ, []byte(m))) {
				found = append(found, Process{PID: pid, Command: strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))})
				break
			}
		}
	}
	return found
}

// End stops the processes Find(marks...) lists: each that leads its own process group (a detached
// agent, a daemonized ssh master) with its whole group, the others alone; SIGTERM, then SIGKILL
// for what is left after 5 s. It returns what it found, once all of it is gone (or 10 s).
func End(marks ...string) []Process {
	found := Find(marks...)
	if len(found) == 0 {
		return nil
	}
	gs := groups(found)
	gone := func() bool {
		return len(Find(marks...)) == 0 && !slices.ContainsFunc(gs, groupLeft)
	}
	signal(gs, found, false)
	for i := 0; i < 200 && !gone(); i++ {
		if i == 100 {
			signal(gs, Find(marks...), true)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return found
}

// Cleanup ends, at the end of t (after the cleanups registered later have run), whatever
// processes still carry one of marks, and logs them.
func Cleanup(t testing.TB, marks ...string) {
	t.Cleanup(func() {
		for _, p := range End(marks...) {
			t.Logf("ended a process the test left running: pid %d: %s", p.PID, p.Command)
		}
	})
}
