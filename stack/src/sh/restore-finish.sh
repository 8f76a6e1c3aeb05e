#!/bin/sh
# Puts Patroni's own configuration back after the restore's bootstrap (the
# one apply writes) and has Patroni read it again.
# Arguments (set -- by stack/src/cluster/restore.rs): CONFIG
set -eu
config=$1
if [ -e "$config.pgdeploy-restore" ]; then
  mv -f "$config.pgdeploy-restore" "$config"
  systemctl reload patroni
fi
