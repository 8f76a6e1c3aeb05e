# shellcheck shell=sh
# Holds or releases packages (apt-mark) once apt's locks are free (after
# apt_locks.sh): a held package is never upgraded by unattended-upgrades
# or a plain `apt-get upgrade`.
# Arguments: `hold` or `unhold`, then the packages.
verb=$1
shift
wait_for_apt_locks
apt-mark "$verb" "$@" >/dev/null
