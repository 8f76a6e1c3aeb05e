#!/bin/sh
# Prints `pending` when the etcd role's `restart etcd` handler left its
# marker (a configuration or certificate change the member has not loaded).
# Arguments (set -- by stack/src/cluster/etcd.rs): MARKER
set -eu
if [ -e "$1" ]; then
  echo pending
fi
