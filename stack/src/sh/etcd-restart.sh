#!/bin/sh
# Restarts this etcd member (it loads its new configuration and
# certificate), then clears the pending-restart marker.
# Arguments (set -- by stack/src/cluster/etcd.rs): MARKER
set -eu
systemctl restart etcd
rm -f "$1"
