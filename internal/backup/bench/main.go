// Command bench measures backup and restore throughput of `docker dockbridge` on a generated
// volume (half compressible text, half random bytes, files of mixed sizes) against two baselines
// run on the same data in the same run:
//
//   - the engine path: `docker cp CONTAINER:/data - | zstd -T0 -3` and `zstd -d | docker cp - CONTAINER:/data`
//   - the machine's limit: `tar -c | zstd -T0 -3` and `zstd -d | tar -x` directly on the mountpoint
//
// It prints medians of the time and of the machine's CPU time, the ratios, and the peak RSS of the plugin process and of the helper
// container (for a small and the full volume: memory must not grow with volume size).
// Needs root, a local Docker engine, and the zstd CLI. Run it with `make bench-backup`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"
)

var (
	plugin = flag.String("plugin", "bin/docker-dockbridge", "the CLI plugin binary (static: it is also the helper)")
	sizeGB = flag.Float64("size", 1.5, "volume size in GB (1-2)")
	reps   = flag.Int("reps", 5, "repetitions per measurement (median)")
	work   = flag.String("dir", "/var/tmp/dockbridge-bench", "scratch directory for archives (same disk as the engine)")
	genTo  = flag.String("generate", "", "only generate the data set into this directory and exit")
)

func main() {
	flag.Parse()
	if *genTo != "" {
		if _, err := generate(*genTo, int64(*sizeGB*1e9), 1); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func sh(script string) error {
	cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", script, err, errb.String())
	}
	return nil
}

func out(args ...string) (string, error) {
	b, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, b)
	}
	return strings.TrimSpace(string(b)), nil
}

func mountpoint(vol string) (string, error) {
	return out("docker", "volume", "inspect", "-f", "{{.Mountpoint}}", vol)
}

const (
	srcVol   = "dockbridge-bench-src"
	smallVol = "dockbridge-bench-small"
	dstVol   = "dockbridge-bench-dst"
	cpCtr    = "dockbridge-bench-cp"
	cpDstCtr = "dockbridge-bench-cpdst"
)

func cleanup() {
	_ = exec.Command("docker", "rm", "-f", cpCtr, cpDstCtr).Run()
	_ = exec.Command("docker", "volume", "rm", "-f", srcVol, smallVol, dstVol).Run()
}

func run() error {
	if _, err := exec.LookPath("zstd"); err != nil {
		return fmt.Errorf("the zstd CLI is needed for the baselines: apt-get install zstd")
	}
	if _, err := os.Stat(*plugin); err != nil {
		return fmt.Errorf("plugin binary %s: %v (make build)", *plugin, err)
	}
	cleanup()
	defer cleanup()
	_ = os.RemoveAll(*work)
	if err := os.MkdirAll(*work, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(*work)
	for _, v := range []string{srcVol, smallVol} {
		if _, err := out("docker", "volume", "create", v); err != nil {
			return err
		}
	}
	src, err := mountpoint(srcVol)
	if err != nil {
		return err
	}
	small, err := mountpoint(smallVol)
	if err != nil {
		return err
	}
	total := int64(*sizeGB * 1e9)
	fmt.Printf("Generating %.2f GB in %s (half text, half random; 4 KB to 200 MB files)...\n", float64(total)/1e9, srcVol)
	nfiles, err := generate(src, total, 1)
	if err != nil {
		return err
	}
	if _, err := generate(small, total/16, 2); err != nil {
		return err
	}
	fmt.Printf("%d files. Page cache warmed; every method reads from it.\n", nfiles)
	debug.FreeOSMemory()
	_ = sh("tar -C " + src + " -cf - . > /dev/null")

	// A created (never started) container with the volume, for docker cp.
	img, err := busybox()
	if err != nil {
		return err
	}
	if _, err := out("docker", "create", "--name", cpCtr, "-v", srcVol+":/data", img, "/bin/true"); err != nil {
		return err
	}
	// The helper image once, outside the measurements.
	if _, err := out(*plugin, "dockbridge", "volume", "inspect", smallVol); err != nil {
		return err
	}

	type result struct {
		name               string
		backup, rest       time.Duration
		backupCPU, restCPU time.Duration
	}
	archive := func(name string) string { return filepath.Join(*work, name) }
	var clientRSS, helperRSS, restClientRSS, restHelperRSS int64
	type helperRSSJSON struct {
		HelperMaxRSS int64 `json:"helper_max_rss_bytes"`
	}
	dirOurs := filepath.Join(*work, "ours")
	ourArchive := ""
	tdir := filepath.Join(*work, "untar")

	// Each method is timed until its output is durable (ours fsyncs the archive and syncfs the
	// restored volume; the baselines get `sync FILE` / `sync -f DIR`). The methods take turns in
	// every round so that a change in machine load hits all of them alike.
	type method struct {
		name string
		prep func() error
		run  func() error
	}
	backups := []method{
		{"dockbridge", func() error { return os.RemoveAll(dirOurs) }, func() error {
			res, rss, err := pluginJSON("backup", srcVol, "--to", dirOurs, "-o", "json")
			if err != nil {
				return err
			}
			var br []helperRSSJSON
			if err := json.Unmarshal(res, &br); err != nil || len(br) != 1 {
				return fmt.Errorf("backup output %s: %v", res, err)
			}
			clientRSS, helperRSS = max(clientRSS, rss), max(helperRSS, br[0].HelperMaxRSS)
			return nil
		}},
		{"docker cp | zstd -T0", nil, func() error {
			return sh("docker cp " + cpCtr + ":/data - | zstd -q -T0 -3 -f -o " + archive("cp.tar.zst") + " && sync " + archive("cp.tar.zst"))
		}},
		{"tar | zstd -T0", nil, func() error {
			return sh("tar -C " + src + " -cf - . | zstd -q -T0 -3 -f -o " + archive("tar.tar.zst") + " && sync " + archive("tar.tar.zst"))
		}},
	}
	restores := []method{
		{"dockbridge", func() error { return recreate(dstVol) }, func() error {
			res, rss, err := pluginJSON("restore", ourArchive, "--volume", dstVol, "-o", "json")
			if err != nil {
				return err
			}
			var rr helperRSSJSON
			if err := json.Unmarshal(res, &rr); err != nil {
				return err
			}
			restClientRSS, restHelperRSS = max(restClientRSS, rss), max(restHelperRSS, rr.HelperMaxRSS)
			return nil
		}},
		{"docker cp | zstd -T0", func() error {
			_ = exec.Command("docker", "rm", "-f", cpDstCtr).Run()
			if err := recreate(dstVol); err != nil {
				return err
			}
			_, err := out("docker", "create", "--name", cpDstCtr, "-v", dstVol+":/data", img, "/bin/true")
			return err
		}, func() error {
			mp, err := mountpoint(dstVol)
			if err != nil {
				return err
			}
			return sh("zstd -q -d -c " + archive("cp.tar.zst") + " | docker cp - " + cpDstCtr + ":/ && sync -f " + mp)
		}},
		{"tar | zstd -T0", func() error {
			_ = os.RemoveAll(tdir)
			return os.MkdirAll(tdir, 0o755)
		}, func() error {
			return sh("zstd -q -d -c " + archive("tar.tar.zst") + " | tar -x -C " + tdir + " && sync -f " + tdir)
		}},
	}
	timed := func(ms []method, into, cpuInto [][]time.Duration) error {
		for i, m := range ms {
			if m.prep != nil {
				if err := m.prep(); err != nil {
					return err
				}
			}
			_ = sh("sync")
			start, cpu0 := time.Now(), machineCPU()
			if err := m.run(); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			d, cpu := time.Since(start), machineCPU()-cpu0
			into[i], cpuInto[i] = append(into[i], d), append(cpuInto[i], cpu)
			fmt.Printf("  %-22s %6.2fs  (CPU time %6.2fs)\n", m.name, d.Seconds(), cpu.Seconds())
		}
		return nil
	}
	bt, rt := make([][]time.Duration, 3), make([][]time.Duration, 3)
	bc, rc := make([][]time.Duration, 3), make([][]time.Duration, 3)
	for round := range *reps {
		fmt.Printf("Round %d/%d: backups...\n", round+1, *reps)
		if err := timed(backups, bt, bc); err != nil {
			return err
		}
		if ourArchive == "" {
			des, _ := os.ReadDir(dirOurs)
			for _, d := range des {
				if strings.HasSuffix(d.Name(), ".tar.zst") {
					ourArchive = filepath.Join(*work, "ours-archive", d.Name())
					_ = os.MkdirAll(filepath.Dir(ourArchive), 0o700)
					for _, n := range []string{d.Name(), d.Name() + ".sha256"} {
						if err := os.Rename(filepath.Join(dirOurs, n), filepath.Join(filepath.Dir(ourArchive), n)); err != nil {
							return err
						}
					}
				}
			}
		}
		fmt.Printf("Round %d/%d: restores...\n", round+1, *reps)
		if err := timed(restores, rt, rc); err != nil {
			return err
		}
	}
	_ = exec.Command("docker", "rm", "-f", cpDstCtr).Run()
	medianOf := func(ds []time.Duration) time.Duration {
		ds = slices.Sorted(slices.Values(ds)) // a copy: the rounds keep their order
		return ds[len(ds)/2]
	}
	var ours, engine, machine result
	for i, r := range []*result{&ours, &engine, &machine} {
		r.name, r.backup, r.rest = backups[i].name, medianOf(bt[i]), medianOf(rt[i])
		r.backupCPU, r.restCPU = medianOf(bc[i]), medianOf(rc[i])
	}
	// Memory with a volume 1/16 the size.
	var smallClientRSS, smallHelperRSS int64
	{
		res, rss, err := pluginJSON("backup", smallVol, "--to", filepath.Join(*work, "small"), "-o", "json")
		if err != nil {
			return err
		}
		var br []helperRSSJSON
		_ = json.Unmarshal(res, &br)
		smallClientRSS = rss
		if len(br) == 1 {
			smallHelperRSS = br[0].HelperMaxRSS
		}
	}
	sizes := map[string]int64{}
	for n, p := range map[string]string{"dockbridge": ourArchive, "zstd -3": archive("tar.tar.zst")} {
		if fi, err := os.Stat(p); err == nil {
			sizes[n] = fi.Size()
		}
	}

	mbps := func(d time.Duration) float64 { return float64(total) / 1e6 / d.Seconds() }
	fmt.Printf("\nVolume: %.2f GB in %d files; medians of %d runs.\n\n", float64(total)/1e9, nfiles, *reps)
	fmt.Printf("%-22s %12s %10s %10s %12s %10s %10s\n", "method", "backup", "MB/s", "CPU time", "restore", "MB/s", "CPU time")
	for _, r := range []result{ours, engine, machine} {
		fmt.Printf("%-22s %11.2fs %10.0f %9.2fs %11.2fs %10.0f %9.2fs\n", r.name, r.backup.Seconds(), mbps(r.backup), r.backupCPU.Seconds(),
			r.rest.Seconds(), mbps(r.rest), r.restCPU.Seconds())
	}
	fmt.Printf("(CPU time: all processes on the machine while the method ran, engine and kernel included)\n")
	fmt.Printf("\nRatios (throughput of dockbridge / baseline; >= 1.0 is as fast or faster):\n")
	fmt.Printf("  vs engine path (docker cp):   backup %.2fx   restore %.2fx\n", engine.backup.Seconds()/ours.backup.Seconds(), engine.rest.Seconds()/ours.rest.Seconds())
	fmt.Printf("  vs machine limit (tar|zstd):  backup %.2fx   restore %.2fx\n", machine.backup.Seconds()/ours.backup.Seconds(), machine.rest.Seconds()/ours.rest.Seconds())
	// The rounds' own ratios show how much of a difference the machine's noise can make.
	spread := func(d [][]time.Duration) string {
		var rs []float64
		for i := range d[0] {
			rs = append(rs, d[1][i].Seconds()/d[0][i].Seconds())
		}
		slices.Sort(rs)
		return fmt.Sprintf("%.2f-%.2fx", rs[0], rs[len(rs)-1])
	}
	fmt.Printf("  vs engine path, round by round: backup %s   restore %s\n", spread(bt), spread(rt))
	fmt.Printf("\nArchive size: dockbridge %.0f MB, zstd -3 %.0f MB (data %.0f MB)\n", mb(sizes["dockbridge"]), mb(sizes["zstd -3"]), mb(total))
	fmt.Printf("\nPeak RSS (MB)          %14s %14s\n", fmt.Sprintf("%.2f GB vol", float64(total)/1e9), fmt.Sprintf("%.2f GB vol", float64(total/16)/1e9))
	fmt.Printf("  plugin, backup        %14.0f %14.0f\n", mb(clientRSS), mb(smallClientRSS))
	fmt.Printf("  helper, backup        %14.0f %14.0f\n", mb(helperRSS), mb(smallHelperRSS))
	fmt.Printf("  plugin, restore       %14.0f\n", mb(restClientRSS))
	fmt.Printf("  helper, restore       %14.0f\n", mb(restHelperRSS))
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func recreate(vol string) error {
	_ = exec.Command("docker", "rm", "-f", cpDstCtr).Run()
	if b, err := exec.Command("docker", "volume", "rm", "-f", vol).CombinedOutput(); err != nil {
		return fmt.Errorf("remove %s: %v: %s", vol, err, b)
	}
	_, err := out("docker", "volume", "create", vol)
	return err
}

// pluginJSON runs the plugin and returns its stdout and peak RSS.
func pluginJSON(args ...string) ([]byte, int64, error) {
	cmd := exec.Command(*plugin, append([]string{"dockbridge"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss * 1024
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s %v: %v: %s", *plugin, args, err, e.String())
	}
	return o.Bytes(), rss, nil
}

// generate writes about total bytes: half text, half random, in files from 4 KB to 200 MB.
func generate(dir string, total int64, seed uint64) (int, error) {
	rng := rand.New(rand.NewPCG(seed, 42))
	words := strings.Fields("volume backup restore docker hetzner stream archive checksum metadata container engine " +
		"server region bucket object snapshot database record index table query commit rollback replica shard " +
		"the of and to in is that for it with as on by at from this have be are was were not or")
	buf := make([]byte, 1<<20)
	fill := func(f *os.File, n int64, isText bool) error {
		for n > 0 {
			k := min(n, int64(len(buf)))
			b := buf[:k]
			if isText {
				b = b[:0]
				for int64(len(b)) < k {
					b = append(b, words[rng.IntN(len(words))]...)
					if rng.IntN(12) == 0 {
						b = fmt.Appendf(b, " %d\n", rng.IntN(100000))
					} else {
						b = append(b, ' ')
					}
				}
				b = b[:k]
			} else {
				for i := 0; i+8 <= len(b); i += 8 {
					v := rng.Uint64()
					for j := range 8 {
						b[i+j] = byte(v >> (8 * j))
					}
				}
			}
			if _, err := f.Write(b); err != nil {
				return err
			}
			n -= k
		}
		return nil
	}
	// Size classes, each a share of the total: small, medium, large.
	classes := []struct {
		share    float64
		min, max int64
	}{{0.1, 4 << 10, 64 << 10}, {0.35, 1 << 20, 10 << 20}, {0.55, 100 << 20, 200 << 20}}
	n := 0
	for ci, c := range classes {
		budget := int64(float64(total) * c.share)
		for written, i := int64(0), 0; written < budget; i++ {
			size := min(c.min+rng.Int64N(c.max-c.min+1), budget-written)
			p := filepath.Join(dir, fmt.Sprintf("class%d/d%02d/f%05d", ci, i%37, i))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return n, err
			}
			f, err := os.Create(p)
			if err != nil {
				return n, err
			}
			err = fill(f, size, i%2 == 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return n, err
			}
			written += size
			n++
		}
	}
	return n, nil
}

// busybox imports a tiny image from the host's static busybox for the docker cp containers.
func busybox() (string, error) {
	const img = "dockbridge-test-busybox:latest"
	if exec.Command("docker", "image", "inspect", img).Run() == nil {
		return img, nil
	}
	dir, err := os.MkdirTemp("", "bb")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	script := fmt.Sprintf("mkdir -p %[1]s/bin %[1]s/data && cp /bin/busybox %[1]s/bin/ && ln -s busybox %[1]s/bin/true && tar -C %[1]s -c . | docker import - %[2]s >/dev/null", dir, img)
	if err := sh(script); err != nil {
		return "", fmt.Errorf("busybox image (apt-get install busybox-static): %w", err)
	}
	return img, nil
}

// machineCPU is the CPU time all processes on the machine have used so far (/proc/stat: user,
// nice, system, irq, softirq).
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i < len(f) {
			var v int64
			fmt.Sscan(f[i], &v)
			ticks += v
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
