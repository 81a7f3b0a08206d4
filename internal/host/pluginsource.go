package host

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"path/filepath"

	"github.com/dockbridge/dockbridge"
	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/serverbin"
)

// pluginSource is what up installs the hetzner volume plugin from: a `docker plugin create`
// folder that a developer assembled here (`make plugin`, --plugin-dir), or else the server
// binary this CLI carries for the server's architecture, from which the server assembles the
// plugin itself (assembleScript): no local engine, mkfs or build folder, any laptop OS.
type pluginSource struct {
	dir  string
	load func(arch string) (*serverbin.Binary, error) // serverbin.Load; tests fake it
}

// pluginUpload is how one server gets the plugin: the command that creates it there and the
// stream on its stdin.
type pluginUpload struct {
	digest string // what the marker records: equal digests need no new plugin
	script string
	stdin  func(w io.Writer) error
	from   string // for messages
}

// assembleScript makes the plugin's root filesystem on the server from the uploaded binary
// and the server's own disk tools (util-linux, e2fsprogs, xfsprogs, with the libraries ldd
// lists for them; missing packages are installed with apt-get), checks that each tool runs
// inside it, and creates the plugin. Stdin: a gzip-compressed tar of config.json and
// rootfs/hetzner-volume-plugin.
const assembleScript = `set -eu
tools="blkid wipefs mkfs.ext4 mkfs.xfs resize2fs xfs_growfs e2fsck mount umount"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
d=$(mktemp -d /tmp/dockbridge-plugin.XXXXXX)
trap 'rm -rf "$d"' EXIT
tar -xzf - -C "$d"
r=$d/rootfs
mkdir -p "$r/etc/dockbridge/secrets" "$r/tmp" "$r/proc" "$r/sys" "$r/dev" "$r/run/docker/plugins" "$r/mnt/volumes" "$r/usr/sbin"
chmod 1777 "$r/tmp"
missing=
for t in $tools; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
if [ -n "$missing" ]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "the server lacks$missing and has no apt-get: install util-linux, e2fsprogs and xfsprogs" >&2
		exit 3
	fi
	DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends util-linux e2fsprogs xfsprogs >/dev/null
fi
for t in $tools; do
	p=$(command -v "$t")
	cp -L "$p" "$r/usr/sbin/$t"
	ldd "$p" | awk '/=> \//{print $3} /^\t\//{print $1}' | while read -r lib; do
		[ -e "$r$lib" ] || cp -L --parents "$lib" "$r"
	done
done
if [ -f /etc/mke2fs.conf ]; then cp /etc/mke2fs.conf "$r/etc/"; fi
ln -sf /proc/self/mounts "$r/etc/mtab"
for t in $tools; do
	rc=0
	msg=$(chroot "$r" "/usr/sbin/$t" -V 2>&1) || rc=$?
	if [ "$rc" -ge 126 ] || printf '%s' "$msg" | grep -q 'error while loading shared libraries'; then
		echo "/usr/sbin/$t does not run inside the plugin's root filesystem: $msg" >&2
		exit 4
	fi
done
docker plugin create ` + pluginName + ` "$d" >/dev/null
`

// pluginCheckScript reports the plugin's state on the server: the marker, whether it is
// enabled, whether the token file is there, the server's architecture and the versions of
// the packages the plugin's tools come from (an upgrade there reassembles the plugin).
func pluginCheckScript() string {
	return fmt.Sprintf(`cat %s 2>/dev/null; echo; echo "enabled=$(docker plugin inspect -f '{{.Enabled}}' %s 2>/dev/null)"; if [ -s %s ]; then echo token_file=1; fi
echo "arch=$(uname -m)"
echo "tools=$(dpkg-query -W -f '${Package}=${Version} ' util-linux e2fsprogs xfsprogs mount 2>/dev/null)"`,
		pluginMarker, pluginName, cloudinit.PluginTokenPath)
}

// upload prepares the plugin for a server of arch (uname -m) whose tool packages are tools.
func (s pluginSource) upload(arch, tools string) (pluginUpload, error) {
	if s.dir != "" {
		return s.folderUpload(arch)
	}
	if arch == "" {
		return pluginUpload{}, fmt.Errorf("the server did not say its architecture (uname -m)")
	}
	b, err := s.load(arch)
	if err != nil {
		return pluginUpload{}, fmt.Errorf("the volume plugin for this %s server: %w", arch, err)
	}
	digest := sha256Hex("assembled on the server\n" + b.SHA256 + "\n" + sha256Hex(string(dockbridge.PluginConfig)) + "\n" + sha256Hex(assembleScript) + "\n" + tools)
	return pluginUpload{
		digest: digest,
		script: assembleScript,
		from:   "the linux/" + b.Arch + " binary docker-dockbridge carries",
		stdin: func(w io.Writer) error {
			return writePluginTar(w, dockbridge.PluginConfig, b.Data)
		},
	}, nil
}

// folderUpload is a developer's folder: uploaded as it is, if its binary fits the server.
func (s pluginSource) folderUpload(arch string) (pluginUpload, error) {
	if err := pluginFolder(s.dir); err != nil {
		return pluginUpload{}, err
	}
	if goarch, err := serverbin.GoArch(arch); err == nil {
		if f, err := elf.Open(filepath.Join(s.dir, "rootfs", "hetzner-volume-plugin")); err == nil {
			m := f.Machine
			f.Close()
			if m != serverbin.ELFMachine(goarch) {
				return pluginUpload{}, fmt.Errorf("the volume plugin folder %s holds %s programs but the server is %s: leave out --plugin-dir (and DOCKBRIDGE_PLUGIN_DIR) to use the linux/%s binary docker-dockbridge carries", s.dir, m, arch, goarch)
			}
		}
	}
	digest, err := digestFolder(s.dir)
	if err != nil {
		return pluginUpload{}, err
	}
	return pluginUpload{
		digest: digest,
		script: fmt.Sprintf(`set -e; d=$(mktemp -d /tmp/dockbridge-plugin.XXXXXX); trap 'rm -rf "$d"' EXIT; tar -x -C "$d"; docker plugin create %s "$d" >/dev/null`, pluginName),
		from:   s.dir,
		stdin:  func(w io.Writer) error { return tarFolder(s.dir, w) },
	}, nil
}

// writePluginTar writes config.json and rootfs/hetzner-volume-plugin as a gzip-compressed tar.
// The compressor writes a few hundred bytes at a time: buffered, the SSH session sends 256 KiB
// pieces instead of one packet per piece.
func writePluginTar(w io.Writer, config, bin []byte) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"config.json", 0o644, config}, {"rootfs/", 0o755, nil}, {"rootfs/hetzner-volume-plugin", 0o755, bin}} {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, Uname: "root", Gname: "root"}
		if f.data == nil {
			hdr.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// pluginSourceFor is where up takes the plugin from: the folder when one is given, else
// the carried binaries, which a plain `go build` lacks (it fails before anything is made).
func (d *Deps) pluginSourceFor(dir string) (pluginSource, error) {
	if dir != "" {
		return pluginSource{dir: dir}, pluginFolder(dir)
	}
	if d.ServerBinary != nil {
		return pluginSource{load: d.loadServerBinary}, nil
	}
	if len(serverbin.Embedded()) == 0 {
		return pluginSource{}, fmt.Errorf("%w: it cannot install the volume plugin on the server. Install a release or build with `make build`; or assemble the plugin here with `make plugin` and pass --plugin-dir build/plugin; or skip it with --no-volume-plugin", serverbin.ErrNotEmbedded)
	}
	return pluginSource{load: serverbin.Load}, nil
}
