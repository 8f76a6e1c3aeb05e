#!/bin/sh
# Prints what the backup repository holds: pgBackRest's info as JSON on one
# line, then `newest-wal <unix time> <file>` for the newest archived WAL
# segment (no line when there is none).
# Arguments (set -- by stack/src/cluster/backup.rs): STANZA REPO_PATH
set -eu
runuser -u postgres -- pgbackrest --stanza="$1" --output=json info | tr -d '\n'
echo
if [ -d "$2/archive/$1" ]; then
  # Segments only: 24 hex digits, then `-` and the checksum (no history,
  # .backup or .partial file).
  find "$2/archive/$1" -type f -name '[0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F][0-9A-F]-*' \
    -printf 'newest-wal %T@ %f\n' | sort -k2,2n | tail -n 1
fi
