#!/usr/bin/env bash
# Make this machine ready for dockbridge, and make sure a Docker engine answers (start dockerd
# when none does). Idempotent and quick when everything is there. Needs root (Debian 12).
#
#   setup.sh           what `make build`, `make release` and `make demo` need: Docker, the tools
#                      that build and boot the simulated servers, gcc + libzstd-dev and, on
#                      amd64, the arm64 cross compiler + libzstd-dev:arm64 (the servers' binary
#                      links zstd statically for both architectures), zip (release archives)
#   setup.sh --arm64   that, and qemu-user-static registered with binfmt_misc: the simulated
#                      arm64 servers of `make test-arm64` (Hetzner's cax types, emulated)
#   setup.sh --tests   that, and what `make test` needs besides: the real tools the tests drive
#                      (btrfs and partition tools, LUKS, compose, sshd, cloud-init's schema
#                      validator, the shellcheck linter, the official hcloud CLI) and three Go
#                      programs built from the module proxy: versitygw (S3), Terraform and
#                      Hetzner's Terraform provider
set -euo pipefail

tests=0 arm64=0
for arg in "$@"; do
	case $arg in
	--tests) tests=1 ;;
	--arm64) arm64=1 ;;
	*) echo "setup: unknown argument $arg (use --tests for what make test needs too, --arm64 for make test-arm64)" >&2; exit 2 ;;
	esac
done

export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/go/bin"
packages=(
	docker.io                          # the engine: managed plugins, the simulated servers
	debootstrap zstd                   # simulated-server images (make sim-image)
	util-linux e2fsprogs xfsprogs      # loop devices; the disk tools the hetzner plugin carries
	iptables                           # the simulated servers' metadata address (DNAT)
	openssh-client busybox-static      # SSH contexts; the demo's tiny image
	gcc libc6-dev libzstd-dev          # the helper's static libzstd (make build)
	zip                                # the Windows release archive (make release)
)
if [ "$(dpkg --print-architecture)" = amd64 ]; then
	# The servers' binary for arm64 (Hetzner's cax types), linked with zstd as on amd64.
	packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libzstd-dev:arm64)
fi
if ((arm64)); then
	packages+=(qemu-user-static) # arm64 servers under emulation (registered below)
fi
if ((tests)); then
	packages+=(
		docker-compose                         # compose with driver: hetzner
		python3-paramiko                       # docker-compose 1.x through an ssh:// context (compose binds of shared folders)
		sshfs                                  # make bench-local's baseline: a reverse SSHFS mount
		btrfs-progs fdisk                      # foreign filesystems, partition tables
		cryptsetup-bin                         # LUKS headers for the data-safety tests
		cloud-init shellcheck                  # the real schema validator, script lint
		openssh-server                         # a real sshd in tests
		hcloud-cli                             # the official CLI, tested against the simulator
	)
fi
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: missing packages ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	if printf '%s\n' "${missing[@]}" | grep -q ':arm64$' && ! dpkg --print-foreign-architectures | grep -qx arm64; then
		dpkg --add-architecture arm64 # Debian multiarch: arm64 libraries beside the amd64 ones
	fi
	apt-get update -qq
	# Do not let package scripts start services (sshd on port 22 would clash with simulated servers).
	policy=/usr/sbin/policy-rc.d
	created_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	[ -z "$created_policy" ] || rm -f "$policy"
fi

if ((tests)); then
	gobin="$(go env GOPATH)/bin"
	# A real S3-compatible server for the backup tests.
	versitygw_version=v1.8.0
	if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$gobin/versitygw" ]; then
		echo "setup: go install github.com/versity/versitygw/cmd/versitygw@$versitygw_version"
		go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version"
	fi
	# Terraform and Hetzner's provider, the simulator's most demanding client
	# (cmd/hcloud-sim TestTerraformProvider). No Terraform registry is reachable here, so both
	# are built from the Go module proxy; the test points Terraform at the provider with
	# dev_overrides. Terraform 1.5.7 is the newest release that builds from its module: later
	# go.mod files replace backend modules with directories their module zip does not hold.
	# `go build` in the downloaded module, not `go install`, which also asks for the module's
	# version list (some proxies refuse that).
	go_build_module() { # MODULE VERSION BINARY
		local dir
		dir=$(go mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -n "$dir" ] || { echo "setup: go mod download $1@$2 failed" >&2; return 1; }
		(cd "$dir" && GOFLAGS=-mod=readonly go build -trimpath -o "$gobin/$3.tmp" . && mv "$gobin/$3.tmp" "$gobin/$3")
	}
	mkdir -p "$gobin"
	if [ ! -x "$gobin/terraform" ]; then
		echo "setup: building terraform v1.5.7 from the Go module proxy into $gobin (a few minutes)"
		go_build_module github.com/hashicorp/terraform v1.5.7 terraform
	fi
	if [ ! -x "$gobin/terraform-provider-hcloud" ]; then
		echo "setup: building terraform-provider-hcloud v1.68.0 from the Go module proxy into $gobin"
		go_build_module github.com/hetznercloud/terraform-provider-hcloud v1.68.0 terraform-provider-hcloud
	fi
fi

if ((arm64)); then
	bash "$(dirname "$0")/../simimage/binfmt.sh"
fi

if ! docker info >/dev/null 2>&1; then
	echo "setup: starting dockerd (log: /var/log/dockerd.log)"
	nohup dockerd >>/var/log/dockerd.log 2>&1 &
	for _ in $(seq 1 60); do
		docker info >/dev/null 2>&1 && break
		sleep 1
	done
	if ! docker info >/dev/null 2>&1; then
		echo "setup: dockerd did not answer within 60 s; the end of its log:" >&2
		tail -50 /var/log/dockerd.log >&2
		exit 1
	fi
fi
modprobe loop 2>/dev/null || true
docker version --format 'setup: docker engine {{.Server.Version}} (API {{.Server.APIVersion}}) ready'
