package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/version"
)

// `docker dockbridge --version` and `docker dockbridge version` show the version, the commit
// and the build date the build was stamped with.
func TestVersionShowsVersionCommitAndBuildDate(t *testing.T) {
	config, home := dockerWithPlugin(t)
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home}
	const line = "docker dockbridge version 9.9.9-test, commit 0123456789ab, built 2026-01-02T03:04:05Z"
	if out, stderr, code := runDocker(t, env, "dockbridge", "--version"); code != 0 || strings.TrimSpace(out) != line {
		t.Errorf("docker dockbridge --version: exit %d, %q %s", code, out, stderr)
	}
	out, stderr, code := runDocker(t, env, "dockbridge", "version", "-o", "json")
	var i version.Info
	if code != 0 || json.Unmarshal([]byte(out), &i) != nil || i.Version != "9.9.9-test" || i.Commit != "0123456789ab" || i.BuildDate != "2026-01-02T03:04:05Z" {
		t.Errorf("docker dockbridge version -o json: exit %d, %q %s", code, out, stderr)
	}
	out, _, code = runDocker(t, env, "dockbridge", "version")
	if code != 0 || !hasRow(out, "Built:", "2026-01-02T03:04:05Z") {
		t.Errorf("docker dockbridge version: exit %d\n%s", code, out)
	}
	// The test's plugin is a plain go build: it carries no servers' binaries and says so.
	if !hasRow(out, "Server binaries:", "none (a plain go build: see make build)") {
		t.Errorf("docker dockbridge version of a plain build: no 'Server binaries: none' row\n%s", out)
	}
}

// The binary run directly works as `docker dockbridge` does (it printed docker's generic help
// and exited 0), also after docker's global options.
func TestRunDirectly(t *testing.T) {
	config, home := dockerWithPlugin(t)
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home}
	bin := pluginBinary(t)
	if out, stderr, code := runBinary(t, bin, env, "settings", "show"); code != 0 || !strings.Contains(out, "file:") {
		t.Errorf("docker-dockbridge settings show: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := runBinary(t, bin, env, "--context", "default", "version"); code != 0 || !strings.Contains(out, "9.9.9-test") {
		t.Errorf("docker-dockbridge --context default version: exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := runBinary(t, bin, env, "status", "--name", "Not_Valid"); code == 0 || !strings.Contains(stderr, "--name: environment name") {
		t.Errorf("docker-dockbridge status --name Not_Valid: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runBinary(t, bin, env, "bakcup"); code == 0 || !strings.Contains(stderr, "Did you mean this?") {
		t.Errorf("docker-dockbridge bakcup: exit %d\n%s", code, stderr)
	}
}

func TestStandaloneArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"docker-dockbridge status", "docker-dockbridge dockbridge status"},
		{"docker-dockbridge --context x -H unix:///s status -o json", "docker-dockbridge --context x -H unix:///s dockbridge status -o json"},
		{"docker-dockbridge", "docker-dockbridge dockbridge"},
		{"docker-dockbridge --help", "docker-dockbridge dockbridge --help"},
		{"docker-dockbridge dockbridge up", "docker-dockbridge dockbridge up"},
		{"docker-dockbridge __complete st", "docker-dockbridge __complete dockbridge st"},
		{"docker-dockbridge ssh -- ls -l", "docker-dockbridge dockbridge ssh -- ls -l"},
	} {
		if got := strings.Join(StandaloneArgs(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("StandaloneArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// hasRow reports whether out has a line "KEY   VALUE" (the key column padded).
func hasRow(out, key, value string) bool {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, key); ok && k == "" && strings.TrimSpace(v) == value {
			return true
		}
	}
	return false
}
