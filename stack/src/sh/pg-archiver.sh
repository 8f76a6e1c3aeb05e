#!/bin/sh
# Prints the leader's pg_stat_archiver as one line, fields separated by |:
# archived_count, failed_count, last_archived_wal, seconds since it,
# last_failed_wal, seconds since it, WAL files waiting (.ready), the WAL
# file written now, archive_timeout in seconds.
# Read as postgres over the local socket (peer authentication: no password).
# Arguments (set -- by stack/src/cluster/status.rs): PORT
set -eu
runuser -u postgres -- psql -XAtq -p "$1" -d postgres <<'SQL'
select archived_count, failed_count, coalesce(last_archived_wal, ''),
       coalesce(extract(epoch from now() - last_archived_time)::text, ''),
       coalesce(last_failed_wal, ''),
       coalesce(extract(epoch from now() - last_failed_time)::text, ''),
       (select count(*) from pg_ls_archive_statusdir() where name like '%.ready'),
       case when pg_is_in_recovery() then '' else pg_walfile_name(pg_current_wal_lsn()) end,
       extract(epoch from current_setting('archive_timeout')::interval)
from pg_stat_archiver
SQL
