#!/usr/bin/env bash
# Assembles the managed plugin folder build/plugin (config.json + rootfs/) and, unless
# NO_CREATE=1, (re)creates the plugin hetzner:latest on the local engine, left disabled.
#
# rootfs holds the static plugin binary and the real disk tools of this machine (blkid, wipefs,
# mkfs.ext4, mkfs.xfs, resize2fs, xfs_growfs, e2fsck, mount, umount) with the shared libraries
# ldd lists for them. resize2fs and e2fsck grow an ext4 at its next mount after a resize (the
# check resize2fs requires first), xfs_growfs an xfs; fsck and online growth run outside the
# plugin, as root on the server (internal/volumefs), with the server's own tools.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo/build/plugin}
name=${PLUGIN_NAME:-hetzner:latest}
go=${GO:-go}
version=${VERSION:-$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)}

tools=(blkid wipefs mkfs.ext4 mkfs.xfs resize2fs xfs_growfs e2fsck mount umount)

rm -rf "$out"
rootfs=$out/rootfs
mkdir -p "$rootfs"/{etc,tmp,proc,sys,dev,run/docker/plugins,mnt/volumes,usr/sbin}
chmod 1777 "$rootfs/tmp"

echo "building the plugin binary ($version)"
(cd "$repo" && CGO_ENABLED=0 "$go" build -trimpath \
	-ldflags "-s -w -X github.com/dockbridge/dockbridge/internal/version.Version=$version" \
	-o "$rootfs/hetzner-volume-plugin" ./volume-plugin)

copy_with_libs() {
	local bin=$1
	cp -L "$bin" "$rootfs/usr/sbin/$(basename "$bin")"
	# ldd prints "libx.so => /path (addr)" and the loader as "/lib64/ld-linux... (addr)".
	ldd "$bin" | awk '/=> \//{print $3} /^\t\//{print $1}' | while read -r lib; do
		[ -e "$rootfs$lib" ] || cp -L --parents "$lib" "$rootfs"
	done
}

for t in "${tools[@]}"; do
	path=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin:$PATH command -v "$t" || true)
	if [ -z "$path" ]; then
		echo "plugin/build.sh: $t not found: apt-get install util-linux e2fsprogs xfsprogs" >&2
		exit 1
	fi
	copy_with_libs "$path"
done
# mke2fs reads its defaults from mke2fs.conf; mount wants an mtab.
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$rootfs/etc/"
ln -sf /proc/self/mounts "$rootfs/etc/mtab"
cp "$repo/config.json" "$out/config.json"

# The tools must run inside the rootfs alone (no library missing).
for t in "${tools[@]}"; do
	rc=0
	msg=$(chroot "$rootfs" "/usr/sbin/$t" -V 2>&1) || rc=$?
	if [ "$rc" -ge 126 ] || grep -q 'error while loading shared libraries' <<<"$msg"; then
		echo "plugin/build.sh: /usr/sbin/$t does not run inside the plugin rootfs: $msg" >&2
		exit 1
	fi
done
echo "assembled $out ($(du -sh "$rootfs" | cut -f1))"

if [ "${NO_CREATE:-0}" = 1 ]; then
	exit 0
fi
if docker plugin inspect "$name" >/dev/null 2>&1; then
	docker plugin rm -f "$name" >/dev/null
fi
docker plugin create "$name" "$out" >/dev/null
# The plugin mounts the secrets directory (config.json, "secrets"): it must exist to enable it.
secrets=/etc/dockbridge/secrets
if [ ! -e "$secrets" ]; then
	install -d -m 0700 "$secrets"
	echo "created $secrets (root, 0700), which the plugin mounts read-only"
fi
echo "created the managed plugin $name (disabled). Next, give it the token, either as a root-only file:"
echo "  (umask 077; cat > $secrets/hcloud-token) < token.txt"
echo "  docker plugin set $name HCLOUD_TOKEN_FILE=$secrets/hcloud-token    # [HCLOUD_ENDPOINT=...]"
echo "or as a setting, which docker plugin inspect shows to anyone with access to this engine:"
echo "  docker plugin set $name HCLOUD_TOKEN=<token>"
echo "then: docker plugin enable --timeout 120 $name"
echo "(--timeout 120: with Docker's default, 30 s, a Create or Mount that takes longer fails in Docker while the plugin completes it)"
