# shellcheck shell=sh
# The limit for the synthetic workload: one script that reads the state of
# every object roles/bench_synthetic manages (run as root on each host; its
# output is compared with the one of a converged host). bench/README.md.
cd /opt/bench || exit 1
stat -c '%n %F %a %U %G' d01 d02 d03 d04 d05 d06 d07 d08 d09 d10 \
  d01/app.conf d02/app.conf d03/app.conf d04/app.conf d05/app.conf d06/app.conf d07/app.conf \
  d08/app.conf d09/app.conf d10/app.conf d01/extra.conf d02/extra.conf d03/extra.conf d04/extra.conf \
  d05/extra.conf settings.conf /etc/systemd/system/bench-worker[1-5].service
sha256sum d*/*.conf /etc/systemd/system/bench-worker[1-5].service
for k in key01 key02 key03 key04 key05 key06 key07 key08 key09 key10; do grep -c "^$k = on\$" settings.conf; done
dpkg-query -W -f='${Package} ${Status}\n' tree less psmisc bzip2 xz-utils
systemctl is-active bench-worker1 bench-worker2 bench-worker3 bench-worker4 bench-worker5
systemctl is-enabled bench-worker1 bench-worker2 bench-worker3 bench-worker4 bench-worker5
