//! Helpers shared by the end-to-end tests: they drive the real `pgdeploy`
//! binary against the lab's real hosts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab's inventory, written by `lab up`.
pub fn lab_inventory() -> PathBuf {
    root().join("inventories/lab.yaml")
}

/// Runs `pgdeploy ARGS` from the repository root.
pub fn pgdeploy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("pgdeploy runs")
}

/// Text of both streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `pgdeploy ARGS` and fails the test unless it exits 0.
pub fn pgdeploy_ok(args: &[&str]) -> Output {
    let out = pgdeploy(args);
    assert!(
        out.status.success(),
        "pgdeploy {args:?} failed:\n{}",
        text(&out)
    );
    out
}

/// Brings the lab up (idempotent) with `nodes` hosts.
pub fn lab_up(nodes: usize) {
    pgdeploy_ok(&["lab", "up", "--nodes", &nodes.to_string()]);
}

/// The lab instance the tests use: `PGDEPLOY_LAB_INSTANCE` (default 0, the
/// main lab), so a second checkout can run the end-to-end tests on a lab of
/// its own (see docs/lab.md). Instance 1 belongs to tests/lab.rs.
pub fn lab_instance() -> u8 {
    std::env::var("PGDEPLOY_LAB_INSTANCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The first three octets of the lab's subnet (as `pgdeploy lab` picks it).
pub fn lab_net() -> String {
    match lab_instance() {
        0 => "10.213.47".to_string(),
        n => format!("10.213.{}", 50 + u32::from(n)),
    }
}

/// The lab's directory (key, known_hosts).
pub fn lab_dir() -> String {
    match lab_instance() {
        0 => "/var/lib/pgdeploy/lab".to_string(),
        n => format!("/var/lib/pgdeploy/lab-{n}"),
    }
}

/// The VIP address `lab up` reserves for keepalived.
pub fn lab_vip() -> String {
    format!("{}.250", lab_net())
}

/// The lab address of `nodeN`.
pub fn address(host: &str) -> String {
    let n: u32 = host.trim_start_matches("node").parse().expect("nodeN");
    format!("{}.{}", lab_net(), 10 + n)
}

/// Runs a shell command on a lab host as root (through the lab's key), and
/// returns its stdout; fails the test on a non-zero exit.
pub fn ssh(host: &str, command: &str) -> String {
    let out = ssh_output(host, command);
    assert!(
        out.status.success(),
        "ssh {host} {command:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command on a lab host as root, logged in as root (for
/// repairs when the admin user is locked out); returns the whole output.
pub fn ssh_as_root(host: &str, command: &str) -> Output {
    Command::new("ssh")
        .args(["-i", &format!("{}/id_ed25519", lab_dir())])
        .args([
            "-o",
            &format!("UserKnownHostsFile={}/known_hosts", lab_dir()),
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "ConnectTimeout=10"])
        .arg(format!("root@{}", address(host)))
        .arg(command)
        .output()
        .expect("ssh runs")
}

/// Runs a shell command on a lab host and returns the whole output.
pub fn ssh_output(host: &str, command: &str) -> Output {
    Command::new("ssh")
        .args([
            "-i",
            &format!("{}/id_ed25519", lab_dir()),
            "-o",
            &format!("UserKnownHostsFile={}/known_hosts", lab_dir()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            &format!("admin@{}", address(host)),
            &format!("sudo sh -c {}", shell_quote(command)),
        ])
        .output()
        .expect("ssh runs")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A fingerprint of everything a run could change on a host: every file
/// under /etc and /opt (path, mode, owner, content), the package list,
/// users, live sysctls we touch, and unit states.
pub fn host_fingerprint(host: &str) -> String {
    ssh(
        host,
        "{ find /etc /opt -xdev \\( -type f -o -type l -o -type d \\) -printf '%p %m %u %g %y\\n' 2>/dev/null | sort; \
           find /etc /opt -xdev -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum 2>/dev/null; \
           dpkg-query -W -f='${Package} ${Status} ${Version}\\n'; getent passwd; getent group; \
           sysctl net.ipv4.tcp_keepalive_time; systemctl list-units --all --no-legend --plain | awk '{print $1, $3, $4}'; } | sha256sum",
    )
}

/// Reads a JSON document printed by `--output json`.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

/// Per host, the (kind, subject) of every change in a JSON report, in order.
pub fn changes(report: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut list = Vec::new();
    for host in report["hosts"].as_array().into_iter().flatten() {
        for result in host["results"].as_array().into_iter().flatten() {
            for change in result["changes"].as_array().into_iter().flatten() {
                list.push((
                    host["host"].as_str().unwrap_or("").to_string(),
                    change["kind"].as_str().unwrap_or("").to_string(),
                    change["subject"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    list
}

/// A path inside the test fixtures.
pub fn fixture(rel: &str) -> String {
    root()
        .join("tests/fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// Whether the machine can run the lab (root, nspawn). The end-to-end tests
/// need it; `.ci/run` installs everything.
pub fn require_lab_prerequisites() {
    assert!(
        Path::new("/usr/bin/systemd-nspawn").exists(),
        "the end-to-end tests need the lab: run as root with systemd-container, debootstrap and nftables installed (see .ci/run)"
    );
}

/// `patronictl list` as seen from a lab host.
pub fn patroni_list(host: &str) -> String {
    ssh(host, "patronictl -c /etc/patroni/config.yml list")
}

/// The name of the Patroni leader, as seen from a lab host.
pub fn patroni_leader(host: &str) -> String {
    let list = patroni_list(host);
    list.lines()
        .find(|l| l.contains("Leader"))
        .and_then(|l| l.split('|').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no leader:\n{list}"))
}

/// `-e` arguments giving the two passwords the site playbook requires.
pub fn secret_args(superuser: &str, replication: &str) -> Vec<String> {
    vec![
        "-e".into(),
        format!("postgres_superuser_password={superuser}"),
        "-e".into(),
        format!("postgres_replication_password={replication}"),
    ]
}
