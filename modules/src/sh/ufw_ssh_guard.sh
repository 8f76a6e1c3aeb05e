# shellcheck shell=sh
# Fails unless the rules (ufw.rs) allow incoming TCP to every port sshd
# listens on, naming the port. No arguments.
ports=$(sshd -T 2>/dev/null | awk '$1 == "port" { print $2 }')
[ -n "$ports" ] || ports=22
for port in $ports; do
  if ! cat /etc/ufw/user.rules /etc/ufw/user6.rules 2>/dev/null | awk -v port="$port" '
    $1 == "###" && $2 == "tuple" {
      dir = $NF; if (dir ~ /^comment=/) dir = $(NF-1)
      if ($4 !~ /^(allow|limit)/ || ($5 != "tcp" && $5 != "any") || dir !~ /^in/) next
      if ($6 == "any") { found = 1; next }
      n = split($6, parts, ",")
      for (i = 1; i <= n; i++) {
        if (split(parts[i], r, ":") == 2) { if (port + 0 >= r[1] + 0 && port + 0 <= r[2] + 0) found = 1 }
        else if (parts[i] == port) found = 1
      }
    }
    END { exit found ? 0 : 1 }'; then
    echo "refusing to enable ufw: no rule allows incoming tcp to the ssh port $port (add one first, e.g. rule: allow, port: $port, proto: tcp)" >&2
    exit 1
  fi
done
