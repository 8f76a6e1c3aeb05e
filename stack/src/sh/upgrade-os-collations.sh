#!/bin/sh
# After a release change the C library sorts text by new rules (Debian 12's
# glibc 2.36 → Debian 13's 2.41), and PostgreSQL warns on every database
# whose recorded collation version differs, and refuses CREATE DATABASE from
# such a template. An index that sorts text by the system's locale may be
# out of order for the new rules. `check` lists the databases and libc
# collations whose version differs; `fix` rebuilds, in each database, every
# index with a key sorted by a collation other than C (the database's
# default among them; CONCURRENTLY outside the system catalog, so writes go on), then
# refreshes the recorded versions.
# Prints `database NAME RECORDED ACTUAL`, `collation DB NAME`, and with fix
# `reindexed DB INDEX` and `refreshed DB`.
# Arguments (set -- by stack/src/cluster/upgrade_os.rs): PORT check|fix
set -eu
port=$1 mode=$2
sql() { runuser -u postgres -- psql -X -q -A -t -F ' ' -v ON_ERROR_STOP=1 -p "$port" -d "$1" -c "$2"; }
stale=$(sql postgres "select datname, coalesce(datcollversion, '-'), coalesce(pg_database_collation_actual_version(oid), '-')
                        from pg_database
                       where datcollversion <> pg_database_collation_actual_version(oid)
                       order by 1")
printf '%s\n' "$stale" | sed -n 's/^./database &/p'
for db in $(sql postgres "select datname from pg_database where datallowconn order by 1"); do
  colls=$(sql "$db" "select quote_ident(n.nspname) || '.' || quote_ident(c.collname) from pg_collation c
                      join pg_namespace n on n.oid = c.collnamespace
                     where c.collprovider = 'c' and c.collversion <> pg_collation_actual_version(c.oid)")
  printf '%s\n' "$colls" | sed -n "s/^./collation $db &/p"
  if [ "$mode" != fix ]; then continue; fi
  printf '%s\n' "$stale" | grep -q "^$db " || [ -n "$colls" ] || continue
  sql "$db" "select distinct n.nspname in ('pg_catalog', 'pg_toast'), i.indexrelid::regclass
               from pg_index i
               join pg_class c on c.oid = i.indexrelid
               join pg_namespace n on n.oid = c.relnamespace
               cross join lateral unnest(i.indcollation) k(coll)
               join pg_collation co on co.oid = k.coll
              where co.collname not in ('C', 'POSIX', 'ucs_basic')" |
    while read -r catalog index; do
      if [ "$catalog" = t ]; then
        sql "$db" "reindex index $index" >/dev/null
      else
        sql "$db" "reindex index concurrently $index" >/dev/null
      fi
      echo "reindexed $db $index"
    done
  for c in $colls; do sql "$db" "alter collation $c refresh version" >/dev/null 2>&1; done
done
if [ "$mode" = fix ]; then
  printf '%s\n' "$stale" | while read -r db _; do
    [ -n "$db" ] || continue
    if sql postgres "alter database \"$db\" refresh collation version" >/dev/null; then
      echo "refreshed $db"
    else
      echo "not-refreshed $db"
    fi
  done
fi
