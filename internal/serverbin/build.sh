#!/usr/bin/env bash
# Builds the servers' static Linux binary (the hetzner volume plugin, which is also the backup
# helper) for each architecture given (amd64, arm64) and writes it zstd-compressed to
# internal/serverbin/payload/, where `go build -tags serverbin ./cli-plugin` embeds it.
#
# The helper compresses backups with the reference zstd library, linked statically, when the C
# toolchain for the architecture has libzstd.a: gcc for this machine's architecture, Debian's
# cross compiler (gcc-aarch64-linux-gnu or gcc-x86-64-linux-gnu) with the multiarch
# libzstd-dev:<arch> for the other (scripts/setup.sh installs both). Without it, the pure-Go
# encoder, which writes the same frames about 1.5x slower per core.
#   LIBZSTD=auto (default) use the library where the toolchain has it
#   LIBZSTD=1    require it for every architecture (make release)
#   LIBZSTD=0    pure Go everywhere
# Env: GO, LDFLAGS (version ldflags), OUT (default build/serverbin).
#
# Usage: build.sh ARCH...
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
go=${GO:-go}
ldflags=${LDFLAGS:--s -w}
libzstd=${LIBZSTD:-auto}
out=${OUT:-$repo/build/serverbin}
payload=$repo/internal/serverbin/payload
hostarch=$("$go" env GOHOSTARCH)

(($#)) || { echo "usage: build.sh ARCH... (amd64, arm64)" >&2; exit 2; }
command -v zstd >/dev/null || { echo "serverbin/build.sh: zstd not found: apt-get install zstd" >&2; exit 1; }
mkdir -p "$out" "$payload"

cc_for() {
	case $1 in
	"$hostarch") echo gcc ;;
	amd64) echo x86_64-linux-gnu-gcc ;;
	arm64) echo aarch64-linux-gnu-gcc ;;
	*) echo "serverbin/build.sh: unknown architecture $1 (amd64, arm64)" >&2; return 1 ;;
	esac
}

for arch in "$@"; do
	cc=$(cc_for "$arch")
	lib=$("$cc" -print-file-name=libzstd.a 2>/dev/null || true)
	use_lib=0
	case $libzstd in
	0) ;;
	1 | auto)
		if [[ $lib == /* ]]; then
			use_lib=1
		elif [[ $libzstd == 1 ]]; then
			pkgs="libzstd-dev"
			[[ $arch == "$hostarch" ]] || pkgs="gcc-${cc%-gcc} libzstd-dev:$arch (dpkg --add-architecture $arch)"
			pkgs=${pkgs//gcc-x86_64/gcc-x86-64}
			echo "serverbin/build.sh: linux/$arch needs the static zstd library and a C compiler for it: apt-get install $pkgs (or LIBZSTD=0 for the pure-Go encoder)" >&2
			exit 1
		fi
		;;
	*) echo "serverbin/build.sh: LIBZSTD=$libzstd: use auto, 0 or 1" >&2; exit 2 ;;
	esac
	bin=$out/hetzner-volume-plugin-linux-$arch
	if ((use_lib)); then
		encoder="libzstd, static"
		(cd "$repo" && CGO_ENABLED=1 CC=$cc GOOS=linux GOARCH=$arch "$go" build -trimpath -tags libzstd,netgo,osusergo \
			-ldflags "$ldflags -linkmode external -extldflags -static" -o "$bin.tmp" ./volume-plugin)
	else
		encoder="pure Go"
		(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$go" build -trimpath -ldflags "$ldflags" -o "$bin.tmp" ./volume-plugin)
	fi
	mv "$bin.tmp" "$bin"
	# Compress only when the binary changed (zstd -19 takes seconds).
	sum=$(sha256sum "$bin" | cut -d' ' -f1)
	dst=$payload/hetzner-volume-plugin-linux-$arch.zst
	if [[ -f $dst && -f $bin.sha256 && $(cat "$bin.sha256") == "$sum" ]]; then
		state="unchanged"
	else
		zstd -19 -q -f -o "$dst.tmp" "$bin"
		mv "$dst.tmp" "$dst"
		echo "$sum" >"$bin.sha256"
		state="compressed"
	fi
	echo "linux/$arch: $(du -h "$bin" | cut -f1) ($encoder), $(du -h "$dst" | cut -f1) $state in ${dst#"$repo"/}"
done
