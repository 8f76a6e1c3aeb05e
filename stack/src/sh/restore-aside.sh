#!/bin/sh
# Moves this member's data directory aside (kept, not deleted) so that
# Patroni finds it empty; prints where it went, or nothing when there was
# nothing to keep.
# Arguments (set -- by stack/src/cluster/restore.rs): DATA_DIR ASIDE
set -eu
data=$1 aside=$2
if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
  mv "$data" "$aside"
  echo "$aside"
fi
install -d -o postgres -g postgres -m 0700 "$data"
