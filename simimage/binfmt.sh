#!/usr/bin/env bash
# Makes this machine run arm64 (aarch64) programs under qemu-user, as the simulated arm64
# servers need: to build (debootstrap's second stage, apt in the builder) and to boot.
# Idempotent; needs root and Debian's qemu-user-static. The registration must carry the F
# flag: the kernel opens the emulator once, so it runs in every container's mount namespace
# without being in its file system. build.sh --arch arm64 runs this; so does simhost before
# it boots an arm64 server (a reboot forgets registrations).
set -euo pipefail
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
dir=/proc/sys/fs/binfmt_misc
if [[ ! -f $conf ]]; then
	echo "binfmt.sh: arm64 servers run under qemu-user: apt-get install qemu-user-static (make setup-arm64)" >&2
	exit 1
fi
if [[ ! -e $dir/register ]]; then
	mount -t binfmt_misc binfmt_misc "$dir"
fi
if [[ ! -e $dir/qemu-aarch64 ]]; then
	cat "$conf" >"$dir/register"
fi
grep -qx enabled "$dir/qemu-aarch64" || echo 1 >"$dir/qemu-aarch64"
if ! grep -q '^flags:.*F' "$dir/qemu-aarch64"; then
	echo "binfmt.sh: qemu-aarch64 is registered without the F flag (containers would not find the emulator):" >&2
	echo "  echo -1 > $dir/qemu-aarch64, then run this again" >&2
	exit 1
fi
