// Package testbuild builds, once per test binary, what the end-to-end tests install on a
// user's machine: the docker-dockbridge CLI plugin and the volume plugin's folder.
package testbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once sync.Once
	err  error
	dir  string
)

// Build compiles docker-dockbridge and assembles the volume plugin's folder (plugin/build.sh,
// without touching this machine's engine) in a temporary folder, once per test binary; the
// test package's TestMain calls Cleanup after m.Run.
func Build(t testing.TB) (cliPlugin, pluginDir string) {
	t.Helper()
	once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if dir, err = os.MkdirTemp("", "dockbridge-test-build-"); err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "docker-dockbridge"), "./cli-plugin")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, cerr := cmd.CombinedOutput(); cerr != nil {
			err = fmt.Errorf("go build ./cli-plugin: %v: %s", cerr, out)
			return
		}
		cmd = exec.Command("bash", "plugin/build.sh")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "OUT="+filepath.Join(dir, "plugin"), "NO_CREATE=1")
		if out, cerr := cmd.CombinedOutput(); cerr != nil {
			err = fmt.Errorf("plugin/build.sh: %v: %s", cerr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "docker-dockbridge"), filepath.Join(dir, "plugin")
}

// Cleanup removes what Build made.
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}
