#!/bin/sh
# `restore --into`, on the new cluster's backup host: moves its stanza aside
# (kept, not deleted), since the restored data belongs to another database
# system and pgBackRest refuses a stanza whose system identifier differs.
# Prints each folder moved. `pgbackrest stanza-create` follows once the
# restored member leads.
# Arguments (set -- by stack/src/cluster/restore.rs): REPO_PATH STANZA ASIDE
set -eu
repo=$1 stanza=$2 aside=$3
for part in archive backup; do
  if [ -e "$repo/$part/$stanza" ]; then
    install -d -o postgres -g postgres -m 0750 "$aside/$part"
    mv -- "$repo/$part/$stanza" "$aside/$part/$stanza"
    echo "$aside/$part/$stanza"
  fi
done
