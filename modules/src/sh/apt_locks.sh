# shellcheck shell=sh
# Shell functions for the package module's actions (read by package.rs).
# Arguments: the lock timeout in seconds, how often to report a wait (in
# seconds), the progress prefix, then apt's and dpkg's lock files.
#
# apt_lock_holder prints `LOCK PID COMMAND` for a lock file held by another
# process (a process in /proc/locks that has the lock file open).
# wait_for_apt_locks waits until no lock is held, reporting progress, up to
# the timeout (shared by every wait of the action, in $waited).
# apt_get runs apt-get with the time left of the timeout for apt's own wait
# (a process may take a lock between the check and apt).
lock_timeout=$1
report_every=$2
progress=$3
shift 3
locks=" $* "
apt_lock_holder() {
  # The fifth field of /proc/locks is a process id: one word per line.
  # shellcheck disable=SC2013
  for pid in $(awk '$2 != "->" { print $5 }' /proc/locks 2>/dev/null | sort -un); do
    for fd in /proc/"$pid"/fd/*; do
      target=$(readlink "$fd" 2>/dev/null) || continue
      case $locks in *" $target "*)
        echo "$target $pid $(cat /proc/"$pid"/comm 2>/dev/null)"; return 0;;
      esac
    done
  done
  return 1
}
waited=0
wait_for_apt_locks() {
  while holder=$(apt_lock_holder); do
    lock=${holder%% *}; rest=${holder#* }; pid=${rest%% *}; comm=${rest#* }
    if [ "$waited" -ge "$lock_timeout" ]; then
      echo "the apt lock $lock is still held by process $pid ($comm) after waiting ${waited}s (lock_timeout $lock_timeout); giving up" >&2
      exit 1
    fi
    if [ $((waited % report_every)) -eq 0 ]; then
      echo "${progress}waiting for the apt lock $lock, held by process $pid ($comm), for ${waited}s (giving up after ${lock_timeout}s)" >&2
    fi
    sleep 1; waited=$((waited + 1))
  done
  if [ "$waited" -gt 0 ]; then echo "${progress}the apt lock was released after ${waited}s; going on" >&2; fi
}
apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$(( lock_timeout - waited > 1 ? lock_timeout - waited : 1 )) -y -q "$@"
}
