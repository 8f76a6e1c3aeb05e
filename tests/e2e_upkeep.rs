//! End-to-end tests of the cluster's upkeep on a 4-host lab: replicas and an
//! old leader rejoin after their WAL was recycled (restore_command from the
//! pgBackRest archive), etcd's database size in `status`, defragmentation
//! planned and done, etcd restarts rolled one member at a time with the
//! quorum held, and a dead backup host that shows in `status` while the
//! primary's WAL backlog stays bounded by pgBackRest's queue.
//!
//! One test per scenario; they share one lab (4 hosts) and one fresh
//! deploy, made by the first scenario that runs (see `Suite` in
//! tests/common). Names start `sNN_` because libtest runs them in name order.

mod common;

use std::process::Output;
use std::time::Instant;

use common::*;

const SCENARIOS: [&str; 6] = [
    "s01_status_shows_etcd_db_size_and_the_archiver",
    "s02_replica_rejoins_after_its_wal_was_recycled",
    "s03_old_leader_rejoins_after_a_crash_and_writes",
    "s04_fragmented_etcd_is_planned_for_defragmentation",
    "s05_etcd_change_rolls_members_one_at_a_time_then_defragments",
    "s06_dead_backup_host_shows_in_status_and_the_wal_backlog_stays_bounded",
];

static LAB: Suite<()> = Suite::new(&SCENARIOS, set_up, lab_down::<()>);

const SUPERUSER_PASSWORD: &str = "e2e-Super-7f3kq9";
const REPLICATION_PASSWORD: &str = "e2e-Repl-2m8xv4";
/// pgBackRest's archive queue for this lab (the default is 4GB): small
/// enough that the dead-repository scenario writes past it quickly.
const QUEUE_MAX_MB: u64 = 256;
const DATA_DIR: &str = "/var/lib/postgresql/15/patroni";
const MEMBERS: [&str; 3] = ["node1", "node2", "node3"];

fn set_up() {
    pgdeploy_ok(&["lab", "down"]);
    lab_up(4);
    fresh_deploy("fresh deploy", || run("apply", &[]));
}

/// `pgdeploy VERB -i lab` with the passwords, the lab's queue size and `extra`.
fn run(verb: &str, extra: &[&str]) -> Output {
    let inventory = lab_inventory();
    let mut args: Vec<String> = vec![verb.into(), "-i".into(), inventory.to_string_lossy().into()];
    args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
    args.extend([
        "-e".into(),
        format!("pgbackrest_archive_push_queue_max={QUEUE_MAX_MB}MB"),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pgdeploy(&refs)
}

/// `pgdeploy status --output json`.
fn status() -> (Output, serde_json::Value) {
    let inventory = lab_inventory();
    let out = pgdeploy(&[
        "status",
        "-i",
        &inventory.to_string_lossy(),
        "--output",
        "json",
    ]);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", text(&out)));
    (out, doc)
}

/// One SQL statement (or several) as postgres on a member's own socket.
fn sql(host: &str, q: &str) -> String {
    ssh(
        host,
        &format!("runuser -u postgres -- psql -XAtq <<'SQL'\n{q}\nSQL"),
    )
    .trim()
    .to_string()
}

/// Writes `segments` WAL segments on the leader (a row, then a switch, each).
fn write_wal(leader: &str, segments: u32) {
    sql(
        leader,
        &format!(
            "create table if not exists upkeep (n int, at timestamptz default now());\n\
             do $$ begin for i in 1..{segments} loop insert into upkeep(n) values (i); \
             perform pg_switch_wal(); commit; end loop; end $$;"
        ),
    );
}

/// WAL files waiting for the archive on `host`.
fn waiting_wal(host: &str) -> u64 {
    sql(
        host,
        "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'",
    )
    .parse()
    .expect("a count")
}

/// The leader's current WAL file name.
fn current_wal(leader: &str) -> String {
    sql(leader, "select pg_walfile_name(pg_current_wal_lsn())")
}

/// Whether the WAL file `name` is still in `host`'s pg_wal.
fn has_wal(host: &str, name: &str) -> bool {
    sql(
        host,
        &format!("select count(*) from pg_ls_waldir() where name = '{name}'"),
    ) == "1"
}

/// Waits until the leader has no replication slot for `member` (Patroni
/// drops it once the member's key is gone), then recycles WAL until `wal`
/// is gone from the leader's pg_wal: the member cannot stream it any more.
fn recycle_past(leader: &str, member: &str, wal: &str) {
    let slot = format!("select count(*) from pg_replication_slots where slot_name = '{member}'");
    wait(&format!("{member}'s slot dropped on {leader}"), 90, || {
        (sql(leader, &slot) == "0").then_some(())
    });
    // Past wal_keep_size as in force (128MB today, 1GB once it is set where
    // Patroni honours it), a few segments at a time, each archived before
    // the next: a burst larger than the lab's small archive queue would be
    // dropped by pgBackRest, and the replica could not fetch it.
    let keep_mb: u64 = sql(
        leader,
        "select setting from pg_settings where name = 'wal_keep_size'",
    )
    .parse()
    .expect("wal_keep_size in MB");
    for _ in 0..(keep_mb / 16 + 8).div_ceil(4) {
        write_wal(leader, 4);
        wait(&format!("{leader} archived its WAL"), 60, || {
            (waiting_wal(leader) == 0).then_some(())
        });
    }
    wait(&format!("{wal} recycled on {leader}"), 60, || {
        sql(leader, "checkpoint");
        (!has_wal(leader, wal)).then_some(())
    });
}

/// The leader's member name, from `status`.
fn leader() -> String {
    wait("a leader in status", 90, || {
        let (_, doc) = status();
        doc["leader"].as_str().map(String::from)
    })
}

/// Waits until `member` streams from `leader` (its walsender is `streaming`).
fn wait_streaming(leader: &str, member: &str, secs: u64) -> f64 {
    let started = Instant::now();
    wait(&format!("{member} streaming from {leader}"), secs, || {
        (sql(
            leader,
            &format!("select count(*) from pg_stat_replication where application_name = '{member}' and state = 'streaming'"),
        ) == "1")
            .then_some(())
    });
    started.elapsed().as_secs_f64()
}

/// The inode of `member`'s data directory: a reinit with pg_basebackup
/// removes the directory and makes a new one, pg_rewind keeps it (and
/// removes files the new leader lacks, so a marker file would not tell the
/// two apart). A reinit from the repository keeps it too (delta restore):
/// s02 also checks a marker file, which only a restart keeps.
fn data_dir_inode(member: &str) -> String {
    ssh(member, &format!("stat -c %i {DATA_DIR}"))
        .trim()
        .to_string()
}

scenarios_are_listed!();

/// `status` shows every etcd member's database size against the quota, no
/// alarm, and the leader's archiver archiving.
#[test]
fn s01_status_shows_etcd_db_size_and_the_archiver() {
    LAB.run(|_| {
        let (out, doc) = status();
        assert!(out.status.success(), "{}", text(&out));
        let etcd = doc["etcd"].as_array().expect("etcd");
        assert_eq!(etcd.len(), 3, "{doc:#}");
        for e in etcd {
            assert!(e["db"]["size_bytes"].as_u64().unwrap_or(0) > 0, "{e}");
            assert_eq!(e["db"]["quota_bytes"], 2_147_483_648u64, "{e}");
            assert_eq!(e["alarms"], serde_json::json!([]), "{e}");
        }
        let archiver = &doc["archiver"];
        assert!(
            archiver["archived_count"].as_u64().unwrap_or(0) > 0,
            "{archiver}"
        );
        let human = pgdeploy(&["status", "-i", &lab_inventory().to_string_lossy()]);
        assert!(text(&human).contains("% of quota)"), "{}", text(&human));
        assert!(text(&human).contains("archive: "), "{}", text(&human));
    });
}

/// A replica stopped while the leader writes and recycles the WAL it would
/// need streams again once started: what pg_wal lost comes from the archive
/// (restore_command), without a reinit (its data directory is the same, and
/// a marker file in it survives: a reinit from the repository keeps the
/// directory but its delta restore removes the marker).
#[test]
fn s02_replica_rejoins_after_its_wal_was_recycled() {
    LAB.run(|_| {
        let leader = leader();
        let replica = MEMBERS
            .iter()
            .find(|m| **m != leader)
            .expect("a replica")
            .to_string();
        let inode = data_dir_inode(&replica);
        let marker = format!("{DATA_DIR}/pg_dynshmem/pgdeploy-e2e-marker");
        ssh(&replica, &format!("touch {marker}"));
        ssh(&replica, "systemctl stop patroni");
        let wal = current_wal(&leader);
        recycle_past(&leader, &replica, &wal);
        ssh(&replica, "systemctl start patroni");
        let secs = wait_streaming(&leader, &replica, 180);
        println!(
            "{replica} streams again {secs:.1}s after its start ({wal} came from the archive)"
        );
        assert_eq!(data_dir_inode(&replica), inode, "{replica} was rebuilt");
        assert_eq!(
            ssh(
                &replica,
                &format!("test -e {marker} && echo kept || echo gone")
            )
            .trim(),
            "kept",
            "{replica} was rebuilt (its data directory lost the marker)"
        );
        let rows = sql(&leader, "select count(*) from upkeep");
        wait(&format!("{replica} has every row"), 30, || {
            (sql(&replica, "select count(*) from upkeep") == rows).then_some(())
        });
    });
}

/// The leader's host crashes; the new leader writes and recycles its WAL;
/// the old leader, started again, is rewound and streams from the new
/// leader without a reinit.
#[test]
fn s03_old_leader_rejoins_after_a_crash_and_writes() {
    LAB.run(|_| {
        let old = leader();
        let inode = data_dir_inode(&old);
        pgdeploy_ok(&["lab", "kill", &old]);
        let new = wait("a new leader", 120, || {
            let (_, doc) = status();
            doc["leader"]
                .as_str()
                .filter(|l| *l != old)
                .map(String::from)
        });
        let wal = current_wal(&new);
        recycle_past(&new, &old, &wal);
        pgdeploy_ok(&["lab", "start", &old]);
        let secs = wait_streaming(&new, &old, 240);
        println!("old leader {old} streams from {new} {secs:.1}s after its host started");
        assert_eq!(data_dir_inode(&old), inode, "{old} was rebuilt");
        assert_eq!(sql(&old, "select pg_is_in_recovery()"), "t");
    });
}

/// etcdctl against the local member, for a lab host's shell.
const ETCDCTL: &str =
    "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgdeploy/tls/ca.crt";

/// `etcdctl ARGS` on `host`.
fn etcdctl(host: &str, args: &str) -> String {
    ssh(host, &format!("{ETCDCTL} {args}"))
}

/// Each etcd member's database size, from `status`.
fn etcd_db_sizes() -> Vec<u64> {
    let (_, doc) = status();
    doc["etcd"]
        .as_array()
        .expect("etcd")
        .iter()
        .map(|e| e["db"]["size_bytes"].as_u64().unwrap_or(0))
        .collect()
}

/// The defragmentation limit the next two scenarios give (the role's
/// default, 64 MB, would need more writes).
const DEFRAG: &str = "etcd_defrag_min_free_mb=16";

/// 40 MB written to etcd and deleted, then compacted: the members' files
/// stay big and mostly free. `status` shows the size; `plan` lists a
/// defragmentation of each member and changes nothing.
#[test]
fn s04_fragmented_etcd_is_planned_for_defragmentation() {
    LAB.run(|_| {
        ssh(
            "node1",
            &format!(
                "head -c 750000 /dev/urandom | base64 -w0 > /tmp/v && \
                 for i in $(seq 1 40); do {ETCDCTL} put e2e/big$i < /tmp/v >/dev/null; done && \
                 {ETCDCTL} del --prefix e2e/ >/dev/null"
            ),
        );
        let rev = etcdctl("node1", "endpoint status -w json");
        let rev: serde_json::Value = serde_json::from_str(&rev).expect("status json");
        let rev = rev[0]["Status"]["header"]["revision"]
            .as_u64()
            .expect("revision");
        etcdctl("node1", &format!("compact {rev} --physical"));
        let sizes = etcd_db_sizes();
        assert!(sizes.iter().all(|s| *s > 30_000_000), "{sizes:?}");
        let out = run("plan", &["-e", DEFRAG]);
        let plan = text(&out);
        for m in MEMBERS {
            assert!(
                plan.contains(&format!("~ etcd member {m}: defragment")),
                "{plan}"
            );
        }
        assert_eq!(etcd_db_sizes().len(), 3);
        assert!(
            etcd_db_sizes().iter().all(|s| *s > 30_000_000),
            "plan defragmented"
        );
    });
}

/// Each member's etcd process start (systemd's monotonic microseconds).
fn etcd_started(host: &str) -> u64 {
    ssh(
        host,
        "systemctl show -p ExecMainStartTimestampMonotonic --value etcd",
    )
    .trim()
    .parse()
    .expect("a start time")
}

/// The etcd leader's name.
fn etcd_leader() -> String {
    let list = etcdctl("node1", "endpoint status --cluster -w json");
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    let leader = list[0]["Status"]["leader"].as_u64().expect("leader id");
    let members = etcdctl("node1", "member list -w json");
    let members: serde_json::Value = serde_json::from_str(&members).expect("json");
    members["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["ID"].as_u64() == Some(leader))
        .and_then(|m| m["name"].as_str())
        .expect("the leader's name")
        .to_string()
}

/// A changed etcd setting: apply restarts the members one at a time, the
/// leader last, each healthy again before the next (a client reading with
/// quorum reads through the whole apply never fails), then defragments the
/// members that s04 fragmented.
#[test]
fn s05_etcd_change_rolls_members_one_at_a_time_then_defragments() {
    LAB.run(|_| {
        let before: Vec<u64> = MEMBERS.iter().map(|m| etcd_started(m)).collect();
        let leader = etcd_leader();
        // A reader through all three endpoints (quorum reads, linearizable).
        let endpoints = MEMBERS
            .iter()
            .map(|m| format!("https://{}:2379", address(m)))
            .collect::<Vec<_>>()
            .join(",");
        ssh(
            "node1",
            &format!(
                "rm -f /tmp/reader.stop /tmp/reader.log; nohup sh -c 'while [ ! -e /tmp/reader.stop ]; do \
                 if ETCDCTL_API=3 etcdctl --endpoints={endpoints} --cacert=/etc/pgdeploy/tls/ca.crt --command-timeout=5s \
                 get --consistency=l /service/lab/leader >/dev/null 2>&1; then echo ok; else echo fail; fi; sleep 0.2; done' \
                 > /tmp/reader.log 2>&1 &"
            ),
        );
        let out = run("apply", &["-e", "etcd_auto_compaction_retention=2h", "-e", DEFRAG]);
        ssh("node1", "touch /tmp/reader.stop; sleep 1");
        assert!(out.status.success(), "{}", text(&out));
        let reads = ssh("node1", "cat /tmp/reader.log");
        let (ok, fail) = (reads.matches("ok").count(), reads.matches("fail").count());
        println!("quorum reads during the apply: {ok} ok, {fail} failed");
        assert!(ok > 20 && fail == 0, "reads: {ok} ok, {fail} failed");
        let after: Vec<u64> = MEMBERS.iter().map(|m| etcd_started(m)).collect();
        for (i, m) in MEMBERS.iter().enumerate() {
            assert!(after[i] > before[i], "{m} did not restart");
        }
        let mut order: Vec<(u64, &str)> = after.iter().copied().zip(MEMBERS).collect();
        order.sort();
        let gaps: Vec<f64> = order.windows(2).map(|w| (w[1].0 - w[0].0) as f64 / 1e6).collect();
        println!("restart order {order:?}, gaps {gaps:?} s, etcd leader before: {leader}");
        // One at a time: restarts run in parallel (the handler before this
        // roll-out) start within a few milliseconds of each other; one
        // member after another, each waited healthy, are hundreds of
        // milliseconds apart at the least (0.58 s seen on an idle machine,
        // 2.5 s on a loaded one). The quorum reader above is the other half.
        assert!(gaps.iter().all(|g| *g >= 0.25), "restarts overlapped: {gaps:?}");
        assert_eq!(order[2].1, leader, "the leader did not restart last");
        let sizes = etcd_db_sizes();
        println!("etcd database sizes after the defragmentation: {sizes:?}");
        assert!(sizes.iter().all(|s| *s < 10_000_000), "{sizes:?}");
        let plan = text(&run("plan", &["-e", "etcd_auto_compaction_retention=2h", "-e", DEFRAG]));
        assert!(!plan.contains("~ etcd member"), "{plan}");
    });
}

/// The backup host's link cut: `status` reports the failing archiver, and
/// while the leader writes far more WAL than pgBackRest's queue holds, the
/// WAL waiting for the archive stays within the queue (pgBackRest drops
/// the rest), so pg_wal cannot fill the disk.
#[test]
fn s06_dead_backup_host_shows_in_status_and_the_wal_backlog_stays_bounded() {
    LAB.run(|_| {
        let leader = leader();
        pgdeploy_ok(&["lab", "isolate", "node4"]);
        let segments = 40; // 640 MB of WAL, well past the 256 MB queue
        write_wal(&leader, segments);
        let problem = wait("status reports the archiver", 180, || {
            let (out, doc) = status();
            let problems = doc["problems"].as_array().cloned().unwrap_or_default();
            problems
                .iter()
                .filter_map(|p| p.as_str())
                .find(|p| p.contains("WAL archiving fails"))
                .map(|p| (out.status.code(), p.to_string()))
        });
        println!("status: {problem:?}");
        assert_eq!(problem.0, Some(1));
        let limit = QUEUE_MAX_MB / 16 + 2;
        let waiting = wait("the backlog within the queue", 180, || {
            let n = waiting_wal(&leader);
            (n <= limit).then_some(n)
        });
        sql(&leader, "checkpoint");
        let wal_mb: u64 = sql(&leader, "select (sum(size) / 1048576)::bigint from pg_ls_waldir()").parse().expect("MB");
        println!("{leader}: {waiting} WAL files waiting (limit {limit}), pg_wal {wal_mb} MB after {segments} segments written");
        pgdeploy_ok(&["lab", "heal", "node4"]);
    });
}
