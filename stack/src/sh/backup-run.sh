#!/bin/sh
# Takes a backup of the stanza in the repository (as postgres).
# Arguments (set -- by stack/src/cluster/backup.rs): STANZA TYPE
set -eu
exec runuser -u postgres -- pgbackrest --stanza="$1" --type="$2" --log-level-console=warn backup
