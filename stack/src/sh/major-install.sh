#!/bin/sh
# Installs the new PostgreSQL major's packages beside the running one, held
# (apt-mark hold) like every package the roles install. Installing starts
# nothing: role postgres's createcluster.d setting keeps postgresql-common
# from creating a cluster. Prints `installed NAME VERSION` for each, or
# `unavailable NAME` for one no apt source offers (and installs nothing).
# Arguments (set -- by stack/src/cluster/major.rs): PACKAGE...
set -eu
export DEBIAN_FRONTEND=noninteractive
missing=
for p in "$@"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -qq >/dev/null
  gone=
  for p in $missing; do
    candidate=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
      echo "unavailable $p"
      gone=yes
    fi
  done
  [ -n "$gone" ] && exit 0
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -q -o Dpkg::Options::=--force-confold $missing >/dev/null
fi
apt-mark hold "$@" >/dev/null
for p in "$@"; do
  echo "installed $p $(dpkg-query -W -f '${Version}' "$p")"
done
