#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# dockbridge-setup.sh: first-boot setup of a dockbridge Docker host, run by cloud-init's runcmd.
#
# Order matters: Docker is kept from starting (bootcmd masked it for this boot) until its data
# root is the mounted volume, and is only declared healthy once `docker info` proves it.
#   1. sshd: validate and reload (the host keys and the drop-in are already written);
#   2. prepare-volume.sh: device, probe, format-only-if-blank, mount, fstab, volume-info;
#   3. Docker: install Debian's docker.io only when dockerd is missing, without starting it;
#   4. unmask, enable and start Docker; verify its root dir is on the volume;
#   5. health check timer, one health check run, completion marker.
# Any failure writes /var/log/dockbridge-setup-failed, leaves Docker stopped and masked, exits 1.
set -euo pipefail

: "${DOCKBRIDGE_LIB_DIR:=/usr/local/lib/dockbridge}"
# shellcheck source=lib.sh
. "${DOCKBRIDGE_LIB_DIR}/lib.sh"
DOCKBRIDGE_STEP=setup
load_config
mp=$DOCKBRIDGE_MOUNTPOINT
: "${DOCKBRIDGE_HEALTH_CHECK:=/usr/local/bin/docker-volume-health-check}"

log "dockbridge setup starting (volume ${DOCKBRIDGE_VOLUME_ID}, env ${DOCKBRIDGE_ENV_NAME:-none})"
rm -f "$DOCKBRIDGE_FAILED_MARKER" "$DOCKBRIDGE_COMPLETE_MARKER"

# 1. sshd. Not fatal: a broken volume must still leave SSH usable for debugging.
DOCKBRIDGE_STEP=ssh
if command -v sshd >/dev/null 2>&1; then
  if sshd_out=$(sshd -t 2>&1); then
    run_systemctl try-reload-or-restart ssh.service || log "WARNING: could not reload ssh.service"
    log "sshd configuration valid and reloaded"
  else
    log "WARNING: sshd -t rejects the configuration, not reloading: ${sshd_out}"
  fi
else
  log "WARNING: sshd is not installed"
fi

# 2. The volume. prepare-volume.sh writes its own failure marker and keeps Docker down.
DOCKBRIDGE_STEP=volume
"${DOCKBRIDGE_LIB_DIR}/prepare-volume.sh" || exit 1

# 3. Docker, installed only when missing.
DOCKBRIDGE_STEP=docker-install
if command -v dockerd >/dev/null 2>&1; then
  log "dockerd found at $(command -v dockerd): not installing Docker"
elif [ "${DOCKBRIDGE_INSTALL_DOCKER:-yes}" != yes ]; then
  fail "dockerd is not installed and Docker installation is disabled"
else
  log "dockerd not found: installing Debian's docker.io"
  # Keep the package from starting Docker before we say so (policy-rc.d 101 = action forbidden).
  policy=/usr/sbin/policy-rc.d
  own_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# dockbridge: no service starts during first-boot package installs\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=yes
  fi
  ok=no
  for attempt in 1 2 3; do
    if apt_out=$(DEBIAN_FRONTEND=noninteractive apt-get -q update 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends docker.io 2>&1); then
      ok=yes
      break
    fi
    log "apt-get attempt ${attempt} failed: $(printf '%s' "$apt_out" | tail -n 5 | tr '\n' ' ')"
    sleep $((attempt * 10))
  done
  [ "$own_policy" = yes ] && rm -f "$policy"
  [ "$ok" = yes ] || fail "installing docker.io with apt-get failed 3 times: $(printf '%s' "$apt_out" | tail -n 5 | tr '\n' ' ')"
  command -v dockerd >/dev/null 2>&1 || fail "docker.io installed but dockerd is still missing"
  log "installed $(dockerd --version 2>/dev/null || echo docker.io)"
fi

# 4. Start Docker on the volume and prove it.
DOCKBRIDGE_STEP=docker-start
mountpoint -q "$mp" || fail "${mp} is not mounted any more: not starting Docker"
# Secrets (the plugin's token, from up) live on the volume: on a new server Docker starts the
# plugin, which mounts /etc/dockbridge/secrets, before up gets there.
s=${mp}/dockbridge-secrets
if ! { install -d -m 0700 "$s" && mkdir -p "${DOCKBRIDGE_SECRETS_DIR%/*}" && ln -sfnT "$s" "$DOCKBRIDGE_SECRETS_DIR"; }; then
  log "WARNING: could not link ${DOCKBRIDGE_SECRETS_DIR} to $s"
fi
run_systemctl unmask --runtime docker.service docker.socket >/dev/null 2>&1 || true
run_systemctl unmask docker.service docker.socket >/dev/null 2>&1 || true
run_systemctl daemon-reload || fail "systemctl daemon-reload failed"
run_systemctl enable docker.socket docker.service || fail "systemctl enable docker failed"
run_systemctl restart docker.service || fail "systemctl restart docker.service failed: $(journalctl -u docker.service -n 20 --no-pager 2>&1 | tr '\n' ' ')"
run_systemctl start docker.socket || log "WARNING: could not start docker.socket"

root=""
for _ in $(seq 1 60); do
  if root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null) && [ -n "$root" ]; then
    break
  fi
  root=""
  sleep 1
done
[ -n "$root" ] || fail "Docker did not answer docker info within 60s"
root_mp=$(findmnt -n -o TARGET -T "$root" || true)
root_src=$(findmnt -n -o SOURCE -T "$root" || true)
vol_dev=$(sed -n 's/^DEVICE_RESOLVED=//p' "$DOCKBRIDGE_VOLUME_INFO" | head -n1)
if [ "$root_mp" != "$mp" ] || [ "$(readlink -f "$root_src")" != "$vol_dev" ]; then
  fail "Docker Root Dir is ${root} on ${root_src:-?} mounted at ${root_mp:-?}, not the volume ${vol_dev} at ${mp}: Docker stopped"
fi
log "Docker is running with Root Dir ${root} on ${root_src} (${mp})"

# 5. Health check: timer every 5 minutes, and once now.
DOCKBRIDGE_STEP=health
run_systemctl daemon-reload || true
run_systemctl enable --now docker-volume-health.timer || log "WARNING: could not enable docker-volume-health.timer"
if health=$("$DOCKBRIDGE_HEALTH_CHECK" 2>&1); then
  log "health check: ${health}"
else
  log "WARNING: health check reports a problem: ${health}"
fi

DOCKBRIDGE_STEP=complete
printf '%s\n' "$(db_now)" | write_file_atomic "$DOCKBRIDGE_COMPLETE_MARKER" 0644
log "dockbridge setup complete: Docker runs on volume ${DOCKBRIDGE_VOLUME_ID} at ${mp}"
