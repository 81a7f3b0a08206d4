#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# docker-volume-health-check: is Docker's data volume mounted, writable, really used by Docker,
# and how full is it? Is the hetzner volume plugin enabled? Run every 5 minutes by
# docker-volume-health.timer.
#
# Appends exactly one line per run to /var/log/docker-volume-health.log (stable format, parsed by
# the dockbridge CLI; see cloudinit.ParseHealthLine):
#
#   <UTC RFC 3339 time> level=<OK|WARNING|CRITICAL> mount=<path> used_pct=<int> size_bytes=<int> used_bytes=<int> avail_bytes=<int> warn_pct=<int> crit_pct=<int> msg="<text>"
#
# Unknown numbers are -1; msg never contains a double quote.
# Exit status: 0 for OK and WARNING, 2 for CRITICAL, 1 when it cannot run at all.
set -uo pipefail

: "${DOCKBRIDGE_LIB_DIR:=/usr/local/lib/dockbridge}"
# shellcheck source=lib.sh
. "${DOCKBRIDGE_LIB_DIR}/lib.sh"
DOCKBRIDGE_STEP=health
# Test switch: 1 = do not ask the Docker daemon where its root dir is.
: "${DOCKBRIDGE_HEALTH_SKIP_DOCKER:=0}"

if [ ! -r "$DOCKBRIDGE_CONFIG" ]; then
  echo "docker-volume-health-check: config ${DOCKBRIDGE_CONFIG} is missing" >&2
  exit 1
fi
# shellcheck source=/dev/null
. "$DOCKBRIDGE_CONFIG"
mp=${DOCKBRIDGE_MOUNTPOINT:?}
warn=${DOCKBRIDGE_WARN_PCT:?}
crit=${DOCKBRIDGE_CRIT_PCT:?}
want_uuid=""
if [ -r "$DOCKBRIDGE_VOLUME_INFO" ]; then
  want_uuid=$(sed -n 's/^FS_UUID=//p' "$DOCKBRIDGE_VOLUME_INFO" | head -n1)
fi

level=OK
msgs=()
raise() { # raise LEVEL MESSAGE
  case "$1" in
    CRITICAL) level=CRITICAL ;;
    WARNING) [ "$level" = OK ] && level=WARNING ;;
  esac
  msgs+=("$2")
}

size=-1 used=-1 avail=-1 pct=-1
if ! mountpoint -q "$mp" 2>/dev/null; then
  raise CRITICAL "${mp} is not a mount point: the volume is not mounted"
else
  src=$(findmnt -n -o SOURCE --mountpoint "$mp" | head -n1)
  if [ -n "$want_uuid" ]; then
    got_uuid=$(blkid -p -o value -s UUID "$src" 2>/dev/null || true)
    if [ "$got_uuid" != "$want_uuid" ]; then
      raise CRITICAL "${mp} has ${src} with UUID ${got_uuid:-none}, expected ${want_uuid}"
    fi
  fi
  probe="${mp}/.dockbridge-health-probe.$$"
  if ! { : >"$probe" && rm -f "$probe"; } 2>/dev/null; then
    rm -f "$probe" 2>/dev/null
    raise CRITICAL "${mp} is not writable"
  fi
  if read -r size used avail < <(df --output=size,used,avail -B1 "$mp" 2>/dev/null | tail -n1); then
    if [ $((used + avail)) -gt 0 ]; then
      # Rounded up, like df's Use%.
      pct=$(((used * 100 + used + avail - 1) / (used + avail)))
    fi
  else
    size=-1 used=-1 avail=-1
    raise WARNING "df ${mp} failed"
  fi
  if [ "$pct" -ge "$crit" ]; then
    raise CRITICAL "volume ${pct}% full (critical at ${crit}%)"
  elif [ "$pct" -ge "$warn" ]; then
    raise WARNING "volume ${pct}% full (warning at ${warn}%)"
  fi
fi

if [ "$DOCKBRIDGE_HEALTH_SKIP_DOCKER" != 1 ]; then
  if ! command -v docker >/dev/null 2>&1; then
    raise WARNING "docker CLI not installed"
  elif root=$(timeout 20 docker info --format '{{.DockerRootDir}}' 2>/dev/null) && [ -n "$root" ]; then
    root_mp=$(findmnt -n -o TARGET -T "$root" 2>/dev/null || true)
    if [ "$root_mp" != "$mp" ]; then
      raise CRITICAL "Docker Root Dir ${root} is on ${root_mp:-?}, not on the volume at ${mp}"
    fi
    # Docker disables a plugin that died after a restart: enable up's (marker) once per run.
    p=hetzner:latest
    if [ -e "${mp}/dockbridge-volume-plugin" ]; then
      case $(timeout 20 docker plugin inspect -f '{{.Enabled}}' "$p" 2>/dev/null) in
      true) ;;
      false)
        if out=$(timeout 60 docker plugin enable --timeout 120 "$p" 2>&1); then
          raise CRITICAL "volume plugin ${p} was disabled: re-enabled it"
        else
          raise CRITICAL "volume plugin ${p} is disabled, re-enabling failed: $(echo "$out" | tr '\n' ' ')"
        fi
        ;;
      *) raise CRITICAL "volume plugin ${p} is missing: docker dockbridge up installs it" ;;
      esac
    fi
  else
    raise WARNING "Docker daemon not answering (docker info failed)"
  fi
fi

# Scheduled backups: the server binary judges them.
b=$mp/dockbridge/bin/dockbridge-server;[ -x "$b" ]&&while read -r l m;do raise "$l" "$m";done< <(timeout 9 "$b" backup health 2>/dev/null)
[ "${#msgs[@]}" -eq 0 ] && msgs=("volume mounted, writable, ${pct}% used")
msg=$(printf '%s; ' "${msgs[@]}")
msg=${msg%; }
msg=${msg//\"/\'}
line="$(db_now) level=${level} mount=${mp} used_pct=${pct} size_bytes=${size} used_bytes=${used} avail_bytes=${avail} warn_pct=${warn} crit_pct=${crit} msg=\"${msg}\""
mkdir -p "$(dirname "$DOCKBRIDGE_HEALTH_LOG")" 2>/dev/null
printf '%s\n' "$line" >>"$DOCKBRIDGE_HEALTH_LOG" || echo "docker-volume-health-check: cannot append to ${DOCKBRIDGE_HEALTH_LOG}" >&2
printf '%s\n' "$line"
if [ "$level" != OK ] && command -v logger >/dev/null 2>&1; then
  logger -t docker-volume-health -p "daemon.$([ "$level" = CRITICAL ] && echo crit || echo warning)" -- "$line" 2>/dev/null || true
fi
[ "$level" = CRITICAL ] && exit 2
exit 0
