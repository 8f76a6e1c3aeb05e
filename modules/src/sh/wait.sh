# shellcheck shell=sh
# Waits until a check succeeds, once a second, up to a timeout (wait_for.rs).
# Arguments: the timeout in seconds, the message to fail with, the check (a
# shell command line).
timeout=$1
message=$2
check=$3
end=$(( $(date +%s) + timeout ))
while ! eval "$check"; do
  if [ "$(date +%s)" -ge "$end" ]; then echo "$message" >&2; exit 1; fi
  sleep 1
done
