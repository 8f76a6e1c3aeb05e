#!/bin/sh
# Puts a member's old cluster back after an upgrade that did not reach its
# cut-over: global/pg_control back from pg_control.old (pg_upgrade --link
# renamed it; nothing else of the old cluster changed, the new one never
# ran), the new data directory removed, and Patroni's cached copy of the
# dynamic configuration removed (it holds the upgrade's pause, which
# Patroni would take again from it once etcd's state is cleared). Prints
# what it did.
# Arguments (set -- by stack/src/cluster/major.rs): OLD_DATA NEW_DATA
set -eu
old_data=$1 new_data=$2
if [ -f "$old_data/global/pg_control.old" ] && [ ! -f "$old_data/global/pg_control" ]; then
  mv -- "$old_data/global/pg_control.old" "$old_data/global/pg_control"
  echo "put back $old_data/global/pg_control"
fi
rm -f -- "$old_data/patroni.dynamic.json"
if [ -d "$new_data" ]; then
  if [ -f "$new_data/postmaster.pid" ] && kill -0 "$(head -n1 "$new_data/postmaster.pid")" 2>/dev/null; then
    echo "$new_data: a server runs there; left alone" >&2
    exit 1
  fi
  rm -rf -- "$new_data"
  echo "removed $new_data"
fi
