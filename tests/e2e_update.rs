//! End-to-end tests of `pgdeploy update`, the rolling point-release update,
//! on a 4-host Debian 12 lab deployed with PostgreSQL pinned one point
//! release back (15.18, Debian 12's main archive; 15.20 is in its security
//! archive), HAProxy likewise: the packages are held after the deploy, `--check` shows the
//! moves and changes nothing, the update moves every member to 15.20 with a
//! writer on the VIP that loses nothing and sees gaps only at the
//! switchover, and a second update changes nothing.
//!
//! One test per scenario; they share one lab (4 hosts) and one fresh
//! deploy, made by the first scenario that runs (see `Suite` in
//! tests/common). Names start `sNN_` because libtest runs them in name order.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

const SCENARIOS: [&str; 4] = [
    "s01_deploy_holds_the_packages_at_the_pinned_release",
    "s02_check_shows_the_moves_and_moves_nothing",
    "s03_rolling_update_with_a_writer_loses_nothing",
    "s04_second_update_and_apply_change_nothing",
];

static LAB: Suite<()> = Suite::new(&SCENARIOS, set_up, lab_down::<()>);

const SUPERUSER_PASSWORD: &str = "e2e-Super-u8d2kq";
const REPLICATION_PASSWORD: &str = "e2e-Repl-5n1wz7";
const MEMBERS: [&str; 3] = ["node1", "node2", "node3"];
/// The release the lab is deployed at, and the one the update moves to.
const OLD: &str = "15.18-0+deb12u1";
const NEW: &str = "15.20-0+deb12u1";
/// HAProxy likewise (Debian 12's main archive, then its security update):
/// the balancers restart under the writer too.
const HAPROXY_OLD: &str = "2.6.12-1+deb12u3";
const HAPROXY_NEW: &str = "2.6.12-1+deb12u4";
/// The packages the roles hold (those of every component on node1).
const HELD: [&str; 7] = [
    "etcd-server",
    "haproxy",
    "keepalived",
    "patroni",
    "pgbackrest",
    "postgresql-15",
    "postgresql-client-15",
];

fn set_up() {
    pgdeploy_ok(&["lab", "down"]);
    lab_up(4);
    let pin = format!("postgres_packages=[postgresql-15={OLD}, postgresql-client-15={OLD}]");
    let haproxy = format!("haproxy_packages=[haproxy={HAPROXY_OLD}]");
    fresh_deploy("fresh deploy at 15.18", || {
        run("apply", &["-e", &pin, "-e", &haproxy])
    });
    vip_query_as(
        SUPERUSER_PASSWORD,
        "create table update_writes (id bigint primary key, at timestamptz default now())",
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

/// `SHOW server_version` on each member's own socket.
fn running_versions() -> Vec<String> {
    MEMBERS
        .iter()
        .map(|m| {
            ssh(m, "runuser -u postgres -- psql -XAtc 'show server_version'")
                .trim()
                .to_string()
        })
        .collect()
}

/// The installed version of `package` on `host`.
fn installed(host: &str, package: &str) -> String {
    ssh(host, &format!("dpkg-query -W -f='${{Version}}' {package}"))
        .trim()
        .to_string()
}

scenarios_are_listed!();

/// The deploy installed the pinned release, PostgreSQL runs it, and every
/// component's packages are held.
#[test]
fn s01_deploy_holds_the_packages_at_the_pinned_release() {
    LAB.run(|_| {
        for v in running_versions() {
            assert!(v.starts_with("15.18 "), "{v}");
        }
        assert_eq!(installed("node1", "haproxy"), HAPROXY_OLD);
        let held = ssh("node1", "apt-mark showhold");
        let held: Vec<&str> = held.lines().map(str::trim).collect();
        for package in HELD {
            assert!(held.contains(&package), "{package} not held: {held:?}");
        }
    });
}

/// `update --check` lists each member's moves from 15.18 to 15.20 and
/// moves no package.
#[test]
fn s02_check_shows_the_moves_and_moves_nothing() {
    LAB.run(|_| {
        let out = run("update", &["--packages", "postgresql", "--check"]);
        let printed = text(&out);
        assert!(out.status.success(), "{printed}");
        let wanted = format!("~ postgresql-15 {OLD} → {NEW}");
        assert_eq!(printed.matches(&wanted).count(), 3, "{printed}");
        assert!(printed.contains("3 host(s) to update"), "{printed}");
        assert!(
            printed.contains("checked: nothing was changed"),
            "{printed}"
        );
        for m in MEMBERS {
            assert_eq!(installed(m, "postgresql-15"), OLD, "{m}");
        }
        // Without a terminal and without --yes, nothing happens either.
        let out = run("update", &["--packages", "postgresql"]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("confirm on a terminal"),
            "{}",
            text(&out)
        );
        assert_eq!(installed("node1", "postgresql-15"), OLD);
    });
}

/// The update with a writer on the VIP: every member runs 15.20, the
/// packages are held again, no acknowledged write is lost, the only
/// leader change is the switchover, and every gap in the writes longer than
/// a second falls within it.
#[test]
fn s03_rolling_update_with_a_writer_loses_nothing() {
    LAB.run(|_| {
        let timeline = |host: &str| {
            ssh(
                host,
                "runuser -u postgres -- psql -XAtc 'select timeline_id from pg_control_checkpoint()'",
            )
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
        };
        let leader = patroni_leader("node1");
        let timeline_before = timeline(&leader);
        let writer = Writer::start(SUPERUSER_PASSWORD, "update_writes", 0);
        std::thread::sleep(Duration::from_secs(2));
        let out = run("update", &["--yes"]);
        std::thread::sleep(Duration::from_secs(2));
        let acked = writer.finish_timed();
        let printed = text(&out);
        assert!(out.status.success(), "{printed}");
        println!("{printed}");

        for v in running_versions() {
            assert!(v.starts_with("15.20 "), "{v}\n{printed}");
        }
        for m in MEMBERS {
            assert_eq!(installed(m, "haproxy"), HAPROXY_NEW, "{m}");
        }
        let held = ssh("node1", "apt-mark showhold");
        assert!(held.contains("postgresql-15"), "held again: {held}");
        let ids: Vec<i64> = acked.iter().map(|(id, _)| *id).collect();
        assert_no_write_lost_in(SUPERUSER_PASSWORD, "update_writes", &ids, "update");

        // One planned leader change: the switchover.
        let new_leader = patroni_leader("node1");
        assert_ne!(new_leader, leader, "the old leader's host was updated after a switchover");
        assert_eq!(timeline(&new_leader), timeline_before + 1, "{printed}");

        // The switchover's window, from the update's own timestamps.
        let window = (
            step_at(&printed, "leads: switchover first"),
            step_at(&printed, "on every balancer"),
        );
        assert_long_gaps_within(&acked, window, &printed);
        let all = gaps(&acked, Duration::ZERO);
        let longest = all.iter().map(|(_, gap)| *gap).max().unwrap_or_default();
        // Elsewhere: the replicas' restarts and HAProxy's on every balancer.
        let elsewhere = all
            .iter()
            .filter(|(before, gap)| {
                let start = of_day(*before);
                start + gap.as_secs_f64() < window.0 - 1.0 || start > window.1 + 1.0
            })
            .map(|(_, gap)| *gap)
            .max()
            .unwrap_or_default();
        println!(
            "update: longest gap in acknowledged writes {:.3}s, switchover {:.1}s, longest gap outside it {:.3}s, {} writes",
            longest.as_secs_f64(),
            window.1 - window.0,
            elsewhere.as_secs_f64(),
            acked.len()
        );
    });
}

/// A second update finds nothing to do; `apply` without the pin changes
/// nothing either (the packages are present and held).
#[test]
fn s04_second_update_and_apply_change_nothing() {
    LAB.run(|_| {
        assert_says(&run("update", &["--yes"]), "No changes: nothing to update.");
        assert_says(
            &run("apply", &[]),
            "No changes: the hosts match the playbook.",
        );
    });
}
