#!/bin/sh
# Managed by pgdeploy (role etcd): run once before a member's first start.
#
# Usage: etcd-join.sh NAME PEER_URL CLIENT_PORT [OTHER_ADDRESS...]
#   NAME          this member's name (its inventory name)
#   PEER_URL      this member's peer URL, https://ADDRESS:PEER_PORT
#   CLIENT_PORT   the members' client port
#   OTHER_ADDRESS the addresses of the other members of the group
# Environment: ETCDCTL_CACERT (the cluster CA), ETCD_JOIN_CERT and
# ETCD_JOIN_KEY (this member's certificate and key, for the peer port).
#
# If the other members already form a cluster, this member joins it:
# `member add` (unless it is listed already: an earlier attempt, or a late
# member of the first bootstrap). Prints `existing` and the cluster's member
# list (its initial cluster, NAME=PEER_URL,...), or `new` for a fresh
# cluster (all members bootstrap together).
# A member's peer port answers `/version` at once, ready or not, and says
# `"etcdcluster":"not_decided"` until its cluster first had a leader; its
# client port answers nothing before it is ready (etcdctl would wait out its
# timeout). So only the members whose cluster has formed are asked for the
# member list, and a failing `member list` or `member add` fails the script:
# it never falls back to a new cluster.
set -eu

if [ "$#" -lt 3 ]; then
  echo "usage: $0 NAME PEER_URL CLIENT_PORT [OTHER_ADDRESS...]" >&2
  exit 2
fi
name=$1
peer=$2
client_port=$3
shift 3
: "${ETCDCTL_CACERT:?the cluster CA certificate}"
: "${ETCD_JOIN_CERT:?the certificate of this member}"
: "${ETCD_JOIN_KEY:?the key of this member}"
export ETCDCTL_API=3 ETCDCTL_CACERT

# The peer port of the others is the one of this member's peer URL.
peer_port=${peer##*:}

formed=''
for address in "$@"; do
  if curl --http1.1 -sf -m 3 --cacert "$ETCDCTL_CACERT" --cert "$ETCD_JOIN_CERT" \
      --key "$ETCD_JOIN_KEY" "https://$address:$peer_port/version" 2>/dev/null \
      | grep -q '"etcdcluster":"[0-9]'; then
    formed="$formed${formed:+,}https://$address:$client_port"
  fi
done
if [ -z "$formed" ]; then
  echo new
  exit 0
fi

list=$(etcdctl --endpoints="$formed" --command-timeout=10s member list -w simple)
if ! printf '%s\n' "$list" | grep -qF ", $peer, "; then
  etcdctl --endpoints="$formed" --command-timeout=10s member add "$name" --peer-urls="$peer" >&2
  list=$(etcdctl --endpoints="$formed" --command-timeout=10s member list -w simple)
fi
echo existing
# A member added but not started yet has no name in the list: it is this one.
printf '%s\n' "$list" | awk -F', ' -v me="$name" -v peer="$peer" \
  '{ name = ($4 == peer) ? me : $3; printf "%s%s=%s", sep, name, $4; sep = "," } END { print "" }'
