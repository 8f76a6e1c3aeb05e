//! End-to-end drill of the upgrades of a running cluster, in the order an
//! operator makes them: `pgdeploy upgrade-os --to trixie`, then
//! `pgdeploy upgrade --to 17`.
//!
//! s01–s04: a 4-host Debian 12 lab deployed with the site playbook moves to
//! Debian 13 one host at a time under a writer on the VIP. Every host ends
//! on trixie, PostgreSQL stays on 15 and keeps every acknowledged write,
//! Patroni, etcd, HAProxy and pgBackRest run Debian 13's versions, a backup
//! works afterwards, and `apply` then changes nothing.
//!
//! s05–s08: the same cluster, now on Debian 13 with Debian 12's PostgreSQL
//! 15, with a data set (tables, an index, a sequence, a large object, in
//! their own database) checksummed: `--check` refuses an extension 17 does
//! not have, naming it; a leader host killed after `pg_upgrade` puts 15
//! back with the data intact; the upgrade under a writer keeps every
//! checksum on every member and every acknowledged write; failover works
//! on 17 and `apply` then changes nothing.
//!
//! A drill, not part of CI (it takes about 16 minutes, and CI is at its
//! hour): every scenario is `#[ignore]`d, and
//! `cargo test --release --test e2e_upgrade_os -- --ignored --test-threads=1`
//! runs them (docs/upgrades.md). They share one lab and one deploy, made by
//! the first scenario that runs (see `Suite` in tests/common). Names start
//! `sNN_` because libtest runs them in name order.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SCENARIOS: [&str; 9] = [
    "s01_check_shows_each_host_and_changes_nothing",
    "s02_refused_without_the_local_fact",
    "s03_move_to_trixie_with_a_writer_loses_nothing",
    "s04_backup_second_run_and_apply_after_the_move",
    "s05_upgrade_check_names_an_extension_17_lacks",
    "s06_a_leader_lost_after_pg_upgrade_puts_15_back",
    "s07_upgrade_to_17_with_a_writer_keeps_every_checksum",
    "s08_failover_and_apply_on_17",
    "s09_finish_removes_what_15_left",
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
    // A text index built under Debian 12's collation, for the move's last step.
    vip_query_as(
        SUPERUSER_PASSWORD,
        "create table os_names as select 'name ' || i as name from generate_series(1, 5000) i",
    );
    vip_query_as(
        SUPERUSER_PASSWORD,
        "create index os_names_name on os_names (name)",
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
        // The last step rebuilt the text index and refreshed the versions.
        assert!(
            printed.contains("database postgres: collation version 2.36 → 2.41"),
            "{printed}"
        );
        assert!(!printed.contains(" 0 index(es) sorting text"), "{printed}");
        let stale = vip_query_as(
            SUPERUSER_PASSWORD,
            "select datname from pg_database \
             where datcollversion <> pg_database_collation_actual_version(oid)",
        );
        assert!(stale.is_empty(), "databases still stale: {}", stale.len());

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
        let window = (
            step_at(&printed, "switchover to"),
            step_at(&printed, "on every balancer"),
        );
        assert_long_gaps_within(&acked, window, &printed);
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
        assert_says(
            &run("upgrade-os", &["--to", "trixie", "--yes"]),
            "No changes: every host runs trixie.",
        );
        assert_says(
            &run("apply", &[]),
            "No changes: the hosts match the playbook.",
        );
    });
}

/// The data set the major upgrade must keep, in its own database `app`:
/// two tables, a B-tree index, a sequence, a large object.
const DATA_SET: &str = "
create extension if not exists amcheck;
create table accounts (id bigserial primary key, email text not null, balance numeric(12,2),
                       opened timestamptz default now(), tags jsonb);
create index accounts_email on accounts (email);
create table events (id bigint primary key, account bigint references accounts, payload bytea);
insert into accounts (email, balance, tags)
  select 'user' || i || '@example.org', i * 1.25, jsonb_build_object('n', i, 'odd', i % 2 = 1)
    from generate_series(1, 20000) i;
insert into events select i, 1 + i % 20000, sha256(i::text::bytea) from generate_series(1, 50000) i;
select lo_from_bytea(4242, convert_to(repeat('large object ', 10000), 'UTF8'));
";

/// One line per object of the data set: its checksum (or, for the
/// sequence, its value), read on `host` itself. The index is checked with
/// amcheck (heapallindexed), so a line says `index ok` only if every row is
/// in it.
fn data_checksums(host: &str) -> String {
    let sql = "select 'accounts', md5(string_agg(a::text, '|' order by id)) from accounts a \
               union all select 'events', md5(string_agg(e::text, '|' order by id)) from events e \
               union all select 'sequence', last_value::text from accounts_id_seq \
               union all select 'large object', md5(lo_get(4242)) \
               union all select 'index', 'ok' \
                 from (select bt_index_check('accounts_email', true)) checked";
    ssh(
        host,
        &format!("sudo runuser -u postgres -- psql -XAt -d app -c \"{sql}\""),
    )
}

/// The checksums without the sequence's value: a replica reads the value
/// its last WAL record logged, up to 32 ahead of the leader's.
fn without_sequence(checksums: &str) -> String {
    checksums
        .lines()
        .filter(|l| !l.starts_with("sequence|"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `SHOW server_version` on `host`'s own PostgreSQL.
fn server_version(host: &str) -> String {
    ssh(
        host,
        "sudo runuser -u postgres -- psql -XAtc 'show server_version'",
    )
    .trim()
    .to_string()
}

/// `--check` with an extension PostgreSQL 17 does not ship (adminpack,
/// removed in 17) refuses, naming it, with nothing stopped; without it,
/// `--check` passes `pg_upgrade --check` and prints the plan. The data set
/// is written here for the scenarios after.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s05_upgrade_check_names_an_extension_17_lacks() {
    LAB.run(|_| {
        let leader = patroni_leader("node1");
        ssh(&leader, "sudo runuser -u postgres -- psql -XAtc 'create database app'");
        ssh(
            &leader,
            &format!("sudo runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -q -d app <<'SQL'\n{DATA_SET}\nSQL"),
        );
        ssh(&leader, "sudo runuser -u postgres -- psql -XAt -d app -c 'create extension adminpack'");
        let started = patroni_list("node1");
        let out = run("upgrade", &["--to", "17", "--check"]);
        let printed = text(&out);
        println!("{printed}");
        assert!(!out.status.success(), "{printed}");
        assert!(
            printed.contains("refused: extension adminpack (database app) is not available for PostgreSQL 17"),
            "{printed}"
        );
        assert!(printed.contains("nothing was stopped"), "{printed}");
        assert_eq!(patroni_leader("node1"), leader);
        ssh(&leader, "sudo runuser -u postgres -- psql -XAt -d app -c 'drop extension adminpack'");

        let out = run("upgrade", &["--to", "17", "--check"]);
        let printed = text(&out);
        println!("{printed}");
        assert!(out.status.success(), "{printed}");
        assert!(printed.contains("= pg_upgrade --check passed"), "{printed}");
        assert!(printed.contains("checked: nothing was stopped"), "{printed}");
        for m in MEMBERS {
            assert!(server_version(m).starts_with("15."), "{m}");
            let held = ssh(m, "apt-mark showhold");
            assert!(held.contains("postgresql-17"), "{m}: {held}");
        }
        let list = patroni_list("node1");
        assert_eq!(list.matches("| streaming |").count(), 2, "{started}\n{list}");
    });
}

/// The leader's host is killed once `pg_upgrade --link` is done: the
/// upgrade fails before its cut-over and puts 15 back (a replica leads,
/// every object's checksum as before). Once the host is back, `upgrade
/// --rollback` puts its 15 back too and it streams again.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s06_a_leader_lost_after_pg_upgrade_puts_15_back() {
    LAB.run(|_| {
        let leader = patroni_leader("node1");
        let before = data_checksums(&leader);
        println!("data set on {leader}:\n{before}");
        let inventory = lab_inventory();
        let mut args: Vec<String> = vec![
            "upgrade".into(),
            "-i".into(),
            inventory.to_string_lossy().into(),
        ];
        args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
        args.extend(["--to", "17", "--yes"].map(String::from));
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
            .args(&args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgdeploy runs");
        // The steps come on stdout as they happen; the verdict on stderr.
        let stdout = child.stdout.take().expect("stdout");
        let mut printed = String::new();
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            println!("{line}");
            printed.push_str(&line);
            printed.push('\n');
            if !killed && line.contains("pg_upgrade --link done") {
                pgdeploy_ok(&["lab", "kill", &leader]);
                killed = true;
            }
        }
        let mut verdict = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut verdict)
            .expect("stderr");
        println!("{verdict}");
        printed.push_str(&verdict);
        let status = child.wait().expect("pgdeploy ends");
        assert!(killed, "no `pg_upgrade --link done` line:\n{printed}");
        assert!(!status.success(), "{printed}");
        assert!(printed.contains("failed before the cut-over"), "{printed}");
        assert!(printed.contains("PostgreSQL 15 serves again"), "{printed}");
        assert!(
            printed.contains(&format!("not reached: {leader}")),
            "{printed}"
        );

        let new_leader = patroni_leader(if leader == "node1" { "node2" } else { "node1" });
        assert_ne!(new_leader, leader);
        assert!(server_version(&new_leader).starts_with("15."));
        let before = without_sequence(&before);
        assert_eq!(
            without_sequence(&data_checksums(&new_leader)),
            before,
            "on {new_leader}"
        );
        vip_query_as(SUPERUSER_PASSWORD, "create table after_rollback (id int)");

        pgdeploy_ok(&["lab", "start", &leader]);
        let out = run("upgrade", &["--to", "17", "--rollback"]);
        let printed = text(&out);
        println!("{printed}");
        assert!(out.status.success(), "{printed}");
        assert!(
            printed.contains(&format!("rollback done: {leader}")),
            "{printed}"
        );
        let list = patroni_list(&new_leader);
        assert_eq!(list.matches("| streaming |").count(), 2, "{list}");
        for m in MEMBERS {
            assert!(server_version(m).starts_with("15."), "{m}");
            assert_eq!(without_sequence(&data_checksums(m)), before, "on {m}");
        }
        assert_says(
            &run("apply", &[]),
            "No changes: the hosts match the playbook.",
        );
    });
}

/// The upgrade under a writer on the VIP: every member runs 17 (as `SHOW`
/// says on each), every object's checksum is the one before on the leader
/// and on each replica, no acknowledged write is lost; the write downtime
/// is printed.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s07_upgrade_to_17_with_a_writer_keeps_every_checksum() {
    LAB.run(|_| {
        let leader = patroni_leader("node1");
        let before = data_checksums(&leader);
        vip_query_as(
            SUPERUSER_PASSWORD,
            "create table pg_writes (id bigint primary key, at timestamptz default now())",
        );
        let writer = Writer::start(SUPERUSER_PASSWORD, "pg_writes", 0);
        std::thread::sleep(Duration::from_secs(2));
        let started = Instant::now();
        let out = run("upgrade", &["--to", "17", "--yes"]);
        let took = started.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let acked = writer.finish_timed();
        let printed = text(&out);
        println!("{printed}");
        assert!(out.status.success(), "{printed}");
        for m in MEMBERS {
            let v = server_version(m);
            assert!(v.starts_with("17."), "{m}: {v}");
            if m == leader {
                assert_eq!(data_checksums(m), before, "on {m}");
            } else {
                assert_eq!(
                    without_sequence(&data_checksums(m)),
                    without_sequence(&before),
                    "on {m}"
                );
            }
        }
        let list = patroni_list("node1");
        assert_eq!(list.matches("| streaming |").count(), 2, "{list}");
        let ids: Vec<i64> = acked.iter().map(|(id, _)| *id).collect();
        assert_no_write_lost_in(SUPERUSER_PASSWORD, "pg_writes", &ids, "upgrade");
        let all = gaps(&acked, Duration::from_millis(500));
        let longest = all.iter().map(|(_, gap)| *gap).max().unwrap_or_default();
        println!(
            "upgrade: {:.0}s in all, {} writes, the longest gap {:.1}s (the write downtime)",
            took.as_secs_f64(),
            acked.len(),
            longest.as_secs_f64()
        );
        assert_eq!(
            all.iter()
                .filter(|(_, g)| *g > Duration::from_secs(1))
                .count(),
            1,
            "{all:?}"
        );
    });
}

/// On 17: a switchover and a crash of the leader's host each leave a new
/// leader that takes writes; a backup goes through; `apply` with the site
/// playbook then changes nothing and `upgrade --to 17` has nothing to do.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s08_failover_and_apply_on_17() {
    LAB.run(|_| {
        let out = run("switchover", &[]);
        assert!(out.status.success(), "{}", text(&out));
        let leader = patroni_leader("node1");
        pgdeploy_ok(&["lab", "kill", &leader]);
        let other = MEMBERS.iter().find(|m| **m != leader).expect("a member");
        let new_leader = wait("a new leader on 17", 90, || {
            patroni_list(other)
                .lines()
                .find(|l| l.contains("Leader"))
                .and_then(|l| l.split('|').nth(1))
                .map(|s| s.trim().to_string())
                .filter(|l| *l != leader)
        });
        vip_query_as(
            SUPERUSER_PASSWORD,
            "create table after_failover_on_17 (id int)",
        );
        assert!(server_version(&new_leader).starts_with("17."));
        pgdeploy_ok(&["lab", "start", &leader]);
        wait("the old leader streaming", 180, || {
            (patroni_list(&new_leader).matches("| streaming |").count() == 2).then_some(())
        });
        let out = run("backup", &["--type", "incr"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_says(
            &run("upgrade", &["--to", "17", "--check"]),
            "No changes: the cluster runs PostgreSQL 17.",
        );
        assert_says(
            &run("apply", &[]),
            "No changes: the hosts match the playbook.",
        );
    });
}

/// `upgrade --to 17 --finish`: `--check` lists each member's 15 data
/// directory and the 15 packages and removes nothing; the finish removes
/// them (the leader keeps serving: its 17 files were hard links, not
/// copies), the cluster stays healthy and writable, every table reads the
/// same, `apply` changes nothing and a second finish finds nothing.
#[ignore = "a drill: cargo test --release --test e2e_upgrade_os -- --ignored"]
#[test]
fn s09_finish_removes_what_15_left() {
    LAB.run(|_| {
        let before: Vec<String> = MEMBERS
            .iter()
            .map(|m| without_sequence(&data_checksums(m)))
            .collect();
        let check = run("upgrade", &["--to", "17", "--finish", "--check"]);
        let listed = text(&check);
        assert!(check.status.success(), "{listed}");
        for m in MEMBERS {
            assert!(
                listed.contains(&format!("  - {m}: /var/lib/postgresql/15 (")),
                "{m}'s 15 directory listed: {listed}"
            );
            assert!(
                listed.contains(&format!("  - {m}: purge postgresql-15")),
                "{m}'s 15 packages listed: {listed}"
            );
            assert_eq!(
                ssh(m, "test -d /var/lib/postgresql/15 && echo kept").trim(),
                "kept",
                "--check removed nothing"
            );
        }
        let started = std::time::Instant::now();
        let out = run("upgrade", &["--to", "17", "--finish", "--yes"]);
        assert!(out.status.success(), "{}", text(&out));
        println!(
            "finish: {:.1}s\n{}",
            started.elapsed().as_secs_f64(),
            text(&out)
        );
        for m in MEMBERS {
            assert_eq!(
                ssh(
                    m,
                    "test -e /var/lib/postgresql/15 && echo left; \
                     dpkg-query -W -f '${db:Status-Abbrev}\\n' postgresql-15 2>/dev/null | grep -c '^.i' || true"
                )
                .trim(),
                "0",
                "{m}: the 15 directory and package are gone"
            );
            assert!(server_version(m).starts_with("17."), "{m}");
        }
        vip_query_as(SUPERUSER_PASSWORD, "create table after_finish (id int)");
        let after: Vec<String> = MEMBERS
            .iter()
            .map(|m| without_sequence(&data_checksums(m)))
            .collect();
        assert_eq!(before, after, "every object reads the same after the finish");
        assert_says(
            &run("upgrade", &["--to", "17", "--finish"]),
            "No changes: nothing of an older major is left (PostgreSQL 17).",
        );
        assert_says(
            &run("apply", &[]),
            "No changes: the hosts match the playbook.",
        );
    });
}
