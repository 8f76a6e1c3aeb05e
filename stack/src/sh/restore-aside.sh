#!/bin/sh
# Moves this member's data directory aside (kept, not deleted) so that
# Patroni finds it empty; prints where it went, or nothing when there was
# nothing to keep. With SPOOL (`restore --into`), also empties pgBackRest's
# spool of the stanza: its WAL queue and its marks of WAL already pushed
# belong to the database system the restore replaces.
# Arguments (set -- by stack/src/cluster/restore.rs): DATA_DIR ASIDE [SPOOL]
set -eu
data=$1 aside=$2 spool=${3:-}
if [ -n "$spool" ]; then
  rm -rf -- "$spool"
fi
if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
  mv "$data" "$aside"
  echo "$aside"
fi
install -d -o postgres -g postgres -m 0700 "$data"
