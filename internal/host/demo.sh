#!/usr/bin/env bash
# The persistence demo of `docker dockbridge` (make demo):
#   up; an image, a named volume, a hetzner-driver volume and a container using both;
#   down (the server is stopped cleanly and deleted, billing stops); up again: everything is there and the data
#   is intact byte for byte; then destroy --volumes.
# Without HCLOUD_TOKEN it runs on the local simulator, whose container backend boots real
# servers (systemd, cloud-init, sshd, Docker). With HCLOUD_TOKEN it uses the real Hetzner API
# after a typed confirmation, because that costs money (DOCKBRIDGE_DEMO_YES=1 without a terminal).
#
# It touches nothing of yours: a temporary DOCKER_CONFIG (contexts, dockbridge's keys and
# settings) and HOME (so the one Include line `up` adds goes into a temporary ~/.ssh/config),
# and an `ssh` wrapper that reads that file (OpenSSH reads the real home otherwise).
#
# Knobs: DEMO_ENV (environment name, default demo), DEMO_SIM_PORT (18080),
# DEMO_ACTION_PROFILE (fast | realistic: Hetzner-like action durations), DEMO_KEEP=1 (leave
# everything up and print how to reach it instead of cleaning up).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

ENV_NAME=${DEMO_ENV:-demo}
CTX=dockbridge-$ENV_NAME
[ "$ENV_NAME" = default ] && CTX=dockbridge

bold=$'\033[1m' green=$'\033[32m' red=$'\033[31m' off=$'\033[0m'
if [ ! -t 1 ]; then bold='' green='' red='' off=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
ok() { printf '%s✓%s %s\n' "$green" "$off" "$*"; }
fail() { printf '%s✗ %s%s\n' "$red" "$*" "$off" >&2; exit 1; }
show() { printf '%s$ %s%s\n' "$bold" "$*" "$off"; "$@"; }

# --- a private user: DOCKER_CONFIG, HOME, ssh ----------------------------------------------
work=$(mktemp -d /tmp/dockbridge-demo.XXXXXX)
real_docker_config=${DOCKER_CONFIG:-$HOME/.docker}
export HOME=$work/home DOCKER_CONFIG=$work/home/.docker
mkdir -p "$DOCKER_CONFIG/cli-plugins" "$work/bin"
# The freshly built CLI (make build), else the installed one (make install). It carries the
# servers' binary: each server assembles the volume plugin itself, as for any user.
plugin_bin=$repo/bin/docker-dockbridge
[ -x "$plugin_bin" ] || plugin_bin=$real_docker_config/cli-plugins/docker-dockbridge
[ -x "$plugin_bin" ] || fail "docker-dockbridge is not built: run make build install"
ln -s "$plugin_bin" "$DOCKER_CONFIG/cli-plugins/docker-dockbridge"
unset DOCKBRIDGE_PLUGIN_DIR
ssh_bin=$(command -v ssh) || fail "the OpenSSH client is missing: apt-get install openssh-client"
# shellcheck disable=SC2016 # $HOME and $@ are the wrapper's, expanded when it runs
printf '#!/bin/sh\nexec %s -F "$HOME/.ssh/config" "$@"\n' "$ssh_bin" > "$work/bin/ssh"
chmod +x "$work/bin/ssh"
export PATH=$work/bin:$PATH
unset DOCKER_HOST DOCKER_CONTEXT

sim_pid='' network='' up_done=''
cleanup() {
  local rc=$?
  set +e
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    say "DEMO_KEEP=1: left running"
    echo "  export HOME=$HOME DOCKER_CONFIG=$DOCKER_CONFIG PATH=$work/bin:\$PATH HCLOUD_ENDPOINT=${HCLOUD_ENDPOINT:-}"
    echo "  docker --context $CTX ps; the simulator is pid ${sim_pid:-none}; clean up: docker dockbridge destroy --name $ENV_NAME --volumes --yes"
    return
  fi
  if [ -n "$up_done" ] || [ -n "$sim_pid" ]; then
    say "Cleaning up: docker dockbridge destroy --volumes --yes"
    if ! docker dockbridge destroy --name "$ENV_NAME" --volumes --yes; then
      # shellcheck disable=SC2016 # backquotes are text
      printf '%s!! destroy failed: the server may still exist and be billed; check `docker dockbridge status --name %s` (DOCKER_CONFIG=%s)%s\n' "$red" "$ENV_NAME" "$DOCKER_CONFIG" "$off" >&2
      rc=1
    fi
  fi
  if [ -n "$sim_pid" ]; then
    kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null
    # What the simulator's cloud leaves: server containers, loop devices of its volume
    # images, its network (the metadata route goes when it stops).
    docker ps -aq --filter "network=$network" | xargs -r docker rm -f >/dev/null
    for img in "$work"/sim/volumes/volume-*.img; do
      [ -e "$img" ] || continue
      for dev in $(losetup -j "$img" -O NAME -n 2>/dev/null); do losetup -d "$dev"; done
    done
    docker network rm "$network" >/dev/null 2>&1
    ok "simulator stopped; its containers, loop devices and network $network removed"
  fi
  rm -rf "$work"
  ok "temporary HOME and DOCKER_CONFIG removed: your ~/.ssh/config and docker contexts were never touched"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the API: Hetzner (after a confirmation) or the simulator -------------------------------
if [ -n "${HCLOUD_TOKEN:-}" ]; then
  echo "HCLOUD_TOKEN is set: this demo creates a REAL server and volumes at Hetzner Cloud, which costs money"
  echo "(a few cents: everything is deleted at the end)."
  if [ "${DOCKBRIDGE_DEMO_YES:-}" != 1 ]; then
    [ -t 0 ] || fail "no terminal to confirm on: set DOCKBRIDGE_DEMO_YES=1 to run against the real API anyway"
    read -r -p "Type 'yes' to continue: " answer
    [ "$answer" = yes ] || fail "stopped: nothing was created"
  fi
else
  say "No HCLOUD_TOKEN: starting the local Hetzner Cloud simulator (every server is a container that really boots)"
  [ -x bin/hcloud-sim ] || fail "bin/hcloud-sim is missing: run make build"
  port=${DEMO_SIM_PORT:-18080}
  network=dockbridge-demo-$$
  mkdir -p "$work/sim"
  bin/hcloud-sim --backend container --listen "127.0.0.1:$port" --network "$network" --state-dir "$work/sim" \
    --token demo-token --action-profile "${DEMO_ACTION_PROFILE:-fast}" >"$work/sim.log" 2>&1 &
  sim_pid=$!
  api=
  for _ in $(seq 100); do
    api=$(sed -n 's/.*hcloud-sim listening.* api=\([^ ]*\).*/\1/p' "$work/sim.log")
    [ -n "$api" ] && break
    kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.log" >&2; sim_pid=; fail "the simulator did not start"; }
    sleep 0.1
  done
  [ -n "$api" ] || fail "the simulator did not start within 10s: $(cat "$work/sim.log")"
  # The simulator serves on the servers' network gateway: the same address works from here
  # and from inside the servers (the volume plugin's endpoint).
  export HCLOUD_TOKEN=demo-token HCLOUD_ENDPOINT=$api DOCKBRIDGE_PLUGIN_ENDPOINT=$api
  ok "simulator at $api (action profile ${DEMO_ACTION_PROFILE:-fast}, network $network)"
fi

# --- the demo ------------------------------------------------------------------------------
C=(docker --context "$CTX")
say "docker dockbridge up"
up_done=1
show docker dockbridge up --name "$ENV_NAME"

say "Make an image here (no registry needed), a named volume, a hetzner volume, a container using both"
rootfs=$work/rootfs
mkdir -p "$rootfs/bin"
cp /bin/busybox "$rootfs/bin/busybox" || fail "a static /bin/busybox is needed: apt-get install busybox-static"
ln -s busybox "$rootfs/bin/sh"
tar -C "$rootfs" -c . | show "${C[@]}" import - keep:1
show "${C[@]}" volume create named-data
show "${C[@]}" volume create -d hetzner -o size=10 hz-data
show "${C[@]}" run -d --name keep --restart unless-stopped -v named-data:/named -v hz-data:/hz keep:1 busybox sleep 2147483647
head -c 4194304 /dev/urandom > "$work/blob"
want=$(sha256sum < "$work/blob" | cut -d' ' -f1)
show "${C[@]}" cp "$work/blob" keep:/named/blob
show "${C[@]}" cp "$work/blob" keep:/hz/blob
ok "4 MiB of random data written to both volumes (sha256 ${want:0:16}…)"

say "docker dockbridge down: the server is stopped cleanly and deleted, the data volume stays"
show docker dockbridge down --name "$ENV_NAME"

say "docker dockbridge up: a new server on the same data volume"
show docker dockbridge up --name "$ENV_NAME"

say "Everything is still there"
for _ in $(seq 90); do
  "${C[@]}" ps --format '{{.Names}} {{.Status}}' | grep -q '^keep Up' && break
  sleep 1
done
show "${C[@]}" ps -a
"${C[@]}" ps --format '{{.Names}} {{.Status}}' | grep -q '^keep Up' || fail "container keep is not running again"
ok "container keep is running again (restart policy, on the new server)"
show "${C[@]}" images
"${C[@]}" images --format '{{.Repository}}:{{.Tag}}' | grep -qx keep:1 || fail "image keep:1 is missing"
ok "image keep:1 is there"
show "${C[@]}" volume ls
vols=$("${C[@]}" volume ls --format '{{.Driver}} {{.Name}}')
grep -qx 'local named-data' <<<"$vols" || fail "volume named-data is missing"
grep -qx 'hetzner:latest hz-data' <<<"$vols" || fail "volume hz-data (driver hetzner) is missing"
ok "volumes named-data (local) and hz-data (hetzner) are there"
for p in /named/blob /hz/blob; do
  got=$("${C[@]}" cp "keep:$p" - | tar -xO | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "$p changed: sha256 $got, want $want"
  ok "$p is intact, byte for byte (sha256 ${got:0:16}…)"
done

say "docker dockbridge status"
show docker dockbridge status --name "$ENV_NAME"
say "The demo worked."
