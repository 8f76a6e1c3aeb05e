# shellcheck shell=sh
# Installs packages once apt's locks are free (after apt_locks.sh), first
# refreshing apt's lists unless this run did already.
# Arguments: the file naming the run that last refreshed the lists, this
# run's id (empty: do not refresh), then the packages (name or name=version).
run_id_file=$1
run_id=$2
shift 2
if [ -n "$run_id" ] && [ "$(cat "$run_id_file" 2>/dev/null)" != "$run_id" ]; then
  wait_for_apt_locks
  apt_get update
  mkdir -p "$(dirname "$run_id_file")"
  printf '%s\n' "$run_id" > "$run_id_file"
fi
wait_for_apt_locks
# A held package named here is installed on purpose (a version pinned, say).
apt_get -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install --no-install-recommends --allow-change-held-packages "$@"
