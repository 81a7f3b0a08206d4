#!/usr/bin/env bash
# The persistence demo of `docker dockbridge`: up, a container with an image, a named volume
# and a hetzner-driver volume, down (the server is deleted), up again: everything is there
# and the data is intact byte for byte. Without HCLOUD_TOKEN it runs on the local simulator
# (its container backend boots real servers); with HCLOUD_TOKEN it uses the real API after
# an explicit confirmation, because that costs money.
set -euo pipefail
cd "$(dirname "$0")/../.."

ENV_NAME=${DEMO_ENV:-demo}
IMAGE=${DEMO_IMAGE:-dockbridge-test/busybox:latest}
CTX=dockbridge-$ENV_NAME
C=(docker --context "$CTX")
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

sim_pid=
cleanup() {
  say "Cleaning up: destroy --volumes"
  docker dockbridge destroy --name "$ENV_NAME" --volumes --yes || echo "destroy failed: check 'docker dockbridge status --name $ENV_NAME'" >&2
  if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
}

if [ -n "${HCLOUD_TOKEN:-}" ]; then
  echo "HCLOUD_TOKEN is set: this demo creates a REAL server and volumes at Hetzner Cloud, which costs money."
  read -r -p "Type 'yes' to continue: " answer
  [ "$answer" = yes ] || { echo "stopped"; exit 1; }
else
  if ! bin/hcloud-sim --help 2>&1 | grep -q -- 'container'; then
    echo "demo: bin/hcloud-sim has no container backend yet: the demo needs simulated servers that really boot (cloud-init, sshd, Docker)." >&2
    exit 1
  fi
  state=$(mktemp -d)
  port=${DEMO_SIM_PORT:-18080}
  export HCLOUD_TOKEN=demo-token HCLOUD_ENDPOINT=http://127.0.0.1:$port/v1
  bin/hcloud-sim --backend container --listen "127.0.0.1:$port" --state-dir "$state" --token demo-token &
  sim_pid=$!
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/_sim/stats" >/dev/null 2>&1 && break; sleep 0.2; done
fi
trap cleanup EXIT

docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "demo: image $IMAGE is not on the local engine (no registry here): set DEMO_IMAGE" >&2; exit 1; }

say "docker dockbridge up"
docker dockbridge up --name "$ENV_NAME"

say "An image, a named volume, a hetzner volume and a container using both"
docker save "$IMAGE" | "${C[@]}" load
"${C[@]}" volume create named-data
"${C[@]}" volume create -d hetzner -o size=10 hz-data
"${C[@]}" run -d --name keep -v named-data:/named -v hz-data:/hz "$IMAGE" \
  sh -c 'head -c 4194304 /dev/urandom > /named/blob && cp /named/blob /hz/blob && sync && sleep 2147483647'
sleep 2
before=$("${C[@]}" exec keep sha256sum /named/blob /hz/blob)
echo "$before"

say "docker dockbridge down (the server is deleted)"
docker dockbridge down --name "$ENV_NAME"

say "docker dockbridge up (a new server, the same data volume)"
docker dockbridge up --name "$ENV_NAME"

say "Everything is still there"
"${C[@]}" ps -a
"${C[@]}" images
"${C[@]}" volume ls
"${C[@]}" start keep >/dev/null
after=$("${C[@]}" exec keep sha256sum /named/blob /hz/blob)
echo "$after"
if [ "$before" = "$after" ]; then
  say "The data in the named volume and in the hetzner volume is intact, byte for byte."
else
  echo "DATA CHANGED: before/after differ" >&2
  exit 1
fi
docker dockbridge status --name "$ENV_NAME"
