#!/bin/sh
# What `pgdeploy upgrade --to NEW` finds on the leader before anything
# stops: the running cluster's settings the new major's initdb must match,
# its extensions (and whether the new major has each), the settings it
# sets that the new major does not know, prepared transactions, unlogged
# tables, and the room the upgrade needs. Changes nothing.
# Prints `version OLD NEW`, `initdb ENCODING COLLATE CTYPE PROVIDER ICU
# CHECKSUMS WALSEG_MB`, `stale DB RECORDED ACTUAL` (collation versions),
# `ext DB NAME ok|missing PACKAGE`, `unknown NAME
# SOURCE`, `prepared N`, `unlogged DB TABLE BYTES`, `space NEED_KB FREE_KB`.
# Arguments (set -- by stack/src/cluster/major.rs): PORT OLD_DATA NEW_BIN NEW_MAJOR
set -eu
port=$1 old_data=$2 new_bin=$3 new_major=$4
sql() { runuser -u postgres -- psql -X -q -A -t -F ' ' -p "$port" -d "${2:-postgres}" -c "$1"; }
echo "version $(sql 'show server_version_num') $("$new_bin/postgres" -V | awk '{print $3}')"
sql "select 'initdb', pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider,
            coalesce(nullif(daticulocale, ''), '-'),
            case current_setting('data_checksums') when 'on' then 1 else 0 end,
            pg_size_bytes(current_setting('wal_segment_size')) / 1048576
       from pg_database where datname = 'template1'"
# pg_upgrade keeps each database's recorded collation version: one the
# system no longer provides stays stale on the new major.
sql "select 'stale', datname, coalesce(datcollversion, '-'), coalesce(pg_database_collation_actual_version(oid), '-')
       from pg_database where datcollversion <> pg_database_collation_actual_version(oid)"
known=$(mktemp)
trap 'rm -f "$known"' EXIT
"$new_bin/postgres" --describe-config | cut -f1 | sort -u >"$known"
sql "select name, source from pg_settings
      where source not in ('default', 'override', 'client', 'session')" |
  while read -r name source; do
    grep -qx -- "$name" "$known" || echo "unknown $name $source"
  done
echo "prepared $(sql 'select count(*) from pg_prepared_xacts')"
catalog=0
for db in $(sql "select datname from pg_database where datallowconn order by 1"); do
  sql "select extname from pg_extension order by 1" "$db" | while read -r ext; do
    if [ -f "/usr/share/postgresql/$new_major/extension/$ext.control" ]; then
      echo "ext $db $ext ok -"
    else
      package=$(dpkg -S "*/extension/$ext.control" 2>/dev/null | grep -v "postgresql-$new_major" | head -n1 | cut -d: -f1)
      echo "ext $db $ext missing ${package:--}"
    fi
  done
  sql "select n.nspname || '.' || c.relname, pg_total_relation_size(c.oid)
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relpersistence = 'u' and c.relkind in ('r', 'p')" "$db" |
    while read -r table bytes; do echo "unlogged $db $table $bytes"; done
  bytes=$(sql "select coalesce(sum(pg_relation_size(c.oid)), 0) from pg_class c
                where c.relnamespace in ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)" "$db")
  catalog=$((catalog + bytes))
done
# --link: the new cluster's catalog (as large as the old one's), plus a
# WAL segment's worth of room for each of the first checkpoints.
need=$((catalog / 1024 + 256 * 1024))
free=$(df -Pk "$old_data" | awk 'NR == 2 {print $4}')
echo "space $need $free"
