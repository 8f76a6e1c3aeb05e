#!/bin/sh
# What `pgdeploy upgrade-os` would do on this host, from apt's own answer:
# the host's sources with its release renamed, apt's lists of the new
# release and a copy of dpkg's status with the holds the upgrade releases
# released, all in a scratch directory. Changes nothing on the host.
# Prints `release CODENAME` (and `unfinished` when a move of this host
# did not finish); unless the host is on the new release and finished:
# `keep NAME VERSION` for each kept package installed, `move NAME FROM TO`
# for each reported package that moves, `lose NAME` for each kept package
# the upgrade would remove, `count upgraded|new|removed N`,
# `space NEED_KB FREE_KB` (what the upgrade downloads and adds, against
# the room left on /var and /usr).
# Arguments: the new release, the packages kept (held throughout), `--`,
# the packages whose hold is released, `--`, the packages to report.
set -e
to=$1
shift
keep=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do keep="$keep $1"; shift; done
shift
release=
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do release="$release $1"; shift; done
shift
report=" $* "
# shellcheck disable=SC1091 # the host's own
. /etc/os-release
echo "release $VERSION_CODENAME"
# A move that did not finish (apt failed or was cut off) is made again,
# whatever os-release already says.
if [ -e /var/lib/pgdeploy/upgrade-os.unfinished ]; then
  echo unfinished
  from=$(cat /var/lib/pgdeploy/upgrade-os.unfinished)
elif [ "$VERSION_CODENAME" = "$to" ]; then
  exit 0
else
  from=$VERSION_CODENAME
fi
for name in $keep; do
  # shellcheck disable=SC2016 # dpkg-query's own ${field} format
  v=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
  case $v in *' installed '*) echo "keep $name ${v##* }" ;; esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/cache/archives/partial"
rename() { sed "s/\\b$from\\b/$to/g" "$1"; }
if [ -f /etc/apt/sources.list ]; then rename /etc/apt/sources.list >"$tmp/sources.list"; else : >"$tmp/sources.list"; fi
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && rename "$f" >"$tmp/parts/${f##*/}"
done
# The holds as the upgrade leaves them: those of $release lifted.
awk -v names="$release" '
  BEGIN { n = split(names, list, " "); for (i = 1; i <= n; i++) lift[list[i]] = 1 }
  /^Package: / { pkg = $2 }
  /^Status: hold / && (pkg in lift) { sub(/^Status: hold /, "Status: install ") }
  { print }' /var/lib/dpkg/status >"$tmp/status"
set -- -o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=$tmp/parts" \
  -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" \
  -o "Dir::State::status=$tmp/status" -o Debug::NoLocking=1
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
apt-get -q "$@" update >/dev/null
apt-get -s "$@" full-upgrade >"$tmp/sim"
for name in $keep; do
  if grep -q "^Remv $name " "$tmp/sim"; then echo "lose $name"; fi
done
while read -r verb name old new _; do
  [ "$verb" = Inst ] || continue
  case $old in \[*\]) ;; *) continue ;; esac
  case $report in *" $name "*) ;; *) continue ;; esac
  old=${old#[}
  echo "move $name ${old%]} ${new#(}"
done <"$tmp/sim"
echo "count upgraded $(grep -c '^Inst [^ ]* \[' "$tmp/sim" || true)"
echo "count new $(grep '^Inst ' "$tmp/sim" | grep -vc '^Inst [^ ]* \[' || true)"
echo "count removed $(grep -c '^Remv ' "$tmp/sim" || true)"
# Sizes from apt's own summary (the download, and what the disk gains),
# answered no.
apt-get "$@" --assume-no full-upgrade >"$tmp/sizes" 2>&1 || true
# `216 MB` in kB.
kb() { echo "$1" | awk '{ f = 1 / 1024
  if ($2 == "kB") f = 1; if ($2 == "MB") f = 1024; if ($2 == "GB") f = 1048576
  printf "%d", $1 * f }'; }
need=0
get=$(sed -n 's/^Need to get \([0-9.]*\) \([kMG]*B\).*/\1 \2/p' "$tmp/sizes")
[ -z "$get" ] || need=$((need + $(kb "$get")))
add=$(sed -n 's/^After this operation, \([0-9.]*\) \([kMG]*B\) of additional.*/\1 \2/p' "$tmp/sizes")
[ -z "$add" ] || need=$((need + $(kb "$add")))
free=$(df -Pk /var/cache/apt/archives /usr | awk 'NR > 1 && (min == "" || $4 < min) { min = $4 } END { print min }')
echo "space $need $free"
