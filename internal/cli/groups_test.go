package cli

import (
	"strings"
	"testing"
)

// A typo fails: every command group refuses a word that is none of its commands, with a
// non-zero exit, Docker's wording and cobra's suggestion; a stray argument to a command fails
// the same way. Only a bare group prints its help and succeeds. Run through the docker CLI, as
// a cron line would run it.
func TestUnknownCommandsFail(t *testing.T) {
	config, home := dockerWithPlugin(t)
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"bakcup"}, []string{"docker: unknown command: docker dockbridge bakcup", "Did you mean this?\n\tbackup", "Run 'docker dockbridge --help'"}},
		{[]string{"nosuch"}, []string{"docker: unknown command: docker dockbridge nosuch"}},
		{[]string{"volume", "shrink", "x", "20"}, []string{"docker: unknown command: docker dockbridge volume shrink", "Run 'docker dockbridge volume --help'"}},
		{[]string{"volume", "resize", "x"}, []string{"'docker dockbridge volume resize' requires 2 arguments"}},
		{[]string{"volume", "resize", "--data", "x", "20"}, []string{"'docker dockbridge volume resize' requires 1 argument"}},
		{[]string{"volume", "fsck"}, []string{"'docker dockbridge volume fsck' requires 1 argument"}},
		{[]string{"volume", "fsck", "--data", "x"}, []string{"'docker dockbridge volume fsck' accepts no arguments"}},
		{[]string{"volume", "inspct", "x"}, []string{"unknown command: docker dockbridge volume inspct", "Did you mean this?\n\tinspect"}},
		{[]string{"settings", "shwo"}, []string{"unknown command: docker dockbridge settings shwo", "Did you mean this?\n\tshow"}},
		{[]string{"volume", "ls", "extra"}, []string{"'docker dockbridge volume ls' accepts no arguments"}},
		{[]string{"volume", "list", "extra"}, []string{"'docker dockbridge volume ls' accepts no arguments"}},
		{[]string{"backup", "ls", "extra"}, []string{"'docker dockbridge backup ls' accepts no arguments"}},
		{[]string{"backup", "prune", "extra"}, []string{"'docker dockbridge backup prune' accepts no arguments"}},
		{[]string{"backup", "verify"}, []string{"'docker dockbridge backup verify' requires 1 argument"}},
		{[]string{"restore"}, []string{"'docker dockbridge restore' requires 1 argument"}},
		{[]string{"settings", "show", "extra"}, []string{"'docker dockbridge settings show' accepts no arguments"}},
		{[]string{"settings", "unset"}, []string{"'docker dockbridge settings unset' requires 1 argument"}},
		{[]string{"up", "extra"}, []string{"'docker dockbridge up' accepts no arguments"}},
		{[]string{"down", "extra"}, []string{"'docker dockbridge down' accepts no arguments"}},
		{[]string{"status", "extra"}, []string{"'docker dockbridge status' accepts no arguments"}},
		{[]string{"destroy", "extra"}, []string{"'docker dockbridge destroy' accepts no arguments"}},
		{[]string{"metrics", "extra"}, []string{"'docker dockbridge metrics' accepts no arguments"}},
	}
	for _, c := range cases {
		out, stderr, code := runDocker(t, env, append([]string{"dockbridge"}, c.args...)...)
		if code == 0 {
			t.Errorf("docker dockbridge %s: exit 0, want an error\nstdout: %s", strings.Join(c.args, " "), out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("docker dockbridge %s: stderr lacks %q:\n%s", strings.Join(c.args, " "), w, stderr)
			}
		}
		if strings.Contains(out, "Usage:") {
			t.Errorf("docker dockbridge %s: help on stdout", strings.Join(c.args, " "))
		}
	}
}

// --help exits 0 with the help on stdout for every group and command; a bare group prints its
// help on stderr (as `docker volume` does) and exits 0.
func TestHelpExitCodes(t *testing.T) {
	config, home := dockerWithPlugin(t)
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home}
	for _, args := range [][]string{{}, {"volume"}, {"backup"}, {"settings"}, {"volume", "ls"}, {"backup", "ls"},
		{"backup", "list"}, {"restore"}, {"up"}, {"settings", "set"}} {
		full := append(append([]string{"dockbridge"}, args...), "--help")
		out, stderr, code := runDocker(t, env, full...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("docker %s: exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(full, " "), code, out, stderr)
		}
	}
	for _, group := range [][]string{{}, {"volume"}} {
		full := append([]string{"dockbridge"}, group...)
		out, stderr, code := runDocker(t, env, full...)
		if code != 0 || out != "" || !strings.Contains(stderr, "Usage:  docker "+strings.Join(full, " ")) || !strings.Contains(stderr, "COMMAND\n") {
			t.Errorf("docker %s (bare group): exit %d, stdout:\n%s\nstderr:\n%s", strings.Join(full, " "), code, out, stderr)
		}
	}
}

// backup's usage shows what it takes, not only `backup [OPTIONS] COMMAND`.
func TestBackupUsageLine(t *testing.T) {
	config, home := dockerWithPlugin(t)
	env := []string{"DOCKER_CONFIG=" + config, "HOME=" + home}
	out, _, code := runDocker(t, env, "dockbridge", "backup", "--help")
	want := "Usage:  docker dockbridge backup [OPTIONS] VOLUME... | --all\n        docker dockbridge backup COMMAND\n"
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("backup --help: exit %d, want %q in:\n%s", code, want, out)
	}
	// The commands under it keep Docker's usage.
	if out, _, _ := runDocker(t, env, "dockbridge", "backup", "ls", "--help"); !strings.Contains(out, "Usage:  docker dockbridge backup ls [OPTIONS]\n") {
		t.Fatalf("backup ls --help:\n%s", out)
	}
}
