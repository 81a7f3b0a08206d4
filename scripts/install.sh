#!/bin/sh
# Installs docker-dockbridge, the `docker dockbridge` CLI plugin, for this user: no root, no Go,
# no make. macOS (Apple silicon and Intel) and Linux (x86_64 and arm64):
#
#   curl -fsSL https://github.com/dockbridge/dockbridge/releases/latest/download/install.sh | sh
#
# It downloads the release archive for this machine and its checksum, checks the checksum, and
# puts docker-dockbridge into $DOCKER_CONFIG/cli-plugins (default ~/.docker/cli-plugins), where
# the Docker CLI finds plugins. Settings:
#   DOCKBRIDGE_VERSION=v1.2.3   a given release instead of the latest
#   DOCKBRIDGE_BASE_URL=URL     where the archives are (a mirror, or a local dist/ folder)
set -eu

repo_url=https://github.com/dockbridge/dockbridge
fail() {
	echo "install.sh: $*" >&2
	exit 1
}

case $(uname -s) in
Darwin) os=darwin ;;
Linux) os=linux ;;
MINGW* | MSYS* | CYGWIN* | Windows_NT) fail "on Windows, download docker-dockbridge-windows-amd64.zip from $repo_url/releases and put docker-dockbridge.exe into %USERPROFILE%\\.docker\\cli-plugins (see the README)" ;;
*) fail "no release for $(uname -s): build from source (README)" ;;
esac
case $(uname -m) in
x86_64 | amd64) arch=amd64 ;;
arm64 | aarch64) arch=arm64 ;;
*) fail "no release for $(uname -m): build from source (README)" ;;
esac
if [ "$os" = darwin ] && [ "$arch" = amd64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
	arch=arm64 # a shell under Rosetta on Apple silicon
fi

if [ -n "${DOCKBRIDGE_BASE_URL:-}" ]; then
	base=${DOCKBRIDGE_BASE_URL%/}
elif [ -n "${DOCKBRIDGE_VERSION:-}" ]; then
	base=$repo_url/releases/download/$DOCKBRIDGE_VERSION
else
	base=$repo_url/releases/latest/download
fi
archive=docker-dockbridge-$os-$arch.tar.gz

fetch() { # URL FILE
	case $1 in
	file://*) cp "${1#file://}" "$2" ;;
	/*) cp "$1" "$2" ;;
	*)
		if command -v curl >/dev/null 2>&1; then
			curl -fsSL --retry 3 -o "$2" "$1"
		elif command -v wget >/dev/null 2>&1; then
			wget -q -O "$2" "$1"
		else
			fail "neither curl nor wget is installed"
		fi
		;;
	esac || fail "download $1 failed"
}

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t dockbridge)
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "downloading $base/$archive"
fetch "$base/$archive" "$tmp/$archive"
fetch "$base/$archive.sha256" "$tmp/$archive.sha256"

want=$(awk '{print $1; exit}' "$tmp/$archive.sha256")
if command -v sha256sum >/dev/null 2>&1; then
	have=$(sha256sum "$tmp/$archive" | awk '{print $1}')
elif command -v shasum >/dev/null 2>&1; then
	have=$(shasum -a 256 "$tmp/$archive" | awk '{print $1}')
else
	fail "neither sha256sum nor shasum is installed: cannot check the download"
fi
if [ -z "$want" ] || [ "$have" != "$want" ]; then
	fail "checksum mismatch for $archive (got $have, want $want): not installed"
fi

tar -xzf "$tmp/$archive" -C "$tmp" docker-dockbridge
plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
mkdir -p "$plugins"
# Into place atomically: a running `docker dockbridge` keeps its old file.
cp "$tmp/docker-dockbridge" "$plugins/.docker-dockbridge.new"
chmod 0755 "$plugins/.docker-dockbridge.new"
mv -f "$plugins/.docker-dockbridge.new" "$plugins/docker-dockbridge"
echo "installed $plugins/docker-dockbridge ($os/$arch)"

if command -v docker >/dev/null 2>&1; then
	if ! docker dockbridge --help >/dev/null 2>&1; then
		echo "note: \`docker dockbridge\` does not answer: is your Docker CLI 19.03 or newer (CLI plugins)?"
	fi
	docker dockbridge version 2>/dev/null || true
else
	echo "note: the Docker CLI is not installed. dockbridge needs the CLI only, no local engine:"
	echo "      macOS: brew install docker (or Docker Desktop); Linux: your distribution's docker CLI package"
fi
