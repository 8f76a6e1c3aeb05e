//! End-to-end tests of backups proven by restores, on a 4-host lab: a
//! replica rebuilt from the repository instead of the leader, an on-demand
//! backup and the recovery window in `status`, bad restore targets refused
//! before anything stops, and two restore drills: to a moment between two
//! batches of writes (the table dropped after it comes back with exactly
//! the rows written before it), and to `latest` after a hard crash of every
//! host (nothing committed is lost). Last, a restore `--into` a second
//! cluster on two more hosts (a clone), with the first one left running;
//! `status` degraded while the leader's WAL cannot reach the repository;
//! and retention by days instead of by count.
//!
//! One test per scenario; they share one lab (4 hosts, 6 from s06 on) and
//! one fresh deploy, made by the first scenario that runs (see `Suite` in
//! tests/common). Names start `sNN_` because libtest runs them in name order.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const SCENARIOS: [&str; 8] = [
    "s01_reinit_reads_the_repository_not_the_leader",
    "s02_backup_on_demand_and_the_recovery_window_in_status",
    "s03_bad_restore_targets_are_refused_before_anything_stops",
    "s04_restore_to_a_time_brings_back_exactly_the_rows_before_it",
    "s05_restore_latest_after_every_host_crashed_loses_nothing_committed",
    "s06_restore_into_a_clone_leaves_the_cluster_running",
    "s07_a_stalled_archive_makes_status_degraded_until_it_catches_up",
    "s08_retention_by_time_keeps_every_full_backup_of_its_days",
];

static LAB: Suite<()> = Suite::new(&SCENARIOS, set_up, lab_down::<()>);

const SUPERUSER_PASSWORD: &str = "e2e-Super-b4ck7p";
const REPLICATION_PASSWORD: &str = "e2e-Repl-r3st0r";
const MEMBERS: [&str; 3] = ["node1", "node2", "node3"];

fn set_up() {
    pgdeploy_ok(&["lab", "down"]);
    lab_up(4);
    fresh_deploy("fresh deploy", || run("apply", &[]));
}

/// `pgdeploy VERB -i lab` with the passwords and `extra`.
fn run(verb: &str, extra: &[&str]) -> Output {
    run_on(&lab_inventory(), verb, extra)
}

/// `run`, which must succeed.
fn run_ok(verb: &str, extra: &[&str]) -> Output {
    let out = run(verb, extra);
    assert!(out.status.success(), "{verb} {extra:?}: {}", text(&out));
    out
}

/// `pgdeploy status --output json`.
fn status() -> (Output, serde_json::Value) {
    let out = run("status", &["--output", "json"]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", text(&out)));
    (out, doc)
}

/// SQL through the VIP: writes on 5000, reads on 5001.
fn vip(port: u16, sql: &str) -> Result<String, String> {
    vip_psql(port, SUPERUSER_PASSWORD, sql, Duration::from_secs(20))
}

/// SQL through the VIP's read-write port, which must succeed.
fn write(sql: &str) -> String {
    vip(5000, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The rows of `drill` per tag as `A:100 B:100`, read through `port`.
fn tags(port: u16) -> Result<String, String> {
    vip(port, &count_tags("drill"))
}

/// The rows of `table` per tag, through the write port.
fn tags_of(table: &str) -> Result<String, String> {
    vip(5000, &count_tags(table))
}

/// SQL giving the rows of `table` per tag as `A:100 B:100`.
fn count_tags(table: &str) -> String {
    format!("select string_agg(tag || ':' || n, ' ' order by tag) from (select tag, count(*) n from {table} group by tag) t")
}

/// The healthy cluster after a restore: a leader, two streaming
/// replicas, `status` exit 0.
fn assert_healthy(after: &str) {
    let (out, doc) = wait(&format!("healthy status {after}"), 180, || {
        let (out, doc) = status();
        out.status.success().then_some((out, doc))
    });
    let streaming = doc["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["streaming"] == true)
        .count();
    assert_eq!(streaming, 2, "{after}: {}", text(&out));
}

/// The drill's writes into a new `table`: 100 rows tagged A, a backup of
/// `kind`, 100 rows B, the time T (returned, a second clear of both
/// sides), 100 rows C.
fn rows_a_backup_b_time_c(table: &str, kind: &str) -> String {
    let rows = |tag: &str| {
        write(&format!(
            "insert into {table} select g, '{tag}' from generate_series(1, 100) g"
        ))
    };
    write(&format!("create table {table} (n int, tag text)"));
    rows("A");
    run_ok("backup", &["--type", kind]);
    rows("B");
    std::thread::sleep(Duration::from_millis(1100));
    let t = write("select now()");
    std::thread::sleep(Duration::from_millis(1100));
    rows("C");
    t
}

/// Bytes `host` has sent on its network link.
fn sent_bytes(host: &str) -> u64 {
    ssh(host, "cat /sys/class/net/host0/statistics/tx_bytes")
        .trim()
        .parse()
        .expect("a byte count")
}

scenarios_are_listed!();

/// A replica rebuilt with `reinit` restores from the repository (delta)
/// and streams only the WAL since: the leader sends at most a couple of WAL
/// segments, where pg_basebackup would copy the whole database.
#[test]
fn s01_reinit_reads_the_repository_not_the_leader() {
    LAB.run(|_| {
        write("create table big as select g, md5(g::text) || repeat(md5((g * 7)::text), 6) as t from generate_series(1, 500000) g");
        let size_mb: f64 = write("select pg_database_size(current_database()) / 1048576.0")
            .parse()
            .expect("a size");
        assert!(size_mb > 100.0, "database of {size_mb:.0} MB");
        // Frozen and checkpointed now: autovacuum setting hint bits later
        // would write the table again as full-page images (data checksums),
        // streamed to the other replica while the leader's bytes are counted.
        write("vacuum (freeze, analyze) big");
        write("checkpoint");
        run_ok("backup", &["--type", "full"]);
        // The table's WAL reaches the repository first (it leaves the leader
        // too, and is not what is measured).
        wait("the leader's WAL archived", 120, || {
            let (_, doc) = status();
            (doc["archiver"]["waiting"] == 0 && doc["problems"].as_array().is_some_and(Vec::is_empty))
                .then_some(())
        });
        let leader = patroni_leader("node1");
        let replica = MEMBERS.iter().find(|m| **m != leader).expect("a replica");
        let before = sent_bytes(&leader);
        let started = Instant::now();
        run_ok("reinit", &[replica]);
        let sent_mb = (sent_bytes(&leader) - before) as f64 / 1_048_576.0;
        println!(
            "reinit of {replica} ({size_mb:.0} MB database) in {:.1}s: the leader {leader} sent {sent_mb:.2} MB",
            started.elapsed().as_secs_f64()
        );
        // Streaming starts at the beginning of the replica's current WAL
        // segment: up to two 16 MB segments, against the whole database.
        assert!(
            sent_mb < 32.0 && sent_mb < size_mb / 4.0,
            "the leader sent {sent_mb:.1} MB for a {size_mb:.0} MB database"
        );
        assert_healthy("after the reinit");
    });
}

/// `backup` prints the new label, which `status` then shows with a
/// recovery window reaching past it; a backup that holds pgBackRest's lock
/// makes a second one refuse, with exit 1.
#[test]
fn s02_backup_on_demand_and_the_recovery_window_in_status() {
    LAB.run(|_| {
        let out = run_ok("backup", &["--type", "incr"]);
        let said = text(&out);
        // `backup 20261130-145500F_20261130-145524I (incr) done in 3s: ...`
        let label = said
            .split_whitespace()
            .find(|w| w.contains("F_") && w.ends_with('I'))
            .unwrap_or_else(|| panic!("no incr label in: {said}"))
            .to_string();
        let (_, doc) = status();
        let backup = &doc["backup"];
        assert_eq!(backup["label"], label.as_str(), "{doc:#}");
        assert_eq!(backup["kind"], "incr", "{doc:#}");
        let window = &backup["recovery_window"];
        let (from, to) = (
            window["from"].as_i64().expect("from"),
            window["to"].as_i64().expect("to"),
        );
        let stopped = backup["stopped_at"].as_i64().expect("stopped_at");
        assert!(from <= stopped && stopped <= to, "{doc:#}");
        assert!(backup["newest_wal"]["name"].is_string(), "{doc:#}");
        println!("backup {label}; recoverable {from}..{to}");

        // A backup running (its lock held) is respected.
        let cluster = "lab";
        ssh(
            "node4",
            &format!("(runuser -u postgres -- flock --no-fork /tmp/pgbackrest/{cluster}-backup.lock sleep 37 >/dev/null 2>&1 &)"),
        );
        std::thread::sleep(Duration::from_secs(1));
        let out = run("backup", &["--type", "full"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("a backup is already running on node4"),
            "{}",
            text(&out)
        );
        // The lock's holder (flock exec'd into it) goes.
        ssh("node4", "pkill -f '^sleep 37$' || true");
    });
}

/// Targets outside the window, unknown labels and unreadable times are
/// refused with the window named, and no member restarted.
#[test]
fn s03_bad_restore_targets_are_refused_before_anything_stops() {
    LAB.run(|_| {
        let leader = patroni_leader("node1");
        let started = || write("select pg_postmaster_start_time()");
        let before = started();
        for (target, says) in [
            ("2000-01-01 00:00:00", "is before the oldest backup ended"),
            ("2099-01-01 00:00:00+01", "is after the newest archived WAL"),
            ("20000101-000000F", "no usable backup `20000101-000000F`"),
            ("0/100", "is before the oldest backup's end"),
        ] {
            let out = run("restore", &["--to", target, "--yes"]);
            let said = text(&out);
            assert_eq!(out.status.code(), Some(1), "{target}: {said}");
            assert!(said.contains(says), "{target}: {said}");
            if !target.ends_with('F') {
                assert!(
                    said.contains("the recoverable window is"),
                    "{target}: {said}"
                );
            }
        }
        let out = run("restore", &["--to", "soon", "--yes"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("--to `soon`"), "{}", text(&out));
        // Without --yes and without a terminal: the plan, then a refusal.
        let out = run("restore", &["--to", "latest"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("stop Patroni and PostgreSQL on"),
            "{}",
            text(&out)
        );
        assert!(text(&out).contains("give --yes"), "{}", text(&out));
        assert_eq!(patroni_leader("node1"), leader);
        assert_eq!(started(), before, "the leader restarted");
        assert_healthy("after the refusals");
    });
}

/// The drill: rows A, a full backup, rows B, the time T, rows C, the table
/// dropped; `restore --to T` brings back exactly A and B, on the leader and
/// through the read-only port, with a healthy cluster that takes a backup
/// and that the next plan leaves alone.
#[test]
fn s04_restore_to_a_time_brings_back_exactly_the_rows_before_it() {
    LAB.run(|_| {
        let t = rows_a_backup_b_time_c("drill", "full");
        write("drop table drill");
        let started = Instant::now();
        let out = run_ok("restore", &["--to", &t, "--yes"]);
        let said = text(&out);
        println!("restore to {t} in {:.0}s:\n{said}", started.elapsed().as_secs_f64());
        assert!(said.contains("recovery stopped: before"), "{said}");
        assert_eq!(tags(5000).as_deref(), Ok("A:100 B:100"));
        // Each replica holds the same rows.
        for member in MEMBERS {
            let rows = ssh(
                member,
                "runuser -u postgres -- psql -XAtc \"select count(*) from drill where tag in ('A', 'B')\"",
            );
            assert_eq!(rows.trim(), "200", "{member}");
        }
        assert_eq!(tags(5001).as_deref(), Ok("A:100 B:100"));
        assert_healthy("after the restore");
        let (_, doc) = status();
        assert!(
            doc["members"]
                .as_array()
                .expect("members")
                .iter()
                .all(|m| m["timeline"].as_u64() > Some(1)),
            "a new timeline: {doc:#}"
        );
        run_ok("backup", &["--type", "incr"]);
        // Patroni's own configuration is back: the next plan changes nothing.
        let plan = run("plan", &["--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
        // The old data directories are kept.
        for member in MEMBERS {
            let kept = ssh(member, "ls -d /var/lib/postgresql/15/patroni.before-restore-* | wc -l");
            assert!(kept.trim() != "0", "{member} kept nothing");
        }
    });
}

/// Every host crashes at once after committed writes, some of them not yet
/// archived; once the cluster is back (the leader recovered them from its
/// pg_wal), `restore --to latest` archives them first and keeps every row
/// that was committed.
#[test]
fn s05_restore_latest_after_every_host_crashed_loses_nothing_committed() {
    LAB.run(|_| {
        write("create table crash (n int)");
        let mut committed = 0;
        for i in 0..50 {
            write(&format!("insert into crash values ({i})"));
            committed += 1;
        }
        for host in ["node1", "node2", "node3", "node4"] {
            pgdeploy_ok(&["lab", "kill", host]);
        }
        for host in ["node4", "node1", "node2", "node3"] {
            pgdeploy_ok(&["lab", "start", host]);
        }
        assert_healthy("after the crash");
        let started = Instant::now();
        let out = run_ok("restore", &["--to", "latest", "--yes"]);
        let said = text(&out);
        println!(
            "restore latest after the crash in {:.0}s:\n{said}",
            started.elapsed().as_secs_f64(),
        );
        // The WAL the crashed leader wrote last reached the repository first.
        assert!(said.contains("is in the repository"), "{said}");
        assert!(
            said.contains("recovery stopped: no recovery target specified"),
            "{said}"
        );
        assert_eq!(
            write("select count(*) from crash"),
            committed.to_string(),
            "rows committed before the crash"
        );
        assert_healthy("after the restore of latest");
    });
}

/// The clone's inventory: node5 (etcd, PostgreSQL, HAProxy, keepalived on
/// the next free VIP) and node6 (its repository), cluster `clone`.
fn clone_inventory() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pgdeploy-e2e-clone-{}", lab_instance()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("clone folder");
    let net = lab_net();
    let text = format!(
        "all:
  vars:
{login}    cluster_name: clone
    vip_address: {net}.251
    keepalived_router_id: 52
    admin_networks: [{net}.0/24]
    client_networks: [{net}.0/24]
  hosts:
    node5: {{ansible_host: {node5}}}
    node6: {{ansible_host: {node6}}}
  children:
    etcd: {{hosts: {{node5: {{}}}}}}
    postgres: {{hosts: {{node5: {{}}}}}}
    balancers: {{hosts: {{node5: {{}}}}}}
    backup: {{hosts: {{node6: {{}}}}}}
",
        login = lab_login_vars(),
        node5 = address("node5"),
        node6 = address("node6"),
    );
    let path = dir.join("clone.yaml");
    std::fs::write(&path, text).expect("clone inventory");
    path
}

/// `pgdeploy VERB -i INVENTORY` with the passwords and `extra`.
fn run_on(inventory: &std::path::Path, verb: &str, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec![verb.into(), "-i".into(), inventory.to_string_lossy().into()];
    args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pgdeploy(&refs)
}

/// `restore --into` onto a deployed second cluster: the clone holds
/// exactly the rows written before the target, on a new timeline of the
/// same database system, with a repository of its own; the first cluster
/// keeps running (no restart, every row, no key of the clone left on its
/// backup host), and an `--into` that shares a host is refused.
#[test]
fn s06_restore_into_a_clone_leaves_the_cluster_running() {
    LAB.run(|_| {
        let lab = lab_inventory();
        let out = run(
            "restore",
            &["--to", "latest", "--into", &lab.to_string_lossy(), "--yes"],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("must name other hosts"),
            "{}",
            text(&out)
        );
        let clone = clone_inventory();
        // node5 and node6 stay out of the lab's own inventory: later
        // applies of the lab cluster leave the clone alone.
        let six = clone.with_file_name("lab-6.yaml");
        pgdeploy_ok(&[
            "lab",
            "up",
            "--nodes",
            "6",
            "--inventory",
            &six.to_string_lossy(),
        ]);
        let started = Instant::now();
        let out = run_on(&clone, "apply", &[]);
        assert!(out.status.success(), "clone apply: {}", text(&out));
        println!("clone deployed in {:.0}s", started.elapsed().as_secs_f64());
        let clone_sql = |sql: &str| {
            psql_at(
                &format!("{}.251", lab_net()),
                5000,
                SUPERUSER_PASSWORD,
                sql,
                Duration::from_secs(20),
            )
        };
        clone_sql("create table clone_only (n int)").expect("the clone takes writes");

        let t = rows_a_backup_b_time_c("cloned", "incr");
        let leader_started = write("select pg_postmaster_start_time()");
        let system = "select system_identifier from pg_control_system()";

        let started = Instant::now();
        let out = run(
            "restore",
            &["--to", &t, "--into", &clone.to_string_lossy(), "--yes"],
        );
        let said = text(&out);
        println!(
            "restore --into to {t} in {:.0}s:\n{said}",
            started.elapsed().as_secs_f64()
        );
        assert!(out.status.success(), "{said}");
        assert!(said.contains("into cluster clone"), "{said}");
        assert!(said.contains("recovery stopped: before"), "{said}");
        // The clone: exactly A and B, the old cluster's system, a new timeline.
        assert_eq!(
            clone_sql(&count_tags("cloned")).as_deref(),
            Ok("A:100 B:100")
        );
        assert_eq!(
            clone_sql(system),
            Ok(write(system)),
            "the same database system"
        );
        assert!(
            clone_sql("select 1 from clone_only").is_err(),
            "the clone's own data is replaced"
        );
        let (out, doc) = wait("healthy clone", 120, || {
            let out = run_on(&clone, "status", &["--output", "json"]);
            out.status.success().then(|| {
                let doc: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("status JSON");
                (out, doc)
            })
        });
        assert!(
            doc["members"][0]["timeline"].as_u64() > Some(1),
            "a new timeline: {}",
            text(&out)
        );
        let out = run_on(&clone, "backup", &["--type", "incr"]);
        assert!(
            out.status.success(),
            "a backup of the clone: {}",
            text(&out)
        );
        let plan = run_on(&clone, "plan", &["--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
        assert_eq!(
            ssh(
                "node6",
                "ls -d /var/lib/pgbackrest-before-restore-*/backup/clone | wc -l"
            )
            .trim(),
            "1",
            "the clone's old stanza is kept"
        );
        // The first cluster: never stopped, every row, no trust left behind.
        assert_eq!(write("select pg_postmaster_start_time()"), leader_started);
        assert_eq!(tags_of("cloned").as_deref(), Ok("A:100 B:100 C:100"));
        let trusted = ssh(
            "node4",
            "grep -c pgdeploy-restore-into /var/lib/postgresql/.ssh/authorized_keys || true",
        );
        assert_eq!(trusted.trim(), "0", "a restore key left on node4");
        assert_healthy("after a restore into a clone");
    });
}

/// The leader loses its way to the repository (its pgBackRest key
/// unreadable) while it finishes WAL segments: `status` turns degraded,
/// naming the stalled recovery window, once the newest archived segment is
/// older than 3 × archive_timeout (10 s here); given the key back, the
/// archive catches up and `status` is healthy again.
#[test]
fn s07_a_stalled_archive_makes_status_degraded_until_it_catches_up() {
    LAB.run(|_| {
        let params =
            std::env::temp_dir().join(format!("pgdeploy-e2e-stall-{}.yaml", lab_instance()));
        std::fs::write(&params, "postgres_parameters:\n  archive_timeout: 10s\n")
            .expect("params file");
        run_ok("apply", &["-e", &format!("@{}", params.display())]);
        let leader = patroni_leader("node1");
        let key = "/var/lib/postgresql/.ssh/id_ed25519";
        ssh(&leader, &format!("chmod 000 {key}"));
        write("create table stall (n int)");
        for n in 0..3 {
            write(&format!("insert into stall values ({n})"));
            write("select pg_switch_wal()");
        }
        let stalled = wait("status degraded by the stalled archive", 120, || {
            let (out, doc) = status();
            let problems = doc["problems"].to_string();
            (out.status.code() == Some(1)
                && problems.contains("the recovery window stopped moving"))
            .then_some(problems)
        });
        println!("stalled: {stalled}");
        assert!(
            stalled.contains("limit 3 × archive_timeout = 30 s"),
            "{stalled}"
        );
        ssh(&leader, &format!("chmod 600 {key}"));
        wait("the archive caught up", 180, || {
            status().0.status.success().then_some(())
        });
    });
}

/// How many full backups the repository holds.
fn full_backups() -> usize {
    let info = ssh(
        "node4",
        "runuser -u postgres -- pgbackrest --stanza=lab info --output=json",
    );
    let doc: serde_json::Value = serde_json::from_str(&info).expect("pgbackrest info JSON");
    doc[0]["backup"]
        .as_array()
        .expect("backups")
        .iter()
        .filter(|b| b["type"] == "full")
        .count()
}

/// `pgbackrest_retention_full_type: time`: full backups are kept by age
/// (here 1 day), where the count rule (2) expires all but the newest two
/// after each backup.
#[test]
fn s08_retention_by_time_keeps_every_full_backup_of_its_days() {
    LAB.run(|_| {
        for _ in 0..2 {
            run_ok("backup", &["--type", "full"]);
        }
        assert_eq!(full_backups(), 2, "by count: the newest two");
        let by_time = [
            "-e",
            "pgbackrest_retention_full_type=time",
            "-e",
            "pgbackrest_retention_full=1",
        ];
        run_ok("apply", &by_time);
        assert!(
            ssh("node4", "cat /etc/pgbackrest.conf").contains("repo1-retention-full-type=time\n")
        );
        for _ in 0..2 {
            run_ok("backup", &["--type", "full"]);
        }
        assert_eq!(
            full_backups(),
            4,
            "by time: every full backup of the last day"
        );
        let plan = run("plan", &[&by_time[..], &["--detailed-exitcode"]].concat());
        assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    });
}
