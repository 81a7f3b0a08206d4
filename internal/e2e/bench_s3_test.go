package e2e_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
	"github.com/dockbridge/dockbridge/internal/testimage"
)

// shapedUplink is a home uplink for this machine's own uploads: a network namespace joined
// by a veth pair whose host side sends at most rate (tc TBF; this kernel has no netem), with an
// S3 server inside. Only traffic to that server is shaped; nothing else on the machine is.
type shapedUplink struct {
	ns, host string
	addr     string // the namespace's address
}

func newShapedUplink(b *testing.B, rate string) *shapedUplink {
	b.Helper()
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	tag := hex.EncodeToString(rnd[:])
	u := &shapedUplink{ns: "dbbench-" + tag, host: "dbbh" + tag}
	peer := "dbbn" + tag
	subnet := fmt.Sprintf("10.231.%d.%d", rnd[0], rnd[1]&0xfc)
	base := subnet[:strings.LastIndexByte(subnet, '.')+1]
	last := int(rnd[1] & 0xfc)
	hostIP, nsIP := fmt.Sprintf("%s%d", base, last+1), fmt.Sprintf("%s%d", base, last+2)
	u.addr = nsIP
	run := func(args ...string) {
		b.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	b.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", u.host).Run()
		_ = exec.Command("ip", "netns", "del", u.ns).Run()
	})
	run("ip", "netns", "add", u.ns)
	run("ip", "link", "add", u.host, "type", "veth", "peer", "name", peer)
	run("ip", "link", "set", peer, "netns", u.ns)
	run("ip", "addr", "add", hostIP+"/30", "dev", u.host)
	run("ip", "link", "set", u.host, "up")
	run("ip", "netns", "exec", u.ns, "ip", "addr", "add", nsIP+"/30", "dev", peer)
	run("ip", "netns", "exec", u.ns, "ip", "link", "set", peer, "up")
	run("ip", "netns", "exec", u.ns, "ip", "link", "set", "lo", "up")
	// Egress of the host side is what this machine sends: its uplink.
	run("tc", "qdisc", "add", "dev", u.host, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "100ms")
	return u
}

// BenchmarkBackupHostVsClientS3 (make bench-backup): a volume on a dockbridge host backed up
// to an S3-compatible bucket two ways, interleaved, b.N rounds:
//
//   - host→S3: `backup schedule run` on the server, which uploads straight to the bucket;
//   - client→S3: `docker --context dockbridge dockbridge backup --to s3://...` on this machine,
//     where the archive comes down through the docker context's SSH connection and goes up again
//     over the client's own link, shaped with tc TBF to a 50 Mbit/s home uplink.
//
// It prints the medians and the ratio. The simulated server and the S3 servers are on this
// machine: the server's path to its bucket is not shaped (Hetzner Object Storage is in the same
// location), and neither is the client's download from the server (a home downlink is faster
// than its uplink; unshaped, this favours the client path).
func BenchmarkBackupHostVsClientS3(b *testing.B) {
	const env = "bench"
	w := newWorld(b)
	ctx := b.Context()
	up := newShapedUplink(b, "50mbit")
	hostS3 := backuptest.StartS3(b)
	proxy := startS3Proxy(b, w, hostS3)
	clientS3 := backuptest.StartS3With(b, backuptest.S3Options{Listen: up.addr + ":9000", Prefix: []string{"ip", "netns", "exec", up.ns}})
	// The client's helper is the server binary, as with a CLI from make build (which carries
	// it): one helper image on the server for both paths, imported once.
	s3env := []string{"AWS_ACCESS_KEY_ID=" + hostS3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + hostS3.SecretKey, "AWS_REGION=us-east-1",
		"DOCKBRIDGE_HELPER_BINARY=" + filepath.Join(w.pluginDir, "rootfs", "hetzner-volume-plugin")}
	must := func(args ...string) result {
		b.Helper()
		r := w.run(ctx, nil, s3env, args...)
		if r.err != nil {
			b.Fatalf("docker %s: %s", strings.Join(args, " "), r)
		}
		return r
	}

	w.up(b, env)
	ctxName := contextName(env)
	if r := w.run(ctx, testimage.BusyboxRootfs(b), nil, "--context", ctxName, "import", "-", "app:1"); r.err != nil {
		b.Fatalf("docker import: %s", r)
	}
	must("--context", ctxName, "volume", "create", "benchdata")
	must("--context", ctxName, "run", "-d", "--name", "app", "-v", "benchdata:/data", "app:1", "sh", "-c", appLoop)
	// 96 MB random (incompressible) and 96 MB of text: about 100 MB of archive.
	must("--context", ctxName, "exec", "app", "sh", "-c",
		"b=busybox; $b head -c 96000000 /dev/urandom > /data/random && i=0; while [ $i -lt 2000 ]; do echo \"line $i of a log file that compresses well enough, as logs do\"; i=$((i+1)); done > /data/t && "+
			"while [ $($b stat -c %s /data/t) -lt 96000000 ]; do $b cat /data/t /data/t > /data/t2 && $b mv /data/t2 /data/t; done && $b head -c 96000000 /data/t > /data/text && $b rm /data/t")
	must("dockbridge", "backup", "schedule", "--name", env, "benchdata", "--to", hostS3.Location("host"), "--cron", "0 0 1 1 *",
		"--keep-last", "2", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0", "--s3-endpoint", proxy.URL)

	must("--context", ctxName, "dockbridge", "volume", "check") // imports the helper image before the clock runs

	var hostT, clientT []time.Duration
	var hostSize, clientSize int64
	size := func(s *backuptest.S3Server, prefix string) int64 {
		st, err := backup.OpenStore(ctx, s.Location(prefix), backup.S3Config{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey, Region: "us-east-1"})
		if err != nil {
			b.Fatal(err)
		}
		l, err := backup.List(ctx, st)
		if err != nil || len(l) == 0 {
			b.Fatalf("list %s: %v %v", prefix, l, err)
		}
		return l[0].Size
	}
	round := 0
	for b.Loop() {
		round++
		start := time.Now()
		must("dockbridge", "backup", "schedule", "run", "--name", env, "benchdata")
		hostT = append(hostT, time.Since(start))
		hostSize = size(hostS3, "host")
		start = time.Now()
		must("--context", ctxName, "dockbridge", "backup", "benchdata", "--to", clientS3.Location(fmt.Sprintf("client%d", round)), "--s3-endpoint", clientS3.Endpoint)
		clientT = append(clientT, time.Since(start))
		clientSize = size(clientS3, fmt.Sprintf("client%d", round))
		b.Logf("round %d: host→S3 %.1fs, client→S3 %.1fs (%.2fx)", round, hostT[len(hostT)-1].Seconds(), clientT[len(clientT)-1].Seconds(), clientT[len(clientT)-1].Seconds()/hostT[len(hostT)-1].Seconds())
	}
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	h, c := med(hostT), med(clientT)
	fmt.Fprintf(os.Stdout, "\nhost→S3 vs client→S3 (192 MB volume, ~%d MB archive; the client's uplink shaped to 50 Mbit/s with tc TBF), medians of %d rounds:\n", hostSize>>20, len(hostT))
	fmt.Fprintf(os.Stdout, "| path | time | archive |\n|---|---|---|\n")
	fmt.Fprintf(os.Stdout, "| host→S3 (backup schedule run: the server uploads) | %.1f s | %d MB |\n", h.Seconds(), hostSize>>20)
	fmt.Fprintf(os.Stdout, "| client→S3 (backup --to s3:// through the context) | %.1f s | %d MB (%.1f Mbit/s) |\n", c.Seconds(), clientSize>>20, float64(clientSize)*8/1e6/c.Seconds())
	fmt.Fprintf(os.Stdout, "| ratio client/host | %.2fx | |\n", c.Seconds()/h.Seconds())
	b.ReportMetric(h.Seconds(), "s-host")
	b.ReportMetric(c.Seconds(), "s-client")
	b.ReportMetric(c.Seconds()/h.Seconds(), "ratio")
}
