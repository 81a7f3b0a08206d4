#!/bin/bash
# rotate-host-key.sh STEP [PUBLIC KEY]: retire the SSH host key that came with the user-data.
# Not part of the user-data: `docker dockbridge up` runs it over SSH (bash -s) once it has
# reached the server with that key.
#
# The metadata service serves the user-data, and with it the private half of the key the
# client pinned before the server existed, to whatever reaches it, for the server's whole life.
# So after the first contact the server makes a new key and the old one goes:
#   prepare [PUB]  make the next key and print its public half ("type base64"). When it was
#                  made already, print it again; when PUB is in place already (an earlier run got
#                  that far), print PUB. The client pins what this prints before the commit.
#   commit         check sshd's configuration, put the next key in the place of the old one (the
#                  old private key is gone) and have sshd load it. Connections that are open stay
#                  open. Prints the key now in place.
# Both steps can be run again after an interruption at any point.
set -euo pipefail

: "${DOCKBRIDGE_HOST_KEY:=/etc/ssh/ssh_host_ed25519_key}"
key=$DOCKBRIDGE_HOST_KEY
next=${key}.dockbridge-next

pub() { ssh-keygen -y -f "$1" | cut -d' ' -f1,2; }

case ${1:-} in
prepare)
  if [ -s "$next" ]; then
    pub "$next"
  elif [ -n "${2:-}" ] && [ "$(pub "$key")" = "$2" ]; then
    echo "$2"
  else
    rm -f "$next.tmp" "$next.tmp.pub"
    ssh-keygen -q -t ed25519 -N '' -C dockbridge-host-key -f "$next.tmp"
    rm -f "$next.tmp.pub"
    mv -f "$next.tmp" "$next"
    pub "$next"
  fi
  ;;
commit)
  sshd -t
  if [ -s "$next" ]; then
    pub "$next" >"$next.pub"
    chmod 0644 "$next.pub"
    mv -f "$next.pub" "$key.pub"
    mv -f "$next" "$key"
  fi
  systemctl reload ssh.service 2>/dev/null || systemctl reload sshd.service
  pub "$key"
  ;;
*)
  echo "usage: rotate-host-key.sh prepare [PUBLIC KEY] | commit" >&2
  exit 2
  ;;
esac
