#!/bin/sh
# Stops Patroni on this member and makes sure its PostgreSQL is down too
# (Patroni stops it on a clean exit; a fast shutdown otherwise).
# Arguments (set -- by stack/src/cluster/restore.rs): DATA_DIR BIN_DIR
set -eu
data=$1 bin=$2
systemctl stop patroni
if [ -f "$data/postmaster.pid" ] && runuser -u postgres -- "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
  runuser -u postgres -- "$bin/pg_ctl" stop -D "$data" -m fast -w -t 120
fi
