//! End-to-end test of day-2 operations on a fresh 5-host lab: `status`
//! (healthy, degraded, after failover), a switchover and a rolling restart
//! for a parameter change, each under a client writing through the VIP
//! (longest gap printed, no acknowledged write lost), growing the cluster
//! by a fifth host and shrinking it again without restarting the others,
//! restart and reinit of a member, Patroni's dynamic configuration changed
//! on the running cluster, an etcd outage on every member (failsafe mode).
//!
//! One test per scenario; they share one 5-host lab and one fresh deploy,
//! made by the first scenario that runs (see `Suite` in tests/common).
//! Names start `sNN_` because libtest runs them in name order, which is
//! the story they tell: a switchover, a parameter rolled out, a host grown
//! then shrunk (with that parameter in force), a member restarted and
//! reinitialised, a dynamic setting changed, etcd stopped everywhere, then
//! host crashes. A scenario that needs an earlier
//! one's result (the parameter rolled out, node5 grown) asks the fixture
//! for it, which does it when it was not done, so each scenario also runs
//! alone. The last one to finish takes the lab down.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SUPERUSER_PASSWORD: &str = "e2e-Day2-Super-4k8w";
const REPLICATION_PASSWORD: &str = "e2e-Day2-Repl-9q2z";

fn secrets() -> Vec<String> {
    secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD)
}

/// Runs `pgdeploy COMMAND -i INVENTORY ARGS... -e secrets`.
fn run(command: &str, inventory: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = vec![
        command.into(),
        "-i".into(),
        inventory.to_string_lossy().into_owned(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend(secrets());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    pgdeploy(&refs)
}

fn run_ok(command: &str, inventory: &Path, args: &[&str]) -> String {
    let out = run(command, inventory, args);
    assert!(
        out.status.success(),
        "pgdeploy {command} {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

/// `pgdeploy status --output json`: (exit code, parsed JSON, stderr).
fn status(inventory: &Path) -> (i32, Value, String) {
    let out = run("status", inventory, &["--output", "json"]);
    (
        out.status.code().unwrap_or(-1),
        json(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `status` until `accept` holds; returns that status.
fn wait_for_status(
    inventory: &Path,
    what: &str,
    timeout: Duration,
    accept: impl Fn(i32, &Value, &str) -> bool,
) -> (i32, Value, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, s, err) = status(inventory);
        if accept(code, &s, &err) {
            return (code, s, err);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {timeout:?}; last status (exit {code}): {s:#}\n{err}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn leader_of(s: &Value) -> String {
    s["leader"].as_str().unwrap_or_default().to_string()
}

/// The status of a healthy cluster with a streaming replica: a scenario may
/// start a moment before the one before it has settled, so it waits for
/// that state rather than taking one reading.
fn settled_status(inventory: &Path) -> Value {
    wait_for_status(
        inventory,
        "healthy with a streaming replica",
        Duration::from_secs(60),
        |c, s, _| c == 0 && !streaming_replicas(s).is_empty(),
    )
    .1
}

fn streaming_replicas(s: &Value) -> Vec<String> {
    s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] != "leader" && m["streaming"] == true)
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Each member's postmaster start time, from its Patroni.
fn postmaster_starts(members: &[&str]) -> BTreeMap<String, String> {
    members
        .iter()
        .map(|m| {
            let body = ssh(
                m,
                "curl -s --cacert /etc/pgdeploy/tls/ca.crt https://127.0.0.1:8008/patroni",
            );
            let v: Value = serde_json::from_str(&body).expect("Patroni JSON");
            (
                m.to_string(),
                v["postmaster_start_time"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Each host's etcd process ID and start time: unchanged unless it restarted.
fn etcd_starts(hosts: &[&str]) -> BTreeMap<String, String> {
    hosts
        .iter()
        .map(|h| {
            let show = ssh(
                h,
                "systemctl show -p MainPID -p ExecMainStartTimestamp etcd",
            );
            (h.to_string(), show.trim().to_string())
        })
        .collect()
}

/// The etcd cluster's members as `name started|unstarted`, from `host`.
fn etcd_member_list(host: &str) -> Vec<String> {
    let list = ssh(
        host,
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgdeploy/tls/ca.crt member list -w simple",
    );
    let mut members: Vec<String> = list
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            format!("{} {}", f.get(2).unwrap_or(&"?"), f.get(1).unwrap_or(&"?"))
        })
        .collect();
    members.sort();
    members
}

/// The writer of this file's scenarios: rows of `day2_writes` through the VIP.
fn writer(first_id: i64) -> Writer {
    Writer::start(SUPERUSER_PASSWORD, "day2_writes", first_id)
}

/// Every acknowledged id is in `day2_writes`.
fn assert_no_write_lost(acked: &[i64], scenario: &str) {
    assert_no_write_lost_in(SUPERUSER_PASSWORD, "day2_writes", acked, scenario);
}

/// `sql` through the VIP's read-write port (retrying while it fails).
fn vip_query(sql: &str) -> Vec<tokio_postgres::Row> {
    vip_query_as(SUPERUSER_PASSWORD, sql)
}

/// The lab inventory with the `postgres` and `etcd` groups set to
/// `members`, written into `dir` as `NAME.yaml`.
fn inventory_with_postgres(dir: &Path, members: &[&str], name: &str) -> PathBuf {
    let lab = std::fs::read_to_string(lab_inventory()).expect("lab inventory");
    let hosts: Vec<String> = members.iter().map(|m| format!("{m}: {{}}")).collect();
    let hosts = format!("{{hosts: {{{}}}}}", hosts.join(", "));
    let text: Vec<String> = lab
        .lines()
        .map(|l| match l.trim_start().split_once(": ") {
            Some((group @ ("postgres" | "etcd"), _)) if l.starts_with("    ") => {
                format!("    {group}: {hosts}")
            }
            _ => l.to_string(),
        })
        .collect();
    // In a folder of its own, with the lab's cluster CA beside it (pki/, as an operator keeps it
    // with the inventory): a CA is per inventory folder.
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).expect("inventory folder");
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(root().join("inventories/pki").join(file), pki.join(file))
            .expect("copy the lab CA");
    }
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text.join("\n") + "\n").expect("write inventory");
    path
}

const SCENARIOS: [&str; 11] = [
    "s01_status_of_a_healthy_cluster",
    "s02_switchover_under_writes_loses_nothing",
    "s03_parameter_change_rolls_out_restarting_each_member_once",
    "s04_grow_by_a_host_without_restarting_the_others",
    "s05_shrink_by_a_host_without_restarting_the_others",
    "s06_restart_and_reinit_of_one_replica",
    "s07_dynamic_configuration_reaches_the_running_cluster",
    "s08_etcd_down_on_every_member_the_primary_stays_writable",
    "s09_status_degraded_by_a_crashed_replica_then_new_leader",
    "s10_a_wiped_host_added_back_plans_as_changes_not_failures",
    "s11_status_and_plan_through_a_bastion",
];

static LAB: Suite<Day2Lab> = Suite::new(&SCENARIOS, set_up, lab_down::<Day2Lab>);

const MEMBERS: [&str; 3] = ["node1", "node2", "node3"];

struct Day2Lab {
    lab: PathBuf,
    /// The test's own files (a parameters file, the grown inventory and its
    /// CA copy), removed by the teardown.
    scratch: PathBuf,
    /// `@FILE` of the parameters file s03 rolls out.
    params_arg: String,
    /// Whether the writers' table exists.
    table: bool,
    /// Whether the parameters file is in force (s03).
    params: bool,
    /// The inventory with node5 in the cluster, once s04 grew it.
    grown: Option<PathBuf>,
}

impl Drop for Day2Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn set_up() -> Day2Lab {
    let started = Instant::now();
    // One folder per lab instance: a run of some scenarios only keeps its
    // state (and leaves this behind); the next set-up starts it afresh.
    let scratch = std::env::temp_dir().join(format!("pgdeploy-e2e-day2-{}", lab_instance()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let params = scratch.join("params.yaml");
    std::fs::write(
        &params,
        "postgres_parameters:\n  shared_buffers: 160MB\n  work_mem: 6MB\n",
    )
    .expect("params file");
    pgdeploy_ok(&["lab", "down"]);
    lab_up(5);
    let lab = lab_inventory();
    run_ok("apply", &lab, &[]);
    println!("fresh deploy: {:.1}s", started.elapsed().as_secs_f64());
    Day2Lab {
        lab,
        params_arg: format!("@{}", params.display()),
        scratch,
        table: false,
        params: false,
        grown: None,
    }
}

impl Day2Lab {
    /// The table the writers insert into.
    fn ensure_table(&mut self) {
        if !self.table {
            vip_query(
                "create table day2_writes (id bigint primary key, at timestamptz default now())",
            );
            self.table = true;
        }
    }

    /// The parameters file in force (s03 rolls it out; here for a scenario
    /// run without it), so later applies with it restart nobody.
    fn ensure_params(&mut self) {
        if !self.params {
            run_ok("apply", &self.lab, &["-e", &self.params_arg]);
            wait_for_status(
                &self.lab,
                "healthy with the parameters",
                Duration::from_secs(60),
                |c, _, _| c == 0,
            );
            self.params = true;
        }
    }

    /// The inventory with node5 in the `postgres` and `etcd` groups.
    fn grown_inventory(&self) -> PathBuf {
        inventory_with_postgres(
            &self.scratch,
            &["node1", "node2", "node3", "node5"],
            "grown",
        )
    }

    /// node5 a streaming member (s04 grows it; here for a scenario run
    /// without it).
    fn ensure_grown(&mut self) {
        self.ensure_params();
        if self.grown.is_none() {
            let grown = self.grown_inventory();
            run_ok("apply", &grown, &["-e", &self.params_arg]);
            wait_for_status(
                &grown,
                "node5 streaming",
                Duration::from_secs(120),
                |c, s, _| c == 0 && streaming_replicas(s).contains(&"node5".to_string()),
            );
            self.grown = Some(grown);
        }
    }
}

scenarios_are_listed!();

/// `status` on a healthy cluster: exit 0 and everything in the JSON (3
/// members, 2 streaming, 3 healthy etcd, HAProxy's rw backend on the
/// leader only, one VIP holder, a backup); the human form says healthy.
#[test]
fn s01_status_of_a_healthy_cluster() {
    LAB.run(|d| {
        let lab = &d.lab;
        let (_, s, _) = wait_for_status(lab, "healthy", Duration::from_secs(60), |c, _, _| c == 0);
        assert_eq!(s["healthy"], true, "{s:#}");
        assert_eq!(s["members"].as_array().map(Vec::len), Some(3), "{s:#}");
        assert_eq!(streaming_replicas(&s).len(), 2, "{s:#}");
        assert_eq!(
            s["etcd"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["healthy"] == true)
                .count(),
            3,
            "{s:#}"
        );
        let leader = leader_of(&s);
        for b in s["haproxy"].as_array().expect("haproxy") {
            let up: Vec<&str> = b["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x["proxy"] == "postgres_rw" && x["status"] == "UP")
                .filter_map(|x| x["server"].as_str())
                .collect();
            assert_eq!(up, [leader.as_str()], "{b:#}");
        }
        assert_eq!(s["vip_holders"].as_array().map(Vec::len), Some(1), "{s:#}");
        assert!(s["backup"]["label"].is_string(), "{s:#}");
        // The human form of a healthy status. A moment of replication lag (a
        // WAL switch after the first backup: Patroni's lag jumps by a segment or
        // two until its next loop) is a real degradation, so wait it out.
        let deadline = Instant::now() + Duration::from_secs(60);
        let human = loop {
            let out = run("status", lab, &[]);
            if out.status.success() || Instant::now() > deadline {
                break String::from_utf8_lossy(&out.stdout).into_owned();
            }
            std::thread::sleep(Duration::from_secs(2));
        };
        assert!(human.contains("| Leader "), "{human}");
        assert!(human.trim_end().ends_with("healthy"), "{human}");
    });
}

/// A switchover under the write loop: no acknowledged write lost, another
/// member leads, the output names it; a switchover to the leader is
/// refused, naming why.
#[test]
fn s02_switchover_under_writes_loses_nothing() {
    LAB.run(|d| {
        d.ensure_table();
        let lab = &d.lab;
        let leader = leader_of(&settled_status(lab));
        let writer = writer(0);
        std::thread::sleep(Duration::from_secs(2));
        let out = run_ok("switchover", lab, &[]);
        print!("{out}");
        std::thread::sleep(Duration::from_secs(2));
        let (gap, acked) = writer.finish();
        println!(
            "switchover: longest gap in acknowledged writes {:.3}s",
            gap.as_secs_f64()
        );
        assert_no_write_lost(&acked, "switchover");
        let (_, s, _) = wait_for_status(
            lab,
            "healthy after switchover",
            Duration::from_secs(60),
            |c, _, _| c == 0,
        );
        let new_leader = leader_of(&s);
        assert_ne!(new_leader, leader, "the leader did not change");
        assert!(
            out.contains(&format!("switchover done: {new_leader} leads")),
            "{out}"
        );
        // A refusal names its reason.
        let refused = run("switchover", lab, &["--to", &new_leader]);
        assert!(!refused.status.success());
        assert!(
            text(&refused).contains("already the leader"),
            "{}",
            text(&refused)
        );
    });
}

/// A restart-only parameter (shared_buffers) and a reload-only one
/// (work_mem): plan names each member's change and how it applies; apply
/// rolls it out under the write loop with no write lost, each member
/// restarted once, the leader last (through a switchover); then in force
/// everywhere, and plan is clean.
#[test]
fn s03_parameter_change_rolls_out_restarting_each_member_once() {
    LAB.run(|d| {
        d.ensure_table();
        let lab = &d.lab;
        let params_arg = &d.params_arg;
        let members = MEMBERS;
        let leader = leader_of(&settled_status(lab));
        let before = postmaster_starts(&members);
        let plan = run("plan", lab, &["-e", params_arg]);
        let plan_text = text(&plan);
        let line_of = |m: &str, param: &str| -> String {
            plan_text
                .lines()
                .find(|l| l.contains(&format!("~ {m} {param}:")))
                .unwrap_or_else(|| panic!("no {param} line for {m}:\n{plan_text}"))
                .to_string()
        };
        for m in members {
            assert!(line_of(m, "shared_buffers")
                .ends_with("→ 160MB (restart: rolling, replicas first, leader last)"));
            assert!(line_of(m, "work_mem").ends_with("→ 6MB (reload)"));
        }
        let writer = writer(1_000_000);
        std::thread::sleep(Duration::from_secs(2));
        let out = run_ok("apply", lab, &["-e", params_arg]);
        d.params = true;
        std::thread::sleep(Duration::from_secs(2));
        let (gap, acked) = writer.finish();
        let steps: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
        println!("{}", steps.join("\n"));
        println!(
            "rolling restart: longest gap in acknowledged writes {:.3}s",
            gap.as_secs_f64()
        );
        assert_no_write_lost(&acked, "rolling restart");
        let after = postmaster_starts(&members);
        for m in members {
            assert_ne!(before[m], after[m], "{m} was not restarted");
            let restarts = steps
                .iter()
                .filter(|l| l.contains(&format!("] restart {m} ")))
                .count()
                + steps
                    .iter()
                    .filter(|l| l.contains(&format!("switchover {m} -> ")))
                    .count();
            assert_eq!(
                restarts,
                1,
                "{m} restarted {restarts} times:\n{}",
                steps.join("\n")
            );
        }
        // The old leader restarted last (through the switchover).
        let last = after
            .iter()
            .max_by_key(|(_, t)| t.as_str())
            .map(|(m, _)| m.clone());
        assert_eq!(last.as_deref(), Some(leader.as_str()), "{after:?}");
        assert!(out.contains("rolling restart done: "), "{out}");
        for m in members {
            assert_eq!(
                ssh(
                    m,
                    "runuser -u postgres -- psql -Atc 'show shared_buffers' -c 'show work_mem'"
                ),
                "160MB\n6MB\n",
                "{m}"
            );
        }
        let plan = run("plan", lab, &["-e", params_arg, "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    });
}

/// Grow: node5 joins as a replica and as an etcd member (member add before
/// its first start); no other member restarts, PostgreSQL or etcd; HAProxy
/// knows it; plan is clean afterwards.
#[test]
fn s04_grow_by_a_host_without_restarting_the_others() {
    LAB.run(|d| {
        d.ensure_params();
        let members = MEMBERS;
        let params_arg = d.params_arg.clone();
        let grown = d.grown_inventory();
        let before = postmaster_starts(&members);
        let etcd_before = etcd_starts(&members);
        let t = Instant::now();
        run_ok("apply", &grown, &["-e", &params_arg]);
        d.grown = Some(grown.clone());
        println!("grow: node5 joined in {:.1}s", t.elapsed().as_secs_f64());
        let (_, s, _) = wait_for_status(
            &grown,
            "node5 streaming",
            Duration::from_secs(120),
            |c, s, _| c == 0 && streaming_replicas(s).contains(&"node5".to_string()),
        );
        assert_eq!(s["members"].as_array().map(Vec::len), Some(4), "{s:#}");
        assert_eq!(
            postmaster_starts(&members),
            before,
            "a member restarted while node5 joined"
        );
        for b in s["haproxy"].as_array().expect("haproxy") {
            assert!(b.to_string().contains("\"server\":\"node5\""), "{b:#}");
        }
        assert_eq!(
            etcd_member_list("node1"),
            [
                "node1 started",
                "node2 started",
                "node3 started",
                "node5 started"
            ],
            "node5 joined etcd"
        );
        let etcd = s["etcd"].as_array().expect("etcd status");
        assert_eq!(etcd.len(), 4, "{s:#}");
        assert!(etcd.iter().all(|e| e["healthy"] == true), "{s:#}");
        assert_eq!(
            etcd_starts(&members),
            etcd_before,
            "an etcd member restarted while node5 joined"
        );
        let again = run("plan", &grown, &["-e", &params_arg, "--detailed-exitcode"]);
        assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    });
}

/// Shrink: plan says node5 leaves Patroni and etcd; apply removes it from
/// Patroni, etcd and HAProxy and stops its etcd; nobody else restarts,
/// PostgreSQL or etcd; the cluster is healthy with 3 members.
#[test]
fn s05_shrink_by_a_host_without_restarting_the_others() {
    LAB.run(|d| {
        d.ensure_grown();
        let lab = &d.lab;
        let params_arg = &d.params_arg;
        let members = MEMBERS;
        let before = postmaster_starts(&members);
        let etcd_before = etcd_starts(&members);
        let plan = run("plan", lab, &["-e", params_arg, "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
        for line in [
            "- Patroni member node5 (left the postgres group)",
            "- etcd member node5 (left the etcd group)",
        ] {
            assert!(text(&plan).contains(line), "{}", text(&plan));
        }
        let t = Instant::now();
        let out = run_ok("apply", lab, &["-e", params_arg]);
        println!("shrink: node5 removed in {:.1}s", t.elapsed().as_secs_f64());
        assert!(
            out.contains("node5 removed from the Patroni cluster"),
            "{out}"
        );
        assert!(out.contains("remove etcd member node5"), "{out}");
        assert_eq!(
            etcd_member_list("node1"),
            ["node1 started", "node2 started", "node3 started"],
            "node5 left etcd"
        );
        assert_eq!(
            ssh_output("node5", "systemctl is-active etcd").stdout,
            b"inactive\n",
            "node5's etcd still runs"
        );
        assert_eq!(
            etcd_starts(&members),
            etcd_before,
            "an etcd member restarted while node5 left"
        );
        let (_, s, _) = wait_for_status(
            lab,
            "healthy without node5",
            Duration::from_secs(60),
            |c, _, _| c == 0,
        );
        assert_eq!(s["members"].as_array().map(Vec::len), Some(3), "{s:#}");
        assert!(!s.to_string().contains("node5"), "{s:#}");
        assert_eq!(
            postmaster_starts(&members),
            before,
            "a member restarted while node5 left"
        );
    });
}

/// `restart` of one replica restarts it alone; `reinit` reinitialises it;
/// `reinit` of the leader is refused, naming why; healthy afterwards.
#[test]
fn s06_restart_and_reinit_of_one_replica() {
    LAB.run(|d| {
        let lab = &d.lab;
        let members = MEMBERS;
        let s = settled_status(lab);
        let replica = streaming_replicas(&s)[0].clone();
        let before = postmaster_starts(&members);
        let out = run_ok("restart", lab, &[&replica]);
        assert!(out.contains(&format!("{replica} restarted")), "{out}");
        let after = postmaster_starts(&members);
        for m in members {
            assert_eq!(
                before[m] != after[m],
                m == replica,
                "{m}: {before:?} -> {after:?}"
            );
        }
        let out = run_ok("reinit", lab, &[&replica]);
        assert!(out.contains(&format!("{replica} reinitialized")), "{out}");
        let refused = run("reinit", lab, &[&leader_of(&s)]);
        assert!(
            text(&refused).contains("is the leader"),
            "{}",
            text(&refused)
        );
        wait_for_status(
            lab,
            "healthy after reinit",
            Duration::from_secs(60),
            |c, _, _| c == 0,
        );
    });
}

/// Patroni's dynamic configuration as `member`'s REST API serves it.
fn dcs_config(member: &str) -> Value {
    let body = ssh(
        member,
        "curl -s --cacert /etc/pgdeploy/tls/ca.crt https://127.0.0.1:8008/config",
    );
    serde_json::from_str(&body).expect("Patroni GET /config")
}

/// `SHOW name` on every member, through its local socket.
fn show_everywhere(name: &str) -> BTreeMap<String, String> {
    MEMBERS
        .iter()
        .map(|m| {
            let out = ssh(
                m,
                &format!("runuser -u postgres -- psql -Atc 'show {name}'"),
            );
            (m.to_string(), out.trim().to_string())
        })
        .collect()
}

/// A cluster-wide parameter and a DCS setting on the running cluster:
/// a combination Patroni rejects is refused before anything runs;
/// `wal_keep_size` (set in the DCS) is the role's value on every member;
/// plan shows `max_connections 100 → 150 (restart)` and the new
/// `loop_wait` as dynamic changes; apply PATCHes them, restarts each member
/// exactly once, and then `SHOW max_connections` is 150 everywhere and
/// every member's `GET /config` has the new loop_wait; the next plan is
/// clean and the next apply restarts nobody.
#[test]
fn s07_dynamic_configuration_reaches_the_running_cluster() {
    LAB.run(|d| {
        let scenario = Instant::now();
        d.ensure_params();
        let lab = &d.lab;
        let refused = run("apply", lab, &["-e", "patroni_retry_timeout=100"]);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(
            text(&refused).contains("exceeds `patroni_ttl`")
                && text(&refused).contains("nothing was applied"),
            "{}",
            text(&refused)
        );
        let defaults = pgdeploy_engine::yaml::load(&root().join("roles/patroni/defaults.yaml"))
            .expect("patroni defaults")
            .to_json();
        let keep = defaults["patroni_cluster_parameters"]["wal_keep_size"]
            .as_str()
            .expect("the role's wal_keep_size")
            .to_string();
        for (m, v) in show_everywhere("wal_keep_size") {
            assert_eq!(v, keep, "{m}: wal_keep_size");
        }
        let live = dcs_config("node1");
        let loop_wait = live["loop_wait"].as_i64().expect("loop_wait");
        let new_loop_wait = loop_wait - 1;
        let max_connections = show_everywhere("max_connections")["node1"].clone();
        let loop_arg = format!("patroni_loop_wait={new_loop_wait}");
        let args = [
            "-e",
            d.params_arg.as_str(),
            "-e",
            "postgres_max_connections=150",
            "-e",
            loop_arg.as_str(),
        ];
        let plan = text(&run("plan", lab, &args));
        for line in [
            format!("~ patroni dynamic config: max_connections {max_connections} → 150 (restart)"),
            format!("~ patroni dynamic config: loop_wait {loop_wait} → {new_loop_wait}"),
        ] {
            assert!(
                plan.lines().any(|l| l.trim() == line),
                "no `{line}` in:\n{plan}"
            );
        }
        let before = postmaster_starts(&MEMBERS);
        let started = Instant::now();
        let out = run_ok("apply", lab, &args);
        println!(
            "apply with the dynamic change: {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let steps: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
        println!("{}", steps.join("\n"));
        let after = postmaster_starts(&MEMBERS);
        for m in MEMBERS {
            assert_ne!(before[m], after[m], "{m} was not restarted");
            let restarts = steps
                .iter()
                .filter(|l| {
                    l.contains(&format!("] restart {m} "))
                        || l.contains(&format!("switchover {m} -> "))
                })
                .count();
            assert_eq!(restarts, 1, "{m} restarted {restarts} times");
            assert_eq!(
                dcs_config(m)["loop_wait"].as_i64(),
                Some(new_loop_wait),
                "{m}: GET /config"
            );
        }
        for (m, v) in show_everywhere("max_connections") {
            assert_eq!(v, "150", "{m}: max_connections");
        }
        assert!(out.contains("parameters in force: "), "{out}");
        let plan = run("plan", lab, &[&args[..], &["--detailed-exitcode"]].concat());
        assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
        let again = run_ok("apply", lab, &args);
        assert!(!again.contains("rolling restart"), "{again}");
        assert_eq!(
            postmaster_starts(&MEMBERS),
            after,
            "the second apply restarted a member"
        );
        println!("s07: {:.1}s", scenario.elapsed().as_secs_f64());
    });
}

/// failsafe_mode (on by default): etcd stopped on every etcd host, the
/// leader stays primary and writes through the VIP go on past the leader
/// key's TTL while every member's REST API answers; with etcd started again
/// the cluster is healthy.
#[test]
fn s08_etcd_down_on_every_member_the_primary_stays_writable() {
    LAB.run(|d| {
        let scenario = Instant::now();
        d.ensure_table();
        let lab = &d.lab;
        let config = dcs_config("node1");
        assert_eq!(config["failsafe_mode"], true, "{config:#}");
        let ttl = config["ttl"].as_u64().expect("ttl");
        let leader = leader_of(&settled_status(lab));
        let writer = writer(2_000_000);
        std::thread::sleep(Duration::from_secs(2));
        for h in MEMBERS {
            ssh(h, "systemctl stop etcd");
        }
        // Beyond the leader key's TTL: without failsafe the leader demotes.
        std::thread::sleep(Duration::from_secs(ttl + 10));
        let health: Vec<(&str, String)> = MEMBERS
            .iter()
            .map(|m| {
                let code = ssh(
                    m,
                    "curl -s -o /dev/null -w '%{http_code}' --cacert /etc/pgdeploy/tls/ca.crt https://127.0.0.1:8008/health",
                );
                (*m, code)
            })
            .collect();
        let primary = ssh(
            &leader,
            "runuser -u postgres -- psql -Atc 'select pg_is_in_recovery()'",
        );
        let (gap, acked) = writer.finish();
        println!(
            "etcd down for {}s: longest gap in acknowledged writes {:.3}s, {} writes",
            ttl + 10,
            gap.as_secs_f64(),
            acked.len()
        );
        for h in MEMBERS {
            ssh(h, "systemctl start --no-block etcd");
        }
        for (m, code) in health {
            assert_eq!(code, "200", "{m}: Patroni /health with etcd down");
        }
        assert_eq!(primary.trim(), "f", "{leader} is no longer primary");
        assert!(gap < Duration::from_secs(5), "writes stopped for {gap:?}");
        assert_no_write_lost(&acked, "etcd outage");
        let started = Instant::now();
        let (_, s, _) = wait_for_status(
            lab,
            "healthy with etcd back",
            Duration::from_secs(120),
            |c, _, _| c == 0,
        );
        println!("healthy {:.1}s after etcd started", started.elapsed().as_secs_f64());
        assert_eq!(leader_of(&s), leader);
        println!("s08: {:.1}s", scenario.elapsed().as_secs_f64());
    });
}

/// A replica's host crashes: status is degraded and names it in one line;
/// after it is back and a crash of the leader's host, status shows the new
/// leader.
#[test]
fn s09_status_degraded_by_a_crashed_replica_then_new_leader() {
    LAB.run(|d| {
        let lab = &d.lab;
        let s = settled_status(lab);
        let leader = leader_of(&s);
        let replica = streaming_replicas(&s)[0].clone();
        pgdeploy_ok(&["lab", "kill", &replica]);
        let (code, _, reason) =
            wait_for_status(lab, "degraded", Duration::from_secs(60), |c, _, err| {
                c != 0 && err.contains(&replica)
            });
        println!(
            "status with {replica} down (exit {code}): {}",
            reason.trim()
        );
        assert_eq!(reason.trim().lines().count(), 1, "{reason}");
        pgdeploy_ok(&["lab", "start", &replica]);
        wait_for_status(lab, "healthy again", Duration::from_secs(120), |c, _, _| {
            c == 0
        });
        pgdeploy_ok(&["lab", "kill", &leader]);
        let (_, s, _) = wait_for_status(lab, "a new leader", Duration::from_secs(90), |_, s, _| {
            !leader_of(s).is_empty() && leader_of(s) != leader
        });
        println!(
            "after the crash of {leader}: status shows leader {}",
            leader_of(&s)
        );
        pgdeploy_ok(&["lab", "start", &leader]);
    });
}

/// A host wiped (a blank machine under the same name and address) and
/// added back to the cluster's inventory: `plan` previews it instead of
/// failing: `--detailed-exitcode` gives 2, no task fails on any host, and
/// the blank host's tasks are changes or known after apply (its probes
/// read what the packages it lacks would bring).
#[test]
fn s10_a_wiped_host_added_back_plans_as_changes_not_failures() {
    LAB.run(|d| {
        d.ensure_params();
        let grown = d.grown_inventory();
        pgdeploy_ok(&["lab", "wipe", "node5"]);
        lab_up(5);
        d.grown = None;
        let plan = run(
            "plan",
            &grown,
            &[
                "-e",
                &d.params_arg,
                "--detailed-exitcode",
                "--output",
                "json",
            ],
        );
        let report = json(&plan);
        assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
        assert_eq!(report["success"], true, "{report:#}");
        for (host, recap) in report["recap"].as_object().expect("recap") {
            assert_eq!(recap["failed"], 0, "{host}: {report:#}");
            assert_eq!(recap["unreachable"], false, "{host}: {report:#}");
        }
        let node5 = &report["recap"]["node5"];
        let known_later = node5["known_after_apply"].as_u64().unwrap_or(0);
        let changed = node5["changed"].as_u64().unwrap_or(0);
        println!(
            "plan with node5 wiped: {changed} tasks to change, {known_later} known after apply; {}",
            report["summary_line"]
        );
        assert!(changed > 0, "{report:#}");
        assert!(known_later > 0, "{report:#}");
    });
}

/// Database hosts behind a bastion: this machine (the workstation) is cut
/// off from every host but node1, and an SSH client configuration (`-F`)
/// sends the others through node1 (`ProxyJump`). `status` reports the
/// cluster healthy with the same leader as directly, and `plan` says what
/// a direct plan says, exit code and summary, also from a copy of the
/// binary run outside the checkout (the built-in stack).
#[test]
fn s11_status_and_plan_through_a_bastion() {
    LAB.run(|d| {
        d.ensure_params();
        let lab = d.lab.clone();
        let direct = wait_for_status(
            &lab,
            "healthy with a streaming replica",
            Duration::from_secs(120),
            |c, s, _| c == 0 && !streaming_replicas(s).is_empty(),
        )
        .1;
        let plan_args = ["-e", d.params_arg.as_str(), "--detailed-exitcode"];
        let direct_plan = run("plan", &lab, &plan_args);
        let behind = ["node2", "node3", "node4", "node5"];
        let config = d.scratch.join("ssh_config");
        let addresses: Vec<String> = behind.iter().map(|h| address(h)).collect();
        std::fs::write(
            &config,
            format!(
                "Host {}\n  ProxyJump admin@{}\n",
                addresses.join(" "),
                address("node1")
            ),
        )
        .expect("ssh_config");
        let config = config.to_str().expect("UTF-8 path");
        let _routes = Routes::block(&behind);
        let cut_off = run("status", &lab, &["-F", "/dev/null", "--output", "json"]);
        assert_ne!(cut_off.status.code(), Some(0), "{}", text(&cut_off));
        let started = Instant::now();
        let through = run("status", &lab, &["-F", config, "--output", "json"]);
        println!(
            "status through the bastion: {:.1}s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(through.status.code(), Some(0), "{}", text(&through));
        let s = json(&through);
        assert_eq!(leader_of(&s), leader_of(&direct), "{s:#}");
        assert_eq!(s["members"].as_array().map(Vec::len), Some(3), "{s:#}");
        let plan = run("plan", &lab, &[&plan_args[..], &["-F", config]].concat());
        let summary = |out: &std::process::Output| {
            text(out)
                .lines()
                .rfind(|l| l.starts_with("checked in "))
                .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest).to_string())
        };
        assert_eq!(
            (plan.status.code(), summary(&plan)),
            (direct_plan.status.code(), summary(&direct_plan)),
            "through the bastion:\n{}\ndirectly:\n{}",
            text(&plan),
            text(&direct_plan)
        );
        assert!(summary(&plan).is_some(), "{}", text(&plan));
        // The same from a copy of the binary outside the checkout, as
        // `cargo install` leaves it: its built-in stack, the same answer.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let bin = elsewhere.path().join("pgdeploy");
        std::fs::copy(env!("CARGO_BIN_EXE_pgdeploy"), &bin).expect("copy the binary");
        let lab_path = lab.to_str().expect("UTF-8 path").to_string();
        let mut args: Vec<String> = ["plan", "-i", &lab_path, "-F", config]
            .iter()
            .chain(plan_args.iter())
            .map(|a| a.to_string())
            .collect();
        args.extend(secrets());
        let installed = std::process::Command::new(&bin)
            .args(&args)
            .current_dir(elsewhere.path())
            .env("HOME", elsewhere.path())
            .env_remove("XDG_CACHE_HOME")
            .output()
            .expect("the copied pgdeploy runs");
        assert_eq!(
            (installed.status.code(), summary(&installed)),
            (direct_plan.status.code(), summary(&direct_plan)),
            "installed, outside the checkout:\n{}",
            text(&installed)
        );
    });
}
