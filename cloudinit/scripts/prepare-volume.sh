#!/bin/bash
# shellcheck source-path=SCRIPTDIR
# prepare-volume.sh: put the Hetzner data volume at Docker's data root before Docker starts.
#
# Rules (the whole point of dockbridge is to keep this data):
#   - wait for the device, with a bound; on timeout fail (Docker stays stopped and masked);
#   - format ONLY a device with no signature of any kind (blkid -p, wipefs, first MiB all zero),
#     never with mkfs -F/-f;
#   - an existing ext4/xfs filesystem is mounted as it is (it must carry the expected UUID when one
#     is configured); anything else (other filesystem, partition table, LUKS, unknown data, UUID
#     mismatch) is refused without writing a byte to the device;
#   - Docker state already on the root disk is set aside (renamed), copied onto the volume only
#     when the volume was just formatted, and never copied over existing data;
#   - the mount is recorded in fstab by UUID with nofail (idempotent).
# Exit 0 when the volume is mounted; 1 (with the failure marker written) otherwise.
set -euo pipefail

: "${DOCKBRIDGE_LIB_DIR:=/usr/local/lib/dockbridge}"
# shellcheck source=lib.sh
. "${DOCKBRIDGE_LIB_DIR}/lib.sh"
DOCKBRIDGE_STEP=volume
load_config

dev=$DOCKBRIDGE_DEVICE
mp=$DOCKBRIDGE_MOUNTPOINT
want_fs=$DOCKBRIDGE_FS_TYPE
want_uuid=${DOCKBRIDGE_EXPECTED_UUID:-}
timeout=$DOCKBRIDGE_DEVICE_TIMEOUT
mount_opts=defaults,discard

log "preparing volume ${DOCKBRIDGE_VOLUME_ID} (${dev}) for ${mp}; new filesystem would be ${want_fs}${want_uuid:+; expected UUID ${want_uuid}}"

# 1. Docker must not be running while its data root moves: stop the socket too, or the
#    next API call would start it again.
for unit in docker.socket docker.service; do
  if unit_active "$unit"; then
    log "${unit} is running (Docker preinstalled in the image): stopping it"
    run_systemctl stop "$unit" || fail "could not stop ${unit}"
  fi
done

# 2. Wait for the device, bounded.
waited=0
while [ ! -b "$dev" ]; do
  if [ "$waited" -ge "$timeout" ]; then
    fail "device ${dev} for volume ${DOCKBRIDGE_VOLUME_ID} did not appear within ${timeout}s: is the volume attached to this server?"
  fi
  if [ $((waited % 30)) -eq 0 ]; then
    log "waiting for ${dev} (${waited}s of ${timeout}s)"
  fi
  sleep 1
  waited=$((waited + 1))
done
real=$(readlink -f "$dev")
log "device ${dev} is ${real}"

# 3. Something already mounted at the mount point?
formatted=no
cur_src=$(findmnt -n -o SOURCE --mountpoint "$mp" 2>/dev/null | head -n1 || true)
if [ -n "$cur_src" ] && [ "$(readlink -f "$cur_src")" != "$real" ]; then
  fail "${mp} already has ${cur_src} mounted, not ${real}: refusing to stack the volume on it"
fi
if [ -z "$cur_src" ]; then
  other=$(findmnt -n -o TARGET --source "$real" 2>/dev/null | head -n1 || true)
  if [ -n "$other" ]; then
    fail "${real} is already mounted at ${other}: refusing to mount it twice"
  fi
fi

# 4. Probe without writing: low-level blkid (no cache) and wipefs listing.
probe_rc=0
probe=$(blkid -p -o export "$real" 2>&1) || probe_rc=$?
sigs=$(wipefs --no-act --noheadings --parsable "$real" 2>&1) || fail "wipefs could not read ${real}: ${sigs}"
prop() { printf '%s\n' "$probe" | sed -n "s/^$1=//p" | head -n1; }

case "$probe_rc" in
  0)
    fs_type=$(prop TYPE)
    fs_uuid=$(prop UUID)
    pt_type=$(prop PTTYPE)
    if [ -n "$pt_type" ]; then
      fail "${real} holds a ${pt_type} partition table, not a filesystem: refusing to touch it (signatures: ${sigs//$'\n'/; })"
    fi
    case "$fs_type" in
      ext4 | xfs) ;;
      crypto_LUKS) fail "${real} is a LUKS encrypted device: refusing to touch it" ;;
      "") fail "${real} has a signature blkid cannot name (${probe//$'\n'/ }): refusing to touch it" ;;
      *) fail "${real} holds a ${fs_type} filesystem; only ext4 or xfs are mounted: refusing to touch it" ;;
    esac
    extra=$(printf '%s\n' "$sigs" | awk -F, -v t="$fs_type" 'NF >= 4 && $4 != t { print $4 }' | sort -u | tr '\n' ' ')
    if [ -n "$extra" ]; then
      fail "${real} holds ${fs_type} but also other signatures (${extra% }): refusing to guess which is real"
    fi
    if [ -z "$fs_uuid" ]; then
      fail "${real} holds ${fs_type} without a UUID: cannot record it in fstab safely"
    fi
    if [ -n "$want_uuid" ] && [ "$fs_uuid" != "$want_uuid" ]; then
      fail "${real} holds ${fs_type} with UUID ${fs_uuid}, expected ${want_uuid}: this is the wrong volume, refusing to mount it"
    fi
    log "found existing ${fs_type} filesystem ${fs_uuid}: mounting it as it is (no format)"
    ;;
  2)
    if [ -n "$sigs" ]; then
      fail "blkid found nothing on ${real} but wipefs lists signatures (${sigs//$'\n'/; }): refusing to format"
    fi
    if ! cmp -s -n 1048576 "$real" /dev/zero; then
      fail "${real} has no known signature but its first MiB is not blank (unknown data): refusing to format"
    fi
    if [ -n "$want_uuid" ]; then
      fail "${real} is blank but a filesystem with UUID ${want_uuid} was expected: wrong volume or lost data, refusing to format"
    fi
    if [ -n "$cur_src" ]; then
      fail "${real} is mounted at ${mp} but shows no filesystem signature: refusing to continue"
    fi
    log "${real} is blank (no signature, first MiB zero): formatting it as ${want_fs}"
    case "$want_fs" in
      # stdin from /dev/null: should mkfs still see something and ask, the answer is no.
      ext4) mkfs_out=$(mkfs.ext4 -q -L dockbridge "$real" </dev/null 2>&1) || fail "mkfs.ext4 ${real} failed: ${mkfs_out}" ;;
      xfs) mkfs_out=$(mkfs.xfs -q -L dockbridge "$real" </dev/null 2>&1) || fail "mkfs.xfs ${real} failed: ${mkfs_out}" ;;
      *) fail "unsupported filesystem ${want_fs} in ${DOCKBRIDGE_CONFIG}" ;;
    esac
    formatted=yes
    probe=$(blkid -p -o export "$real" 2>&1) || fail "blkid cannot see the filesystem just made on ${real}: ${probe}"
    fs_type=$(prop TYPE)
    fs_uuid=$(prop UUID)
    if [ "$fs_type" != "$want_fs" ] || [ -z "$fs_uuid" ]; then
      fail "after mkfs ${real} shows TYPE=${fs_type} UUID=${fs_uuid}, expected ${want_fs}"
    fi
    log "formatted ${real} as ${fs_type} with UUID ${fs_uuid}"
    ;;
  4) fail "blkid reports ambivalent signatures on ${real} (${probe//$'\n'/ }): refusing to touch it" ;;
  *) fail "blkid -p ${real} failed with exit ${probe_rc}: ${probe}" ;;
esac

# 5. Mount, setting aside whatever Docker left on the root disk.
aside=""
if [ -z "$cur_src" ]; then
  if [ -e "$mp" ] && [ ! -d "$mp" ]; then
    fail "${mp} exists and is not a directory"
  fi
  if [ -d "$mp" ] && [ -n "$(find "$mp" -mindepth 1 -maxdepth 1 -print -quit)" ]; then
    aside="${mp}.pre-dockbridge.$(date -u +%Y%m%dT%H%M%SZ)"
    mv "$mp" "$aside" || fail "could not set the root-disk ${mp} aside to ${aside}"
    log "root-disk contents of ${mp} set aside (renamed, not deleted) to ${aside}"
  fi
  mkdir -p "$mp"
  mount_out=$(mount -t "$fs_type" -o "$mount_opts" "$real" "$mp" 2>&1) ||
    fail "mount -t ${fs_type} ${real} ${mp} failed: ${mount_out}"
  log "mounted ${real} (${fs_type} ${fs_uuid}) at ${mp}"
else
  log "${real} was already mounted at ${mp}: keeping that mount"
fi

if [ -n "$aside" ]; then
  content=$(find "$mp" -mindepth 1 -maxdepth 1 ! -name lost+found -print -quit)
  if [ "$formatted" = yes ] && [ -z "$content" ]; then
    log "volume is new and empty: copying the root-disk Docker state from ${aside} onto it"
    cp_out=$(cp -a "${aside}/." "${mp}/" 2>&1) || fail "copying ${aside} onto the new volume failed: ${cp_out}"
    log "copied; the original stays at ${aside} (remove it once Docker works)"
  else
    log "volume already holds data: NOT copying ${aside} over it; the root-disk state stays at ${aside}"
  fi
fi

# 6. fstab by UUID with nofail: replace any line for this mount point or UUID, no duplicates.
pass=2
[ "$fs_type" = xfs ] && pass=0
entry="UUID=${fs_uuid} ${mp} ${fs_type} defaults,nofail,discard 0 ${pass}"
touch "$DOCKBRIDGE_FSTAB"
new_fstab=$(awk -v mp="$mp" -v id="UUID=${fs_uuid}" '
  /^[[:space:]]*#/ || NF < 2 { print; next }
  $2 == mp || $1 == id { next }
  { print }' "$DOCKBRIDGE_FSTAB")
new_fstab=$(printf '%s\n%s\n' "$new_fstab" "$entry" | sed '/./,$!d')
if [ "$new_fstab" != "$(cat "$DOCKBRIDGE_FSTAB")" ]; then
  printf '%s\n' "$new_fstab" | write_file_atomic "$DOCKBRIDGE_FSTAB" 0644
  log "recorded in ${DOCKBRIDGE_FSTAB}: ${entry}"
else
  log "${DOCKBRIDGE_FSTAB} already has: ${entry}"
fi
run_systemctl daemon-reload || log "WARNING: systemctl daemon-reload failed"

# 7. Facts for the CLI and the health check.
{
  printf 'ENV_NAME=%s\n' "${DOCKBRIDGE_ENV_NAME:-}"
  printf 'VOLUME_ID=%s\n' "$DOCKBRIDGE_VOLUME_ID"
  printf 'DEVICE=%s\n' "$dev"
  printf 'DEVICE_RESOLVED=%s\n' "$real"
  printf 'FS_UUID=%s\n' "$fs_uuid"
  printf 'FS_TYPE=%s\n' "$fs_type"
  printf 'MOUNTPOINT=%s\n' "$mp"
  printf 'FORMATTED_AT_BOOT=%s\n' "$formatted"
  printf 'ROOT_DISK_STATE_ASIDE=%s\n' "$aside"
  printf 'LABELS=%s\n' "${DOCKBRIDGE_LABELS:-}"
  printf 'PREPARED_AT=%s\n' "$(db_now)"
} | write_file_atomic "$DOCKBRIDGE_VOLUME_INFO" 0644
log "volume ready: ${fs_type} ${fs_uuid} at ${mp} (formatted at this boot: ${formatted})"
