#!/bin/sh
# Stops and disables the etcd of a member just removed from the cluster and
# moves its data folder aside (kept, never deleted).
# Arguments (set -- by stack/src/cluster/rolling.rs): DATA_DIR
set -eu
data_dir=$1
systemctl disable --now etcd
if [ -d "$data_dir" ]; then
  mv "$data_dir" "$data_dir.removed-$(date +%s)"
fi
