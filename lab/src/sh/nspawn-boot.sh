#!/bin/sh
# Boots a lab host: runs systemd-nspawn with the arguments given, and again
# each time the container reboots (nspawn exits 133), as
# systemd-nspawn@.service does with RestartForceExitStatus=133. Any other
# exit (poweroff, a crash, `pgdeploy lab kill`) ends it.
# Arguments: the veth nspawn makes on the machine's side, the path of
# systemd-nspawn, then nspawn's arguments.
veth=$1
nspawn=$2
shift 2
while :; do
  status=0
  "$nspawn" "$@" || status=$?
  [ "$status" -eq 133 ] || exit "$status"
  # The old container's veth goes with its network namespace, a moment
  # after nspawn exits; a new nspawn cannot make it again before.
  tries=0
  while ip link show "$veth" >/dev/null 2>&1 && [ "$tries" -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
  done
  ip link delete "$veth" >/dev/null 2>&1 || true
  echo "=== pgdeploy lab: rebooted, starting again (unix time $(date +%s)) ==="
done
