package integration

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

func TestPluginWriteThenReadAcrossContainers(t *testing.T) {
	name := volName(t)
	createVolume(t, name, "size=10")
	run(t, name, "echo written-by-A > /data/file && sync")
	if hostMounted(t, name) {
		t.Error("the volume is still mounted after its only container exited")
	}
	if got := strings.TrimSpace(run(t, name, "cat /data/file")); got != "written-by-A" {
		t.Fatalf("container B read %q", got)
	}
	v := simVolume(t, name)
	if v == nil || v.ServerID != env.LocalID || v.Labels["dockbridge/fs-uuid"] == "" || v.Labels["managed-by"] != "dockbridge" {
		t.Fatalf("Hetzner volume after first use: %+v", v)
	}
	inspect := docker(t, "volume", "inspect", name)
	for _, want := range []string{`"hetzner_id"`, `"location": "fsn1"`, `"device"`, `"server"`, `"size_gb": 10`} {
		if !strings.Contains(inspect, want) {
			t.Errorf("docker volume inspect lacks %s:\n%s", want, inspect)
		}
	}
}

func TestPluginTwoContainersAtOnce(t *testing.T) {
	name := volName(t)
	createVolume(t, name)
	a := strings.TrimSpace(docker(t, "run", "-d", "--label", "dockbridge-it=1", "-v", name+":/data", image, "sh", "-c", "echo from-A > /data/a; sleep 600"))
	t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", a) })
	b := strings.TrimSpace(docker(t, "run", "-d", "--label", "dockbridge-it=1", "-v", name+":/data", image, "sh", "-c", "echo from-B > /data/b; sleep 600"))
	t.Cleanup(func() { _, _ = dockerCmd("rm", "-f", b) })
	waitFor(t, "both files", func() bool {
		out, err := dockerCmd("exec", a, "cat", "/data/a", "/data/b")
		return err == nil && strings.Contains(out, "from-A") && strings.Contains(out, "from-B")
	})
	docker(t, "rm", "-f", a)
	if !hostMounted(t, name) {
		t.Fatal("stopping container A unmounted the volume container B uses")
	}
	if out := docker(t, "exec", b, "cat", "/data/a"); !strings.Contains(out, "from-A") {
		t.Fatalf("B reads %q after A stopped", out)
	}
	docker(t, "rm", "-f", b)
	if hostMounted(t, name) {
		t.Fatal("the last container stopped, the volume is still mounted")
	}
}

func TestPluginRemoveDeletesTheHetznerVolume(t *testing.T) {
	name := volName(t)
	createVolume(t, name, "size=11")
	run(t, name, "echo x > /data/x")
	if simVolume(t, name) == nil {
		t.Fatal("no Hetzner volume after create")
	}
	c := strings.TrimSpace(docker(t, "run", "-d", "--label", "dockbridge-it=1", "-v", name+":/data", image, "sleep", "600"))
	if out, err := dockerCmd("volume", "rm", name); err == nil || !strings.Contains(out, "in use") {
		t.Fatalf("docker volume rm of a volume in use: %v %s", err, out)
	}
	link := filepath.Join(env.ByID, "scsi-0HC_Volume_"+strconv.FormatInt(simVolume(t, name).ID, 10))
	if _, err := os.Stat(link); err != nil {
		t.Fatalf("the volume is in use here, yet its device link is not there: %v", err)
	}
	docker(t, "rm", "-f", c)
	docker(t, "volume", "rm", name)
	if v := simVolume(t, name); v != nil {
		t.Fatalf("the Hetzner volume survived docker volume rm: %+v", v)
	}
	if _, err := os.Lstat(link); err == nil {
		t.Fatalf("device link %s left behind", link)
	}
}

func TestPluginProtection(t *testing.T) {
	name := volName(t)
	createVolume(t, name, "protection=true")
	out, err := dockerCmd("volume", "rm", name)
	if err == nil || !strings.Contains(out, "disable-protection") {
		t.Fatalf("docker volume rm of a protected volume: %v %s", err, out)
	}
	v := simVolume(t, name)
	if err := env.Client.SetVolumeProtection(context.Background(), v.ID, false); err != nil {
		t.Fatal(err)
	}
	docker(t, "volume", "rm", name)
}

func TestPluginCompose(t *testing.T) {
	dir := t.TempDir()
	project := "it" + strings.ReplaceAll(volName(t), "-", "")
	compose := `version: "3.8"
services:
  app:
    image: ` + image + `
    command: ["sh", "-c", "echo from-compose > /data/hello && cat /data/hello"]
    labels: ["dockbridge-it=1"]
    volumes: ["data:/data"]
volumes:
  data:
    driver: hetzner
    driver_opts:
      size: "12"
      fstype: xfs
      labels: "app=compose"
`
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	dc := func(args ...string) (string, error) {
		cmd := exec.Command("docker-compose", append([]string{"-p", project}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	vol := project + "_data"
	t.Cleanup(func() { _, _ = dc("down", "-v"); _, _ = dockerCmd("volume", "rm", "-f", vol) })
	if out, err := dc("up", "--abort-on-container-exit"); err != nil || !strings.Contains(out, "from-compose") {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	v := simVolume(t, vol)
	if v == nil || v.SizeGB != 12 || v.Labels["dockbridge/fstype"] != "xfs" || v.Labels["app"] != "compose" {
		t.Fatalf("Hetzner volume of the compose file: %+v", v)
	}
	// The data is there for any container (compose v1 itself refuses a second `up`/`run` with
	// `driver: hetzner` because Docker reports the driver as hetzner:latest; see the README).
	if got := strings.TrimSpace(run(t, vol, "cat /data/hello")); got != "from-compose" {
		t.Fatalf("read back %q", got)
	}
	if out, err := dc("down", "-v"); err != nil {
		t.Fatalf("docker-compose down -v: %v\n%s", err, out)
	}
	if simVolume(t, vol) != nil {
		t.Fatal("docker-compose down -v left the Hetzner volume")
	}
}

func TestPluginBadOptions(t *testing.T) {
	cases := []struct {
		name string
		opt  string
		want string
	}{
		{"size not a number", "size=abc", "want a whole number of GB"},
		{"size too small", "size=5", "5 GB is outside what Hetzner Cloud allows"},
		{"size too large", "size=20000", "20000 GB is outside what Hetzner Cloud allows"},
		{"unsupported fstype", "fstype=ntfs", "supported filesystems are ext4 and xfs"},
		{"unknown option", "colour=blue", `unknown option "colour"`},
		{"unsafe mount option", "mountopts=suid", "not allowed"},
		{"bad label", "labels=no-equals-sign", "is not key=value"},
	}
	before := stats()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := volName(t)
			out, err := dockerCmd("volume", "create", "-d", "hetzner", name, "-o", c.opt)
			if err == nil || !strings.Contains(out, c.want) {
				t.Fatalf("docker volume create -o %s: err %v, output %q; want it to say %q", c.opt, err, out, c.want)
			}
		})
	}
	out, err := dockerCmd("volume", "create", "-d", "hetzner", "bad_name_", "-o", "size=10")
	if err == nil || !strings.Contains(out, "can't be a Hetzner Cloud volume name") {
		t.Fatalf("a name Hetzner refuses: %v %q", err, out)
	}
	// Docker asks the driver's Get before every create (one lookup of the unknown name); a
	// refused option must never reach the create request.
	if _, diff := apiRequests(before, stats()); diff["POST /v1/volumes"] != 0 {
		t.Errorf("a bad option reached the API's create: %v", diff)
	}
}

// attachedVolume creates a Hetzner volume of ours directly through the API, attached to this
// server, and returns it and its device: what another server or an older tool left behind.
func attachedVolume(t *testing.T, name string) (*hetzner.Volume, string) {
	t.Helper()
	ctx := context.Background()
	v, err := env.Client.CreateVolume(ctx, hetzner.VolumeSpec{Name: name, SizeGB: 10, ServerID: env.LocalID,
		Labels: map[string]string{"managed-by": "dockbridge", "dockbridge/volume": name, "dockbridge/fstype": "ext4"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = dockerCmd("volume", "rm", "-f", name) })
	dev := filepath.Join(env.ByID, "scsi-0HC_Volume_"+itoa(v.ID))
	waitFor(t, "device "+dev, func() bool { _, err := os.Stat(dev); return err == nil })
	return v, dev
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func sh(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

func digest(t *testing.T, dev string) [32]byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 16<<20)); err != nil {
		t.Fatal(err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestPluginDataSafety(t *testing.T) {
	t.Run("filesystem with data is mounted, never formatted", func(t *testing.T) {
		for _, fs := range []string{"ext4", "xfs"} {
			t.Run(fs, func(t *testing.T) {
				name := volName(t)
				_, dev := attachedVolume(t, name)
				mnt := t.TempDir()
				sh(t, "mkfs."+fs+" -q "+dev+" && mount "+dev+" "+mnt+" && echo precious > "+mnt+"/data.txt && umount "+mnt)
				uuid := strings.TrimSpace(sh(t, "blkid -p -s UUID -o value "+dev))
				if got := strings.TrimSpace(run(t, name, "cat /data/data.txt")); got != "precious" {
					t.Fatalf("read %q", got)
				}
				if after := strings.TrimSpace(sh(t, "blkid -p -s UUID -o value "+dev)); after != uuid {
					t.Fatalf("filesystem UUID changed %s -> %s: it was formatted", uuid, after)
				}
				if v := simVolume(t, name); v.Labels["dockbridge/fs-uuid"] != uuid || v.Labels["dockbridge/fstype"] != fs {
					t.Fatalf("labels after adoption: %v", v.Labels)
				}
			})
		}
	})
	t.Run("foreign signatures are refused, bytes unchanged", func(t *testing.T) {
		for _, c := range []struct{ name, write, want string }{
			{"gpt partition table", "printf 'label: gpt\\n,\\n' | sfdisk --quiet DEV", "gpt partition table"},
			{"LUKS header", "printf 'k' > KEY && cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file KEY DEV", "LUKS"},
		} {
			t.Run(c.name, func(t *testing.T) {
				name := volName(t)
				_, dev := attachedVolume(t, name)
				script := strings.ReplaceAll(strings.ReplaceAll(c.write, "DEV", dev), "KEY", filepath.Join(t.TempDir(), "key"))
				sh(t, script)
				before := digest(t, dev)
				out, err := dockerCmd("run", "--rm", "--label", "dockbridge-it=1", "-v", name+":/data", image, "sh", "-c", ":")
				if err == nil || !strings.Contains(out, c.want) || !strings.Contains(out, "Refusing") {
					t.Fatalf("docker run on a device with a %s: %v\n%s", c.name, err, out)
				}
				if digest(t, dev) != before {
					t.Fatal("the device's bytes changed")
				}
			})
		}
	})
	t.Run("the wrong volume at the device path is refused", func(t *testing.T) {
		a, b := volName(t), volName(t)
		createVolume(t, a)
		createVolume(t, b)
		run(t, a, "echo a > /data/who")
		run(t, b, "echo b > /data/who")
		va, vb := simVolume(t, a), simVolume(t, b)
		linkA := filepath.Join(env.ByID, "scsi-0HC_Volume_"+itoa(va.ID))
		linkB := filepath.Join(env.ByID, "scsi-0HC_Volume_"+itoa(vb.ID))
		targetA, err := os.Readlink(linkA)
		if err != nil {
			t.Fatal(err)
		}
		targetB, err := os.Readlink(linkB)
		if err != nil {
			t.Fatal(err)
		}
		// A's link now points at B's disk (a mixed-up attachment after a reboot).
		sh(t, "ln -sfn "+targetB+" "+linkA)
		defer sh(t, "ln -sfn "+targetA+" "+linkA)
		out, err := dockerCmd("run", "--rm", "--label", "dockbridge-it=1", "-v", a+":/data", image, "cat", "/data/who")
		if err == nil || !strings.Contains(out, "is not this volume") {
			t.Fatalf("mounting volume A with B's disk at its path: %v\n%s", err, out)
		}
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
