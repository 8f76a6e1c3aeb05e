# shellcheck shell=sh
# Removes packages once apt's locks are free (after apt_locks.sh).
# Arguments: `remove` or `purge`, then the packages.
verb=$1
shift
wait_for_apt_locks
apt_get "$verb" "$@"
