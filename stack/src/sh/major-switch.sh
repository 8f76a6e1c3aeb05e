#!/bin/sh
# Points this host's configuration at another PostgreSQL major: the data
# and binary directories in Patroni's configuration and in pgBackRest's
# (whichever the host has) are replaced, exactly as the roles render them
# for that major. With `fact`, the local fact of the major follows, which
# the roles read on the next run. Run with the directories swapped, it puts
# the host back. Prints `switched FILE` for each file it changed.
# Arguments (set -- by stack/src/cluster/major.rs): FROM_DATA TO_DATA FROM_BIN TO_BIN TO_MAJOR config|fact
set -eu
from_data=$1 to_data=$2 from_bin=$3 to_bin=$4 to_major=$5 what=$6
for p in "$from_data" "$to_data" "$from_bin" "$to_bin"; do
  case $p in
    /*) ;;
    *) echo "not an absolute path: $p" >&2; exit 1 ;;
  esac
  case $p in
    *[!A-Za-z0-9/._-]*) echo "unexpected characters in $p" >&2; exit 1 ;;
  esac
done
if [ "$what" = fact ]; then
  fact=/etc/pgdeploy/facts.d/postgres.fact
  if [ "$(cat "$fact" 2>/dev/null)" != "major=$to_major" ]; then
    mkdir -p /etc/pgdeploy/facts.d
    printf 'major=%s\n' "$to_major" >"$fact.pgdeploy-tmp"
    chmod 0644 "$fact.pgdeploy-tmp"
    mv -f "$fact.pgdeploy-tmp" "$fact"
    echo "switched $fact"
  fi
  exit 0
fi
for file in /etc/patroni/config.yml /etc/pgbackrest.conf; do
  [ -f "$file" ] || continue
  grep -qF -e "$from_data" -e "$from_bin" "$file" || continue
  sed -e "s|$from_data|$to_data|g" -e "s|$from_bin|$to_bin|g" "$file" >"$file.pgdeploy-tmp"
  chown --reference="$file" "$file.pgdeploy-tmp"
  chmod --reference="$file" "$file.pgdeploy-tmp"
  mv -f "$file.pgdeploy-tmp" "$file"
  echo "switched $file"
done
