package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

// TestPluginFaults creates and uses 20 volumes in parallel while the simulator fails 10% of
// the requests (500/503) and answers 5% with 429, and fails 5% of the actions. Every Docker
// operation must end done or with an error that names the volume; afterwards no volume is
// mounted, nothing is attached that Docker does not know, and a cleanup without faults leaves
// nothing behind.
func TestPluginFaults(t *testing.T) {
	const n = 20
	if err := env.Sim.SetFaults(hcloudsim.FaultConfig{Seed: 42, Rules: []hcloudsim.FaultRule{
		{Kind: "500", Rate: 0.05, Path: "/v1/*"},
		{Kind: "503", Rate: 0.05, Path: "/v1/*"},
		{Kind: "429", Rate: 0.05, Path: "/v1/*"},
		{Kind: "action_error", Rate: 0.05},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Sim.SetFaults(hcloudsim.FaultConfig{}) })
	before := stats()

	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%02d", volName(t), i)
	}
	type outcome struct{ create, use, remove error }
	results := make([]outcome, n)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			if _, r.create = dockerCmd("volume", "create", "-d", "hetzner", name); r.create != nil {
				return
			}
			out, err := dockerCmd("run", "--rm", "--label", "dockbridge-it=1", "-v", name+":/data", image, "sh", "-c", "echo "+name+" > /data/id && cat /data/id")
			if err == nil && !strings.Contains(out, name) {
				err = fmt.Errorf("read back %q", out)
			}
			r.use = err
			_, r.remove = dockerCmd("volume", "rm", name)
		}()
	}
	wg.Wait()
	_ = env.Sim.SetFaults(hcloudsim.FaultConfig{})
	after := stats()
	t.Logf("faults injected: %d, requests: %d, 429 by the bucket: %d", after.FaultsInjected-before.FaultsInjected, after.Total-before.Total, after.RateLimited-before.RateLimited)

	done := 0
	for i, r := range results {
		for op, err := range map[string]error{"create": r.create, "use": r.use, "remove": r.remove} {
			if err == nil {
				continue
			}
			msg := err.Error()
			t.Logf("%s %s: %s", op, names[i], lastLine(msg))
			if !strings.Contains(msg, names[i]) && op != "use" {
				t.Errorf("%s %s: the error does not name the volume: %s", op, names[i], msg)
			}
		}
		if r.create == nil && r.use == nil && r.remove == nil {
			done++
		}
	}
	t.Logf("%d of %d volumes went through create, use and remove without an error", done, n)

	// Nothing mounted: every container has exited.
	for _, name := range names {
		if hostMounted(t, name) {
			t.Errorf("%s is still mounted", name)
		}
	}
	// Nothing attached that Docker does not know of.
	known := map[string]bool{}
	for _, v := range strings.Fields(docker(t, "volume", "ls", "-q", "--filter", "driver="+pluginName)) {
		known[v] = true
	}
	for _, name := range names {
		if v := simVolume(t, name); v != nil && v.ServerID == env.LocalID && !known[name] {
			t.Errorf("%s (Hetzner volume %d) is attached here but Docker does not list it", name, v.ID)
		}
	}
	// Without faults, removing what is left leaves nothing behind.
	for _, name := range names {
		_, _ = dockerCmd("volume", "rm", name)
		if v := simVolume(t, name); v != nil {
			if _, err := dockerCmd("volume", "rm", name); err != nil {
				t.Errorf("cleanup of %s: %v", name, err)
			}
		}
	}
	for _, name := range names {
		if v := simVolume(t, name); v != nil {
			t.Errorf("%s: Hetzner volume %d left behind", name, v.ID)
			continue
		}
	}
	links, _ := filepath.Glob(filepath.Join(env.ByID, "scsi-0HC_Volume_*"))
	for _, l := range links {
		if _, err := os.Stat(l); err == nil {
			if target, _ := os.Readlink(l); target != "" {
				t.Logf("device link %s -> %s remains (a volume of another test)", l, target)
			}
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "Run 'docker run --help' for more information", ""))
	return strings.Join(strings.Fields(s), " ")
}
