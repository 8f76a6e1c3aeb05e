#!/bin/sh
# Whether this host is back from `pgdeploy upgrade-os`'s reboot: fails
# while the marker the upgrade left in /run is there (not rebooted yet);
# else prints `release CODENAME`, then `inactive UNIT` for each service
# given that is enabled but not active (yet).
# Arguments: the services to look at.
set -e
if [ -e /run/pgdeploy-upgrade-os.reboot ]; then
  echo "not rebooted yet" >&2
  exit 1
fi
# shellcheck disable=SC1091 # the host's own
. /etc/os-release
echo "release $VERSION_CODENAME"
for unit in "$@"; do
  if systemctl is-enabled --quiet "$unit" 2>/dev/null && ! systemctl is-active --quiet "$unit"; then
    echo "inactive $unit"
  fi
done
