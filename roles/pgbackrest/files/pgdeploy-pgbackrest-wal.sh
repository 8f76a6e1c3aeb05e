#!/bin/sh
# pgdeploy-pgbackrest-wal: PostgreSQL's archive_command and restore_command on a Patroni
# member (role pgbackrest, README "WAL across a failover").
#
#   pgdeploy-pgbackrest-wal push STANZA BINDIR PATH        archive_command  (%p)
#   pgdeploy-pgbackrest-wal get  STANZA BINDIR FILE PATH   restore_command  (%f "%p")
#
# Both are pgbackrest archive-push / archive-get, with one exception: a WAL
# segment of timeline T that holds WAL past the point where a newer timeline
# forked off T. Only a demoted leader writes such a segment, and it holds
# writes that no member of the new timeline has.
#
# - push: Patroni archives what a crashed leader left unarchived before it
#   runs pg_rewind (PostgreSQL is down then). Archived, that segment would be
#   restored by a replica that still follows timeline T, which then replays
#   past the fork point: no leader can stream to it again ("new timeline
#   forked off current database system timeline before current recovery
#   point"). It is skipped (exit 0, so it is not offered again); what it holds
#   before the fork point is in the new timeline's own segment. With
#   PostgreSQL down, the new timeline's history file may still be on its way
#   to the repository: wait for it up to WAIT seconds.
# - get: such a segment already in the repository is not restored during
#   recovery (PostgreSQL then streams, and follows the new timeline). pg_rewind
#   (%p is not RECOVERYXLOG) gets every file: it reads the target's own WAL.
set -eu

mode=$1
stanza=$2
bindir=$3
shift 3
WAIT=${PGDEPLOY_WAL_HISTORY_WAIT:-30}

say() {
	echo "pgdeploy-pgbackrest-wal: $*" >&2
}

# 0 when FILE names a WAL segment (24 upper-case hex digits).
is_segment() {
	case $1 in
	*[!0-9A-F]*) return 1 ;;
	esac
	[ ${#1} -eq 24 ]
}

# The smallest point, as a byte position, at which a timeline newer than
# timeline $1 (decimal) forked off it, from the history files in the
# repository; empty when none did. Sets $fork_tli to the timeline found.
fork_point() {
	tmp=$(mktemp -d)
	n=$(($1 + 1))
	fork=
	fork_tli=
	while [ $n -le $(($1 + 64)) ]; do
		h=$(printf '%08X.history' "$n")
		pgbackrest --stanza="$stanza" archive-get "$h" "$tmp/$h" >/dev/null 2>&1 || break
		# Lines "TLI<tab>X/Y<tab>reason": timeline TLI ended at X/Y.
		while read -r tli lsn _; do
			case $tli in '' | \#*) continue ;; esac
			[ "$tli" -eq "$1" ] || continue
			at=$(((0x${lsn%/*} << 32) + 0x${lsn#*/}))
			if [ -z "$fork" ] || [ "$at" -lt "$fork" ]; then
				fork=$at
				fork_tli=$n
			fi
		done <"$tmp/$h"
		n=$((n + 1))
	done
	rm -rf "$tmp"
}

# The WAL segment size of the cluster in data directory $1.
segment_size() {
	"$bindir/pg_controldata" "$1" | sed -n 's/^Bytes per WAL segment: *//p'
}

# 0 when segment $1 (a file name) holds WAL past the fork point $fork off
# its own timeline; the data directory is $2.
past_fork() {
	size=$(segment_size "$2")
	per_id=$((0x100000000 / size))
	segno=$((0x$(echo "$1" | cut -c9-16) * per_id + 0x$(echo "$1" | cut -c17-24)))
	[ $(((segno + 1) * size)) -gt "$fork" ]
}

# The timeline of segment $1 (a file name), in decimal.
timeline() {
	echo $((0x$(echo "$1" | cut -c1-8)))
}

case $mode in
push)
	path=$1
	file=${path##*/}
	case $path in
	/*) datadir=${path%/pg_wal/*} ;;
	*) datadir=$PWD ;;
	esac
	if is_segment "$file" && [ ! -e "$datadir/postmaster.pid" ]; then
		# PostgreSQL is down: Patroni archives a demoted leader's WAL, and a
		# newer timeline exists or is being archived.
		deadline=$(($(date +%s) + WAIT))
		fork_point "$(timeline "$file")"
		while [ -z "$fork" ] && [ "$(date +%s)" -lt "$deadline" ]; do
			sleep 1
			fork_point "$(timeline "$file")"
		done
		if [ -n "$fork" ] && past_fork "$file" "$datadir"; then
			say "$file not archived: timeline $fork_tli forked off its timeline before its end (a demoted leader's WAL)"
			exit 0
		fi
	fi
	exec pgbackrest --stanza="$stanza" archive-push "$path"
	;;
get)
	file=$1
	path=$2
	case $path in
	*RECOVERYXLOG)
		if is_segment "$file"; then
			fork_point "$(timeline "$file")"
		fi
		if [ -n "${fork:-}" ] && past_fork "$file" "$PWD"; then
			say "$file not restored: timeline $fork_tli forked off its timeline before its end"
			exit 1
		fi
		;;
	esac
	exec pgbackrest --stanza="$stanza" archive-get "$file" "$path"
	;;
*)
	say "usage: pgdeploy-pgbackrest-wal push STANZA BINDIR PATH | get STANZA BINDIR FILE PATH"
	exit 2
	;;
esac
