//! End-to-end test of the monitoring roles on fresh lab hosts: the HA stack
//! with node5 in a `monitoring` group, Prometheus scraping every exporter,
//! the alert rules checked by promtool, and alerts firing for a crashed
//! leader and a stopped replica.
//!
//! One test per scenario; they share one 5-host lab and one fresh deploy,
//! made by the first scenario that runs (see `Suite` in tests/common).
//! Names start `sNN_` because libtest runs them in name order: the healthy
//! cluster's checks (no alert firing) must come before the crash, whose
//! failover alert stays for its 10 minute window. The last one to finish
//! takes the lab down.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SUPERUSER_PASSWORD: &str = "e2e-Super-7f3kq9";
const REPLICATION_PASSWORD: &str = "e2e-Repl-2m8xv4";
/// With characters a URL would need escaped: the exporter reads it from a file.
const MONITORING_PASSWORD: &str = "e2e-Mon/4h@q8:zt#";
const MONITOR: &str = "node5";
const MEMBERS: [&str; 3] = ["node1", "node2", "node3"];

/// Short alert windows and a fast scrape, so the alerts fire within the test.
const FAST_ALERTS: [&str; 6] = [
    "prometheus_scrape_interval=2s",
    "prometheus_evaluation_interval=2s",
    "prometheus_alert_no_leader_for=0s",
    "prometheus_alert_replica_for=10s",
    "prometheus_alert_target_down_for=10s",
    "prometheus_alert_failover_window=10m",
];

/// The lab's inventory with `MONITOR` in a `monitoring` group (the lab's
/// own inventory has no such group).
fn monitoring_inventory() -> PathBuf {
    let lab = std::fs::read_to_string(lab_inventory()).expect("lab inventory");
    assert!(
        lab.trim_end().ends_with("backup: {hosts: {node4: {}}}"),
        "{lab}"
    );
    let dir = std::env::temp_dir().join(format!("pgdeploy-e2e-observability-{}", lab_instance()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("lab-monitoring.yaml");
    let text = format!(
        "{}\n    monitoring: {{hosts: {{{MONITOR}: {{}}}}}}\n",
        lab.trim_end()
    );
    std::fs::write(&path, text).expect("write inventory");
    path
}

fn apply(inventory: &Path) -> Output {
    let mut args: Vec<String> = vec![
        "apply".into(),
        "-i".into(),
        inventory.to_string_lossy().into_owned(),
    ];
    args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
    for var in std::iter::once(format!(
        "postgres_monitoring_password={MONITORING_PASSWORD}"
    ))
    .chain(FAST_ALERTS.iter().map(|s| s.to_string()))
    {
        args.push("-e".into());
        args.push(var);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pgdeploy(&refs)
}

/// GET on Prometheus's HTTP API through the monitoring host's lab address
/// (the test machine is in `admin_networks`); `params` are URL-encoded.
fn prometheus(path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--fail", "--max-time", "5", "-G"]);
    for (k, v) in params {
        curl.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    curl.arg(format!("http://{}:9090{path}", address(MONITOR)));
    let out = curl.output().map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(text(&out));
    }
    let doc: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    if doc["status"] != "success" {
        return Err(doc.to_string());
    }
    Ok(doc["data"].clone())
}

/// An instant query; the result vector.
fn query(q: &str) -> Vec<Value> {
    prometheus("/api/v1/query", &[("query", q)])
        .map(|d| d["result"].as_array().cloned().unwrap_or_default())
        .unwrap_or_else(|e| panic!("query {q}: {e}"))
}

/// Waits until the leader's exporter shows both replicas streaming.
fn wait_for_streaming_replicas(limit: Duration) {
    let started = Instant::now();
    while query("pg_stat_replication_pg_wal_lsn_diff{state=\"streaming\"}").len() != 2 {
        assert!(
            started.elapsed() < limit,
            "2 streaming replicas in the metrics within {limit:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The active alerts as (name, state, host label).
fn alerts() -> Vec<(String, String, String)> {
    let data = match prometheus("/api/v1/alerts", &[]) {
        Ok(d) => d,
        Err(e) => {
            println!("alerts API: {e}");
            return Vec::new();
        }
    };
    triples(
        &data["alerts"],
        [&["labels", "alertname"], &["state"], &["labels", "host"]],
    )
}

/// From a JSON list, the strings at three paths of each element.
fn triples(list: &Value, paths: [&[&str]; 3]) -> Vec<(String, String, String)> {
    let at = |item: &Value, path: &[&str]| {
        path.iter()
            .fold(item, |v, k| &v[*k])
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    list.as_array()
        .into_iter()
        .flatten()
        .map(|i| (at(i, paths[0]), at(i, paths[1]), at(i, paths[2])))
        .collect()
}

/// Waits until no alert named `name` is pending or firing.
fn wait_until_gone(name: &str, limit: Duration) {
    let started = Instant::now();
    while alerts().iter().any(|a| a.0 == name) {
        assert!(
            started.elapsed() < limit,
            "{name} did not resolve within {limit:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Polls until `firing` holds for an alert; returns how long after `since`
/// each (name, state) was first seen, the firing one last.
fn wait_for_alert(
    since: Instant,
    limit: Duration,
    watched: &[&str],
    firing: impl Fn(&(String, String, String)) -> bool,
) -> Vec<(String, f64)> {
    let mut seen: Vec<(String, f64)> = Vec::new();
    loop {
        let now = alerts();
        for alert in &now {
            if watched.contains(&alert.0.as_str()) {
                let key = format!("{} {} {}", alert.0, alert.1, alert.2)
                    .trim_end()
                    .to_string();
                if !seen.iter().any(|(k, _)| *k == key) {
                    seen.push((key, since.elapsed().as_secs_f64()));
                }
            }
        }
        if now.iter().any(&firing) {
            return seen;
        }
        assert!(
            since.elapsed() < limit,
            "no matching alert within {limit:?}; seen: {seen:?}; now: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until every target Prometheus knows is up; returns (job, host) of each.
fn wait_for_targets_up(expected: usize) -> Vec<(String, String)> {
    let started = Instant::now();
    loop {
        let targets = prometheus("/api/v1/targets", &[])
            .map(|d| {
                triples(
                    &d["activeTargets"],
                    [&["labels", "job"], &["labels", "host"], &["health"]],
                )
            })
            .unwrap_or_default();
        let down: Vec<_> = targets.iter().filter(|t| t.2 != "up").collect();
        if targets.len() == expected && down.is_empty() {
            println!(
                "all {expected} targets up {:.1}s after the deploy",
                started.elapsed().as_secs_f64()
            );
            return targets.into_iter().map(|(j, h, _)| (j, h)).collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "targets not all up ({} of {expected} known): {down:?}",
            targets.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn can_connect(from: &str, to: &str, port: u16) -> bool {
    ssh_output(
        from,
        &format!("timeout 3 bash -c 'echo > /dev/tcp/{}/{port}'", address(to)),
    )
    .status
    .success()
}

const SCENARIOS: [&str; 7] = [
    "s01_monitoring_password_required_before_any_host",
    "s02_fresh_deploy_keeps_the_exporter_password_private",
    "s03_alert_rules_pass_promtool",
    "s04_every_target_up_and_no_alert_on_a_healthy_cluster",
    "s05_scrape_ports_open_to_the_monitoring_host_only",
    "s06_leader_crash_fires_the_no_leader_alert",
    "s07_stopped_replica_fires_the_replica_alert",
];

static LAB: Suite<ObservabilityLab> = Suite::new(&SCENARIOS, set_up, lab_down::<ObservabilityLab>);

struct ObservabilityLab {
    /// The inventory with node5 in the `monitoring` group.
    inventory: PathBuf,
    /// The fresh deploy's output.
    fresh: Output,
}

fn set_up() -> ObservabilityLab {
    pgdeploy_ok(&["lab", "down"]);
    lab_up(5);
    let inventory = monitoring_inventory();
    let fresh = fresh_deploy("fresh deploy with monitoring", || apply(&inventory));
    ObservabilityLab { inventory, fresh }
}

scenarios_are_listed!();

/// With a monitoring group the exporter's password is required: a clear
/// error (exit 2, naming the role's file) from `validate`, which contacts
/// no host.
#[test]
fn s01_monitoring_password_required_before_any_host() {
    LAB.run(|lab| {
        let inventory_arg = lab.inventory.to_string_lossy().into_owned();
        let missing = pgdeploy(&[
            "validate",
            "-i",
            &inventory_arg,
            "-e",
            "postgres_superuser_password=x",
            "-e",
            "postgres_replication_password=y",
        ]);
        assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
        assert!(
            text(&missing).contains("roles/monitoring/tasks.yaml:")
                && text(&missing).contains("`postgres_monitoring_password` is undefined"),
            "{}",
            text(&missing)
        );
    });
}

/// The fresh deploy with node5 as the monitoring host prints no secret;
/// the exporter's password file is 0600 and Prometheus's.
#[test]
fn s02_fresh_deploy_keeps_the_exporter_password_private() {
    LAB.run(|lab| {
        for secret in [
            SUPERUSER_PASSWORD,
            REPLICATION_PASSWORD,
            MONITORING_PASSWORD,
        ] {
            assert!(!text(&lab.fresh).contains(secret), "a secret was printed");
        }
        let secret_file = ssh(
            "node1",
            "stat -c '%a %U' /etc/prometheus/postgres-exporter.password",
        );
        assert_eq!(
            secret_file.trim(),
            "600 prometheus",
            "the exporter's password file"
        );
    });
}

/// The installed rules and config pass promtool; promtool does reject a
/// broken rule; the rules' own unit tests pass; every alert is installed.
#[test]
fn s03_alert_rules_pass_promtool() {
    LAB.run(|_| {
        let rules = ssh(
            MONITOR,
            "promtool check rules /etc/prometheus/rules/pgdeploy.yml 2>&1",
        );
        assert!(rules.contains("SUCCESS"), "{rules}");
        let config = ssh(
            MONITOR,
            "promtool check config /etc/prometheus/prometheus.yml 2>&1",
        );
        assert!(config.contains("SUCCESS"), "{config}");
        let broken = ssh_output(
            MONITOR,
            "printf 'groups:\\n- name: x\\n  rules:\\n  - alert: Broken\\n    expr: sum(up\\n' > /tmp/broken.yml && promtool check rules /tmp/broken.yml",
        );
        assert!(!broken.status.success(), "promtool accepted a broken rule");
        // The rules' logic, on synthetic series (tests/fixtures/prometheus/rules-test.yml): every alert,
        // including those this test cannot provoke on the lab (lag, etcd, HAProxy, backups, disk).
        let cases = std::fs::read_to_string(fixture("prometheus/rules-test.yml")).expect("fixture");
        ssh(
            MONITOR,
            &format!(
                "mkdir -p /tmp/rules-test && cp /etc/prometheus/rules/pgdeploy.yml /tmp/rules-test/ && cat > /tmp/rules-test/rules-test.yml <<'CASES'\n{cases}CASES\n"
            ),
        );
        let unit = ssh_output(
            MONITOR,
            "cd /tmp/rules-test && promtool test rules rules-test.yml 2>&1",
        );
        assert!(
            unit.status.success(),
            "promtool test rules:\n{}",
            text(&unit)
        );
        let installed = ssh(MONITOR, "cat /etc/prometheus/rules/pgdeploy.yml");
        for alert in [
            "PostgresNoLeader",
            "PostgresFailover",
            "PostgresReplicaNotStreaming",
            "PostgresReplicationLagHigh",
            "EtcdNoQuorum",
            "EtcdNoSpace",
            "EtcdDatabaseNearQuota",
            "PostgresArchiverFailing",
            "HAProxyNoReadWriteBackend",
            "PgBackRestBackupTooOld",
            "DiskNearlyFull",
        ] {
            assert!(
                installed.contains(&format!("alert: {alert}\n")),
                "{alert} missing"
            );
        }
    });
}

/// Every target is up: node exporter on 5 hosts, PostgreSQL exporter,
/// Patroni, HAProxy and etcd on the 3 members, and Prometheus itself; the
/// values behind the alerts are really scraped; a healthy cluster fires
/// none of the cluster alerts.
#[test]
fn s04_every_target_up_and_no_alert_on_a_healthy_cluster() {
    LAB.run(|_| {
        let targets = wait_for_targets_up(5 + 3 * 4 + 1);
        for job in [
            "node",
            "postgres",
            "patroni",
            "haproxy",
            "etcd",
            "prometheus",
        ] {
            assert!(
                targets.iter().any(|(j, _)| j == job),
                "no {job} target: {targets:?}"
            );
        }
        // Values behind the alerts are really scraped.
        assert_eq!(
            query("patroni_primary == 1").len(),
            1,
            "one leader in the metrics"
        );
        wait_for_streaming_replicas(Duration::from_secs(60));
        assert_eq!(
            query("haproxy_backend_active_servers{proxy=\"postgres_rw\"} == 1").len(),
            3
        );
        assert_eq!(query("etcd_server_has_leader == 1").len(), 3);
        assert_eq!(
            query("pgbackrest_backup_last_completed_timestamp_seconds{type=\"full\"} > 0").len(),
            1,
            "the backup host's textfile metric"
        );
        // A healthy cluster fires none of the cluster alerts.
        std::thread::sleep(Duration::from_secs(12));
        let quiet = alerts();
        for name in [
            "PostgresNoLeader",
            "PostgresFailover",
            "PostgresReplicaNotStreaming",
            "EtcdNoQuorum",
            "HAProxyNoReadWriteBackend",
            "PgBackRestBackupTooOld",
            "PgBackRestNoBackupInfo",
            "ScrapeTargetDown",
        ] {
            assert!(
                !quiet.iter().any(|a| a.0 == name),
                "{name} on a healthy cluster: {quiet:?}"
            );
        }
    });
}

/// The scrape ports are open to the monitoring host, not to node4.
#[test]
fn s05_scrape_ports_open_to_the_monitoring_host_only() {
    LAB.run(|_| {
        for (host, port) in [
            ("node1", 9100),
            ("node1", 9187),
            ("node1", 8008),
            ("node1", 8405),
            ("node1", 2379),
            ("node4", 9100),
        ] {
            assert!(
                can_connect(MONITOR, host, port),
                "{MONITOR} cannot reach {host}:{port}"
            );
        }
        for port in [9100, 9187, 8405] {
            assert!(
                !can_connect("node4", "node1", port),
                "node4 reached node1:{port}"
            );
        }
    });
}

/// A hard crash of the leader's host: the no-leader alert fires before the
/// failover alert; a survivor leads; the old leader comes back as a
/// streaming replica and the replica alert clears.
#[test]
fn s06_leader_crash_fires_the_no_leader_alert() {
    LAB.run(|_| {
        let old_leader = patroni_leader("node1");
        let survivor = MEMBERS
            .into_iter()
            .find(|h| *h != old_leader)
            .expect("a survivor");
        pgdeploy_ok(&["lab", "kill", &old_leader]);
        let crashed = Instant::now();
        let seen = wait_for_alert(
            crashed,
            Duration::from_secs(180),
            &[
                "PostgresNoLeader",
                "PostgresFailover",
                "ScrapeTargetDown",
                "HAProxyNoReadWriteBackend",
            ],
            |a| a.1 == "firing" && a.0 == "PostgresFailover",
        );
        for (alert, secs) in &seen {
            println!("leader crash ({old_leader}): {alert} at {secs:.1}s");
        }
        assert!(
            seen.iter()
                .any(|(k, _)| k.starts_with("PostgresNoLeader firing")),
            "the no-leader alert did not fire between the crash and the promotion: {seen:?}"
        );
        let new_leader = patroni_leader(survivor);
        assert_ne!(new_leader, old_leader);

        // The old leader comes back as a replica.
        pgdeploy_ok(&["lab", "start", &old_leader]);
        wait_for_streaming_replicas(Duration::from_secs(150));
        wait_until_gone("PostgresReplicaNotStreaming", Duration::from_secs(60));
    });
}

/// A replica's Patroni (and its PostgreSQL) stopped: the replica alert
/// fires for that host, and clears once Patroni runs again.
#[test]
fn s07_stopped_replica_fires_the_replica_alert() {
    LAB.run(|_| {
        let leader = patroni_leader("node1");
        let replica = MEMBERS
            .into_iter()
            .find(|h| *h != leader)
            .expect("a replica");
        ssh(replica, "systemctl stop patroni");
        let stopped = Instant::now();
        let seen = wait_for_alert(
            stopped,
            Duration::from_secs(120),
            &["PostgresReplicaNotStreaming"],
            |a| a.1 == "firing" && a.0 == "PostgresReplicaNotStreaming" && a.2 == replica,
        );
        for (alert, secs) in &seen {
            println!("replica stop ({replica}): {alert} at {secs:.1}s");
        }
        ssh(replica, "systemctl start patroni");
        let restarted = Instant::now();
        wait_until_gone("PostgresReplicaNotStreaming", Duration::from_secs(120));
        println!(
            "replica alert resolved {:.1}s after restarting patroni on {replica}",
            restarted.elapsed().as_secs_f64()
        );
    });
}
