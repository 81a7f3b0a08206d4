#!/bin/bash
# dockbridge-stop: the clean stop of a dockbridge server before it is deleted, and its undo.
#
#   dockbridge-stop stop    Docker stops: dockerd stops every container with its own stop
#                           signal and stop timeout, then the volume plugins (the hetzner plugin
#                           records the release of the volumes it held, so another server may
#                           take them). Then every filesystem on a Hetzner volume is synced and
#                           unmounted, deepest first, the data volume at /var/lib/docker last.
#                           Exits 0 only when Docker is stopped and no volume is mounted.
#   dockbridge-stop start   the undo, for a server that is not deleted after all: the data
#                           volume is mounted again (fstab) and Docker started.
#
# `docker dockbridge down`, `destroy` and `up` run it over SSH before they shut a server down
# and delete it; the server runs the same before it deletes itself. It prints KEY=VALUE lines.
# Every step is bounded: Docker by systemd's stop timeout of docker.service (90 s unless
# changed) and `timeout 150`, sync and each unmount by 60 s.
set -u
export LC_ALL=C

mp=${DOCKBRIDGE_MOUNTPOINT:-/var/lib/docker}
by_id=/dev/disk/by-id

say() { printf '%s=%s\n' "$1" "$2"; }
oneline() { printf '%s' "$1" | tr '\n' ' ' | cut -c1-300; }
now() { date +%s%N; }
# secs prints the seconds since a now() value, with one decimal.
secs() {
  local ms=$((($(now) - $1) / 1000000))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

# volume_mounts prints the mount points of filesystems on Hetzner volumes (their devices are
# /dev/disk/by-id/scsi-0HC_Volume_<id>), in mount order.
volume_mounts() {
  local devs=" " d hex maj min mm target
  for d in "$by_id"/scsi-0HC_Volume_*; do
    [ -b "$d" ] || continue
    hex=$(stat -L -c '%t %T' "$d") || continue
    read -r maj min <<<"$hex"
    devs+="$((16#$maj)):$((16#$min)) "
  done
  [ "$devs" != " " ] || return 0
  findmnt -rn -o MAJ:MIN,TARGET | while read -r mm target; do
    case "$devs" in *" $mm "*) printf '%b\n' "$target" ;; esac
  done
}

stop() {
  local t0 t1 n=0 out state unmounted="" failed="" left m
  t0=$(now)
  if systemctl is-active -q docker.service; then
    n=$(timeout 20 docker ps -q 2>/dev/null | wc -l)
  fi
  say containers_running "$n"
  systemctl stop docker-volume-health.timer >/dev/null 2>&1 || true
  # docker.socket too, so that no docker command starts dockerd again.
  if ! out=$(timeout 150 systemctl stop docker.socket docker.service 2>&1); then
    say docker_error "$(oneline "$out")"
  fi
  state=$(systemctl is-active docker.service 2>/dev/null)
  say docker "${state:-unknown}"
  say docker_seconds "$(secs "$t0")"

  t1=$(now)
  timeout 60 sync || say sync_error "sync did not finish within 60s"
  local -a mounts=()
  mapfile -t mounts < <(volume_mounts | tac)
  for m in "${mounts[@]}"; do
    if out=$(timeout 60 umount -- "$m" 2>&1); then
      unmounted+=" $m"
    else
      failed+="$m: $(oneline "$out"); "
    fi
  done
  left=$(volume_mounts | tr '\n' ' ')
  say unmounted "${unmounted# }"
  say volumes_seconds "$(secs "$t1")"
  [ -z "$failed" ] || say unmount_error "$failed"
  if [ -n "$left" ]; then
    say still_mounted "${left% }"
  fi
  if [ "$state" = active ] || [ "$state" = deactivating ] || [ -n "$left" ]; then
    say result incomplete
    return 1
  fi
  say result ok
}

start() {
  local out
  if ! mountpoint -q "$mp"; then
    if ! out=$(timeout 60 mount "$mp" 2>&1); then
      say mount_error "$(oneline "$out")"
      say result failed
      return 1
    fi
  fi
  if ! out=$(timeout 150 systemctl start docker.socket docker.service 2>&1); then
    say docker_error "$(oneline "$out")"
  fi
  systemctl start docker-volume-health.timer >/dev/null 2>&1 || true
  say docker "$(systemctl is-active docker.service 2>/dev/null)"
  if systemctl is-active -q docker.service; then
    say result ok
    return 0
  fi
  say result failed
  return 1
}

case "${1:-}" in
stop) stop ;;
start) start ;;
*)
  echo "usage: dockbridge-stop stop|start" >&2
  exit 2
  ;;
esac
