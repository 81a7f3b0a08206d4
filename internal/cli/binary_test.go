package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/dockbridge/dockbridge/internal/testenv"
)

// testLdflags stamp the test binary as the Makefile stamps a release.
const testLdflags = "-X github.com/dockbridge/dockbridge/internal/version.Version=9.9.9-test " +
	"-X github.com/dockbridge/dockbridge/internal/version.Commit=0123456789ab " +
	"-X github.com/dockbridge/dockbridge/internal/version.BuildDate=2026-01-02T03:04:05Z"

var (
	pluginOnce sync.Once
	pluginBin  string
	pluginErr  error
)

// pluginBinary builds docker-dockbridge once per test process.
func pluginBinary(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dockbridge-cli-test-")
		if err != nil {
			pluginErr = err
			return
		}
		pluginBin = filepath.Join(dir, "docker-dockbridge")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-ldflags", testLdflags, "-o", pluginBin, "./cli-plugin")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginErr = fmt.Errorf("go build ./cli-plugin: %v: %s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginBin
}

// dockerWithPlugin returns a DOCKER_CONFIG in which the docker CLI finds the plugin, and HOME.
func dockerWithPlugin(t *testing.T) (config, home string) {
	t.Helper()
	bin := pluginBinary(t)
	dir := t.TempDir()
	config, home = filepath.Join(dir, "docker"), filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(config, "cli-plugins"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(config, "cli-plugins", "docker-dockbridge")); err != nil {
		t.Fatal(err)
	}
	return config, home
}

// runDocker runs the docker CLI with env added, and returns stdout, stderr and the exit code.
func runDocker(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	return runBinary(t, "docker", env, args...)
}

func runBinary(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return out.String(), errb.String(), code
}

// requirePluginCompletion fails (skips under -short) when the docker CLI on PATH does not
// hand completion of plugin commands to the plugin (docker 26 and later do).
func requirePluginCompletion(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("docker"); err != nil {
		missing = append(missing, "no docker CLI on PATH")
	} else if out, err := exec.Command("docker", "version", "--format", "{{.Client.Version}}").Output(); err != nil {
		missing = append(missing, fmt.Sprintf("docker version: %v", err))
	} else {
		var major int
		fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &major)
		if major < 26 {
			missing = append(missing, fmt.Sprintf("docker CLI %s does not complete plugin commands (26 or later does)", strings.TrimSpace(string(out))))
		}
	}
	testenv.Require(t, "the completion test needs", missing)
}
