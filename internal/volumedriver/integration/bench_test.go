package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// pluginSeconds is the total time the plugin spent in its operations so far, from its
// Prometheus metrics (sum of operation_duration_seconds over every operation and result).
func pluginSeconds(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get("http://" + env.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("plugin metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "dockbridge_volume_plugin_operation_duration_seconds_sum{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

type benchRow struct {
	op       string
	requests float64
	plugin   time.Duration
	cli      time.Duration
	detail   map[string]int64
}

// measure runs f reps times and returns the per-run averages.
func measure(t *testing.T, op string, reps int, f func(i int)) benchRow {
	t.Helper()
	before, p0, t0 := stats(), pluginSeconds(t), time.Now()
	for i := range reps {
		f(i)
	}
	cli := time.Since(t0)
	n, detail := apiRequests(before, stats())
	p := pluginSeconds(t) - p0
	return benchRow{op: op, requests: float64(n) / float64(reps), plugin: time.Duration(p / float64(reps) * float64(time.Second)),
		cli: cli / time.Duration(reps), detail: detail}
}

// TestPluginBench prints, per Docker operation, the Hetzner API requests the simulator counted
// and the plugin's own latency (actions of the simulator take no time in this mode). Run it with
// `make bench-plugin` (go test -run '^TestPluginBench$' ... -args -bench-table).
func TestPluginBench(t *testing.T) {
	if !*benchTable {
		t.Skip("a benchmark: run with -args -bench-table (make bench-plugin)")
	}
	ctx := context.Background()
	// 50 volumes of the project, created elsewhere; the plugin learns them at start.
	for i := range 50 {
		name := fmt.Sprintf("bench-ls-%02d", i)
		if _, err := env.Client.CreateVolume(ctx, hetzner.VolumeSpec{Name: name, SizeGB: 10, Location: "fsn1",
			Labels: map[string]string{"managed-by": "dockbridge", "dockbridge/volume": name}}); err != nil {
			t.Fatal(err)
		}
	}
	restartPlugin(t)
	waitFor(t, "the plugin's sync", func() bool {
		out, err := dockerCmd("volume", "ls", "-q", "--filter", "driver="+pluginName)
		return err == nil && len(strings.Fields(out)) >= 50
	})
	const reps = 5
	vols := make([]string, reps)
	for i := range vols {
		vols[i] = volName(t)
	}
	var rows []benchRow
	rows = append(rows, measure(t, "docker volume create -d hetzner", reps, func(i int) {
		docker(t, "volume", "create", "-d", "hetzner", vols[i])
	}))
	rows = append(rows, measure(t, "docker run, first mount of a new volume", reps, func(i int) {
		run(t, vols[i], ":")
	}))
	rows = append(rows, measure(t, "docker run on an attached volume", reps, func(i int) {
		run(t, vols[i], ":")
	}))
	rows = append(rows, measure(t, "docker volume inspect", reps, func(i int) {
		docker(t, "volume", "inspect", vols[i])
	}))
	rows = append(rows, measure(t, fmt.Sprintf("docker volume ls (%d volumes)", 50+reps), reps, func(int) {
		docker(t, "volume", "ls")
	}))
	rows = append(rows, measure(t, "docker volume rm", reps, func(i int) {
		docker(t, "volume", "rm", vols[i])
	}))
	for i := range 50 {
		_, _ = dockerCmd("volume", "rm", fmt.Sprintf("bench-ls-%02d", i))
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "Docker operation\tAPI requests\tplugin latency\tdocker CLI wall time\tendpoints (per run)\t")
	for _, r := range rows {
		var ep []string
		for k, v := range r.detail {
			ep = append(ep, fmt.Sprintf("%s x%.1f", k, float64(v)/reps))
		}
		fmt.Fprintf(w, "%s\t%.1f\t%s\t%s\t%s\t\n", r.op, r.requests, r.plugin.Round(10*time.Microsecond), r.cli.Round(time.Millisecond), strings.Join(ep, ", "))
	}
	w.Flush()
	fmt.Println("(simulator actions take no time here; averages over", reps, "runs; plugin latency = time inside the plugin's handlers)")
	for _, r := range rows {
		if strings.Contains(r.op, "attached") || strings.Contains(r.op, "inspect") || strings.Contains(r.op, "ls") {
			if r.requests != 0 {
				t.Errorf("%s: %.1f API requests, want 0", r.op, r.requests)
			}
		}
	}
}
