#!/bin/sh
# Managed by pgdeploy (role monitoring): the PostgreSQL exporter's role.
#
# Usage: exporter-role.sh PORT TIMEOUT
#   PORT     PostgreSQL's port on this host
#   TIMEOUT  seconds a replica waits for the role to reach it
# Environment: MONITOR_USER, MONITOR_PASSWORD (the role and its password;
# never on the command line).
#
# On the leader: creates the role if it is missing, sets its password and
# makes it a member of pg_monitor. On a replica: waits until the role has
# replicated to it, i.e. until it logs in with its password over TCP; fails
# after TIMEOUT seconds.
set -eu

if [ "$#" -ne 2 ]; then
  echo "usage: $0 PORT TIMEOUT" >&2
  exit 2
fi
port=$1
timeout=$2
: "${MONITOR_USER:?the exporter role}"
: "${MONITOR_PASSWORD:?the password of the exporter role}"

q() { runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d postgres -Atq "$@"; }

if [ "$(q -c 'select pg_is_in_recovery()')" = f ]; then
  # The password reaches psql in its environment (\getenv), never on its
  # command line (ps).
  q -v user="$MONITOR_USER" <<'SQL'
\getenv pw MONITOR_PASSWORD
select format('create role %I login', :'user') where not exists (select 1 from pg_roles where rolname = :'user') \gexec
alter role :"user" with login password :'pw';
grant pg_monitor to :"user";
SQL
else
  n=0
  until PGPASSWORD="$MONITOR_PASSWORD" psql -X -h 127.0.0.1 -p "$port" -U "$MONITOR_USER" -d postgres -Atc 'select 1' >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$timeout" ]; then
      echo "the role $MONITOR_USER has not reached this replica" >&2
      exit 1
    fi
    sleep 1
  done
fi
