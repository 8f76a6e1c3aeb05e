# shellcheck shell=sh
# The limit for the site playbook: one script that reads the state of what
# playbooks/site.yaml manages (a superset for every group; run as root on
# each host; its output is compared with the one of a converged host).
# It also runs the checks the playbook makes on every run (etcd cluster
# health, Patroni's health and member list, HAProxy listening, pgBackRest
# check on the backup host), with no cross-host order. bench/README.md.
files="/etc/hostname /etc/hosts /etc/locale.gen /etc/default/locale
/etc/modprobe.d/pgdeploy-cis.conf /etc/issue /etc/issue.net /etc/motd /etc/security/limits.d/pgdeploy-cis.conf
/etc/systemd/coredump.conf.d/pgdeploy-cis.conf /etc/systemd/journald.conf.d/pgdeploy-cis.conf /etc/crontab
/etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/ssh/sshd_config /etc/ssh/sshd_config.d/50-pgdeploy-cis.conf
/etc/sysctl.d/90-pgdeploy-*.conf /etc/ufw/sysctl.conf /etc/ufw/before.rules /etc/ufw/user.rules /etc/ufw/user6.rules
/etc/ufw/ufw.conf /etc/default/ufw /etc/default/etcd /etc/postgresql-common/createcluster.d/pgdeploy.conf
/etc/patroni/config.yml /usr/local/sbin/pgdeploy-patroni-check /etc/haproxy/haproxy.cfg
/etc/keepalived/keepalived.conf /usr/local/lib/pgdeploy/etcd-join.sh /usr/local/sbin/pgdeploy-derive-ssh-key /var/lib/postgresql/.ssh/authorized_keys
/var/lib/postgresql/.ssh/config /var/lib/postgresql/.ssh/id_ed25519 /etc/pgbackrest.conf
/etc/systemd/system/pgbackrest-backup@.service /etc/systemd/system/pgbackrest-backup-full.timer
/etc/systemd/system/pgbackrest-backup-diff.timer"
dirs="/etc/postgresql-common/createcluster.d /etc/modprobe.d /etc/security/limits.d /etc/systemd/coredump.conf.d /etc/systemd/journald.conf.d
/etc/cron.hourly /etc/cron.daily /etc/cron.weekly /etc/cron.monthly /etc/cron.d /etc/patroni /var/lib/postgresql/.ssh
/usr/local/lib/pgdeploy"
absent="/var/lib/etcd/default /etc/postgresql/15/main/postgresql.conf /var/lib/etcd/member"
for p in $files $dirs $absent; do stat -c '%n %F %a %U %G' "$p" 2>/dev/null || echo "$p absent"; done
# $files is a list of paths (one a glob): split and expanded on purpose.
# shellcheck disable=SC2086
sha256sum $files 2>/dev/null
sysctl net.ipv4.ip_forward net.ipv4.conf.all.send_redirects net.ipv4.conf.default.send_redirects \
  net.ipv4.conf.all.accept_redirects net.ipv4.conf.default.accept_redirects net.ipv4.conf.all.secure_redirects \
  net.ipv4.conf.default.secure_redirects net.ipv4.conf.all.accept_source_route \
  net.ipv4.conf.default.accept_source_route net.ipv4.conf.all.log_martians net.ipv4.conf.default.log_martians \
  net.ipv4.icmp_echo_ignore_broadcasts net.ipv4.icmp_ignore_bogus_error_responses net.ipv4.tcp_syncookies \
  net.ipv4.conf.all.rp_filter net.ipv4.conf.default.rp_filter net.ipv6.conf.all.accept_redirects \
  net.ipv6.conf.default.accept_redirects net.ipv6.conf.all.accept_source_route \
  net.ipv6.conf.default.accept_source_route net.ipv6.conf.all.accept_ra net.ipv6.conf.default.accept_ra \
  fs.suid_dumpable kernel.randomize_va_space 2>&1
dpkg-query -W -f='${Package} ${Status}\n' ca-certificates curl gnupg less locales iproute2 python3 procps psmisc \
  rsync cron ufw etcd-server etcd-client postgresql-15 postgresql-client-15 patroni python3-etcd haproxy \
  pgbouncer keepalived pgbackrest python3-cryptography 2>&1
for u in ssh etcd postgresql patroni haproxy keepalived pgbouncer pgbackrest-backup-full.timer \
  pgbackrest-backup-diff.timer; do echo "$u $(systemctl is-active $u) $(systemctl is-enabled $u 2>&1)"; done
hostname
locale -a | grep -ic '^en_US.utf8$'
if [ -f /etc/default/etcd ]; then
  # etcd: the whole cluster healthy (the patroni role's check).
  eps=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' /etc/default/etcd | tr ',' '\n' | sed 's/.*=\(http:[^:]*\):.*/\1:2379/' | paste -sd,)
  ETCDCTL_API=3 etcdctl --endpoints="$eps" endpoint health 2>&1 | sed 's/ took = .*//' | sort
fi
if [ -x /usr/local/sbin/pgdeploy-patroni-check ]; then
  # Patroni: this member healthy, then the cluster-wide check the playbook runs.
  curl -s -o /dev/null -w 'patroni %{http_code}\n' http://127.0.0.1:8008/health
  /usr/local/sbin/pgdeploy-patroni-check 3 | awk '{print $1, $2, $3}' | sort
fi
if [ -f /etc/haproxy/haproxy.cfg ]; then
  ss -Hltn 'sport = :5000' | grep -q . && echo haproxy listening
fi
if [ -f /var/lib/pgbackrest/backup/lab/backup.info ]; then
  # The backup host: the pgBackRest check the playbook runs on every apply.
  runuser -u postgres -- pgbackrest --stanza=lab check >/dev/null 2>&1; echo "pgbackrest check $?"
fi
true
