#!/bin/sh
# What a finished major upgrade leaves on a host, listed or removed: the old
# majors' directories under /var/lib/postgresql (never the one the serving
# cluster lives in) and their packages (postgresql-M, postgresql-client-M,
# postgresql-M-*). `list` prints, one per line:
#   dir PATH KB     (KB: what removing it frees; the leader's old directory
#                    shares most of its files with the new one, by --link)
#   pkg NAME        (installed, to be purged)
#   also NAME       (apt would purge it too, as it depends on one of them)
# `remove` purges the packages (refused when apt would take others along),
# then removes the directories (refused while a server runs in one), and
# prints what it did.
# Arguments (set -- by stack/src/cluster/major.rs): MODE TO DATA_DIR
set -eu
mode=$1 to=$2 data=$3

old_dirs() {
  for d in /var/lib/postgresql/[0-9]*; do
    [ -d "$d" ] || continue
    [ "${d##*/}" = "$to" ] && continue
    case "$data/" in "$d"/*) continue ;; esac
    echo "$d"
  done
}

old_packages() {
  dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 'postgresql-[0-9]*' 'postgresql-client-[0-9]*' 2>/dev/null |
    awk -v to="$to" '$1 ~ /^.i/ {
      m = $2; sub(/^postgresql-(client-)?/, "", m); sub(/-.*/, "", m)
      if (m ~ /^[0-9]+$/ && m != to) print $2
    }' | sort -u
}

# Packages apt would purge with $packages that are not among them.
along() {
  # shellcheck disable=SC2086 # a list of package names
  apt-get -s purge $packages 2>/dev/null | awk '$1 == "Purg" { print $2 }' | sort -u |
    while read -r p; do
      printf '%s\n' "$packages" | tr ' ' '\n' | grep -qxF "$p" || echo "$p"
    done
}

packages=$(old_packages | tr '\n' ' ')
packages=${packages% }

case $mode in
list)
  for d in $(old_dirs); do
    kb=$(du -sk "$data" "$d" 2>/dev/null | tail -n 1 | cut -f1)
    echo "dir $d ${kb:-0}"
  done
  for p in $packages; do echo "pkg $p"; done
  if [ -n "$packages" ]; then
    for p in $(along); do echo "also $p"; done
  fi
  ;;
remove)
  if [ -n "$packages" ]; then
    others=$(along | tr '\n' ' ')
    if [ -n "$others" ]; then
      echo "apt would also purge: $others(they depend on the old major); nothing removed" >&2
      exit 1
    fi
    # shellcheck disable=SC2086 # a list of package names
    apt-mark unhold $packages >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $packages >/dev/null
    for p in $packages; do echo "purged $p"; done
  fi
  for d in $(old_dirs); do
    for pid in "$d"/*/postmaster.pid; do
      if [ -f "$pid" ] && kill -0 "$(head -n 1 "$pid")" 2>/dev/null; then
        echo "$d: a server runs there; left alone" >&2
        exit 1
      fi
    done
    rm -rf -- "$d"
    echo "removed $d"
  done
  ;;
*)
  echo "major-finish.sh: unknown mode $mode" >&2
  exit 2
  ;;
esac
