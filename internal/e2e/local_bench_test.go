package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/testimage"
)

// BenchmarkLocal is `make bench-local`, on the container backend (a server that really boots,
// on this machine: no network delay, so what it shows is dockbridge's own cost):
//
//   - a request through a forwarded port (this machine's loopback, the shared SSH connection,
//     sshd, the server's published port) against the same request straight to the server's
//     address (as if the firewall were open): medians of 200, a new connection each, and on one
//     kept-alive connection; and the ratio;
//   - from a save on this machine to the change being visible on the server, where the
//     container's bind mount shows it (read in the server's mount namespace through
//     /proc/<its init>/root): median and p95 of 40 saves; and from a container's write to this
//     machine;
//   - the time to first ready of a 50,000-file tree (`share add` until its first
//     synchronization is complete).
func BenchmarkLocal(b *testing.B) {
	w := newWorld(b)
	const env = "bench"
	w.up(b, env)
	if r := w.run(b.Context(), testimage.BusyboxRootfs(b), nil, "--context", contextName(env), "import", "-", "bb:1"); r.err != nil {
		b.Fatalf("docker import: %s", r)
	}
	const port = 18081
	w.on(b, env, "run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:80", port), "bb:1",
		"sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec busybox httpd -f -p 80 -h /www")
	var fwd string
	eventually(b, 30*time.Second, "the forward", func() bool { fwd = w.ports(b, env).localAddr(port); return fwd != "" })
	eventually(b, 10*time.Second, "an answer", func() bool { _, err := httpGet(fwd); return err == nil })
	server := simServer(b, w, env)
	direct := net.JoinHostPort(server.ip, fmt.Sprint(port))
	eventually(b, 10*time.Second, "a direct answer", func() bool { _, err := httpGet(direct); return err == nil })

	b.ResetTimer()
	for range b.N {
		newConn := func(addr string) time.Duration {
			var ds []time.Duration
			for range 200 {
				start := time.Now()
				if _, err := httpGet(addr); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
			}
			return median(ds)
		}
		keepAlive := func(addr string) time.Duration {
			c := &http.Client{Timeout: 5 * time.Second}
			var ds []time.Duration
			for i := range 201 {
				start := time.Now()
				resp, err := c.Get("http://" + addr + "/index.html")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if i > 0 {
					ds = append(ds, time.Since(start))
				}
			}
			return median(ds)
		}
		dNew, fNew := newConn(direct), newConn(fwd)
		dKeep, fKeep := keepAlive(direct), keepAlive(fwd)
		fmt.Printf("\nrequest latency (median of 200)   direct to the server   through the forward   ratio\n")
		fmt.Printf("  a new connection each          %12s   %19s   %5.2fx\n", dNew.Round(time.Microsecond), fNew.Round(time.Microsecond), float64(fNew)/float64(dNew))
		fmt.Printf("  one kept-alive connection      %12s   %19s   %5.2fx\n", dKeep.Round(time.Microsecond), fKeep.Round(time.Microsecond), float64(fKeep)/float64(dKeep))

		// Save to visible.
		project := filepath.Join(w.root, "bench-project")
		must(b, os.MkdirAll(filepath.Join(project, "src"), 0o755))
		if r := w.run(b.Context(), nil, nil, "dockbridge", "share", "add", "--name", env, project); r.err != nil {
			b.Fatalf("share add: %s", r)
		}
		w.on(b, env, "run", "-d", "--name", "dev", "-v", project+":/app", "bb:1", "busybox", "sleep", "2147483647")
		saveRows := func(what, laptopDir, dir string) {
			onServer := server.path(laptopDir)
			toServer, toLaptop := []time.Duration{}, []time.Duration{}
			for i := range 40 {
				time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
				name := filepath.Join(dir, fmt.Sprintf("file-%d.js", i%10))
				body := fmt.Sprintf("save %d at %d\n", i, time.Now().UnixNano())
				start := time.Now()
				must(b, os.WriteFile(filepath.Join(laptopDir, name), []byte(body), 0o644))
				toServer = append(toServer, waitContent(b, filepath.Join(onServer, name), body, start))
				time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
				out := filepath.Join(dir, fmt.Sprintf("out-%d.txt", i%10))
				body = fmt.Sprintf("container %d at %d\n", i, time.Now().UnixNano())
				start = time.Now()
				must(b, os.WriteFile(filepath.Join(onServer, out), []byte(body), 0o644))
				toLaptop = append(toLaptop, waitContent(b, filepath.Join(laptopDir, out), body, start))
			}
			fmt.Printf("  %-38s %8s %8s   %8s %8s\n", what, median(toServer).Round(time.Millisecond), p95(toServer).Round(time.Millisecond),
				median(toLaptop).Round(time.Millisecond), p95(toLaptop).Round(time.Millisecond))
		}
		fmt.Printf("\nsave to visible, 40 saves each way    this machine -> container   container -> this machine\n")
		fmt.Printf("  %-38s %8s %8s   %8s %8s\n", "", "median", "p95", "median", "p95")
		saveRows("a small project (10 files)", project, "src")

		// Time to first ready, 50,000 files.
		tree := filepath.Join(w.root, "node-modules-tree")
		files, size := makeTree(b, tree, 50000)
		start := time.Now()
		r := w.run(b.Context(), nil, nil, "dockbridge", "share", "add", "--name", env, "-o", "json", tree)
		if r.err != nil {
			b.Fatalf("share add: %s", r)
		}
		took := time.Since(start)
		var added struct {
			Status struct {
				Files uint64 `json:"files"`
			} `json:"status"`
		}
		_ = json.Unmarshal([]byte(r.stdout), &added)
		fmt.Printf("\ntime to first ready: %d files (%d MiB) in %s (share add, until the first synchronization is complete; %d files reported)\n",
			files, size>>20, took.Round(100*time.Millisecond), added.Status.Files)
		count := server.count(b, tree)
		if count != files {
			b.Fatalf("the server's copy has %d files, want %d", count, files)
		}
		fmt.Printf("\nsave to visible in the 50,000-file tree\n")
		saveRows("a 50,000-file tree (node_modules)", tree, filepath.Join("node_modules", "pkg00042", "lib"))
	}
}

func p95(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*95+99)/100-1]
}

func waitContent(b *testing.B, path, want string, start time.Time) time.Duration {
	b.Helper()
	for {
		if got, err := os.ReadFile(path); err == nil && string(got) == want {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			b.Fatalf("%s did not show %q within 30 s", path, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// makeTree writes n files like a node_modules tree: packages of 3 folders with 3-10 files each,
// sizes log-normal around 1.8 KB (mean about 3.7 KB).
func makeTree(b *testing.B, root string, n int) (int, int64) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	made, pkg := 0, 0
	var total int64
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = "abcdefghijklmnopqrstuvwxyz \n"[rng.IntN(28)]
	}
	for made < n {
		for _, sub := range []string{"", "lib", "dist"} {
			dir := filepath.Join(root, "node_modules", fmt.Sprintf("pkg%05d", pkg), sub)
			must(b, os.MkdirAll(dir, 0o755))
			for k := range 3 + rng.IntN(8) {
				if made >= n {
					break
				}
				size := min(int(expNorm(rng, 7.5, 1.2)), len(buf))
				must(b, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.js", k)), buf[:size], 0o644))
				made++
				total += int64(size)
			}
		}
		pkg++
	}
	return made, total
}

func expNorm(rng *rand.Rand, mu, sigma float64) float64 {
	return math.Exp(rng.NormFloat64()*sigma + mu)
}

// simServer is the environment's simulated server as this machine sees it: its container's
// address on the simulator's network and its init's pid (its mount namespace).
type simServerInfo struct {
	ip  string
	pid int
}

func (s simServerInfo) path(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", s.pid), p)
}

func (s simServerInfo) count(b *testing.B, p string) int {
	out, err := exec.Command("sh", "-c", fmt.Sprintf("find %s -type f | wc -l", s.path(p))).Output()
	if err != nil {
		b.Fatal(err)
	}
	var n int
	fmt.Sscan(strings.TrimSpace(string(out)), &n)
	return n
}

func simServer(b *testing.B, w *world, env string) simServerInfo {
	b.Helper()
	r := w.must(b, "dockbridge", "status", "--name", env, "-o", "json")
	var st struct {
		Server struct {
			ID int64 `json:"id"`
		} `json:"server"`
	}
	must(b, json.Unmarshal([]byte(r.stdout), &st))
	out, err := exec.Command("docker", "ps", "--filter", fmt.Sprintf("name=-server-%d$", st.Server.ID), "--format", "{{.ID}}").Output()
	if err != nil {
		b.Fatal(err)
	}
	id := strings.TrimSpace(string(out))
	sc := bufio.NewScanner(strings.NewReader(id))
	var ids []string
	for sc.Scan() {
		ids = append(ids, sc.Text())
	}
	if len(ids) != 1 {
		b.Fatalf("simulated server %d: containers %q", st.Server.ID, ids)
	}
	out, err = exec.Command("docker", "inspect", "-f", "{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", ids[0]).Output()
	if err != nil {
		b.Fatal(err)
	}
	var s simServerInfo
	f := strings.Fields(string(out))
	fmt.Sscan(f[0], &s.pid)
	s.ip = f[1]
	return s
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
