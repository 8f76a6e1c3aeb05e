#!/bin/sh
# Adds or removes the temporary SSH trust of `restore --into` in a file of
# the postgres account (authorized_keys on the old cluster's backup host,
# known_hosts on the new cluster's restoring member). Every line holding
# MARKER is removed first, so an interrupted restore's line goes too; add
# then appends LINE. The file is written by postgres itself, never by root
# into a home postgres owns.
# Arguments (set -- by stack/src/cluster/restore/into.rs): add|remove FILE MARKER [LINE]
set -eu
[ "$1" = remove ] && [ ! -e "$2" ] && exit 0
runuser -u postgres -- sh -s -- "$@" <<'SH'
set -eu
action=$1 file=$2 marker=$3 line=${4:-}
umask 077
tmp="$file.pgdeploy-tmp"
rm -f -- "$tmp"
if [ -e "$file" ]; then
  grep -vF -- "$marker" "$file" >"$tmp" || true
else
  : >"$tmp"
fi
if [ "$action" = add ]; then
  printf '%s\n' "$line" >>"$tmp"
fi
mv -f -- "$tmp" "$file"
SH
