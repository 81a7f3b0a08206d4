package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge"
)

// TestPluginStartsOnADamagedStateFile: Docker disables a managed plugin for good when it dies
// at start. Restarted over a truncated and over a garbage state file, the real plugin comes up
// enabled and stays up, sets the file aside, lists the volume again from the API, and a
// container mounts it; the container that ran through the restart kept its data.
func TestPluginStartsOnADamagedStateFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(good []byte) []byte
	}{
		{"truncated", func(good []byte) []byte { return good[:len(good)/2] }},
		{"garbage", func([]byte) []byte { return []byte("\x00\x17garbage{{{\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := volName(t)
			createVolume(t, name)
			c := startContainer(t, name, "echo before > /data/before; sleep 600")
			waitFor(t, "the container's first write", func() bool {
				out, err := dockerCmd("exec", c, "cat", "/data/before")
				return err == nil && strings.Contains(out, "before")
			})
			state, err := env.HostPath(env.PropagatedMount + "/.dockbridge/volumes.json")
			if err != nil {
				t.Fatal(err)
			}
			asideBefore, _ := filepath.Glob(state + ".damaged-*")

			docker(t, "plugin", "disable", "-f", pluginName)
			good, err := os.ReadFile(state)
			if err != nil || !strings.Contains(string(good), name) {
				t.Fatalf("state file %s: %v %.200q", state, err, good)
			}
			if err := os.WriteFile(state, tc.damage(good), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := dockerCmd(dockbridge.PluginEnableArgs(pluginName)...); err != nil {
				t.Fatalf("the plugin does not start on a %s state file: %v %s", tc.name, err, out)
			}
			// Still up a while later (a plugin that dies again is left disabled).
			pid := pluginPID(t)
			waitFor(t, "the volume listed again (start-up sync with the API)", func() bool {
				out, err := dockerCmd("volume", "ls", "-q", "--filter", "driver="+pluginName)
				return err == nil && strings.Contains(out, name)
			})
			if got := strings.TrimSpace(docker(t, "plugin", "inspect", "-f", "{{.Enabled}}", pluginName)); got != "true" || pluginPIDNow() != pid {
				t.Fatalf("plugin enabled=%s, pid %d then %d: it did not stay up", got, pid, pluginPIDNow())
			}
			aside, _ := filepath.Glob(state + ".damaged-*")
			if len(aside) != len(asideBefore)+1 {
				t.Fatalf("set-aside files %v (before: %v), want one more", aside, asideBefore)
			}

			docker(t, "exec", c, "sh", "-c", "echo after > /data/after && sync")
			if out := run(t, name, "cat /data/before /data/after"); !strings.Contains(out, "before") || !strings.Contains(out, "after") {
				t.Fatalf("a new container reads %q", out)
			}
			docker(t, "rm", "-f", c)
		})
	}
}
