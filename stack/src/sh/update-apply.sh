#!/bin/sh
# Moves this host's packages to the planned versions and
# holds them again (whether apt succeeded or not), keeping the configuration
# files pgdeploy wrote (--force-confold).
# Arguments: the packages to hold, then `--`, then `NAME=VERSION` for each
# package to move.
set -e
hold=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  hold="$hold $1"
  shift
done
shift
export DEBIAN_FRONTEND=noninteractive
status=0
if [ "$#" -gt 0 ]; then
  apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold install --only-upgrade \
    --allow-change-held-packages "$@" || status=$?
fi
# One word per package name.
# shellcheck disable=SC2086
apt-mark hold $hold >/dev/null
exit "$status"
