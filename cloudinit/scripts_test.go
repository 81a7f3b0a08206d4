package cloudinit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/internal/mount/loopdev/loopdevtest"
	"github.com/dockbridge/dockbridge/internal/schedule"
)

// These tests run the embedded scripts (the bytes the document ships) with bash against real
// loop devices, with every path pointed into a temp dir and systemctl replaced by a log line.
// They need root and loop devices: missing, they fail (skipped only under -short).

const testVolumeID = 4711

// scriptEnv is one sandbox for the scripts: rendered config, log, markers, fstab, mount point.
type scriptEnv struct {
	dir, lib, config, log, failed, complete, info, fstab, healthLog, mp string
	device                                                              string // the by-id style symlink
}

// newScriptEnv renders dockbridge.env from p through the production template. p.Volume.Device
// and MountPoint are set here: a symlink in the sandbox pointing to target, and a temp dir.
func newScriptEnv(t *testing.T, target string, edit func(p *Params)) *scriptEnv {
	t.Helper()
	dir := t.TempDir()
	e := &scriptEnv{
		dir:       dir,
		lib:       extractScripts(t),
		config:    filepath.Join(dir, "dockbridge.env"),
		log:       filepath.Join(dir, "log", "dockbridge-setup.log"),
		failed:    filepath.Join(dir, "log", "dockbridge-setup-failed"),
		complete:  filepath.Join(dir, "log", "cloud-init-complete"),
		info:      filepath.Join(dir, "etc", "volume-info"),
		fstab:     filepath.Join(dir, "etc", "fstab"),
		healthLog: filepath.Join(dir, "log", "docker-volume-health.log"),
		mp:        filepath.Join(dir, "var-lib-docker"),
		device:    filepath.Join(dir, "by-id", fmt.Sprintf("scsi-0HC_Volume_%d", testVolumeID)),
	}
	if err := os.MkdirAll(filepath.Dir(e.device), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, e.device); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(e.fstab), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.fstab, []byte("# /etc/fstab: static file system information.\nUUID=1111-2222 / ext4 errors=remount-ro 0 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	p := testParams(t)
	p.Volume.Device = e.device
	p.Volume.MountPoint = e.mp
	p.Volume.DeviceTimeout = 5 * time.Second
	if edit != nil {
		edit(&p)
	}
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, "dockbridge.env.tmpl", newTemplateData(p)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Unmount whatever the scripts mounted, before loopdevtest detaches the device.
		for range 5 {
			if exec.Command("mountpoint", "-q", e.mp).Run() != nil {
				return
			}
			if out, err := exec.Command("umount", e.mp).CombinedOutput(); err != nil {
				t.Logf("umount %s: %v %s", e.mp, err, out)
			}
		}
	})
	return e
}

func (e *scriptEnv) environ(extra ...string) []string {
	return append(append(os.Environ(),
		"DOCKBRIDGE_LIB_DIR="+e.lib,
		"DOCKBRIDGE_CONFIG="+e.config,
		"DOCKBRIDGE_LOG="+e.log,
		"DOCKBRIDGE_FAILED_MARKER="+e.failed,
		"DOCKBRIDGE_COMPLETE_MARKER="+e.complete,
		"DOCKBRIDGE_VOLUME_INFO="+e.info,
		"DOCKBRIDGE_FSTAB="+e.fstab,
		"DOCKBRIDGE_HEALTH_LOG="+e.healthLog,
		"DOCKBRIDGE_SECRETS_DIR="+filepath.Join(e.dir, "etc", "secrets"),
		"DOCKBRIDGE_SKIP_SYSTEMCTL=1",
		"DOCKBRIDGE_TAG=dockbridge-test",
	), extra...)
}

// run runs one embedded script with bash and returns its combined output and exit code.
func (e *scriptEnv) run(t *testing.T, script string, extra ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join(e.lib, script))
	cmd.Env = e.environ(extra...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("run %s: %v\n%s", script, err, out)
		return "", -1
	}
}

// prepare runs prepare-volume.sh and requires the given exit code.
func (e *scriptEnv) prepare(t *testing.T, wantExit int) string {
	t.Helper()
	out, code := e.run(t, "prepare-volume.sh")
	if code != wantExit {
		t.Fatalf("prepare-volume.sh exit %d, want %d; output:\n%s", code, wantExit, out)
	}
	return out
}

func (e *scriptEnv) volumeInfo(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(e.info)
	if err != nil {
		t.Fatalf("volume-info: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("volume-info line %q is not KEY=VALUE", l)
		}
		m[k] = v
	}
	return m
}

// requireMounted checks that dev is mounted at e.mp and returns the filesystem UUID.
func (e *scriptEnv) requireMounted(t *testing.T, dev, fstype string) string {
	t.Helper()
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE,FSTYPE", "--mountpoint", e.mp).CombinedOutput()
	if err != nil {
		t.Fatalf("%s is not mounted: %v %s", e.mp, err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != dev || got[1] != fstype {
		t.Fatalf("%s has %q mounted, want %s (%s)", e.mp, out, dev, fstype)
	}
	return blkidUUID(t, dev)
}

func (e *scriptEnv) fstabEntries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(e.fstab)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[1] == e.mp {
			lines = append(lines, l)
		}
	}
	return lines
}

// requireFailed checks the failure marker names the reason and nothing was mounted.
func (e *scriptEnv) requireFailed(t *testing.T, reason string) {
	t.Helper()
	b, err := os.ReadFile(e.failed)
	if err != nil {
		t.Fatalf("failure marker not written: %v", err)
	}
	if !strings.Contains(string(b), "REASON=") || !strings.Contains(string(b), reason) || !strings.Contains(string(b), "TIME=") {
		t.Errorf("failure marker does not give the reason %q:\n%s", reason, b)
	}
	if exec.Command("mountpoint", "-q", e.mp).Run() == nil {
		t.Errorf("%s was mounted although the volume was refused", e.mp)
	}
	if _, err := os.Stat(e.complete); err == nil {
		t.Errorf("completion marker written on failure")
	}
	logb, _ := os.ReadFile(e.log)
	if !strings.Contains(string(logb), "FAILED: ") || !strings.Contains(string(logb), "systemctl mask docker.service docker.socket") {
		t.Errorf("log does not say loudly that it failed and that Docker is masked:\n%s", logb)
	}
}

func blkidUUID(t *testing.T, dev string) string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "UUID", dev).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", dev, err)
	}
	return strings.TrimSpace(string(out))
}

func deviceHash(t *testing.T, dev string) [32]byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// withData makes an ext4 filesystem with a file on it, as a volume from an earlier server.
func withData(t *testing.T, dev string) (uuid string) {
	t.Helper()
	sh(t, "mkfs.ext4", "-q", dev)
	mnt := t.TempDir()
	sh(t, "mount", dev, mnt)
	if err := os.WriteFile(filepath.Join(mnt, "precious"), []byte("container state"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "umount", mnt)
	return blkidUUID(t, dev)
}

func readPrecious(t *testing.T, mp string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mp, "precious"))
	if err != nil {
		t.Fatalf("data on the volume lost: %v", err)
	}
	return string(b)
}

const smallVol = 64 << 20

func TestPrepareVolumeBlankExt4(t *testing.T) {
	dev := loopdevtest.New(t, smallVol)
	e := newScriptEnv(t, dev, nil)
	out := e.prepare(t, 0)
	uuid := e.requireMounted(t, dev, "ext4")
	if !strings.Contains(out, "is blank") || !strings.Contains(out, "formatted") {
		t.Errorf("output does not report the format:\n%s", out)
	}
	info := e.volumeInfo(t)
	want := map[string]string{"VOLUME_ID": "4711", "DEVICE": e.device, "DEVICE_RESOLVED": dev, "FS_UUID": uuid,
		"FS_TYPE": "ext4", "MOUNTPOINT": e.mp, "FORMATTED_AT_BOOT": "yes", "ENV_NAME": "test",
		"LABELS": "env=test,managed-by=dockbridge", "ROOT_DISK_STATE_ASIDE": ""}
	for k, v := range want {
		if info[k] != v {
			t.Errorf("volume-info %s=%q, want %q", k, info[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, info["PREPARED_AT"]); err != nil {
		t.Errorf("volume-info PREPARED_AT: %v", err)
	}
	wantLine := fmt.Sprintf("UUID=%s %s ext4 defaults,nofail,discard 0 2", uuid, e.mp)
	if got := e.fstabEntries(t); len(got) != 1 || got[0] != wantLine {
		t.Errorf("fstab entries for %s: %q, want [%q]", e.mp, got, wantLine)
	}
	if b, _ := os.ReadFile(e.fstab); !strings.Contains(string(b), "UUID=1111-2222 / ext4") {
		t.Errorf("fstab lost its other lines:\n%s", b)
	}
	if _, err := os.Stat(e.failed); err == nil {
		t.Errorf("failure marker written on success")
	}

	// Run again while mounted: nothing changes, no format, no second fstab line.
	if err := os.WriteFile(filepath.Join(e.mp, "precious"), []byte("container state"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = e.prepare(t, 0)
	if !strings.Contains(out, "already mounted") || strings.Contains(out, "formatting") {
		t.Errorf("second run while mounted:\n%s", out)
	}
	// And after a reboot-like unmount: mounted as it is.
	sh(t, "umount", e.mp)
	out = e.prepare(t, 0)
	if strings.Contains(out, "formatting") {
		t.Errorf("re-run formatted the volume:\n%s", out)
	}
	if got := e.requireMounted(t, dev, "ext4"); got != uuid {
		t.Errorf("UUID changed from %s to %s", uuid, got)
	}
	if readPrecious(t, e.mp) != "container state" {
		t.Errorf("data changed")
	}
	if got := e.fstabEntries(t); len(got) != 1 {
		t.Errorf("fstab has %d lines for %s after re-runs: %q", len(got), e.mp, got)
	}
	if e.volumeInfo(t)["FORMATTED_AT_BOOT"] != "no" {
		t.Errorf("volume-info says formatted on a re-run")
	}
}

func TestPrepareVolumeBlankXFS(t *testing.T) {
	dev := loopdevtest.New(t, 512<<20) // mkfs.xfs wants at least 300 MiB
	e := newScriptEnv(t, dev, func(p *Params) { p.Volume.Filesystem = "xfs" })
	e.prepare(t, 0)
	uuid := e.requireMounted(t, dev, "xfs")
	wantLine := fmt.Sprintf("UUID=%s %s xfs defaults,nofail,discard 0 0", uuid, e.mp)
	if got := e.fstabEntries(t); len(got) != 1 || got[0] != wantLine {
		t.Errorf("fstab: %q, want %q", got, wantLine)
	}
}

func TestPrepareVolumeExistingFilesystemIsMountedNotFormatted(t *testing.T) {
	dev := loopdevtest.New(t, smallVol)
	uuid := withData(t, dev)
	// The filesystem param says xfs: it only applies to blank volumes.
	e := newScriptEnv(t, dev, func(p *Params) { p.Volume.Filesystem = "xfs" })
	out := e.prepare(t, 0)
	if strings.Contains(out, "formatting") || !strings.Contains(out, "mounting it as it is") {
		t.Errorf("output:\n%s", out)
	}
	if got := e.requireMounted(t, dev, "ext4"); got != uuid {
		t.Errorf("UUID changed from %s to %s: the volume was reformatted", uuid, got)
	}
	if readPrecious(t, e.mp) != "container state" {
		t.Error("data changed")
	}
	if e.volumeInfo(t)["FORMATTED_AT_BOOT"] != "no" {
		t.Error("volume-info says formatted")
	}
}

func TestPrepareVolumeExpectedUUID(t *testing.T) {
	t.Run("match", func(t *testing.T) {
		dev := loopdevtest.New(t, smallVol)
		uuid := withData(t, dev)
		e := newScriptEnv(t, dev, func(p *Params) { p.Volume.ExpectedUUID = strings.ToUpper(uuid) })
		e.prepare(t, 0)
		e.requireMounted(t, dev, "ext4")
	})
	t.Run("mismatch is the wrong volume", func(t *testing.T) {
		dev := loopdevtest.New(t, smallVol)
		withData(t, dev)
		before := deviceHash(t, dev)
		e := newScriptEnv(t, dev, func(p *Params) { p.Volume.ExpectedUUID = "0b6e2a4c-3f1d-4e5a-9c7b-8d2f1e0a9b3c" })
		e.prepare(t, 1)
		e.requireFailed(t, "wrong volume")
		if deviceHash(t, dev) != before {
			t.Error("device bytes changed")
		}
	})
	t.Run("blank device refused", func(t *testing.T) {
		dev := loopdevtest.New(t, smallVol)
		before := deviceHash(t, dev)
		e := newScriptEnv(t, dev, func(p *Params) { p.Volume.ExpectedUUID = "0b6e2a4c-3f1d-4e5a-9c7b-8d2f1e0a9b3c" })
		e.prepare(t, 1)
		e.requireFailed(t, "is blank but a filesystem with UUID 0b6e2a4c-3f1d-4e5a-9c7b-8d2f1e0a9b3c was expected")
		if deviceHash(t, dev) != before {
			t.Error("device bytes changed")
		}
	})
}

// Anything that is not blank and not ext4/xfs is refused without a byte written.
func TestPrepareVolumeRefusesForeignContent(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, dev string)
		reason string
	}{
		{"dos partition table", func(t *testing.T, dev string) {
			cmd := exec.Command("sfdisk", "--quiet", dev)
			cmd.Stdin = strings.NewReader("label: dos\n,16M,L\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v %s", err, out)
			}
		}, "dos partition table"},
		{"gpt partition table", func(t *testing.T, dev string) {
			cmd := exec.Command("sfdisk", "--quiet", dev)
			cmd.Stdin = strings.NewReader("label: gpt\n,16M,L\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v %s", err, out)
			}
		}, "gpt partition table"},
		{"LUKS header", func(t *testing.T, dev string) {
			key := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(key, []byte("test-only-passphrase"), 0o600); err != nil {
				t.Fatal(err)
			}
			requireTool(t, "cryptsetup")
			sh(t, "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", "--key-file", key, dev)
		}, "LUKS"},
		{"ext2 filesystem", func(t *testing.T, dev string) { sh(t, "mkfs.ext2", "-q", dev) }, "ext2 filesystem"},
		{"unknown data", func(t *testing.T, dev string) {
			f, err := os.OpenFile(dev, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(bytes.Repeat([]byte("not a filesystem "), 1000), 4096); err != nil {
				t.Fatal(err)
			}
		}, "unknown data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := loopdevtest.New(t, smallVol)
			tt.setup(t, dev)
			before := deviceHash(t, dev)
			e := newScriptEnv(t, dev, nil)
			// Docker state already on the root disk stays where it is.
			if err := os.MkdirAll(filepath.Join(e.mp, "image"), 0o755); err != nil {
				t.Fatal(err)
			}
			out := e.prepare(t, 1)
			e.requireFailed(t, tt.reason)
			if !strings.Contains(out, "refusing") {
				t.Errorf("output does not say it refuses:\n%s", out)
			}
			if deviceHash(t, dev) != before {
				t.Error("device bytes changed")
			}
			if _, err := os.Stat(filepath.Join(e.mp, "image")); err != nil {
				t.Errorf("root-disk state touched on refusal: %v", err)
			}
			if b, _ := os.ReadFile(e.fstab); strings.Contains(string(b), e.mp) {
				t.Errorf("fstab changed on refusal:\n%s", b)
			}
		})
	}
}

func TestPrepareVolumeDeviceMissingTimesOut(t *testing.T) {
	loopdevtest.Require(t)
	e := newScriptEnv(t, "/dev/dockbridge-test-no-such-device", func(p *Params) { p.Volume.DeviceTimeout = 2 * time.Second })
	out := e.prepare(t, 1)
	e.requireFailed(t, "did not appear within 2s")
	if !strings.Contains(out, "is the volume attached") {
		t.Errorf("output does not hint at the fix:\n%s", out)
	}
}

func TestPrepareVolumeRootDiskState(t *testing.T) {
	t.Run("new volume gets a copy and the original is set aside", func(t *testing.T) {
		dev := loopdevtest.New(t, smallVol)
		e := newScriptEnv(t, dev, nil)
		if err := os.MkdirAll(filepath.Join(e.mp, "image", "overlay2"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.mp, "image", "repositories.json"), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		e.prepare(t, 0)
		e.requireMounted(t, dev, "ext4")
		aside := e.volumeInfo(t)["ROOT_DISK_STATE_ASIDE"]
		if !strings.HasPrefix(aside, e.mp+".pre-dockbridge.") {
			t.Fatalf("ROOT_DISK_STATE_ASIDE=%q", aside)
		}
		for _, dir := range []string{e.mp, aside} {
			if b, err := os.ReadFile(filepath.Join(dir, "image", "repositories.json")); err != nil || string(b) != "{}" {
				t.Errorf("%s: %v %q", dir, err, b)
			}
		}
	})
	t.Run("existing volume is not overwritten", func(t *testing.T) {
		dev := loopdevtest.New(t, smallVol)
		uuid := withData(t, dev)
		e := newScriptEnv(t, dev, nil)
		if err := os.MkdirAll(e.mp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.mp, "precious"), []byte("stale root-disk copy"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := e.prepare(t, 0)
		if got := e.requireMounted(t, dev, "ext4"); got != uuid {
			t.Fatal("volume reformatted")
		}
		if readPrecious(t, e.mp) != "container state" {
			t.Error("volume data overwritten by the root-disk state")
		}
		aside := e.volumeInfo(t)["ROOT_DISK_STATE_ASIDE"]
		if b, err := os.ReadFile(filepath.Join(aside, "precious")); err != nil || string(b) != "stale root-disk copy" {
			t.Errorf("root-disk state not kept aside at %q: %v", aside, err)
		}
		if !strings.Contains(out, "NOT copying") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("something else mounted at the mount point", func(t *testing.T) {
		dev := loopdevtest.New(t, smallVol)
		other := loopdevtest.New(t, smallVol)
		sh(t, "mkfs.ext4", "-q", other)
		e := newScriptEnv(t, dev, nil)
		if err := os.MkdirAll(e.mp, 0o755); err != nil {
			t.Fatal(err)
		}
		sh(t, "mount", other, e.mp)
		before := deviceHash(t, dev)
		out := e.prepare(t, 1)
		if !strings.Contains(out, "already has "+other+" mounted") {
			t.Errorf("output:\n%s", out)
		}
		if deviceHash(t, dev) != before {
			t.Error("device bytes changed")
		}
	})
}

// The health check against a real, filling filesystem.
func TestHealthCheckLevels(t *testing.T) {
	dev := loopdevtest.New(t, smallVol)
	e := newScriptEnv(t, dev, nil)
	e.prepare(t, 0)
	e.requireMounted(t, dev, "ext4")

	check := func(wantLevel HealthLevel, wantExit int) HealthRecord {
		t.Helper()
		out, code := e.run(t, "docker-volume-health-check.sh", "DOCKBRIDGE_HEALTH_SKIP_DOCKER=1")
		if code != wantExit {
			t.Fatalf("health check exit %d, want %d:\n%s", code, wantExit, out)
		}
		b, err := os.ReadFile(e.healthLog)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		r, err := ParseHealthLine(lines[len(lines)-1])
		if err != nil {
			t.Fatal(err)
		}
		if r.Level != wantLevel {
			t.Fatalf("level %s, want %s: %+v", r.Level, wantLevel, r)
		}
		if time.Since(r.Time) > time.Hour || r.MountPoint != e.mp || r.WarnPct != 70 || r.CritPct != 85 {
			t.Errorf("record: %+v", r)
		}
		return r
	}
	fillTo := func(pct int) {
		t.Helper()
		var st syscall.Statfs_t
		if err := syscall.Statfs(e.mp, &st); err != nil {
			t.Fatal(err)
		}
		used := int64(st.Blocks-st.Bfree) * int64(st.Bsize)
		total := used + int64(st.Bavail)*int64(st.Bsize) // what df's Use% is computed on
		need := total*int64(pct)/100 - used + int64(st.Bsize)
		f := filepath.Join(e.mp, fmt.Sprintf("fill-%d", pct))
		sh(t, "fallocate", "-l", fmt.Sprint(need), f)
	}

	r := check(HealthOK, 0)
	if r.UsedPct < 0 || r.UsedPct >= 70 || r.SizeBytes <= 0 || r.AvailBytes <= 0 {
		t.Errorf("OK record: %+v", r)
	}
	fillTo(75)
	if r := check(HealthWarning, 0); r.UsedPct < 70 || r.UsedPct >= 85 || !strings.Contains(r.Message, "warning at 70%") {
		t.Errorf("WARNING record: %+v", r)
	}
	fillTo(86)
	if r := check(HealthCritical, 2); r.UsedPct < 85 || !strings.Contains(r.Message, "critical at 85%") {
		t.Errorf("CRITICAL record: %+v", r)
	}

	// A read-only volume is critical.
	sh(t, "mount", "-o", "remount,ro", e.mp)
	if r := check(HealthCritical, 2); !strings.Contains(r.Message, "not writable") {
		t.Errorf("read-only record: %+v", r)
	}
	// An unmounted volume is critical, and the numbers are unknown.
	sh(t, "umount", e.mp)
	if r := check(HealthCritical, 2); r.UsedPct != -1 || r.SizeBytes != -1 || !strings.Contains(r.Message, "not mounted") {
		t.Errorf("unmounted record: %+v", r)
	}
	b, _ := os.ReadFile(e.healthLog)
	if n := strings.Count(string(b), "\n"); n != 5 {
		t.Errorf("health log has %d lines after 5 runs:\n%s", n, b)
	}
}

// fakePluginDocker is a stand-in for the docker CLI with a hetzner plugin whose state is the
// file state ("true", "false", or missing: not installed). `docker info` reports root as
// Docker's root dir; `docker plugin enable` succeeds unless the file refuse exists, and every
// plugin call is appended to the file calls.
func fakePluginDocker(t *testing.T, root string) (bin, state, refuse, calls string) {
	t.Helper()
	bin = t.TempDir()
	state, refuse, calls = filepath.Join(bin, "state"), filepath.Join(bin, "refuse"), filepath.Join(bin, "calls")
	script := `#!/bin/sh
case "$1 $2" in
"info "*) echo '` + root + `' ;;
"plugin inspect")
	echo "$*" >>'` + calls + `'
	[ -f '` + state + `' ] || { echo "Error: No such plugin: hetzner:latest" >&2; exit 1; }
	cat '` + state + `' ;;
"plugin enable")
	echo "$*" >>'` + calls + `'
	if [ -f '` + refuse + `' ]; then printf 'Error response from daemon: dial unix\nhetzner.sock: connect: connection refused\n' >&2; exit 1; fi
	echo true >'` + state + `'; echo hetzner:latest ;;
*) echo "fake docker: $*" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, state, refuse, calls
}

// The health check watches the hetzner volume plugin once up has installed it (its marker on
// the volume): disabled (Docker gave up on it) or missing is CRITICAL; a disabled one is
// enabled again, once per run, and the log line says so.
func TestHealthCheckReenablesTheVolumePlugin(t *testing.T) {
	dev := loopdevtest.New(t, smallVol)
	e := newScriptEnv(t, dev, nil)
	e.prepare(t, 0)
	bin, state, refuse, calls := fakePluginDocker(t, e.mp)
	marker := filepath.Join(e.mp, "dockbridge-volume-plugin")

	check := func(wantLevel HealthLevel, wantExit int) HealthRecord {
		t.Helper()
		out, code := e.run(t, "docker-volume-health-check.sh", "PATH="+bin+":"+os.Getenv("PATH"))
		if code != wantExit {
			t.Fatalf("health check exit %d, want %d:\n%s", code, wantExit, out)
		}
		b, _ := os.ReadFile(e.healthLog)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		r, err := ParseHealthLine(lines[len(lines)-1])
		if err != nil {
			t.Fatal(err)
		}
		if r.Level != wantLevel {
			t.Fatalf("level %s, want %s: %q", r.Level, wantLevel, r.Message)
		}
		return r
	}
	enables := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "plugin enable")
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Not installed by up (no marker; up --no-volume-plugin): not looked at.
	check(HealthOK, 0)
	if b, _ := os.ReadFile(calls); len(b) != 0 {
		t.Fatalf("the plugin was looked at without up's marker: %s", b)
	}
	write(marker, "rootfs=x\n")

	write(state, "true\n")
	check(HealthOK, 0)

	// Docker gave up on it: CRITICAL, enabled again, and the line says so.
	write(state, "false\n")
	r := check(HealthCritical, 2)
	if !strings.Contains(r.Message, "volume plugin hetzner:latest was disabled: re-enabled it") {
		t.Errorf("message %q does not say it re-enabled the plugin", r.Message)
	}
	if n := enables(); n != 1 {
		t.Errorf("%d enable calls, want 1", n)
	}
	// With up's --timeout: Docker's default (30 s) fails a slow Create or Mount in Docker
	// while the plugin completes it.
	if b, _ := os.ReadFile(calls); !strings.Contains(string(b), strings.Join(dockbridge.PluginEnableArgs("hetzner:latest"), " ")+"\n") {
		t.Errorf("the plugin was not enabled with `docker %s`; calls:\n%s", strings.Join(dockbridge.PluginEnableArgs("hetzner:latest"), " "), b)
	}
	check(HealthOK, 0)

	// Enabling fails: one attempt, CRITICAL, Docker's error in one line.
	write(state, "false\n")
	write(refuse, "")
	r = check(HealthCritical, 2)
	if !strings.Contains(r.Message, "volume plugin hetzner:latest is disabled, re-enabling failed: Error response from daemon: dial unix hetzner.sock") {
		t.Errorf("message %q does not carry the failed attempt", r.Message)
	}
	if n := enables(); n != 2 {
		t.Errorf("%d enable calls after the failed run, want 2 (one per run)", n)
	}

	// Installed by up, then removed.
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	r = check(HealthCritical, 2)
	if !strings.Contains(r.Message, "volume plugin hetzner:latest is missing: docker dockbridge up installs it") {
		t.Errorf("message %q does not say the plugin is missing", r.Message)
	}
	if n := enables(); n != 2 {
		t.Errorf("a missing plugin was enabled")
	}
}

// rotate-host-key.sh (run by up over SSH) on a key pair in a temp dir, with sshd -t and
// systemctl replaced by stand-ins that log their calls: every step can be run again.
func TestRotateHostKeyScript(t *testing.T) {
	requireTool(t, "ssh-keygen")
	dir := t.TempDir()
	key := filepath.Join(dir, "ssh_host_ed25519_key")
	sh(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	oldPriv, _ := os.ReadFile(key)
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	for _, name := range []string{"sshd", "systemctl"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\necho \""+name+" $*\" >>"+calls+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := filepath.Join(extractScripts(t), "rotate-host-key.sh")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "DOCKBRIDGE_HOST_KEY="+key)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("rotate-host-key.sh %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	pubOf := func(path string) string {
		t.Helper()
		out, err := exec.Command("ssh-keygen", "-y", "-f", path).Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out))
		return f[0] + " " + f[1]
	}
	old := pubOf(key)

	next := run("prepare", "")
	if !strings.HasPrefix(next, "ssh-ed25519 ") || next == old {
		t.Fatalf("prepare printed %q (old key %q)", next, old)
	}
	if fi, err := os.Stat(key + ".dockbridge-next"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the next key: %v %v, want a 0600 file", fi, err)
	}
	if again := run("prepare", ""); again != next {
		t.Fatalf("prepare again made another key: %q, then %q", next, again)
	}
	if b, _ := os.ReadFile(calls); len(b) != 0 {
		t.Fatalf("prepare touched sshd: %s", b)
	}

	if got := run("commit"); got != next {
		t.Fatalf("commit printed %q, want %q", got, next)
	}
	if pubOf(key) != next || !strings.HasPrefix(readFile(t, key+".pub"), next) {
		t.Fatalf("the key in place is not the next key")
	}
	if _, err := os.Stat(key + ".dockbridge-next"); !os.IsNotExist(err) {
		t.Fatalf("the next key is still there: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); bytes.Equal(b, oldPriv) {
			t.Fatalf("the old private key is still on disk as %s", e.Name())
		}
	}
	if b, _ := os.ReadFile(calls); string(b) != "sshd -t\nsystemctl reload ssh.service\n" {
		t.Fatalf("commit ran %q, want sshd -t, then a reload", b)
	}

	// After an interruption: commit again changes nothing; prepare with the key in place
	// (what the client pinned) makes no new key.
	if got := run("commit"); got != next {
		t.Fatalf("commit again: %q", got)
	}
	if got := run("prepare", next); got != next {
		t.Fatalf("prepare after the commit with the key the client pinned: %q, want %q", got, next)
	}
	if _, err := os.Stat(key + ".dockbridge-next"); !os.IsNotExist(err) {
		t.Fatalf("prepare made a key although the pinned one is in place: %v", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fakeBin puts tiny stand-ins for docker and dockerd first on PATH: `docker info` reports
// root as Docker's root dir. Used only where no real daemon can be pointed at a loop device.
func fakeBin(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"docker":  "#!/bin/sh\necho '" + root + "'\n",
		"dockerd": "#!/bin/sh\necho 'Docker version 0.0.0-test'\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dockbridge-setup.sh end to end in test mode (systemctl skipped): volume, Docker check,
// health check, completion marker.
func TestSetupScript(t *testing.T) {
	t.Run("success writes the completion marker", func(t *testing.T) {
		dev := loopdevtest.New(t, smallVol)
		e := newScriptEnv(t, dev, func(p *Params) { p.Docker.NoInstall = true })
		bin := fakeBin(t, e.mp)
		out, code := e.run(t, "dockbridge-setup.sh",
			"PATH="+bin+":"+os.Getenv("PATH"),
			"DOCKBRIDGE_HEALTH_CHECK="+filepath.Join(e.lib, "docker-volume-health-check.sh"))
		if code != 0 {
			t.Fatalf("setup exit %d:\n%s", code, out)
		}
		e.requireMounted(t, dev, "ext4")
		b, err := os.ReadFile(e.complete)
		if err != nil {
			t.Fatalf("completion marker: %v\n%s", err, out)
		}
		if _, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b))); err != nil {
			t.Errorf("completion marker %q is not a timestamp: %v", b, err)
		}
		if _, err := os.Stat(e.failed); err == nil {
			t.Error("failure marker written on success")
		}
		hb, err := os.ReadFile(e.healthLog)
		if err != nil {
			t.Fatalf("health check did not run: %v", err)
		}
		if r, err := ParseHealthLine(strings.TrimSpace(string(hb))); err != nil || r.Level != HealthOK {
			t.Errorf("health after setup: %+v %v", r, err)
		}
		// The secrets directory lives on the volume (root only), where the plugin finds it
		// on the next server too.
		link := filepath.Join(e.dir, "etc", "secrets")
		if target, err := os.Readlink(link); err != nil || target != filepath.Join(e.mp, "dockbridge-secrets") {
			t.Errorf("%s -> %q (%v), want a link to the volume's dockbridge-secrets", link, target, err)
		}
		if fi, err := os.Stat(link); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("secrets directory: %v %v, want a 0700 directory", fi, err)
		}
		// Order: volume before Docker is started, Docker verified before completion.
		logb, _ := os.ReadFile(e.log)
		l := string(logb)
		iVol, iStart, iDone := strings.Index(l, "volume ready"), strings.Index(l, "systemctl restart docker.service"), strings.Index(l, "setup complete")
		if iVol < 0 || iStart < iVol || iDone < iStart {
			t.Errorf("steps out of order (volume %d, docker start %d, complete %d):\n%s", iVol, iStart, iDone, l)
		}
	})

	t.Run("docker root dir off the volume fails", func(t *testing.T) {
		// The real engine on this machine keeps its root on its own disk, not on our loop
		// device: exactly the "Docker on the root disk" case setup must refuse to bless.
		requireTool(t, "docker")
		requireTool(t, "dockerd")
		dev := loopdevtest.New(t, smallVol)
		e := newScriptEnv(t, dev, func(p *Params) { p.Docker.NoInstall = true })
		out, code := e.run(t, "dockbridge-setup.sh")
		if code == 0 {
			t.Fatalf("setup succeeded although Docker's root dir is not on the volume:\n%s", out)
		}
		b, err := os.ReadFile(e.failed)
		if err != nil || !strings.Contains(string(b), "not the volume") {
			t.Errorf("failure marker: %v %q\n%s", err, b, out)
		}
		if _, err := os.Stat(e.complete); err == nil {
			t.Error("completion marker written on failure")
		}
		logb, _ := os.ReadFile(e.log)
		if !strings.Contains(string(logb), "skipped: systemctl stop docker.socket docker.service") || !strings.Contains(string(logb), "skipped: systemctl mask docker.service docker.socket") {
			t.Errorf("Docker not stopped and masked on failure:\n%s", logb)
		}
	})

	t.Run("volume failure stops before Docker", func(t *testing.T) {
		loopdevtest.Require(t)
		e := newScriptEnv(t, "/dev/dockbridge-test-no-such-device", func(p *Params) {
			p.Volume.DeviceTimeout = time.Second
			p.Docker.NoInstall = true
		})
		bin := fakeBin(t, e.mp)
		out, code := e.run(t, "dockbridge-setup.sh", "PATH="+bin+":"+os.Getenv("PATH"))
		if code != 1 {
			t.Fatalf("setup exit %d, want 1:\n%s", code, out)
		}
		e.requireFailed(t, "did not appear")
		if strings.Contains(out, "restart docker.service") || strings.Contains(out, "unmask") {
			t.Errorf("setup went on to Docker after the volume failed:\n%s", out)
		}
	})
}

// The health check asks the server binary on the volume about the scheduled backups (`backup
// health`) and takes its WARNING and CRITICAL lines. Without the binary nothing changes.
func TestHealthCheckReportsScheduledBackups(t *testing.T) {
	if got := strings.TrimPrefix(schedule.DefaultBinary, schedule.DefaultMountPoint); got != "/dockbridge/bin/dockbridge-server" || schedule.DefaultMountPoint != DefaultMountPoint {
		t.Fatalf("the health check runs ${mp}/dockbridge/bin/dockbridge-server; the server binary is at %s", schedule.DefaultBinary)
	}
	dev := loopdevtest.New(t, smallVol)
	e := newScriptEnv(t, dev, nil)
	e.prepare(t, 0)
	e.requireMounted(t, dev, "ext4")
	sb := filepath.Join(e.mp, "dockbridge", "bin", "dockbridge-server")
	if err := os.MkdirAll(filepath.Dir(sb), 0o755); err != nil {
		t.Fatal(err)
	}
	check := func(says string, wantLevel HealthLevel, wantExit int, wantMsg string) {
		t.Helper()
		if says != "-" {
			script := "#!/bin/sh\n[ \"$*\" = 'backup health' ] || { echo \"called with $*\" >&2; exit 2; }\n" + says + "\n"
			if err := os.WriteFile(sb, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		out, code := e.run(t, "docker-volume-health-check.sh", "DOCKBRIDGE_HEALTH_SKIP_DOCKER=1")
		if code != wantExit {
			t.Fatalf("%s: health check exit %d, want %d:\n%s", says, code, wantExit, out)
		}
		b, _ := os.ReadFile(e.healthLog)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		r, err := ParseHealthLine(lines[len(lines)-1])
		if err != nil {
			t.Fatal(err)
		}
		if r.Level != wantLevel || !strings.Contains(r.Message, wantMsg) {
			t.Fatalf("%s: %s %q, want %s with %q", says, r.Level, r.Message, wantLevel, wantMsg)
		}
	}
	check("-", HealthOK, 0, "volume mounted, writable")
	check("true", HealthOK, 0, "volume mounted, writable")
	check(`echo 'WARNING the last backup of db is 2d1h old (schedule db, every 24h): more than twice the interval'`, HealthWarning, 0, "the last backup of db is 2d1h old")
	check(`echo 'WARNING stale'; echo 'CRITICAL backup of db (schedule db) failed 2 times in a row'`, HealthCritical, 2, "stale; backup of db (schedule db) failed 2 times in a row")
	// What it says on stderr (a crash) is not a verdict; its own errors come as WARNING lines.
	check(`echo 'panic: boom' >&2; exit 2`, HealthOK, 0, "volume mounted, writable")
	check(`echo 'WARNING scheduled backups: state.json: unexpected end of JSON input'`, HealthWarning, 0, "scheduled backups: state.json")
}
