package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/dockbridge/dockbridge/internal/boottest"
)

// BenchmarkIdleWake is `make bench-idle`'s second table, on the container backend with the
// simulator's realistic action profile (a server's create 12 s, its start 5 s, ...):
//
//   - what the wake path costs a docker command when the server is up: `docker --context
//     dockbridge-bench version`, median of 15 each, with the environment's ssh_config (the Match
//     exec line: a `test -S` of the shared connection) and with the same file without that line,
//     side by side over the same shared connection; and the same for the first command after the
//     shared connection ended (the wake then asks the server itself over SSH: no API request);
//   - the wake: `down`, then `docker --context ... version` until it answers, 3 times: the
//     total, the cloud's part (the server's create and start actions, its boot, cloud-init: up's
//     steps) and our own (the rest: the wake's process, up's requests and its steps on the
//     server, ssh, docker), and the API requests it spent. Goal: our own ≤ 3 s.
func BenchmarkIdleWake(b *testing.B) {
	w := newWorld(b, boottest.WithActionProfile("realistic"))
	const env = "bench"
	ctxName := contextName(env)
	w.up(b, env)
	version := func(extra ...string) result {
		r := w.run(b.Context(), nil, extra, "--context", ctxName, "version", "--format", "{{.Server.Version}}")
		if r.err != nil {
			b.Fatalf("docker version: %s", r)
		}
		return r
	}
	// The same configuration without the wake: the Match line without its exec.
	cfg, err := os.ReadFile(w.envFile(env, "ssh_config"))
	if err != nil {
		b.Fatal(err)
	}
	noWake := regexp.MustCompile(`(?m)^(Match originalhost \S+) exec .*$`).ReplaceAllString(string(cfg), "$1")
	if noWake == string(cfg) {
		b.Fatalf("no Match exec line in the environment's ssh_config:\n%s", cfg)
	}
	altDir := b.TempDir()
	alt := filepath.Join(altDir, "ssh_config")
	if err := os.WriteFile(alt, []byte(noWake), 0o600); err != nil {
		b.Fatal(err)
	}
	withWake := []string{}
	withoutWake := []string{"E2E_SSH_CONFIG=" + alt}
	endShared := func() {
		cmd := exec.Command("ssh", "-F", w.envFile(env, "ssh_config"), "-O", "exit", "dockbridge-"+env)
		cmd.Env = append(slices.Clone(w.environ), "DOCKBRIDGE_NO_WAKE=1")
		_ = cmd.Run()
		time.Sleep(200 * time.Millisecond)
	}

	version(withWake...) // the shared connection
	var shared [2][]time.Duration
	var spentUp requests
	spentUp = w.requests.spent(func() {
		for range 15 {
			for i, extra := range [][]string{withWake, withoutWake} {
				shared[i] = append(shared[i], version(extra...).took)
			}
		}
	})
	var fresh [2][]time.Duration
	for range 5 {
		for i, extra := range [][]string{withWake, withoutWake} {
			endShared()
			fresh[i] = append(fresh[i], version(extra...).took)
		}
	}

	type wake struct {
		total, cloud, ours time.Duration
		spent              requests
	}
	var wakes []wake
	for range 3 {
		w.must(b, "dockbridge", "down", "--name", env)
		var r result
		spent := w.requests.spent(func() { r = version() })
		last := readWake(b, w.envFile(env, "wake.json"))
		cloud := time.Duration(last.CloudSeconds * float64(time.Second))
		wakes = append(wakes, wake{total: r.took, cloud: cloud, ours: r.took - cloud, spent: spent})
	}

	var out strings.Builder
	fmt.Fprintf(&out, "\nThe wake on the container backend, realistic action profile (%s)\n", time.Now().UTC().Format(time.DateOnly))
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "docker --context dockbridge-bench version\twith the wake path\twithout\tratio\t")
	fmt.Fprintf(tw, "server up, shared connection (median of 15)\t%s\t%s\t%.2f\t\n", ms(median(shared[0])), ms(median(shared[1])), float64(median(shared[0]))/float64(median(shared[1])))
	fmt.Fprintf(tw, "server up, first command after the shared connection ended (median of 5)\t%s\t%s\t%.2f\t\n", ms(median(fresh[0])), ms(median(fresh[1])), float64(median(fresh[0]))/float64(median(fresh[1])))
	tw.Flush()
	fmt.Fprintf(&out, "API requests of those 30 commands: %d\n\n", spentUp.total())
	tw = tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "wake after down\tcommand to answer\tcloud\tour own\tAPI requests\t")
	var worst time.Duration
	for i, wk := range wakes {
		fmt.Fprintf(tw, "%d\t%.1f s\t%.1f s\t%.1f s\t%d\t\n", i+1, wk.total.Seconds(), wk.cloud.Seconds(), wk.ours.Seconds(), wk.spent.total())
		worst = max(worst, wk.ours)
	}
	tw.Flush()
	fmt.Fprintln(&out, "cloud: up's create and start of the server, its boot until SSH answers, cloud-init; our own: the rest (the wake's processes, the API requests, up's steps on the server, ssh and docker).")
	if worst <= 3*time.Second {
		fmt.Fprintf(&out, "goal our own ≤ 3 s: met (worst %.1f s)\n", worst.Seconds())
	} else {
		fmt.Fprintf(&out, "goal our own ≤ 3 s: MISSED (worst %.1f s)\n", worst.Seconds())
	}
	fmt.Print(out.String())
	w.must(b, "dockbridge", "down", "--name", env)
}

type wakeResult struct {
	Seconds      float64 `json:"seconds"`
	CloudSeconds float64 `json:"cloud_seconds"`
	Error        string  `json:"error"`
}

func readWake(b testing.TB, path string) wakeResult {
	b.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatalf("the wake's result: %v", err)
	}
	var r wakeResult
	if err := json.Unmarshal(raw, &r); err != nil || r.Error != "" {
		b.Fatalf("the wake's result %s: %v %s", raw, err, r.Error)
	}
	return r
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
