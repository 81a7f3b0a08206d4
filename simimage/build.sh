#!/usr/bin/env bash
# Builds the simulated-server images on the local Docker engine:
#   dockbridge-sim/debian-12:<hash>  Debian 12 + systemd, sshd, cloud-init (Hetzner "debian-12")
#   dockbridge-sim/docker-ce:<hash>  the same plus Debian's docker.io (Hetzner app image "docker-ce")
# and with --arch arm64 the same for Hetzner's Arm types, tagged <hash>-arm64: an arm64 Debian
# whose programs run under qemu-user (binfmt_misc), see native_runtime below.
# <hash> is a hash of this directory's recipe files, so a tag exists exactly when the current recipe
# was built; an existing tag is reused. Debs are cached in $DOCKBRIDGE_SIM_CACHE (default
# /var/cache/dockbridge-sim) so a rebuild after a recipe change does not download again.
#
# Usage: build.sh [--force] [--arch amd64|arm64] [--print-hash] [--print-mirror]
# Needs root, debootstrap and a running Docker engine; arm64 also qemu-user-static, on an
# amd64 machine.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${DOCKBRIDGE_SIM_CACHE:-/var/cache/dockbridge-sim}
suite=bookworm

# recipe_hash must match simimage.RecipeHash in Go: sha256sum over the sorted recipe files
# (everything here but Go, Markdown and Makefile files), first 12 hex digits.
recipe_hash() {
	(cd "$here" && find . -type f ! -name '*.go' ! -name '*.md' ! -name '*.mk' -printf '%P\n' | LC_ALL=C sort |
		xargs -d '\n' sha256sum | sha256sum | cut -c1-12)
}

# The Debian mirror is the one this machine's apt is configured with: the first deb source
# that serves $suite, and the one that serves $suite-security for the image's security
# updates (none: the image has no security source). DOCKBRIDGE_SIM_MIRROR and
# DOCKBRIDGE_SIM_SECURITY_MIRROR override them. No mirror host is built in.
apt_source_for() { # SUITE -> the URI of the first enabled deb source serving it
	local sourcelist='' sourceparts=''
	eval "$(apt-config shell sourcelist Dir::Etc::sourcelist/f sourceparts Dir::Etc::sourceparts/d)"
	local f files=()
	[[ -f $sourcelist ]] && files+=("$sourcelist")
	for f in "$sourceparts"/*.list "$sourceparts"/*.sources; do [[ -f $f ]] && files+=("$f"); done
	((${#files[@]})) || return 0
	local want=$1 uri
	for f in "${files[@]}"; do
		case $f in
		*.sources) # deb822: stanzas of Types/URIs/Suites/Enabled, separated by blank lines
			uri=$(awk -v want="$want" '
				function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " want " ")) { split(uris, u, " "); print u[1]; found = 1; exit } types = uris = suites = ""; enabled = "yes" }
				BEGIN { enabled = "yes" }
				/^#/ { next }
				/^[ \t]*$/ { flush(); next }
				{ key = tolower($1); sub(/^[^:]*:[ \t]*/, ""); if (key == "types:") types = $0; else if (key == "uris:") uris = $0; else if (key == "suites:") suites = $0; else if (key == "enabled:") enabled = tolower($0) }
				END { if (!found) flush() }' "$f") ;;
		*) # one line per source: deb [options] URI SUITE COMPONENTS...
			uri=$(awk -v want="$want" '{ sub(/#.*/, ""); gsub(/\[[^]]*\]/, "") } $1 == "deb" && $3 == want { print $2; exit }' "$f") ;;
		esac
		if [[ -n $uri ]]; then
			echo "$uri"
			return 0
		fi
	done
}

force=0 print_mirror=0 arch=amd64
while (($#)); do
	case $1 in
	--force) force=1 ;;
	--arch) arch=${2:-}; shift ;;
	--arch=*) arch=${1#--arch=} ;;
	--print-hash) recipe_hash; exit 0 ;;
	--print-mirror) print_mirror=1 ;;
	*) echo "build.sh: unknown argument $1 (use --force, --arch amd64|arm64, --print-hash or --print-mirror)" >&2; exit 2 ;;
	esac
	shift
done
case $arch in
amd64) suffix= ;;
arm64) suffix=-arm64 ;;
*) echo "build.sh: --arch $arch: use amd64 or arm64" >&2; exit 2 ;;
esac

hash=$(recipe_hash)
base_ref=dockbridge-sim/debian-12:$hash$suffix
docker_ref=dockbridge-sim/docker-ce:$hash$suffix

have() { docker image inspect "$1" >/dev/null 2>&1; }

if [[ $force == 0 && $print_mirror == 0 ]] && have "$base_ref" && have "$docker_ref"; then
	echo "sim images up to date: $base_ref $docker_ref"
	exit 0
fi
mirror=${DOCKBRIDGE_SIM_MIRROR:-$(apt_source_for "$suite")}
if [[ -z $mirror ]]; then
	echo "build.sh: apt has no Debian source for $suite (apt-config's Dir::Etc::sourcelist and sourceparts list none):" >&2
	echo "  the images are built from the mirror this machine's apt uses; configure one in /etc/apt/sources.list.d/," >&2
	echo "  or set DOCKBRIDGE_SIM_MIRROR to a Debian mirror's URL" >&2
	exit 1
fi
mirror=${mirror%/}
security=${DOCKBRIDGE_SIM_SECURITY_MIRROR:-$(apt_source_for "$suite-security")}
security=${security%/}
if [[ $print_mirror == 1 ]]; then
	echo "mirror $mirror"
	echo "security ${security:-none}"
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "build.sh: needs root (debootstrap, chroot); run it with sudo" >&2
	exit 1
fi
for tool in debootstrap zstd; do
	command -v $tool >/dev/null || { echo "build.sh: $tool not found: apt-get install $tool" >&2; exit 1; }
done
if [[ $arch == arm64 ]]; then
	if [[ $(dpkg --print-architecture) != amd64 ]]; then
		echo "build.sh: the arm64 images run x86-64 programs natively (native_runtime): build them on an amd64 machine" >&2
		exit 1
	fi
	bash "$here/binfmt.sh"
fi

# One build at a time (tests of several packages may ask at once); the other waits and reuses it.
mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9
if [[ $force == 0 ]] && have "$base_ref" && have "$docker_ref"; then
	echo "sim images up to date: $base_ref $docker_ref (built meanwhile)"
	exit 0
fi

mkdir -p "$cache/debs" "$cache/apt-archives/partial" "$cache/apt-lists/partial"
work=$(mktemp -d /var/tmp/dockbridge-sim.XXXXXX)
builder=dockbridge-sim-build-$hash$suffix
cleanup() {
	docker rm -f "$builder" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# native_runtime puts this machine's x86-64 container runtime into the arm64 root filesystem.
# qemu-user runs the server's arm64 programs (systemd, sshd, cloud-init, dockerd, containerd,
# the volume plugin, every container's processes) but not a container runtime: it refuses
# runc's clone flags, the shim fails to start, and it translates neither netfilter's socket
# options (iptables-legacy) nor the netlink family nft uses. So Debian's x86-64 runc,
# containerd-shim-runc-v2 and iptables run natively (the kernel is x86-64) with their
# libraries in the multiarch x86_64 paths. dpkg diversions keep the arm64 files aside
# (*.distrib) when docker.io installs them; /usr/sbin/runc is arm64/runc, a wrapper. Nothing
# of this is dockbridge's: its binaries on the server are all arm64.
native_runtime() {
	echo "==> x86-64 runc, containerd shim and iptables for the arm64 server (qemu-user cannot run them)"
	local x86=$work/x86 debs=$work/x86-debs f
	mkdir -p "$x86" "$debs"
	local pkgs=(runc containerd iptables libc6 libseccomp2 libxtables12 libnftnl11 libmnl0 libip4tc2 libip6tc2)
	if ! (cd "$debs" && apt-get download -qq "${pkgs[@]/%/:amd64}" >/dev/null 2>&1); then
		apt-get update -qq
		(cd "$debs" && apt-get download -qq "${pkgs[@]/%/:amd64}") || {
			echo "build.sh: apt-get download ${pkgs[*]} (amd64) failed" >&2
			exit 1
		}
	fi
	for f in "$debs"/*.deb; do dpkg-deb -x "$f" "$x86"; done
	local lib=$rootfs/usr/lib/dockbridge-sim
	install -d "$lib" "$rootfs/usr/lib/x86_64-linux-gnu" "$rootfs/usr/lib64"
	install -m 0755 "$x86/usr/sbin/runc" "$x86/usr/bin/containerd-shim-runc-v2" \
		"$x86/usr/sbin/xtables-nft-multi" "$x86/usr/sbin/xtables-legacy-multi" "$lib/"
	cp -a "$x86"/lib/x86_64-linux-gnu/. "$x86"/usr/lib/x86_64-linux-gnu/. "$rootfs/usr/lib/x86_64-linux-gnu/"
	cp -a "$x86"/lib64/. "$rootfs/usr/lib64/"
	[[ -e $rootfs/lib64 ]] || ln -s usr/lib64 "$rootfs/lib64"
	for f in /usr/sbin/runc /usr/bin/containerd-shim-runc-v2 /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi; do
		chroot "$rootfs" dpkg-divert --quiet --local --rename --divert "$f.distrib" --add "$f"
	done
	install -m 0755 "$here/arm64/runc" "$rootfs/usr/sbin/runc"
	ln -sf /usr/lib/dockbridge-sim/containerd-shim-runc-v2 "$rootfs/usr/bin/containerd-shim-runc-v2"
	ln -sf /usr/lib/dockbridge-sim/xtables-nft-multi "$rootfs/usr/sbin/xtables-nft-multi"
	ln -sf /usr/lib/dockbridge-sim/xtables-legacy-multi "$rootfs/usr/sbin/xtables-legacy-multi"
	# The x86-64 programs must run in the root filesystem alone.
	chroot "$rootfs" /usr/lib/dockbridge-sim/runc --version >/dev/null
	chroot "$rootfs" /usr/lib/dockbridge-sim/xtables-nft-multi iptables --version >/dev/null
}

t0=$SECONDS
rootfs=$work/rootfs
packages=python3-cffi-backend,systemd,systemd-sysv,dbus,openssh-server,cloud-init,iproute2,e2fsprogs,xfsprogs,util-linux,curl,ca-certificates,procps,kmod,less
# debootstrap's result is cached as a tarball keyed by what it depends on, so a change of the
# configuration below costs an unpack, not a debootstrap.
if [[ $arch == amd64 ]]; then
	bootstrap_prefix=bootstrap-
	bootstrap_key=$(printf '%s\n' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-12)
	stale_tars=("$cache"/bootstrap-????????????.tar.zst)
else
	bootstrap_prefix=bootstrap-$arch-
	bootstrap_key=$(printf '%s\n' "$suite" "$mirror" "$packages" "$arch" | sha256sum | cut -c1-12)
	stale_tars=("$cache/bootstrap-$arch-"*.tar.zst)
fi
bootstrap_tar=$cache/$bootstrap_prefix$bootstrap_key.tar.zst
if [[ -f $bootstrap_tar ]]; then
	echo "==> unpack cached debootstrap $bootstrap_tar"
	mkdir -p "$rootfs"
	zstd -dcq "$bootstrap_tar" | tar -C "$rootfs" --numeric-owner --xattrs -xpf -
else
	echo "==> debootstrap $suite ($arch) from $mirror (debs cached in $cache/debs)"
	debootstrap --arch="$arch" --variant=minbase --cache-dir="$cache/debs" --include="$packages" \
		"$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -n 50 "$work/debootstrap.log" >&2
		echo "build.sh: debootstrap failed (full log above)" >&2
		exit 1
	}
	rm -f "${stale_tars[@]}"
	tar -C "$rootfs" --numeric-owner --xattrs --exclude="./var/cache/apt/archives/*.deb" -c . | zstd -T0 -q -o "$bootstrap_tar.tmp"
	mv "$bootstrap_tar.tmp" "$bootstrap_tar"
fi
echo "    root filesystem ready after $((SECONDS - t0))s"

# Configuration: files from rootfs/ (0644; 0755 in usr/local/sbin), then what cannot be a file.
(cd "$here/rootfs" && find . -type f -printf '%P\n') | while read -r f; do
	install -D -m 0644 "$here/rootfs/$f" "$rootfs/$f"
done
chmod 0755 "$rootfs"/usr/local/sbin/*
mkdir -p "$rootfs/etc/dockbridge-sim/devices.d" "$rootfs/etc/systemd/system/sysinit.target.wants"
ln -sf /etc/systemd/system/dockbridge-sim-devices.service "$rootfs/etc/systemd/system/sysinit.target.wants/"
{
	echo "deb $mirror $suite main"
	echo "deb $mirror $suite-updates main"
	[[ -z $security ]] || echo "deb $security $suite-security main"
} >"$rootfs/etc/apt/sources.list"
# Every server gets its own host keys (cloud-init generates them, or takes them from user_data).
rm -f "$rootfs"/etc/ssh/ssh_host_*
# Units that cannot work in a container (no udev, no kernel/hardware access, read-only /sys).
for unit in \
	systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
	systemd-udevd-control.socket systemd-udevd-kernel.socket \
	systemd-modules-load.service systemd-sysctl.service systemd-remount-fs.service \
	systemd-firstboot.service systemd-random-seed.service systemd-machine-id-commit.service \
	sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount \
	dev-hugepages.mount dev-mqueue.mount \
	getty@tty1.service serial-getty@.service console-getty.service getty.target \
	e2scrub_all.timer e2scrub_reap.service apt-daily.timer apt-daily-upgrade.timer fstrim.timer \
	systemd-journald-audit.socket; do
	ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
: >"$rootfs/etc/machine-id" # systemd makes one per container on first boot
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log

if [[ $arch == arm64 ]]; then
	native_runtime
fi

echo "==> docker import $base_ref"
tar -C "$rootfs" --numeric-owner --xattrs -c . | docker import \
	--change 'CMD ["/sbin/init"]' \
	--change 'ENV container=docker' \
	--message "dockbridge simulated server: Debian 12 $arch ($hash)" \
	- "$base_ref" >/dev/null

# docker-ce: the base image plus docker.io, installed in a container so that the result is one
# thin layer on top of the base; apt lists and debs stay in the host cache.
echo "==> apt-get install docker.io -> $docker_ref"
docker rm -f "$builder" >/dev/null 2>&1 || true
docker run --name "$builder" \
	-v "$cache/apt-archives:/var/cache/apt/archives" \
	-v "$cache/apt-lists:/var/lib/apt/lists" \
	-e DEBIAN_FRONTEND=noninteractive \
	"$base_ref" /bin/sh -euc '
		printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d
		apt-get -qq update
		apt-get -qq -o Dpkg::Use-Pty=0 install --no-install-recommends docker.io >/dev/null
		rm -f /usr/sbin/policy-rc.d /var/log/*.log /var/log/apt/*
	' >"$work/docker-install.log" 2>&1 || {
	tail -n 50 "$work/docker-install.log" >&2
	echo "build.sh: installing docker.io in $base_ref failed (log above)" >&2
	exit 1
}
docker commit \
	--change 'CMD ["/sbin/init"]' \
	--message "dockbridge simulated server: Debian 12 $arch + docker.io ($hash)" \
	"$builder" "$docker_ref" >/dev/null

# Images of older recipes (either architecture): remove those no container uses.
docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^dockbridge-sim/(debian-12|docker-ce):' |
	grep -v -E ":$hash(-arm64)?\$" | xargs -r docker rmi >/dev/null 2>&1 || true

echo "built $base_ref $docker_ref in $((SECONDS - t0))s"
