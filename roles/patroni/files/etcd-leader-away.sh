#!/bin/sh
# Patroni callback (on_start, on_role_change), installed by pgdeploy (role patroni).
# Arguments: ETCD_ENDPOINT CA_FILE, then Patroni's own: ACTION ROLE SCOPE.
#
# When this member becomes the PostgreSQL leader while the etcd member on the
# same host leads etcd, hand etcd's leadership to another etcd member. A crash
# of a host holding both would otherwise cost about 3 s more: the new etcd
# leader extends every lease to its full TTL, the Patroni leader key included
# (docs/ha.md). Best effort: it logs and exits 0 when etcd cannot move.
set -u
endpoint=$1 ca=$2 role=$4
case $role in
  master | primary) ;;
  *) exit 0 ;;
esac
etcd() { ETCDCTL_API=3 etcdctl --endpoints="$endpoint" --cacert="$ca" --command-timeout=3s "$@"; }
# "ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, ..."
status=$(etcd endpoint status) || exit 0
me=$(printf '%s\n' "$status" | awk -F', ' '{print $2}')
leads=$(printf '%s\n' "$status" | awk -F', ' '{print $5}')
[ "$leads" = true ] || exit 0
# "ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER": the other started voters.
for target in $(etcd member list | awk -F', ' -v me="$me" '$1 != me && $2 == "started" && $6 != "true" {print $1}'); do
  if etcd move-leader "$target"; then
    exit 0
  fi
done
echo "etcd-leader-away: etcd leadership could not be moved off this host" >&2
exit 0
