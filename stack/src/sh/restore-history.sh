#!/bin/sh
# Prints the newest timeline history file of this member (how its timeline
# began: the recovery target reached), or nothing on timeline 1.
# Arguments (set -- by stack/src/cluster/restore.rs): DATA_DIR
set -eu
newest=$(find "$1/pg_wal" -maxdepth 1 -name '*.history' | sort | tail -n 1)
if [ -n "$newest" ]; then
  echo "timeline-file $(basename "$newest")"
  grep -v "^[[:space:]]*$" "$newest" | tail -n 1
fi
