//! End-to-end drill of `pgdeploy upgrade-os --to trixie`: a 4-host Debian
//! 12 lab deployed with the site playbook moves to Debian 13 one host at a
//! time under a writer on the VIP. Every host ends on trixie, PostgreSQL
//! stays on 15 and keeps every acknowledged write, Patroni, etcd, HAProxy
//! and pgBackRest run Debian 13's versions, a backup works afterwards, and
//! `apply` then changes nothing.
//!
//! A drill, not part of CI (it takes about a quarter of an hour, and CI
//! is at its hour): every scenario is `#[ignore]`d, and
//! `cargo test --release --test e2e_upgrade_os -- --ignored --test-threads=1`
//! runs them (docs/upgrades.md). They share one lab and one deploy, made by
//! the first scenario that runs (see `Suite` in tests/common). Names start
//! `sNN_` because libtest runs them in name order.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

const SCENARIOS: [&str; 4] = [
    "s01_check_shows_each_host_and_changes_nothing",
    "s02_refused_without_the_local_fact",
    "s03_move_to_trixie_with_a_writer_loses_nothing",
    "s04_backup_second_run_and_apply_after_the_move",
];

static LAB: Suite<()> = Suite::new(&SCENARIOS, set_up, lab_down::<()>);

const SUPERUSER_PASSWORD: &str = "e2e-Super-o5k2vd";
const REPLICATION_PASSWORD: &str = "e2e-Repl-w8c4yh";
const MEMBERS: [&str; 3] = ["node1", "node2", "node3"];
const HOSTS: [&str; 4] = ["node1", "node2", "node3", "node4"];

fn set_up() {
    pgdeploy_ok(&["lab", "down"]);
    lab_up(4);
    fresh_deploy("fresh deploy on bookworm", || run("apply", &[]));
    vip_query_as(
        SUPERUSER_PASSWORD,
        "create table os_writes (id bigint primary key, at timestamptz default now())",
    );
}

/// `pgdeploy VERB -i lab` with the passwords and `extra`.
fn run(verb: &str, extra: &[&str]) -> Output {
    let inventory = lab_inventory();
    let mut args: Vec<String> = vec![verb.into(), "-i".into(), inventory.to_string_lossy().into()];
    args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pgdeploy(&refs)
}

/// The Debian release `host` runs.
fn release(host: &str) -> String {
    ssh(host, ". /etc/os-release; echo $VERSION_CODENAME")
        .trim()
        .to_string()
}

scenarios_are_listed!();

/// `--check` shows every host's move (the components' versions, the kept
/// PostgreSQL, the switchover's place) and changes nothing; `--to` names
/// only a release pgdeploy moves to; without a terminal or `--yes`
/// nothing happens.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s01_check_shows_each_host_and_changes_nothing() {
    LAB.run(|_| {
        let out = run("upgrade-os", &["--to", "trixie", "--check"]);
        let printed = text(&out);
        assert!(out.status.success(), "{printed}");
        println!("{printed}");
        for host in HOSTS {
            assert!(
                printed.contains(&format!("  {host}")) && printed.contains("bookworm → trixie"),
                "{host}: {printed}"
            );
        }
        let leader = patroni_leader("node1");
        let at = |what: &str| {
            printed
                .find(what)
                .unwrap_or_else(|| panic!("no {what:?} in {printed}"))
        };
        assert!(at("switchover:") < at("  node4:"), "{printed}");
        assert!(
            at("  node4:") < at(&format!("  {leader} (the old leader)")),
            "{printed}"
        );
        assert_eq!(printed.matches("= postgresql-15 ").count(), 3, "{printed}");
        assert!(printed.contains("~ patroni 3.0.2"), "{printed}");
        assert!(printed.contains("~ etcd-server 3.4"), "{printed}");
        assert!(printed.contains("4 host(s) to move to trixie"), "{printed}");
        assert!(
            printed.contains("checked: nothing was changed"),
            "{printed}"
        );

        let out = run("upgrade-os", &["--to", "forky", "--check"]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("--to forky: upgrade-os makes bookworm → trixie only"),
            "{}",
            text(&out)
        );
        let out = run("upgrade-os", &["--to", "trixie"]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("confirm on a terminal"),
            "{}",
            text(&out)
        );
        for host in HOSTS {
            assert_eq!(release(host), "bookworm", "{host}");
            let sources = ssh(host, "cat /etc/apt/sources.list");
            assert!(!sources.contains("trixie"), "{host}: {sources}");
        }
    });
}

/// A backup host without the local fact that keeps its PostgreSQL major
/// (a cluster deployed by an older pgdeploy) is refused, named, before
/// anything changes.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s02_refused_without_the_local_fact() {
    LAB.run(|_| {
        let fact = "/etc/pgdeploy/facts.d/postgres.fact";
        let kept = ssh("node4", &format!("sudo cat {fact}"));
        ssh("node4", &format!("sudo mv {fact} {fact}.away"));
        let out = run("upgrade-os", &["--to", "trixie", "--yes"]);
        ssh("node4", &format!("sudo mv {fact}.away {fact}"));
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("refused: node4 has no local fact postgres.major"),
            "{}",
            text(&out)
        );
        assert!(kept.contains("major=15"), "{kept}");
        for host in HOSTS {
            assert_eq!(release(host), "bookworm", "{host}");
        }
    });
}

/// The move with a writer on the VIP: every host on trixie, PostgreSQL
/// still 15 on every member and streaming, Patroni 4 and etcd 3.5
/// running, no acknowledged write lost, one leader change (the
/// switchover), no gap in the writes over a second outside the
/// switchover. Every gap over half a second is printed with what the move
/// was doing then.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s03_move_to_trixie_with_a_writer_loses_nothing() {
    LAB.run(|_| {
        let timeline = |host: &str| {
            ssh(
                host,
                "sudo runuser -u postgres -- psql -XAtc 'select timeline_id from pg_control_checkpoint()'",
            )
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
        };
        let leader = patroni_leader("node1");
        let timeline_before = timeline(&leader);
        let writer = Writer::start(SUPERUSER_PASSWORD, "os_writes", 0);
        std::thread::sleep(Duration::from_secs(2));
        let out = run("upgrade-os", &["--to", "trixie", "--yes"]);
        std::thread::sleep(Duration::from_secs(2));
        let acked = writer.finish_timed();
        let printed = text(&out);
        println!("{printed}");
        assert!(out.status.success(), "{printed}");

        for host in HOSTS {
            assert_eq!(release(host), "trixie", "{host}");
        }
        for m in MEMBERS {
            let v = ssh(m, "sudo runuser -u postgres -- psql -XAtc 'show server_version'");
            assert!(v.trim().starts_with("15."), "{m}: {v}");
            let patroni = ssh(m, "dpkg-query -W -f='${Version}' patroni");
            assert!(patroni.starts_with("4.0"), "{m}: patroni {patroni}");
        }
        let list = patroni_list("node1");
        assert_eq!(list.matches("| streaming |").count(), 2, "{list}");
        let etcd = ssh(
            "node1",
            "sudo etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgdeploy/tls/ca.crt \
             endpoint status --cluster -w simple",
        );
        assert_eq!(etcd.matches(", 3.5.").count(), 3, "{etcd}");
        // Every member on 3.5: the cluster moved to etcd's 3.5 protocol.
        let version = ssh(
            "node1",
            "curl -sS --cacert /etc/pgdeploy/tls/ca.crt https://127.0.0.1:2379/version",
        );
        assert!(version.contains("\"etcdcluster\":\"3.5."), "{version}");
        let ids: Vec<i64> = acked.iter().map(|(id, _)| *id).collect();
        assert_no_write_lost_in(SUPERUSER_PASSWORD, "os_writes", &ids, "upgrade-os");

        let new_leader = patroni_leader("node1");
        assert_ne!(new_leader, leader, "the old leader moved last, after a switchover");
        assert_eq!(timeline(&new_leader), timeline_before + 1, "{printed}");

        // Each gap, with the move's last step before it.
        let steps: Vec<(f64, &str)> = printed
            .lines()
            .filter_map(|l| Some((stamp(l)?, l)))
            .collect();
        let all = gaps(&acked, Duration::from_millis(500));
        for (before, gap) in &all {
            let start = of_day(*before);
            let step = steps
                .iter()
                .rev()
                .find(|(at, _)| *at <= start)
                .map_or("before the first step", |(_, l)| l);
            println!(
                "gap in writes: {:.3}s at {start:.3}, after: {step}",
                gap.as_secs_f64()
            );
        }
        let longest = all.iter().map(|(_, gap)| *gap).max().unwrap_or_default();
        println!(
            "upgrade-os: {} writes, {} gaps over 0.5s, the longest {:.3}s",
            acked.len(),
            all.len(),
            longest.as_secs_f64()
        );
        // Over a second: only at the switchover (from its start to every
        // HAProxy sending writes to the new leader). The drain of the VIP's
        // holder moves the VIP, which leaves a shorter one.
        let at = |what: &str| {
            steps
                .iter()
                .find(|(_, l)| l.contains(what))
                .map(|(at, _)| *at)
                .unwrap_or_else(|| panic!("no `{what}` line:\n{printed}"))
        };
        let window = (at("switchover to"), at("on every balancer"));
        for (before, gap) in gaps(&acked, Duration::from_secs(1)) {
            let start = of_day(before);
            let end = start + gap.as_secs_f64();
            assert!(
                end >= window.0 - 1.0 && start <= window.1 + 1.0,
                "a gap of {:.1}s at {start:.3} outside the switchover ({:.3}..{:.3}):\n{printed}",
                gap.as_secs_f64(),
                window.0,
                window.1
            );
        }
    });
}

/// After the move: a backup goes through on pgBackRest 2.55 (repository
/// and leader on the same version again), a second `upgrade-os` has
/// nothing to do, and `apply` with the site playbook changes nothing.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s04_backup_second_run_and_apply_after_the_move() {
    LAB.run(|_| {
        let out = run("backup", &["--type", "incr"]);
        assert!(out.status.success(), "{}", text(&out));
        let out = run("upgrade-os", &["--to", "trixie", "--yes"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("No changes: every host runs trixie."),
            "{}",
            text(&out)
        );
        let out = run("apply", &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("No changes: the hosts match the playbook."),
            "{}",
            text(&out)
        );
    });
}
