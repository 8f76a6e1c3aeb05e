#!/bin/sh
# What `pgdeploy update` would move on this host.
# Prints `held NAME yes|no` for each package named that is installed, then,
# after refreshing apt's lists, `move NAME FROM TO` for each package an
# upgrade of those would move (their dependencies included), from apt's
# simulation. Changes no package.
# Arguments: the packages (names, no versions).
set -e
installed=
for name in "$@"; do
  # shellcheck disable=SC2016 # dpkg-query's own ${field} format
  status=$(dpkg-query -W -f='${Status}' "$name" 2>/dev/null || true)
  case $status in
    hold\ *\ installed) echo "held $name yes" ;;
    *\ installed) echo "held $name no" ;;
    *) continue ;;
  esac
  installed="$installed $name"
done
[ -n "$installed" ] || exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get -q -o DPkg::Lock::Timeout=120 update >/dev/null
# One word per package name.
# shellcheck disable=SC2086
LC_ALL=C apt-get -s -o Debug::NoLocking=1 install --only-upgrade --allow-change-held-packages $installed |
  sed -n 's/^Inst \([^ ]*\) \[\([^]]*\)\] (\([^ ]*\) .*/move \1 \2 \3/p'
