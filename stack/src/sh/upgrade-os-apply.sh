#!/bin/sh
# Moves this host to the next Debian release, then reboots it:
# - the apt sources renamed (`bookworm` -> `trixie`, the -updates and
#   -security suites with them);
# - the host drained: the services given stopped, in that order (the VIP
#   first, PostgreSQL through Patroni, the DCS last);
# - the kept packages held throughout (the running PostgreSQL major), the
#   others' holds released for the upgrade and set again afterwards
#   (whether apt succeeded or not);
# - full-upgrade keeping the configuration files pgdeploy wrote
#   (--force-confold), with no service (re)started by the packages
#   (policy-rc.d): the reboot starts the new versions;
# - a marker in /run (gone after the reboot), then a reboot two seconds
#   after this script returns.
# Idempotent: run again after an interruption or a failure, it goes on
# where it stopped (/var/lib/pgdeploy/upgrade-os.unfinished says a move
# is under way, and from which release).
# Arguments: the release now, the new release, the packages kept, `--`,
# the packages whose hold is released, `--`, the services to stop.
set -e
from=$1 to=$2
shift 2
keep=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do keep="$keep $1"; shift; done
shift
release=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do release="$release $1"; shift; done
shift
# Until the packages moved, a next run moves this host again.
mkdir -p /var/lib/pgdeploy
echo "$from" >/var/lib/pgdeploy/upgrade-os.unfinished
rename() { sed -i "s/\\b$from\\b/$to/g" "$1"; }
[ ! -f /etc/apt/sources.list ] || rename /etc/apt/sources.list
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ ! -f "$f" ] || rename "$f"
done
for unit in "$@"; do
  if systemctl is-active --quiet "$unit"; then
    echo "stopping $unit"
    systemctl stop "$unit"
  fi
done
installed() {
  # shellcheck disable=SC2016 # dpkg-query's own ${field} format
  dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null | grep -c ' installed$' || true
}
held=
kept=
for name in $keep; do
  [ "$(installed "$name")" = 0 ] || kept="$kept $name"
done
for name in $kept $release; do
  [ "$(installed "$name")" = 0 ] || held="$held $name"
done
cleanup() {
  rm -f /usr/sbin/policy-rc.d
  # One word per package name.
  # shellcheck disable=SC2086
  [ -z "$held" ] || apt-mark hold $held >/dev/null
}
trap cleanup EXIT
for name in $release; do
  [ "$(installed "$name")" = 0 ] || apt-mark unhold "$name" >/dev/null
done
printf '#!/bin/sh\n# pgdeploy upgrade-os: no service starts during the upgrade.\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
set -- -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
  -o Dpkg::Options::=--force-confold
# A dpkg run cut off by an earlier attempt is finished first.
if [ -n "$(dpkg --audit)" ]; then
  dpkg --configure -a --force-confdef --force-confold >/dev/null
fi
apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null
apt-get "$@" upgrade --without-new-pkgs >/dev/null
apt-get "$@" full-upgrade >/dev/null
for name in $kept; do
  [ "$(installed "$name")" = 1 ] || { echo "the upgrade removed $name" >&2; exit 1; }
done
cleanup
trap - EXIT
rm -f /var/lib/pgdeploy/upgrade-os.unfinished
: >/run/pgdeploy-upgrade-os.reboot
systemd-run --quiet --on-active=2 --timer-property=AccuracySec=100ms /bin/systemctl reboot
echo "rebooting"
