package localagent

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/sshmux"
	"github.com/dockbridge/dockbridge/internal/sshmux/sshmuxtest"
)

// BenchmarkSyncVersusReverseSSHFS measures, on this machine, the two ways to show a laptop's
// folder on a server, over a real sshd, the same tree and the same network (loopback, then a
// proxy adding a 20 ms round trip at 100 Mbit/s each way):
//
//   - sync: this package (Mutagen's engine, two-way-safe, cycles started by inotify), the copy on
//     the server's disk;
//   - reverse SSHFS: the laptop runs sftp-server, piped over an SSH session into
//     `sshfs -o passive` on the server (the laptop needs no sshd), with sshfs' default caching
//     and with its caches off.
//
// For each: time to first ready for 50,000 files (sync: until the first synchronization is
// complete; sshfs: the mount, then a first walk and read of the tree, as a dev server's start
// does; at 20 ms a 200-file part, scaled), save-to-visible latency both ways (median, p95), a
// delete, and a laptop that sleeps (its SSH client stopped for 20 s): what a read on the server
// does meanwhile, and what happens after. `make bench-local` runs it (needs sshfs and FUSE).
func BenchmarkSyncVersusReverseSSHFS(b *testing.B) {
	var missing []string
	for _, tool := range []string{"sshfs", "fusermount3"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	sftpServer := "/usr/lib/openssh/sftp-server"
	if _, err := os.Stat(sftpServer); err != nil {
		missing = append(missing, sftpServer)
	}
	if len(missing) > 0 {
		b.Fatalf("the comparison needs %s: apt-get install sshfs openssh-sftp-server", strings.Join(missing, ", "))
	}
	tree := filepath.Join(b.TempDir(), "tree")
	files, size := makeTree(b, tree, 50000)
	fmt.Printf("\ntree: %d files, %d MiB in %d packages (a node_modules)\n", files, size>>20, files/20)
	for range b.N {
		for _, p := range []struct {
			name   string
			oneWay time.Duration
			mbit   float64
		}{{"loopback", 0, 0}, {"20 ms round trip, 100 Mbit/s", 10 * time.Millisecond, 100}} {
			sshd := sshmuxtest.Start(b, "Subsystem sftp internal-sftp")
			port := sshd.Port
			if p.oneWay > 0 {
				port = sshmuxtest.Delay(b, sshd.Port, p.oneWay, p.mbit)
			}
			fmt.Printf("\n== %s ==\n", p.name)
			fmt.Printf("%-34s %14s %14s %12s %12s %10s  %s\n", "", "first ready", "walk+read", "save→server", "server→save", "delete", "laptop asleep 20 s")
			syncRow(b, sshd, port, tree, files)
			for _, opts := range []string{"", "dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0"} {
				sshfsRow(b, sshd, port, tree, files, opts, p.oneWay > 0, sftpServer)
			}
		}
	}
}

func syncRow(b *testing.B, sshd *sshmuxtest.Server, port int, tree string, files int) {
	laptop := filepath.Join(b.TempDir(), "project")
	if out, err := exec.Command("cp", "-a", tree, laptop).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v %s", err, out)
	}
	r := newRigVia(b, sshd, port)
	must(b, SaveConfig(FilesFor(r.paths, r.env), Config{Forward: true, Shares: []ShareConfig{{Path: laptop}}}))
	start := time.Now()
	r.start()
	state := func() ShareStatus {
		for _, s := range r.status().Shares {
			return s
		}
		return ShareStatus{}
	}
	r.eventually(10*time.Minute, "ready", func() bool { return state().State == "ready" })
	ready := time.Since(start)
	copyRoot := filepath.Join(r.root, "files", laptop)
	toServer := saves(b, 30, laptop, copyRoot, "node_modules/pkg%05d/lib/edit.js")
	toLaptop := saves(b, 30, copyRoot, laptop, "node_modules/pkg%05d/dist/out.txt")
	del := deleteLatency(b, laptop, copyRoot, 9)

	// The laptop sleeps: its shared connection is stopped (SIGSTOP) for 20 s.
	pid, err := (&sshmux.Master{Path: r.controlPath()}).Alive()
	must(b, err)
	must(b, syscall.Kill(pid, syscall.SIGSTOP))
	t0 := time.Now()
	_, rerr := os.ReadFile(filepath.Join(copyRoot, "node_modules", "pkg00002", "f1.js"))
	readTook := time.Since(t0)
	must(b, os.WriteFile(filepath.Join(copyRoot, "written-while-asleep.txt"), []byte("x"), 0o644))
	time.Sleep(20 * time.Second)
	must(b, syscall.Kill(pid, syscall.SIGCONT))
	thaw := time.Now()
	r.eventually(5*time.Minute, "the server's write after the sleep", func() bool {
		_, err := os.Stat(filepath.Join(laptop, "written-while-asleep.txt"))
		return err == nil
	})
	asleep := fmt.Sprintf("server read %s (%v); its write reached the laptop %s after wake", readTook.Round(time.Microsecond), errText(rerr), time.Since(thaw).Round(10*time.Millisecond))
	fmt.Printf("%-34s %14s %14s %12s %12s %10s  %s\n", "sync (Mutagen engine, inotify)", ready.Round(10*time.Millisecond), "disk speed",
		medP95(toServer), medP95(toLaptop), del.Round(time.Millisecond), asleep)
	r.stop()
	_ = files
}

func sshfsRow(b *testing.B, sshd *sshmuxtest.Server, port int, tree string, files int, opts string, far bool, sftpServer string) {
	mnt := filepath.Join(b.TempDir(), "mnt")
	must(b, os.MkdirAll(mnt, 0o755))
	o := "passive"
	if opts != "" {
		o += "," + opts
	}
	start := time.Now()
	sftp := exec.Command(sftpServer)
	sftp.Dir = tree
	ssh := sshd.SSH("-o", "ControlMaster=no", "-o", "ControlPath=none", "-p", fmt.Sprint(port), sshd.Alias, "sshfs", "-f", "-o", o, "laptop:"+tree, mnt)
	var err error
	if ssh.Stdin, err = sftp.StdoutPipe(); err != nil {
		b.Fatal(err)
	}
	if sftp.Stdin, err = ssh.StdoutPipe(); err != nil {
		b.Fatal(err)
	}
	must(b, sftp.Start())
	must(b, ssh.Start())
	defer func() {
		_ = syscall.Kill(ssh.Process.Pid, syscall.SIGCONT)
		_ = sftp.Process.Kill()
		_ = ssh.Process.Kill()
		_ = sftp.Wait()
		_ = ssh.Wait()
		_ = exec.Command("fusermount3", "-uz", mnt).Run()
	}()
	for {
		if _, err := os.Stat(filepath.Join(mnt, "node_modules")); err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatal("sshfs did not mount within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ready := time.Since(start)
	// A first walk and read, as a dev server's start or `npm ls` does.
	part, scale := ".", 1.0
	if far {
		part, scale = "node_modules/pkg0000*", float64(files)/float64(countFiles(b, tree, "node_modules/pkg0000*"))
	}
	t0 := time.Now()
	if out, err := exec.Command("sh", "-c", "cd "+mnt+" && tar cf - "+part+" | wc -c").CombinedOutput(); err != nil {
		b.Fatalf("read through sshfs: %v %s", err, out)
	}
	walk := time.Duration(float64(time.Since(t0)) * scale)
	walkText := walk.Round(time.Second).String()
	if scale > 1 {
		walkText = "~" + walkText
	}
	toServer := saves(b, 20, tree, mnt, "node_modules/pkg%05d/lib/sshfs-edit.js")
	toLaptop := saves(b, 20, mnt, tree, "node_modules/pkg%05d/dist/sshfs-out.txt")
	del := deleteLatency(b, tree, mnt, 10+rand.IntN(2000))

	// The laptop sleeps: its ssh and sftp-server stopped for 20 s; a reader on the server.
	must(b, syscall.Kill(ssh.Process.Pid, syscall.SIGSTOP))
	must(b, syscall.Kill(sftp.Process.Pid, syscall.SIGSTOP))
	t1 := time.Now()
	reader := exec.Command("cat", filepath.Join(mnt, "node_modules", "pkg00003", "f2.js"))
	must(b, reader.Start())
	time.Sleep(5 * time.Second)
	_ = reader.Process.Kill()
	time.Sleep(time.Second)
	st := procState(reader.Process.Pid)
	time.Sleep(14 * time.Second)
	must(b, syscall.Kill(ssh.Process.Pid, syscall.SIGCONT))
	must(b, syscall.Kill(sftp.Process.Pid, syscall.SIGCONT))
	_ = reader.Wait()
	asleep := fmt.Sprintf("server read: still waiting 1 s after SIGKILL (state %s), ended %s after the sleep began", st, time.Since(t1).Round(100*time.Millisecond))
	name := "reverse sshfs, default caching"
	if opts != "" {
		name = "reverse sshfs, caches off"
	}
	fmt.Printf("%-34s %14s %14s %12s %12s %10s  %s\n", name, ready.Round(10*time.Millisecond), walkText, medP95(toServer), medP95(toLaptop), del.Round(time.Millisecond), asleep)
	// Cleanup of what saves wrote into the tree (it is shared with the next rows).
	_ = exec.Command("sh", "-c", "find "+tree+" -name 'sshfs-*' -delete").Run()
}

// saves writes n files under from (fmt takes a package number) and returns how long each took
// to show under to.
func saves(b *testing.B, n int, from, to, pattern string) []time.Duration {
	var ds []time.Duration
	for i := range n {
		time.Sleep(time.Duration(100+rand.IntN(150)) * time.Millisecond)
		name := fmt.Sprintf(pattern, 100+i)
		body := fmt.Sprintf("save %d at %d\n", i, time.Now().UnixNano())
		start := time.Now()
		must(b, os.WriteFile(filepath.Join(from, name), []byte(body), 0o644))
		for {
			if got, err := os.ReadFile(filepath.Join(to, name)); err == nil && string(got) == body {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s did not show within a minute", name)
			}
			time.Sleep(time.Millisecond)
		}
		ds = append(ds, time.Since(start))
	}
	return ds
}

func deleteLatency(b *testing.B, from, to string, pkg int) time.Duration {
	name := filepath.Join("node_modules", fmt.Sprintf("pkg%05d", pkg), "f0.js")
	if _, err := os.Stat(filepath.Join(to, name)); err != nil {
		b.Fatalf("%s is not there to delete: %v", name, err)
	}
	start := time.Now()
	must(b, os.Remove(filepath.Join(from, name)))
	for {
		if _, err := os.Stat(filepath.Join(to, name)); os.IsNotExist(err) {
			return time.Since(start)
		}
		if time.Since(start) > 2*time.Minute {
			b.Fatal("the delete did not show within 2 minutes")
		}
		time.Sleep(time.Millisecond)
	}
}

func medP95(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("%s/%s", s[len(s)/2].Round(time.Millisecond), s[(len(s)*95+99)/100-1].Round(time.Millisecond))
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 {
		return s[i+2 : i+3]
	}
	return "?"
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func countFiles(b *testing.B, root, glob string) int {
	out, err := exec.Command("sh", "-c", "cd "+root+" && find "+glob+" -type f | wc -l").Output()
	if err != nil {
		b.Fatal(err)
	}
	var n int
	fmt.Sscan(strings.TrimSpace(string(out)), &n)
	return n
}

// makeTree writes n files like a node_modules: packages of 3 folders with 3-10 files each,
// sizes log-normal around 1.8 KB (mean about 3.7 KB).
func makeTree(b *testing.B, root string, n int) (int, int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = "abcdefghijklmnopqrstuvwxyz \n"[rng.IntN(28)]
	}
	made, pkg := 0, 0
	var total int64
	for made < n {
		for _, sub := range []string{"", "lib", "dist"} {
			dir := filepath.Join(root, "node_modules", fmt.Sprintf("pkg%05d", pkg), sub)
			must(b, os.MkdirAll(dir, 0o755))
			for k := range 3 + rng.IntN(8) {
				if made >= n {
					break
				}
				size := min(int(math.Exp(rng.NormFloat64()*1.2+7.5)), len(buf))
				must(b, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.js", k)), buf[:size], 0o644))
				made++
				total += int64(size)
			}
		}
		pkg++
	}
	return made, total
}
