#!/usr/bin/env bash
# Make this machine ready to build, test and demo dockbridge: install the Debian packages the
# tests and the demo drive for real, and make sure a Docker engine answers (start dockerd when
# none does). Idempotent and quick when everything is there. Needs root (Debian 12).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/go/bin"
packages=(
	docker.io docker-compose                        # the engine, managed plugins, compose
	e2fsprogs xfsprogs btrfs-progs util-linux fdisk # real mkfs, blkid, wipefs, losetup, sfdisk
	cryptsetup-bin                                  # LUKS headers for the data-safety tests
	cloud-init shellcheck                           # the real schema validator, script lint
	debootstrap                                     # simulated-server images
	zstd busybox-static iptables                    # backup baselines, tiny test images, metadata DNAT
	openssh-client openssh-server                   # SSH contexts; a real sshd in tests
	hcloud-cli                                      # the official CLI, tested against the simulator
	gcc libc6-dev libzstd-dev                       # the helper's static libzstd (make build)
)
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

# A real S3-compatible server for the backup tests (a Go module, built from the module proxy).
versitygw_version=v1.8.0
gobin="$(go env GOPATH 2>/dev/null)/bin"
if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$gobin/versitygw" ]; then
	echo "setup: go install github.com/versity/versitygw/cmd/versitygw@$versitygw_version"
	go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version"
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
