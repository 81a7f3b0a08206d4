# shellcheck shell=bash
# lib.sh: shared helpers for the dockbridge first-boot scripts.
# Installed as /usr/local/lib/dockbridge/lib.sh and sourced, never executed.
#
# Every path below has the production default; the tests override them through
# the environment to run the scripts against loop devices and temp dirs.
: "${DOCKBRIDGE_CONFIG:=/etc/dockbridge/dockbridge.env}"
: "${DOCKBRIDGE_LOG:=/var/log/dockbridge-setup.log}"
: "${DOCKBRIDGE_FAILED_MARKER:=/var/log/dockbridge-setup-failed}"
: "${DOCKBRIDGE_COMPLETE_MARKER:=/var/log/cloud-init-complete}"
: "${DOCKBRIDGE_VOLUME_INFO:=/etc/dockbridge/volume-info}"
: "${DOCKBRIDGE_FSTAB:=/etc/fstab}"
: "${DOCKBRIDGE_HEALTH_LOG:=/var/log/docker-volume-health.log}"
: "${DOCKBRIDGE_SECRETS_DIR:=/etc/dockbridge/secrets}"
# Test switch: 1 = log systemctl calls instead of running them.
: "${DOCKBRIDGE_SKIP_SYSTEMCTL:=0}"
: "${DOCKBRIDGE_TAG:=dockbridge}"
# The step being run, named in log lines and in the failure marker.
DOCKBRIDGE_STEP=${DOCKBRIDGE_STEP:-start}
mkdir -p "$(dirname "$DOCKBRIDGE_LOG")" 2>/dev/null || true

db_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# log MESSAGE...: to stderr (cloud-init-output.log), the dockbridge log and the journal.
log() {
  local line
  line="$(db_now) ${DOCKBRIDGE_TAG}[${DOCKBRIDGE_STEP}]: $*"
  printf '%s\n' "$line" >&2
  printf '%s\n' "$line" >>"$DOCKBRIDGE_LOG" 2>/dev/null || true
  if command -v logger >/dev/null 2>&1; then
    logger -t "$DOCKBRIDGE_TAG" -- "[${DOCKBRIDGE_STEP}] $*" 2>/dev/null || true
  fi
}

# run_systemctl ARGS...: systemctl, or only a log line when DOCKBRIDGE_SKIP_SYSTEMCTL=1.
run_systemctl() {
  if [ "$DOCKBRIDGE_SKIP_SYSTEMCTL" = 1 ]; then
    log "test mode: skipped: systemctl $*"
    return 0
  fi
  systemctl "$@"
}

# unit_active UNIT: true when the unit is active (always false in test mode).
unit_active() {
  [ "$DOCKBRIDGE_SKIP_SYSTEMCTL" = 1 ] && return 1
  systemctl is-active --quiet "$1"
}

# keep_docker_down: stop Docker and mask it persistently, so that neither this boot
# nor a reboot can start it with its data on the root disk. An operator unmasks it
# after fixing the volume (systemctl unmask docker.service docker.socket).
keep_docker_down() {
  run_systemctl stop docker.socket docker.service >/dev/null 2>&1 || true
  run_systemctl mask docker.service docker.socket >/dev/null 2>&1 ||
    log "WARNING: could not mask docker.service/docker.socket"
}

# fail REASON...: log loudly, write the failure marker, keep Docker down, exit 1.
fail() {
  local reason="$*"
  log "FAILED: ${reason}"
  log "FAILED: Docker is kept stopped and masked so it cannot run on the root disk; see ${DOCKBRIDGE_LOG}"
  mkdir -p "$(dirname "$DOCKBRIDGE_FAILED_MARKER")" 2>/dev/null || true
  {
    printf 'TIME=%s\n' "$(db_now)"
    printf 'STEP=%s\n' "$DOCKBRIDGE_STEP"
    printf 'REASON=%s\n' "$reason"
  } >"$DOCKBRIDGE_FAILED_MARKER" 2>/dev/null || log "could not write ${DOCKBRIDGE_FAILED_MARKER}"
  rm -f "$DOCKBRIDGE_COMPLETE_MARKER" 2>/dev/null || true
  keep_docker_down
  exit 1
}

# load_config: source the rendered settings and check the ones every script needs.
load_config() {
  if [ ! -r "$DOCKBRIDGE_CONFIG" ]; then
    fail "config ${DOCKBRIDGE_CONFIG} is missing or unreadable"
  fi
  # shellcheck source=/dev/null
  . "$DOCKBRIDGE_CONFIG"
  local v
  for v in DOCKBRIDGE_VOLUME_ID DOCKBRIDGE_DEVICE DOCKBRIDGE_FS_TYPE DOCKBRIDGE_MOUNTPOINT \
    DOCKBRIDGE_DEVICE_TIMEOUT DOCKBRIDGE_WARN_PCT DOCKBRIDGE_CRIT_PCT; do
    if [ -z "${!v:-}" ]; then
      fail "config ${DOCKBRIDGE_CONFIG} does not set ${v}"
    fi
  done
}

# write_file_atomic PATH MODE: write stdin to PATH via a temp file in the same dir.
write_file_atomic() {
  local path=$1 mode=$2 tmp
  mkdir -p "$(dirname "$path")"
  tmp=$(mktemp "${path}.tmp.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$path"
}
