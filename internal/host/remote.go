package host

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/cloudinit"
)

// parseKV reads KEY=VALUE lines.
func parseKV(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// cloudInitScript waits for cloud-init and reports the markers the user-data writes.
var cloudInitScript = fmt.Sprintf(`rc=0; cloud-init status --wait >/dev/null 2>&1 || rc=$?
echo "cloudinit_rc=$rc"
if [ -f %[1]s ]; then echo "failed=$(tr '\n' ' ' < %[1]s)"; fi
if [ -f %[2]s ]; then echo "complete=1"; fi
echo "setup_log=$(tail -n 5 %[3]s 2>/dev/null | tr '\n' '|')"
`, cloudinit.FailedMarkerPath, cloudinit.CompleteMarkerPath, cloudinit.SetupLogPath)

// waitCloudInit waits for cloud-init on the server and fails with its reason when the
// dockbridge setup did not complete.
func waitCloudInit(ctx context.Context, r Remote) error {
	out, err := r.Run(ctx, cloudInitScript, nil)
	if err != nil {
		return fmt.Errorf("wait for cloud-init: %w", err)
	}
	kv := parseKV(out)
	logTail := strings.ReplaceAll(strings.Trim(kv["setup_log"], "|"), "|", "\n  ")
	if f := kv["failed"]; f != "" {
		return fmt.Errorf("the server's setup failed: %s\n  %s (last lines of %s; `docker dockbridge ssh -- cat %s` shows all)", f, logTail, cloudinit.SetupLogPath, cloudinit.SetupLogPath)
	}
	if kv["complete"] != "1" {
		return fmt.Errorf("cloud-init finished (status %s) without completing the dockbridge setup (no %s):\n  %s\nInspect with `docker dockbridge ssh -- cloud-init status --long`", kv["cloudinit_rc"], cloudinit.CompleteMarkerPath, logTail)
	}
	return nil
}

// rootDirFacts is what verifyRootDir learns.
type rootDirFacts struct {
	RootDir string
	FSUUID  string
	Device  string
}

// verifyRootDir checks that Docker's root dir lives on the data volume: the filesystem
// holding it has the device number of the volume's block device.
func verifyRootDir(ctx context.Context, r Remote, volumeID int64) (rootDirFacts, error) {
	dev := fmt.Sprintf("%s%d", cloudinit.DeviceByIDPrefix, volumeID)
	script := fmt.Sprintf(`root=$(docker info --format '{{.DockerRootDir}}' 2>&1) || { echo "docker_error=$root" | tr '\n' ' '; echo; exit 0; }
echo "root=$root"
echo "rootdev=$(stat -c %%d "$root")"
echo "voldev=$(stat -L -c '%%t:%%T' %[1]s 2>&1)"
echo "device=$(readlink -f %[1]s)"
echo "uuid=$(blkid -s UUID -o value %[1]s 2>/dev/null)"
`, dev)
	out, err := r.Run(ctx, script, nil)
	if err != nil {
		return rootDirFacts{}, fmt.Errorf("check Docker's root dir: %w", err)
	}
	kv := parseKV(out)
	f := rootDirFacts{RootDir: kv["root"], FSUUID: kv["uuid"], Device: kv["device"]}
	if e := kv["docker_error"]; e != "" {
		return f, fmt.Errorf("docker is not answering on the server: %s", e)
	}
	rootDev, err1 := strconv.ParseUint(kv["rootdev"], 10, 64)
	maj, min, ok := strings.Cut(kv["voldev"], ":")
	vmaj, err2 := strconv.ParseUint(maj, 16, 32)
	vmin, err3 := strconv.ParseUint(min, 16, 32)
	if err1 != nil || !ok || err2 != nil || err3 != nil {
		return f, fmt.Errorf("check Docker's root dir: can't compare devices (root dir %q on %q, volume device %s: %q)", f.RootDir, kv["rootdev"], dev, kv["voldev"])
	}
	// Linux dev_t encoding (glibc makedev).
	rmaj := (rootDev>>8)&0xfff | (rootDev>>32)&^uint64(0xfff)
	rmin := rootDev&0xff | (rootDev>>12)&^uint64(0xff)
	if rmaj != vmaj || rmin != vmin {
		return f, fmt.Errorf("Docker's root dir %s is NOT on the data volume %d (it is on device %d:%d, the volume is %d:%d): containers would not survive `down`. See `docker dockbridge ssh -- cat %s`", f.RootDir, volumeID, rmaj, rmin, vmaj, vmin, cloudinit.SetupLogPath)
	}
	return f, nil
}

// Volume plugin installation.

const (
	pluginName   = "hetzner:latest"
	pluginMarker = cloudinit.DefaultMountPoint + "/" + cloudinit.PluginMarkerName // on the volume, like the plugin itself
)

// writeTokenScript writes the API token from stdin to cloudinit.PluginTokenPath: 0600 in the
// root-only secrets directory on the data volume (which the volume plugin mounts), replaced
// atomically. A server set up before the secrets directory existed gets it here.
var writeTokenScript = fmt.Sprintf(`set -eu
d=%[1]s
if [ ! -e "$d" ]; then install -d -m 0700 %[2]s; mkdir -p "${d%%/*}"; ln -sfnT %[2]s "$d"; fi
t=$(mktemp "$d/.hcloud-token.XXXXXX")
cat >"$t"
mv -f "$t" %[3]s
`, cloudinit.SecretsDir, cloudinit.DefaultMountPoint+"/"+cloudinit.SecretsVolumeDir, cloudinit.PluginTokenPath)

// pluginFolder checks a `docker plugin create` folder (config.json + rootfs/).
func pluginFolder(dir string) error {
	if dir == "" {
		return errors.New("no volume plugin folder: build it with `make plugin` (build/plugin), pass --plugin-dir, or skip it with --no-volume-plugin")
	}
	for _, p := range []string{"config.json", "rootfs"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("volume plugin folder %s has no %s: build it with `make plugin` (build/plugin), pass --plugin-dir, or skip it with --no-volume-plugin", dir, p)
		}
	}
	return nil
}

// digestFolder hashes a folder's paths, modes, link targets and contents.
func digestFolder(dir string) (string, error) {
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read volume plugin folder: %w", err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%o\x00", rel, fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			fmt.Fprintf(h, "%s\x00", t)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tarFolder streams dir as a tar archive to w.
func tarFolder(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// installPlugin makes sure the `hetzner` managed plugin on the server is the one src gives
// for the server's architecture (pluginsource.go), enabled, with the endpoint set and the token in cloudinit.PluginTokenPath, not in
// a plugin setting (`docker plugin inspect` shows settings to anyone with Docker access
// there). It returns a note for progress. The token reaches the server only on an SSH
// session's stdin, never on a command line.
//
// With detachOnUnmount (the nodes of a swarm) the plugin detaches a volume when its last
// container on the server stops, so the volume can follow its service to another node.
func installPlugin(ctx context.Context, r Remote, src pluginSource, token, endpoint string, detachOnUnmount bool) (string, error) {
	out, err := r.Run(ctx, pluginCheckScript(), nil)
	if err != nil {
		return "", fmt.Errorf("check the volume plugin: %w", err)
	}
	kv := parseKV(out)
	up, err := src.upload(kv["arch"], kv["tools"])
	if err != nil {
		return "", err
	}
	digest := up.digest
	// "token-file": a plugin set up with HCLOUD_TOKEN by an earlier version is set up again;
	// the enable timeout: one enabled by an earlier version with Docker's 30 s is enabled again.
	enable := strings.Join(dockbridge.PluginEnableArgs("$p"), " ")
	settingsHash := sha256Hex("token-file\n" + endpoint + "\n" + sha256Hex(token) + "\n" + enable)
	if detachOnUnmount {
		settingsHash = sha256Hex("token-file\ndetach-on-unmount\n" + endpoint + "\n" + sha256Hex(token) + "\n" + enable)
	}
	wantMarker := "rootfs=" + digest + "\nsettings=" + settingsHash

	exists := kv["enabled"] == "true" || kv["enabled"] == "false"
	if kv["rootfs"] == digest && kv["settings"] == settingsHash && kv["enabled"] == "true" && kv["token_file"] == "1" {
		return "already installed", nil
	}

	note := "settings updated"
	if !exists || kv["rootfs"] != digest {
		note = "installed"
		if exists {
			note = "upgraded"
			if _, err := r.Run(ctx, fmt.Sprintf("docker plugin disable -f %[1]s >/dev/null 2>&1; docker plugin rm -f %[1]s", pluginName), nil); err != nil {
				return "", fmt.Errorf("remove the old volume plugin: %w", err)
			}
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(up.stdin(pw)) }()
		_, err := r.Run(ctx, up.script, pr)
		pr.Close()
		if err != nil {
			return "", fmt.Errorf("upload and create the volume plugin from %s: %w", up.from, err)
		}
	}
	if _, err := r.Run(ctx, writeTokenScript, strings.NewReader(token)); err != nil {
		return "", redact(fmt.Errorf("write the volume plugin's token to %s: %w", cloudinit.PluginTokenPath, err), token)
	}
	// One command line: settings can only change while the plugin is disabled, and the
	// server's health check enables a disabled plugin. Enabled with --timeout: with Docker's
	// default (30 s) a slow Create or Mount fails in Docker while the plugin completes it.
	set := fmt.Sprintf(`set -e; p=%s; if [ "$(docker plugin inspect -f '{{.Enabled}}' $p)" = true ]; then docker plugin disable -f $p >/dev/null; fi
docker plugin set $p HCLOUD_TOKEN= HCLOUD_TOKEN_FILE=%s HCLOUD_ENDPOINT=%s DETACH_ON_UNMOUNT=%t
docker %s >/dev/null`, pluginName, cloudinit.PluginTokenPath, shellQuote(endpoint), detachOnUnmount, enable)
	if _, err := r.Run(ctx, set, nil); err != nil {
		return "", fmt.Errorf("set up and enable the volume plugin (its log: `docker dockbridge ssh -- journalctl -u docker`): %w", err)
	}
	if _, err := r.Run(ctx, fmt.Sprintf("cat > %s", pluginMarker), strings.NewReader(wantMarker+"\n")); err != nil {
		return "", fmt.Errorf("record the volume plugin's version: %w", err)
	}
	return note, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// redact replaces a secret in an error's text (the wrapped chain is dropped).
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "<token>"))
}
