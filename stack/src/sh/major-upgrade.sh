#!/bin/sh
# pg_upgrade on the leader. `check`: the old cluster keeps running; a new
# cluster is made in a scratch directory, `pg_upgrade --check` runs against
# it, and the scratch directory goes. `link`: the old cluster is stopped; the
# new data directory is made afresh and `pg_upgrade --link` moves the data
# into it (the old cluster stays usable until the new one starts: its
# global/pg_control is renamed pg_control.old, which major-undo.sh reverts).
# initdb takes the old cluster's encoding, locales, checksums and WAL
# segment size, as pg_upgrade requires. On failure pg_upgrade's own output
# and the reports it names are printed on stderr.
# Arguments (set -- by stack/src/cluster/major.rs): check|link OLD_BIN NEW_BIN
#   OLD_DATA NEW_DATA PORT ENCODING COLLATE CTYPE PROVIDER ICU CHECKSUMS WALSEG_MB JOBS
set -eu
mode=$1 old_bin=$2 new_bin=$3 old_data=$4 new_data=$5 port=$6
encoding=$7 collate=$8 ctype=$9
shift 9
provider=$1 icu=$2 checksums=$3 walseg=$4 jobs=$5
work=/var/lib/postgresql/pgdeploy-upgrade
if [ "$mode" = check ]; then
  new_data=$(runuser -u postgres -- mktemp -d /var/lib/postgresql/pgdeploy-upgrade-check.XXXXXX)
  trap 'rm -rf "$new_data"' EXIT
else
  if [ -f "$new_data/postmaster.pid" ]; then
    echo "$new_data: a server runs there" >&2
    exit 1
  fi
  rm -rf -- "$new_data"
  runuser -u postgres -- mkdir -p -m 0700 "$new_data"
fi
set -- --pgdata="$new_data" --encoding="$encoding" --lc-collate="$collate" --lc-ctype="$ctype" \
  --wal-segsize="$walseg" --username=postgres --auth=peer --no-instructions
[ "$provider" = i ] && set -- "$@" --locale-provider=icu --icu-locale="$icu"
[ "$checksums" = 1 ] && set -- "$@" --data-checksums
runuser -u postgres -- "$new_bin/initdb" "$@" >/dev/null
rm -rf -- "$work"
runuser -u postgres -- mkdir -m 0700 "$work"
set -- --old-bindir="$old_bin" --new-bindir="$new_bin" --old-datadir="$old_data" \
  --new-datadir="$new_data" --username=postgres --socketdir="$work" --jobs="$jobs"
if [ "$mode" = check ]; then
  set -- "$@" --check --old-port="$port" --new-port=50433
else
  set -- "$@" --link --old-port=50432 --new-port=50433
fi
if ! out=$(cd "$work" && runuser -u postgres -- "$new_bin/pg_upgrade" "$@" 2>&1); then
  {
    printf '%s\n' "$out"
    # The reports pg_upgrade names (tables using removed types, and so on).
    printf '%s\n' "$out" | grep -o '/[^ ]*\.txt' | sort -u | while read -r report; do
      if [ -f "$report" ]; then
        echo "--- $report"
        head -n 50 "$report"
      fi
    done
  } >&2
  exit 1
fi
printf '%s\n' "$out" | tail -n 3
rm -rf -- "$work"
