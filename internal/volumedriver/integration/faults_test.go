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
// operation must end done or with an error that names the volume; data written through a
// volume reads back exactly in a new container; afterwards no volume is mounted, nothing is
// attached that Docker does not know, and a cleanup without faults leaves nothing behind, not
// a device link either. The run proves nothing unless faults were injected and volumes still
// got through: it fails otherwise.
func TestPluginFaults(t *testing.T) {
	const n = 20
	linksBefore := deviceLinks(t)
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
	// write puts the volume's name in a file; read, in a new container (a new mount), reads
	// it back. Under the faults a step may fail, in the driver, with an error naming the volume;
	// a container's own command never fails (that would be data not there), and a read that
	// succeeds returns exactly what was written.
	type step struct {
		out string
		err error
	}
	type outcome struct{ create, write, read, remove step }
	results := make([]outcome, n)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			do := func(s *step, args ...string) error { s.out, s.err = dockerCmd(args...); return s.err }
			if do(&r.create, "volume", "create", "-d", "hetzner", name) != nil {
				return
			}
			defer do(&r.remove, "volume", "rm", name)
			if do(&r.write, "run", "--rm", "--label", "dockbridge-it=1", "-v", name+":/data", image, "sh", "-c", "echo "+name+" > /data/id && sync") != nil {
				return
			}
			do(&r.read, "run", "--rm", "--label", "dockbridge-it=1", "-v", name+":/data", image, "cat", "/data/id")
		}()
	}
	wg.Wait()
	_ = env.Sim.SetFaults(hcloudsim.FaultConfig{})
	after := stats()
	injected := after.FaultsInjected - before.FaultsInjected
	t.Logf("faults injected: %d, requests: %d, 429 by the bucket: %d", injected, after.Total-before.Total, after.RateLimited-before.RateLimited)

	done, readBack := 0, 0
	for i, r := range results {
		for _, op := range []struct {
			name string
			step
		}{{"create", r.create}, {"write", r.write}, {"read", r.read}, {"remove", r.remove}} {
			if op.err == nil {
				continue
			}
			t.Logf("%s %s: %s", op.name, names[i], lastLine(op.out))
			// Docker's answer itself (not the command line) names the volume.
			if !strings.Contains(op.out, names[i]) {
				t.Errorf("%s %s: the error does not name the volume: %s", op.name, names[i], op.out)
			}
			if (op.name == "write" || op.name == "read") && !strings.Contains(op.out, "VolumeDriver.") {
				t.Errorf("%s %s: the container ran and failed, so the volume's data was not there: %s", op.name, names[i], op.out)
			}
		}
		if r.create.err == nil && r.write.err == nil && r.read.err == nil {
			readBack++
			if got := strings.TrimSpace(r.read.out); got != names[i] {
				t.Errorf("%s: a new container read back %q, %q was written", names[i], got, names[i])
			}
		}
		if r.create.err == nil && r.write.err == nil && r.read.err == nil && r.remove.err == nil {
			done++
		}
	}
	t.Logf("%d of %d volumes went through create, write, read back and remove without an error", done, n)
	if injected == 0 {
		t.Errorf("the simulator injected no fault: this run proved nothing")
	}
	if done == 0 || readBack == 0 {
		t.Errorf("no volume got through (%d read back, %d removed cleanly): the faults stopped everything", readBack, done)
	}

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
		}
	}
	for l, target := range deviceLinks(t) {
		if _, had := linksBefore[l]; !had {
			t.Errorf("device link %s -> %s left behind", l, target)
		}
	}
}

// deviceLinks lists the simulator's device links (by-id name -> target).
func deviceLinks(t *testing.T) map[string]string {
	t.Helper()
	links, err := filepath.Glob(filepath.Join(env.ByID, "scsi-0HC_Volume_*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range links {
		target, _ := os.Readlink(l)
		out[filepath.Base(l)] = target
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "Run 'docker run --help' for more information", ""))
	return strings.Join(strings.Fields(s), " ")
}
