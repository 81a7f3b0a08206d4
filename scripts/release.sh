#!/usr/bin/env bash
# Builds the release archives of docker-dockbridge into dist/ (`make release` calls it after
# internal/serverbin/build.sh has written the servers' binaries for the CLI to embed):
#   dist/docker-dockbridge-<os>-<arch>.tar.gz (.zip for Windows)  the CLI plugin + README.md
#   dist/<archive>.sha256                                        its checksum (sha256sum -c)
#   dist/checksums.txt                                           every archive's checksum
#   dist/install.sh                                              the one-line installer
# Archive names carry no version, so .../releases/latest/download/<name> always works; the
# version is inside (`docker dockbridge version`). Archives are reproducible: sorted, owned by
# root, dated by the last commit.
#
# Env: GO, LDFLAGS (version ldflags), DIST (default dist). Usage: release.sh OS/ARCH...
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
go=${GO:-go}
ldflags=${LDFLAGS:--s -w}
dist=${DIST:-$repo/dist}
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

(($#)) || { echo "usage: release.sh OS/ARCH... (e.g. darwin/arm64 linux/amd64 windows/amd64)" >&2; exit 2; }
for a in "$repo"/internal/serverbin/payload/hetzner-volume-plugin-linux-{amd64,arm64}.zst; do
	[[ -f $a ]] || { echo "release.sh: $a is missing: run internal/serverbin/build.sh amd64 arm64 first (make release does)" >&2; exit 1; }
done
command -v zip >/dev/null || { echo "release.sh: zip not found: apt-get install zip" >&2; exit 1; }

rm -rf "$dist"
mkdir -p "$dist"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

for target in "$@"; do
	os=${target%/*} arch=${target#*/}
	name=docker-dockbridge-$os-$arch
	dir=$stage/$name
	mkdir -p "$dir"
	exe=docker-dockbridge
	[[ $os == windows ]] && exe=docker-dockbridge.exe
	(cd "$repo" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$go" build -trimpath -tags serverbin \
		-ldflags "$ldflags" -o "$dir/$exe" ./cli-plugin)
	cp "$repo/README.md" "$dir/README.md"
	chmod 0755 "$dir/$exe"
	chmod 0644 "$dir/README.md"
	touch -d "@$epoch" "$dir/$exe" "$dir/README.md"
	if [[ $os == windows ]]; then
		archive=$name.zip
		(cd "$dir" && zip -q -X -D "$dist/$archive" "$exe" README.md)
	else
		archive=$name.tar.gz
		tar -C "$dir" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -c "$exe" README.md |
			gzip -n -9 >"$dist/$archive"
	fi
	if [[ $os/$arch == $("$go" env GOHOSTOS)/$("$go" env GOHOSTARCH) ]]; then
		# The one this machine runs: it must carry both servers' binaries.
		carried=$("$dir/$exe" version -o json | tr -d ' \n')
		[[ $carried == *'"server_binaries":["linux/amd64","linux/arm64"]'* ]] || {
			echo "release.sh: $name does not carry the servers' binaries: $carried" >&2
			exit 1
		}
	fi
	(cd "$dist" && sha256sum "$archive" >"$archive.sha256")
	echo "$archive: $(du -h "$dist/$archive" | cut -f1) (docker-dockbridge $(du -h "$dir/$exe" | cut -f1))"
done
(cd "$dist" && cat ./*.sha256 >checksums.txt)
install -m 0755 "$repo/scripts/install.sh" "$dist/install.sh"
echo "wrote $dist"
