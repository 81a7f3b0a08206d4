package e2e_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/backup/backuptest"
	"github.com/dockbridge/dockbridge/internal/testimage"
)

// appLoop is a container's main process that stops at once on SIGTERM (a busybox sleep as
// PID 1 ignores it, and each backup would wait for the stop timeout).
const appLoop = `trap 'exit 0' TERM; while :; do busybox sleep 1 & wait $!; done`

// s3Proxy stands between everyone and the test's S3 server (versitygw), on the simulated
// servers' network gateway, which the servers and this machine both reach. It records who sent
// each request and how many bytes, and can fail every request or hold the first part upload
// (to kill a backup in the middle of it).
type s3Proxy struct {
	URL     string // http://gateway:port
	gateway string
	srv     *http.Server

	mu       sync.Mutex
	reqs     []*s3Req
	fail     bool
	holdPart chan struct{} // non-nil: the next part upload waits for it to be closed
	held     chan struct{} // closed once a part upload is held
}

type s3Req struct {
	from   string // remote IP
	method string
	path   string
	query  url.Values
	bytes  int64
}

type countingBody struct {
	io.ReadCloser
	n *int64
	p *s3Proxy
}

func (c countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.p.mu.Lock()
	*c.n += int64(n)
	c.p.mu.Unlock()
	return n, err
}

func startS3Proxy(t testing.TB, w *world, s3 *backuptest.S3Server) *s3Proxy {
	t.Helper()
	u, err := url.Parse(w.sim.ServerEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	gw := u.Hostname()
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(s3.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(target) // keeps the Host header the client signed
	p := &s3Proxy{URL: "http://" + ln.Addr().String(), gateway: gw}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		p.mu.Lock()
		rec := &s3Req{from: host, method: r.Method, path: r.URL.Path, query: r.URL.Query()}
		p.reqs = append(p.reqs, rec)
		fail := p.fail
		var hold chan struct{}
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != "" && p.holdPart != nil {
			hold, p.holdPart = p.holdPart, nil
			close(p.held)
		}
		p.mu.Unlock()
		if fail {
			http.Error(rw, "<Error><Code>ServiceUnavailable</Code><Message>the test made the bucket unreachable</Message></Error>", http.StatusServiceUnavailable)
			return
		}
		if hold != nil {
			<-hold
		}
		r.Body = countingBody{r.Body, &rec.bytes, p}
		rp.ServeHTTP(rw, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *s3Proxy) setFail(v bool) {
	p.mu.Lock()
	p.fail = v
	p.mu.Unlock()
}

// since returns the requests recorded after the first n.
func (p *s3Proxy) since(n int) []s3Req {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []s3Req
	for _, r := range p.reqs[n:] {
		out = append(out, *r)
	}
	return out
}

func (p *s3Proxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.reqs)
}

// scheduleStatus is the part of `backup schedule ls -o json` the tests read.
type scheduleStatus struct {
	Level   string `json:"level"`
	Volumes []struct {
		Volume              string    `json:"volume"`
		Schedule            string    `json:"schedule"`
		LastSuccess         time.Time `json:"last_success"`
		LastArchive         string    `json:"last_archive"`
		ConsecutiveFailures int       `json:"consecutive_failures"`
		LastRestoreVerified time.Time `json:"last_restore_verified"`
		DrillError          string    `json:"drill_error"`
		Health              string    `json:"health"`
	} `json:"volumes"`
	Findings []struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	} `json:"findings"`
}

func (w *world) scheduleLs(t *testing.T, env string) scheduleStatus {
	t.Helper()
	r := w.must(t, "dockbridge", "backup", "schedule", "ls", "--name", env, "-o", "json")
	var st scheduleStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("backup schedule ls -o json: %v\n%s", err, r.stdout)
	}
	return st
}

// healthLine runs the server's health check and returns its line.
func (w *world) healthLine(t *testing.T, env string) string {
	t.Helper()
	r := w.run(t.Context(), nil, nil, "dockbridge", "ssh", "--name", env, "--", "docker-volume-health-check")
	return strings.TrimSpace(r.stdout)
}

// TestScheduledBackupsOnTheHost: backup schedule on a server that really boots, against a real
// S3 server (versitygw): the server's timer fires and the server uploads the archive itself
// (every byte of it comes from the server's address, none through this machine); offen's
// archive-pre command ran; failed runs raise the health check to CRITICAL; GFS retention with a
// fake clock; a restore drill passes, and fails on a tampered archive; a backup killed in the
// middle of its upload leaves no archive listed and the next run succeeds; after down and up the
// new server runs the schedule again.
func TestScheduledBackupsOnTheHost(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	const env = "default"
	s3 := backuptest.StartS3(t)
	proxy := startS3Proxy(t, w, s3)
	s3env := []string{"AWS_ACCESS_KEY_ID=" + s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3.SecretKey, "AWS_REGION=us-east-1"}
	mustEnv := func(t *testing.T, args ...string) result {
		t.Helper()
		r := w.run(ctx, nil, s3env, args...)
		if r.err != nil {
			t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
		}
		return r
	}
	// The bucket as this test reads it, straight from versitygw.
	bucket := func(t *testing.T, prefix string) (backup.Store, []backup.Backup) {
		t.Helper()
		st, err := backup.OpenStore(ctx, s3.Location(prefix), backup.S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Region: "us-east-1"})
		if err != nil {
			t.Fatal(err)
		}
		list, err := backup.List(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		return st, list
	}

	w.up(t, env)
	// The workload: a volume with data, used by a container that carries offen's labels.
	if r := w.run(ctx, testimage.BusyboxRootfs(t), nil, "--context", "dockbridge", "import", "-", "app:1"); r.err != nil {
		t.Fatalf("docker import: %s", r)
	}
	w.on(t, env, "volume", "create", "appdata")
	w.on(t, env, "run", "-d", "--name", "app", "-v", "appdata:/data",
		"--label", `docker-volume-backup.archive-pre=/bin/sh -c 'busybox date > /data/dump.sql'`,
		"app:1", "sh", "-c", appLoop)
	// 12 MB of random bytes: several 5 MiB parts, so a backup can be killed between them.
	w.on(t, env, "exec", "app", "sh", "-c", "busybox head -c 12000000 /dev/urandom > /data/blob && echo hello > /data/hello")
	serverIPs := strings.Fields(w.onServer(t, env, "hostname -I"))

	var archive string
	t.Run("the timer fires and the server uploads the archive itself", func(t *testing.T) {
		before := proxy.count()
		// The current context says where: the environment's server.
		r := mustEnv(t, "--context", "dockbridge", "dockbridge", "backup", "schedule", "appdata", "--to", s3.Location("e2e"), "--every", "24h",
			"--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6", "--s3-endpoint", proxy.URL, "--s3-part-size", "5MiB")
		t.Logf("backup schedule: %s", r.stdout)
		if strings.Contains(r.stdout+r.stderr, s3.SecretKey) {
			t.Fatal("the secret key was printed")
		}
		// Nothing of ours runs from here on: the server's timer must do it.
		deadline := time.Now().Add(3 * time.Minute)
		for {
			_, list := bucket(t, "e2e")
			if len(list) > 0 && list[0].HasChecksum {
				archive = list[0].Name
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no archive in the bucket 3 minutes after the schedule was made; the server's journal:\n%s",
					w.onServer(t, env, "systemctl list-timers --all dockbridge-backup.timer; journalctl -u dockbridge-backup.service --no-pager | tail -n 30"))
			}
			time.Sleep(2 * time.Second)
		}
		// The archive is listed once its checksum is stored; the run goes on after that (it
		// starts the container again, records the outcome and logs it). Wait for the oneshot
		// service to end before reading what it wrote.
		// journald may take a moment more to store the last lines.
		var journal string
		var ended time.Time
		for end := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
			state := strings.TrimSpace(w.onServer(t, env, "systemctl show -p ActiveState --value dockbridge-backup.service"))
			journal = w.onServer(t, env, "journalctl -u dockbridge-backup.service --no-pager")
			if state != "activating" && state != "active" && state != "deactivating" {
				if ended.IsZero() {
					ended = time.Now()
				}
				if strings.Contains(journal, "Backed up appdata") || time.Since(ended) > 10*time.Second {
					break
				}
			}
			if time.Now().After(end) {
				t.Fatalf("the timer's run still %s 2 minutes after its archive was listed:\n%s", state, journal)
			}
		}
		if !strings.Contains(journal, "Backed up appdata") {
			t.Errorf("the service's journal does not show the run:\n%s", journal)
		}
		if !strings.Contains(w.onServer(t, env, "systemctl is-active dockbridge-backup.timer"), "active") {
			t.Error("the timer is not active")
		}
		var uploaded int64
		for _, q := range proxy.since(before) {
			if !strings.Contains(q.path, "/appdata-") || (q.method != http.MethodPut && q.method != http.MethodPost) {
				continue
			}
			if !slices.Contains(serverIPs, q.from) || q.from == proxy.gateway {
				t.Errorf("%s %s came from %s, not from the server (%v)", q.method, q.path, q.from, serverIPs)
			}
			uploaded += q.bytes
		}
		st, list := bucket(t, "e2e")
		if uploaded < list[0].Size || list[0].Size < 12_000_000 {
			t.Errorf("the server uploaded %d bytes; the archive is %d bytes", uploaded, list[0].Size)
		}
		rep, err := backup.Verify(ctx, st, archive, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Stats.Files != 3 || rep.Metadata.SourceContext == "" {
			t.Errorf("the archive holds %s (want blob, hello and dump.sql, the archive-pre command's), metadata %+v", rep.Stats, rep.Metadata)
		}
		t.Logf("%s: %d bytes, all from %v; %s", archive, list[0].Size, serverIPs, rep.Stats)
		ls := w.scheduleLs(t, env)
		if len(ls.Volumes) != 1 || ls.Volumes[0].LastArchive != archive || ls.Volumes[0].Health != "OK" || ls.Level != "OK" {
			t.Errorf("backup schedule ls: %+v", ls)
		}
		// Two days on without a backup (asked as of then): older than twice the interval.
		later := time.Now().Add(49 * time.Hour).UTC().Format(time.RFC3339)
		if h := w.onServer(t, env, "/var/lib/docker/dockbridge/bin/dockbridge-server backup health --now "+later); !strings.HasPrefix(h, "WARNING ") || !strings.Contains(h, "more than twice the interval") {
			t.Errorf("backup health two days on: %q, want a WARNING", h)
		}
		if !strings.Contains(w.must(t, "dockbridge", "status", "--name", env).stdout, "Backup appdata") {
			t.Error("status does not show the volume's backups")
		}
		m := w.must(t, "--context", "dockbridge", "dockbridge", "metrics", "--no-usage").stdout
		if !strings.Contains(m, `dockbridge_backup_last_success_timestamp_seconds{volume="appdata",schedule="appdata"}`) ||
			!strings.Contains(m, `dockbridge_backup_consecutive_failures{volume="appdata",schedule="appdata"} 0`) {
			t.Errorf("metrics lack the schedule's:\n%s", m)
		}
		secret := w.onServer(t, env, "stat -L -c '%a %U' /etc/dockbridge/secrets/backup-appdata.env; grep -rl "+s3.SecretKey+" /var/log /var/lib/docker/dockbridge/backup /etc/systemd 2>/dev/null | head; true")
		if !strings.HasPrefix(secret, "600 root") || strings.Count(secret, "\n") > 1 {
			t.Errorf("the credentials file and where the secret is: %q", secret)
		}
	})
	if archive == "" {
		t.FailNow()
	}

	t.Run("failed runs raise the health check to CRITICAL", func(t *testing.T) {
		proxy.setFail(true)
		for i := 1; i <= 2; i++ {
			r := w.run(ctx, nil, nil, "dockbridge", "backup", "schedule", "run", "--name", env, "appdata")
			if r.err == nil {
				t.Fatalf("run %d against an unreachable bucket succeeded: %s", i, r)
			}
			line := w.healthLine(t, env)
			want := map[int]string{1: "level=OK", 2: "level=CRITICAL"}[i]
			if !strings.Contains(line, want) {
				t.Errorf("health after %d failed runs: %s, want %s", i, line, want)
			}
			if i == 2 && !strings.Contains(line, "failed 2 times in a row") {
				t.Errorf("health line: %s", line)
			}
		}
		if !strings.Contains(w.must(t, "dockbridge", "status", "--name", env, "-o", "json").stdout, `"consecutive_failures": 2`) {
			t.Error("status -o json does not show the 2 failures")
		}
		proxy.setFail(false)
		mustEnv(t, "dockbridge", "backup", "schedule", "run", "--name", env, "appdata")
		if line := w.healthLine(t, env); !strings.Contains(line, "level=OK") {
			t.Errorf("health after a good run: %s", line)
		}
	})

	t.Run("GFS retention with a fake clock", func(t *testing.T) {
		// A schedule of its own (its own prefix) that never fires by itself: run at fake times,
		// every 4 days from 2026-01-01 to 2026-03-18, each run applying the retention then.
		mustEnv(t, "dockbridge", "backup", "schedule", "--name", env, "appdata", "--id", "gfs", "--to", s3.Location("gfs"), "--cron", "0 0 1 1 *",
			"--keep-daily", "2", "--keep-weekly", "3", "--keep-monthly", "2", "--s3-endpoint", proxy.URL)
		t0 := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
		for k := range 20 {
			now := t0.AddDate(0, 0, 4*k).Format(time.RFC3339)
			w.onServer(t, env, "/var/lib/docker/dockbridge/bin/dockbridge-server backup run gfs --now "+now+" >/dev/null")
		}
		_, list := bucket(t, "gfs")
		var got []string
		for _, b := range list {
			got = append(got, b.Time.Format("01-02"))
		}
		// daily 2: Mar 18 (Wed) and Mar 14 (Sat); weekly 3: the newest of ISO weeks 12, 11 and 10:
		// Mar 18, Mar 14 (not Mar 10, also week 11) and Mar 6 (Fri; not Mar 2, the Monday);
		// monthly 2: Mar 18 and February's newest, Feb 26.
		if want := "03-18 03-14 03-06 02-26"; strings.Join(got, " ") != want {
			t.Errorf("after 20 runs the bucket holds %v, want %s", got, want)
		}
		w.must(t, "dockbridge", "backup", "schedule", "rm", "--name", env, "gfs")
	})

	t.Run("a restore drill passes, and fails on a tampered archive", func(t *testing.T) {
		r := w.must(t, "dockbridge", "backup", "schedule", "run", "--name", env, "appdata", "--drill", "-o", "json")
		var rep struct {
			Runs []struct {
				Drills []struct {
					Archive string `json:"archive"`
					Error   string `json:"error"`
				} `json:"drills"`
			} `json:"runs"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || len(rep.Runs) != 1 || len(rep.Runs[0].Drills) != 1 || rep.Runs[0].Drills[0].Error != "" {
			t.Fatalf("run --drill: %v %s", err, r)
		}
		newest := rep.Runs[0].Drills[0].Archive
		if ls := w.scheduleLs(t, env); ls.Volumes[0].LastRestoreVerified.IsZero() || ls.Volumes[0].DrillError != "" {
			t.Errorf("after a drill: %+v", ls.Volumes[0])
		}
		// Change one byte of the newest archive in the bucket (versitygw keeps objects as files).
		f := filepath.Join(s3.Dir, s3.Bucket, "e2e", newest)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out := w.run(ctx, nil, nil, "dockbridge", "ssh", "--name", env, "--", "/var/lib/docker/dockbridge/bin/dockbridge-server backup drill appdata")
		if out.err == nil || !strings.Contains(out.stdout, "checksum mismatch") || !strings.Contains(out.stdout, "the archive is damaged or was changed") {
			t.Errorf("the server's drill of a tampered archive: %s", out)
		}
		if line := w.healthLine(t, env); !strings.Contains(line, "level=CRITICAL") || !strings.Contains(line, "restore drill") {
			t.Errorf("health after a failed drill: %s", line)
		}
		// The same drill from this machine, through the context: fails too.
		v := w.run(ctx, nil, s3env, "--context", "dockbridge", "dockbridge", "backup", "verify", "--restore", "--s3-endpoint", proxy.URL, s3.Location("e2e/"+newest))
		if v.err == nil || !strings.Contains(v.stderr, "checksum mismatch") {
			t.Errorf("backup verify --restore of a tampered archive: %s", v)
		}
		left := w.on(t, env, "volume", "ls", "-q", "--filter", "label=dockbridge.drill").stdout
		if strings.TrimSpace(left) != "" {
			t.Errorf("scratch volumes left: %s", left)
		}
		// Put the byte back: the drill passes again, and the health with it.
		b[len(b)/2] ^= 1
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		w.onServer(t, env, "/var/lib/docker/dockbridge/bin/dockbridge-server backup drill appdata >/dev/null")
		if line := w.healthLine(t, env); !strings.Contains(line, "level=OK") {
			t.Errorf("health after the drill passed again: %s", line)
		}
	})

	t.Run("a backup killed in the middle of its upload: nothing listed, the next run succeeds", func(t *testing.T) {
		_, before := bucket(t, "e2e")
		proxy.mu.Lock()
		proxy.holdPart, proxy.held = make(chan struct{}), make(chan struct{})
		release, held := proxy.holdPart, proxy.held
		proxy.mu.Unlock()
		done := make(chan result, 1)
		go func() {
			done <- w.run(ctx, nil, nil, "dockbridge", "backup", "schedule", "run", "--name", env, "appdata")
		}()
		select {
		case <-held:
		case r := <-done:
			t.Fatalf("the run ended before its upload: %s", r)
		case <-time.After(2 * time.Minute):
			t.Fatal("no part upload within 2 minutes")
		}
		// SIGKILL: no cleanup of any kind (the simulated server is a container: its own processes).
		w.onServer(t, env, "pid=$(pgrep -f '^/var/lib/docker/dockbridge/bin/dockbridge-server backup run appdata'); echo killing $pid; kill -KILL $pid")
		close(release)
		if r := <-done; r.err == nil {
			t.Errorf("the killed run succeeded: %s", r)
		}
		if ps := w.on(t, env, "ps", "--format", "{{.Names}}").stdout; slices.Contains(strings.Fields(ps), "app") {
			t.Errorf("app is running after the kill: the run had not stopped it yet? %q", ps)
		}
		// The killed run's helper ends with its stream (it is never left holding the volume).
		eventually(t, time.Minute, "the killed run's helper container to end", func() bool {
			return !strings.Contains(w.on(t, env, "ps", "-a", "--format", "{{.Names}}").stdout, "dockbridge-helper-")
		})
		_, after := bucket(t, "e2e")
		if len(after) != len(before) || after[0].Name != before[0].Name {
			t.Errorf("the killed backup is listed: before %+v, after %+v", before, after)
		}
		ls := mustEnv(t, "dockbridge", "backup", "ls", "--from", s3.Location("e2e"), "--s3-endpoint", proxy.URL)
		if strings.Contains(ls.stdout, "INCOMPLETE") {
			t.Errorf("backup ls lists an incomplete archive:\n%s", ls.stdout)
		}
		r := mustEnv(t, "dockbridge", "backup", "schedule", "run", "--name", env, "appdata")
		t.Logf("the next run: %s", r.stdout)
		// (The retention keeps one archive a day: the new one replaces today's older ones.)
		_, next := bucket(t, "e2e")
		if len(next) == 0 || next[0].Name == before[0].Name || !next[0].HasChecksum {
			t.Errorf("after the next run: %+v (before: %+v)", next, before)
		}
		for _, b := range next {
			if !b.HasChecksum {
				t.Errorf("listed without its checksum: %+v", b)
			}
		}
		if ps := w.on(t, env, "ps", "--format", "{{.Names}}").stdout; !strings.Contains(ps, "app") {
			t.Errorf("app is not running after the next run: %q", ps)
		}
		if h := w.on(t, env, "ps", "-a", "-q", "--filter", "label=dockbridge.helper").stdout; strings.TrimSpace(h) != "" {
			t.Errorf("helper containers left: %q", h)
		}
		if line := w.healthLine(t, env); !strings.Contains(line, "level=OK") {
			t.Errorf("health: %s", line)
		}
	})

	t.Run("after down and up the new server runs the schedule", func(t *testing.T) {
		w.must(t, "dockbridge", "down", "--name", env)
		w.up(t, env)
		if s := w.onServer(t, env, "systemctl is-active dockbridge-backup.timer"); strings.TrimSpace(s) != "active" {
			t.Errorf("timer on the new server: %q", s)
		}
		ls := w.scheduleLs(t, env)
		if len(ls.Volumes) != 1 || ls.Volumes[0].LastArchive == "" {
			t.Errorf("the schedule's state on the new server: %+v", ls)
		}
		mustEnv(t, "dockbridge", "backup", "schedule", "run", "--name", env, "appdata")
		w.must(t, "dockbridge", "backup", "schedule", "rm", "--name", env, "appdata")
		if s := w.run(ctx, nil, nil, "dockbridge", "ssh", "--name", env, "--", "systemctl is-active dockbridge-backup.timer; ls /etc/dockbridge/secrets/"); strings.Contains(s.stdout, "backup-appdata") || strings.HasPrefix(s.stdout, "active") {
			t.Errorf("after rm of the last schedule: %s", s.stdout)
		}
	})
}
