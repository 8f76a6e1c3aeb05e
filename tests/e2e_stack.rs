//! End-to-end tests of the HA stack on fresh lab hosts: deploy, verify the
//! cluster through the VIP, prove idempotency and drift repair, and survive
//! a hard crash of the leader's host.
//!
//! This file's lab runs Debian 13 (trixie: PostgreSQL 17, Patroni 4, etcd
//! 3.5, HAProxy 3.0, pgBackRest 2.55), every other file's Debian 12, so
//! that CI proves the site playbook on both releases without deploying
//! twice: deploy, routing, firewall, CIS items, backups, idempotence,
//! drift repair and failover here; the same and the day-2 commands on
//! Debian 12 in the other files. `PGDEPLOY_E2E_STACK_RELEASE=bookworm`
//! runs it on Debian 12.
//!
//! One test per scenario; they share one lab (4 hosts) and one fresh
//! deploy, made by the first scenario that runs (see `Suite` in
//! tests/common). Names start `sNN_` because libtest runs them in name order:
//! the read-only checks first, then the scenarios that change the hosts
//! (hand edit, crash). The last one to finish takes the lab down.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SCENARIOS: [&str; 8] = [
    "s01_fresh_deploy_converges_to_one_leader_two_replicas",
    "s02_vip_writes_to_the_leader_and_reads_from_a_replica",
    "s03_firewall_admits_exactly_the_intended_peers",
    "s04_cis_items_hold_on_every_host",
    "s05_backups_taken_checked_and_scheduled",
    "s06_converged_apply_changes_nothing",
    "s07_hand_edit_is_planned_then_repaired_with_one_reload",
    "s08_failover_after_a_leader_host_crash_and_rejoin",
];

/// The lab and the deploy the scenarios share.
static LAB: Suite<StackLab> = Suite::new(&SCENARIOS, set_up, lab_down::<StackLab>);

struct StackLab {
    /// The fresh deploy's output (s01 checks it).
    fresh: std::process::Output,
    /// Whether the table the failover's writes go to exists.
    table: bool,
}

/// Fresh hosts (the lab taken down first), then the fresh deploy, which
/// must succeed for any scenario to make sense.
fn set_up() -> StackLab {
    pgdeploy_ok(&["lab", "down"]);
    lab_up_on(4, &release());
    let fresh = fresh_deploy("fresh deploy", || apply(&[]));
    StackLab {
        fresh,
        table: false,
    }
}

/// The Debian release of this file's lab (see the file's documentation).
fn release() -> String {
    std::env::var("PGDEPLOY_E2E_STACK_RELEASE").unwrap_or_else(|_| "trixie".into())
}

/// The PostgreSQL major Debian's release ships, which the deploy must pick
/// by itself (no `postgres_version` is given).
fn major() -> &'static str {
    if release() == "bookworm" {
        "15"
    } else {
        "17"
    }
}

const CREATE_TABLE: &str = "create table if not exists e2e (id int primary key, note text); insert into e2e values (1, 'written via rw') on conflict do nothing";

impl StackLab {
    /// The table `e2e` with its first row, written through the VIP's
    /// read-write port (by s02, or here for a scenario run without it).
    fn ensure_table(&mut self) {
        if !self.table {
            psql(5000, CREATE_TABLE).expect("write");
            self.table = true;
        }
    }
}

const SUPERUSER_PASSWORD: &str = "e2e-Super-7f3kq9";
const REPLICATION_PASSWORD: &str = "e2e-Repl-2m8xv4";

fn secrets() -> Vec<String> {
    secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD)
}

fn apply(extra: &[&str]) -> std::process::Output {
    let inventory = lab_inventory();
    let mut args: Vec<String> = vec![
        "apply".into(),
        "-i".into(),
        inventory.to_string_lossy().into_owned(),
    ];
    args.extend(secrets());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pgdeploy(&refs)
}

fn psql(port: u16, sql: &str) -> Result<String, String> {
    vip_psql(port, SUPERUSER_PASSWORD, sql, Duration::from_secs(60))
}

/// Waits until the leader (through the VIP's read-write port) sees `n`
/// replicas streaming with no replay lag.
fn wait_for_streaming_replicas(n: usize) {
    let sql = "select count(*) from pg_stat_replication where state = 'streaming' and coalesce(replay_lag, '0'::interval) < '5s'";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = psql(5000, sql);
        if got.as_deref() == Ok(n.to_string().as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} streaming replicas, got {got:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A host's UFW rules as sorted `PORTS FROM COMMENT` lines.
fn ufw_rules(host: &str) -> Vec<String> {
    let status = ssh(host, "ufw status");
    let mut rules: Vec<String> = status
        .lines()
        .filter(|l| l.contains(" ALLOW "))
        .map(|l| {
            let (rule, comment) = l.split_once('#').unwrap_or((l, ""));
            let w: Vec<&str> = rule.split_whitespace().collect();
            format!("{} {} {}", w[0], w.last().unwrap_or(&""), comment.trim())
        })
        .collect();
    rules.sort();
    rules
}

scenarios_are_listed!();

/// The fresh deploy succeeds without printing a secret, leaves no packaged
/// default cluster, and gives one Patroni leader, two running replicas and
/// a healthy 3-member etcd.
#[test]
fn s01_fresh_deploy_converges_to_one_leader_two_replicas() {
    LAB.run(|lab| {
        let out = &lab.fresh;
        for secret in [SUPERUSER_PASSWORD, REPLICATION_PASSWORD] {
            assert!(!text(out).contains(secret), "a secret was printed");
        }
        // The package made no default cluster (createcluster.d), so there was
        // none to drop and none is left.
        assert!(
            !text(out).contains("packaged default cluster dropped"),
            "the package created {}/main:\n{}",
            major(),
            text(out)
        );
        for host in ["node1", "node2", "node3"] {
            let clusters = ssh(host, "pg_lsclusters --no-header; ls /var/lib/postgresql/*");
            assert_eq!(clusters.trim(), "patroni", "{host}: {clusters}");
            let version = ssh(host, "ls /usr/lib/postgresql; cat /etc/pgdeploy/facts.d/postgres.fact");
            assert_eq!(
                version.split_whitespace().collect::<Vec<_>>(),
                [major(), &format!("major={}", major())],
                "{host}: the release's major, recorded as a local fact"
            );
        }

        let list = patroni_list("node1");
        assert_eq!(list.matches("Leader").count(), 1, "{list}");
        assert_eq!(list.matches("Replica").count(), 2, "{list}");
        // Patroni 4 says `streaming` for a replica, 3.0 `running`.
        assert_eq!(
            list.matches("running").count() + list.matches("streaming").count(),
            3,
            "{list}"
        );
        let etcd = ssh(
            "node1",
            "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgdeploy/tls/ca.crt endpoint health --cluster 2>&1",
        );
        assert_eq!(etcd.matches("is healthy").count(), 3, "{etcd}");
    });
}

/// Through the VIP: the read-write port reaches the leader and takes a
/// write, the read-only port reaches a replica that has it, and both
/// replicas stream with no lag.
#[test]
fn s02_vip_writes_to_the_leader_and_reads_from_a_replica() {
    LAB.run(|lab| {
        assert_eq!(
            psql(5000, "select pg_is_in_recovery()").expect("rw port"),
            "f"
        );
        psql(5000, CREATE_TABLE).expect("write");
        lab.table = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match psql(
                5001,
                "select pg_is_in_recovery() || ' ' || (select note from e2e where id = 1)",
            ) {
                Ok(row) if row == "true written via rw" => break,
                other if Instant::now() > deadline => panic!("read-only port: {other:?}"),
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        }

        wait_for_streaming_replicas(2);
    });
}

/// UFW is active everywhere; node4 (not a member) cannot reach PostgreSQL,
/// Patroni or etcd, a member can; each host holds exactly the intended
/// rules; VRRP is accepted from the two other balancers only.
#[test]
fn s03_firewall_admits_exactly_the_intended_peers() {
    LAB.run(|_| {
        for host in ["node1", "node2", "node3", "node4"] {
            assert!(
                ssh(host, "ufw status").contains("Status: active"),
                "ufw inactive on {host}"
            );
        }
        for port in [5432, 8008, 2379] {
            let probe = ssh_output(
                "node4",
                &format!(
                    "timeout 3 bash -c 'echo > /dev/tcp/{}/{port}'",
                    address("node1")
                ),
            );
            assert!(!probe.status.success(), "node4 reached node1:{port}");
        }
        let allowed = ssh_output(
            "node2",
            &format!(
                "timeout 3 bash -c 'echo > /dev/tcp/{}/5432'",
                address("node1")
            ),
        );
        assert!(
            allowed.status.success(),
            "a member could not reach node1:5432: {}",
            text(&allowed)
        );

        // UFW holds exactly the intended rules: members reach PostgreSQL,
        // Patroni and etcd; the backup host reaches SSH; clients the balancers.
        let (n1, n2, n3, n4) = (
            address("node1"),
            address("node2"),
            address("node3"),
            address("node4"),
        );
        let subnet = format!("{}.0/24", lab_net());
        let mut db_rules = vec![
            format!("22/tcp {subnet} ssh admin"),
            format!("22/tcp {n4} ssh pgbackrest"),
            format!("5000,5001/tcp {subnet} haproxy"),
            format!("5002/tcp {subnet} haproxy sync"),
        ];
        for member in [&n1, &n2, &n3] {
            db_rules.push(format!("5432,8008/tcp {member} postgres patroni"));
            db_rules.push(format!("2379/tcp {member} etcd client"));
            db_rules.push(format!("2380/tcp {member} etcd peer"));
        }
        let mut backup_rules = vec![format!("22/tcp {subnet} ssh admin")];
        for member in [&n1, &n2, &n3] {
            backup_rules.push(format!("22/tcp {member} ssh pgbackrest"));
        }
        for (host, expected) in [
            ("node1", &db_rules),
            ("node2", &db_rules),
            ("node3", &db_rules),
            ("node4", &backup_rules),
        ] {
            let mut expected = expected.clone();
            expected.sort();
            assert_eq!(ufw_rules(host), expected, "UFW rules on {host}");
        }
        // VRRP between the balancers only, in before.rules (Debian 13's
        // iptables prints the protocol's number).
        let vrrp = ssh(
            "node1",
            "iptables -S ufw-before-input | grep -cE -- '-p (vrrp|112) -j ACCEPT'",
        );
        assert_eq!(vrrp.trim(), "2", "VRRP from the two other balancers");
    });
}

/// The CIS items (roles/cis/README.md), each checked by a command, on every host.
#[test]
fn s04_cis_items_hold_on_every_host() {
    LAB.run(|_| {
        let cis: [(&str, &str, &str); 12] = [
            ("1.1.1.x", "grep -c '^install cramfs /bin/false' /etc/modprobe.d/pgdeploy-cis.conf", "1"),
            ("1.5.1", "grep -E '^\\* +hard +core +0' /etc/security/limits.d/pgdeploy-cis.conf | wc -l", "1"),
            ("1.7.x", "stat -c '%a %U' /etc/issue.net /etc/issue /etc/motd | sort -u", "644 root"),
            ("3.3.x", "sysctl -n net.ipv4.conf.all.send_redirects net.ipv4.conf.all.accept_redirects net.ipv4.conf.all.accept_source_route | sort -u", "0"),
            ("3.3.x", "sysctl -n net.ipv4.tcp_syncookies net.ipv4.conf.all.log_martians net.ipv4.icmp_echo_ignore_broadcasts | sort -u", "1"),
            ("4.2.2.x", "systemd-analyze cat-config systemd/journald.conf | grep -c '^Storage=persistent'", "1"),
            ("5.1.2", "stat -c '%a %U:%G' /etc/crontab", "600 root:root"),
            ("5.2.1", "stat -c '%a %U:%G' /etc/ssh/sshd_config", "600 root:root"),
            ("5.2.x", "sshd -T | grep -E '^(permitrootlogin|maxauthtries|x11forwarding|permitemptypasswords) ' | sort | tr '\\n' ' '", "maxauthtries 4 permitemptypasswords no permitrootlogin no x11forwarding no "),
            ("5.2.x", "sshd -T | grep -c '^banner /etc/issue.net'", "1"),
            ("6.1.x", "stat -c '%a %U:%G' /etc/shadow /etc/gshadow | sort -u", "640 root:shadow"),
            ("6.1.x", "stat -c '%a %U:%G' /etc/passwd /etc/group | sort -u", "644 root:root"),
        ];
        for host in ["node1", "node2", "node3", "node4"] {
            for (item, command, expected) in cis {
                assert_eq!(
                    ssh(host, command).trim_end_matches('\n'),
                    expected,
                    "CIS {item} on {host}: {command}"
                );
            }
        }
    });
}

/// Backups: a full backup exists, `pgbackrest check` passes, the full and
/// differential timers are scheduled.
#[test]
fn s05_backups_taken_checked_and_scheduled() {
    LAB.run(|_| {
        let info = ssh("node4", "runuser -u postgres -- pgbackrest info");
        assert!(info.contains("full backup"), "{info}");
        let check = ssh_output(
            "node4",
            "runuser -u postgres -- pgbackrest --stanza=lab check",
        );
        assert!(check.status.success(), "pgbackrest check: {}", text(&check));
        let timers = ssh("node4", "systemctl list-timers --all --no-legend --plain");
        for kind in ["full", "diff"] {
            assert!(
                timers.contains(&format!("pgbackrest-backup-{kind}.timer")),
                "no {kind} backup timer:\n{timers}"
            );
        }
    });
}

/// Converged: a second apply changes nothing.
#[test]
fn s06_converged_apply_changes_nothing() {
    LAB.run(|_| {
        let started = Instant::now();
        let again = apply(&[]);
        println!(
            "converged re-apply: {:.2}s",
            started.elapsed().as_secs_f64()
        );
        assert!(again.status.success(), "{}", text(&again));
        assert!(
            String::from_utf8_lossy(&again.stdout)
                .contains("No changes: the hosts match the playbook."),
            "{}",
            text(&again)
        );
    });
}

/// A hand edit of haproxy.cfg on one host: plan shows it and changes
/// nothing; apply restores it and reloads HAProxy on that host only.
#[test]
fn s07_hand_edit_is_planned_then_repaired_with_one_reload() {
    LAB.run(|_| {
        ssh("node2", "echo '# hand edit' >> /etc/haproxy/haproxy.cfg");
        let inventory = lab_inventory();
        let mut plan_args = vec![
            "plan".to_string(),
            "-i".into(),
            inventory.to_string_lossy().into_owned(),
        ];
        plan_args.extend(secrets());
        let refs: Vec<&str> = plan_args.iter().map(String::as_str).collect();
        let plan = pgdeploy(&refs);
        let plan_text = String::from_utf8_lossy(&plan.stdout).into_owned();
        assert!(
            plan_text.contains("~ file /etc/haproxy/haproxy.cfg"),
            "{plan_text}"
        );
        assert!(plan_text.contains("-# hand edit"), "{plan_text}");
        assert!(
            ssh("node2", "cat /etc/haproxy/haproxy.cfg").contains("# hand edit"),
            "plan changed the file"
        );
        let repair = apply(&["--output", "json"]);
        assert!(repair.status.success(), "{}", text(&repair));
        let report = json(&repair);
        let handlers: Vec<(String, String)> = report["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .flat_map(|h| {
                h["results"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["handler"] == true && r["status"] == "changed")
                    .map(move |r| {
                        (
                            h["host"].as_str().unwrap_or("").to_string(),
                            r["task"].as_str().unwrap_or("").to_string(),
                        )
                    })
            })
            .collect();
        assert_eq!(handlers.len(), 1, "exactly one handler ran: {handlers:?}");
        assert_eq!(handlers[0].0, "node2");
        assert!(
            handlers[0].1.to_lowercase().contains("haproxy"),
            "{handlers:?}"
        );
        assert!(!ssh("node2", "cat /etc/haproxy/haproxy.cfg").contains("# hand edit"));
    });
}

/// A hard crash of the leader's host: writes through the VIP resume on a
/// new leader; the old leader comes back as a streaming replica without
/// manual steps, and a re-apply changes nothing.
#[test]
fn s08_failover_after_a_leader_host_crash_and_rejoin() {
    LAB.run(|lab| {
        lab.ensure_table();
        let old_leader = patroni_leader("node1");
        let survivor = ["node1", "node2", "node3"]
            .into_iter()
            .find(|h| *h != old_leader)
            .expect("a survivor");
        pgdeploy_ok(&["lab", "kill", &old_leader]);
        let crashed = Instant::now();
        let mut n = 100;
        let resumed = loop {
            n += 1;
            if psql(
                5000,
                &format!("insert into e2e values ({n}, 'after failover')"),
            )
            .is_ok()
            {
                break crashed.elapsed();
            }
            assert!(
                crashed.elapsed() < Duration::from_secs(90),
                "writes did not resume within 90 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        println!(
            "failover: writes resumed {:.1}s after the crash of {old_leader}",
            resumed.as_secs_f64()
        );
        let new_leader = patroni_leader(survivor);
        assert_ne!(new_leader, old_leader);

        // The old leader comes back as a replica without manual steps; a re-apply changes nothing.
        pgdeploy_ok(&["lab", "start", &old_leader]);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = patroni_list(survivor);
            let back = list.lines().any(|l| {
                l.contains(&format!(" {old_leader} "))
                    && l.contains("Replica")
                    && (l.contains("running") || l.contains("streaming"))
            });
            if back {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the old leader did not rejoin:\n{list}"
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        wait_for_streaming_replicas(2);
        let after = apply(&[]);
        assert!(after.status.success(), "{}", text(&after));
        assert!(
            String::from_utf8_lossy(&after.stdout)
                .contains("No changes: the hosts match the playbook."),
            "{}",
            text(&after)
        );
    });
}
