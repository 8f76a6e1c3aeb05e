#!/bin/sh
# The read-only script that prints a host's facts as key=value lines
# (engine/src/facts.rs parses them). Run by sh on the host; no arguments.
# shellcheck source=/dev/null  # the host's own os-release
. /etc/os-release 2>/dev/null
echo "os_id=${ID:-unknown}"
echo "os_version=${VERSION_ID:-unknown}"
echo "os_codename=${VERSION_CODENAME:-unknown}"
echo "hostname=$(hostname)"
echo "fqdn=$(hostname -f 2>/dev/null || hostname)"
echo "cpus=$(nproc 2>/dev/null || echo 1)"
echo "memory_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
route=$(ip -4 route show default 2>/dev/null | head -n1)
echo "default_interface=$(echo "$route" | awk '{for (i=1;i<NF;i++) if ($i=="dev") print $(i+1)}')"
echo "default_gateway=$(echo "$route" | awk '{for (i=1;i<NF;i++) if ($i=="via") print $(i+1)}')"
ip -4 -o addr show scope global 2>/dev/null | awk '{split($4,a,"/"); print "address=" $2 " " a[1] " " a[2]}'
echo "systemd=$(cat /proc/1/comm 2>/dev/null)"
# Local facts: every /etc/pgdeploy/facts.d/NAME.fact holds KEY=VALUE lines
# that roles wrote (the major a cluster runs, say); each becomes
# facts.local.NAME.KEY.
for file in /etc/pgdeploy/facts.d/*.fact; do
  [ -r "$file" ] || continue
  name=$(basename "$file" .fact)
  awk -v name="$name" '/^[A-Za-z_][A-Za-z0-9_]*=/ { i = index($0, "="); print "local=" name " " substr($0, 1, i - 1) " " substr($0, i + 1) }' "$file"
done
