//! Helpers shared by the end-to-end tests: they drive the real `pgdeploy`
//! binary against the lab's real hosts.
#![allow(dead_code)]

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

mod writer;
// Not every test file writes through the VIP.
#[allow(unused_imports)]
pub use writer::*;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lab's inventory, written by `lab up`: `inventories/lab.yaml` for
/// the main lab, `inventories/lab-N.yaml` for instance N, so that labs of
/// several instances can be driven from one checkout at once.
pub fn lab_inventory() -> PathBuf {
    match lab_instance() {
        0 => root().join("inventories/lab.yaml"),
        n => root().join(format!("inventories/lab-{n}.yaml")),
    }
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

/// Fails the test unless `out` exited 0 and printed `said` (either stream).
pub fn assert_says(out: &Output, said: &str) {
    assert!(
        out.status.success() && text(out).contains(said),
        "expected success and {said:?}:\n{}",
        text(out)
    );
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

/// The fresh deploy a test file's lab starts from: `apply` must succeed
/// for any scenario to make sense. Prints `what` and how long it took;
/// returns apply's output.
pub fn fresh_deploy(what: &str, apply: impl FnOnce() -> Output) -> Output {
    let started = Instant::now();
    let out = apply();
    assert!(out.status.success(), "fresh apply failed:\n{}", text(&out));
    println!("{what}: {:.1}s", started.elapsed().as_secs_f64());
    out
}

/// Brings the lab up (idempotent) with `nodes` hosts on Debian 12.
pub fn lab_up(nodes: usize) {
    lab_up_on(nodes, "bookworm");
}

/// Brings the lab up (idempotent) with `nodes` hosts on a Debian
/// `release` (`bookworm`, `trixie`).
pub fn lab_up_on(nodes: usize, release: &str) {
    let inventory = lab_inventory();
    pgdeploy_ok(&[
        "lab",
        "up",
        "--nodes",
        &nodes.to_string(),
        "--release",
        release,
        "--inventory",
        inventory.to_str().expect("UTF-8 path"),
    ]);
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

/// The `all.vars` lines (YAML, indented for `vars:`) that log in to the
/// lab's hosts as `lab up`'s inventory does, for inventories a test writes.
pub fn lab_login_vars() -> String {
    let lab = lab_dir();
    format!(
        "    ansible_user: admin\n    ansible_become: true\n    ansible_ssh_private_key_file: {lab}/id_ed25519\n    pgdeploy_known_hosts: {lab}/known_hosts\n"
    )
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

/// Routes that cut this machine (the workstation) off from some lab hosts:
/// an `unreachable` route to each, so that only the other lab hosts (a
/// bastion among them) reach them, over the lab's bridge. Removed on drop.
pub struct Routes(Vec<String>);

impl Routes {
    /// Cuts this machine off from `hosts`.
    pub fn block(hosts: &[&str]) -> Routes {
        let routes = Routes(hosts.iter().map(|h| format!("{}/32", address(h))).collect());
        for route in &routes.0 {
            ip(&["route", "replace", "unreachable", route]);
        }
        routes
    }

    /// Reaches the hosts again.
    pub fn remove(&mut self) {
        for route in self.0.drain(..) {
            ip(&["route", "del", "unreachable", &route]);
        }
    }
}

impl Drop for Routes {
    fn drop(&mut self) {
        self.remove();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
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

/// The programs the lab runs and the Debian packages holding them
/// (docs/lab.md, "Prerequisites"; `scripts/setup` installs them).
const LAB_TOOLS: [(&str, &str); 5] = [
    ("systemd-nspawn", "systemd-container"),
    ("debootstrap", "debootstrap"),
    ("nft", "nftables"),
    ("ssh", "openssh-client"),
    ("ip", "iproute2"),
];

/// Whether this process runs as root (effective uid 0, from /proc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Whether `program` is in PATH or in one of root's sbin folders (a
/// non-root PATH often lacks them).
fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|dir| dir.join(program).is_file())
}

/// What keeps the lab from running on this machine, or None when it can
/// run: not root, and the Debian packages whose programs are missing.
pub fn lab_missing() -> Option<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("not running as root".to_string());
    }
    let packages: Vec<&str> = LAB_TOOLS
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if !packages.is_empty() {
        missing.push(format!("missing {}", packages.join(", ")));
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// `FILE::TEST` of the running test (libtest names each test's thread
/// after the test).
pub fn test_name() -> String {
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    format!("{}::{name}", env!("CARGO_CRATE_NAME"))
}

/// Whether an end-to-end test can run here. When it cannot (no root, or
/// the lab's packages missing: a contributor's `cargo test --workspace`),
/// prints one line naming what the test needs and returns false; the test
/// then returns without failing. The line goes straight to stderr, past
/// libtest's capture, so it shows in a normal run.
pub fn lab_available() -> bool {
    let Some(why) = lab_missing() else {
        return true;
    };
    let line = format!(
        "skipped: {} needs root and the lab (systemd-container, debootstrap, nftables; run scripts/setup as root): {why}\n",
        test_name()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    false
}

/// The lab and deploy that the scenarios of one test file share.
///
/// Each scenario is a `#[test]` that calls [`Suite::run`]. The first one
/// to run calls `setup` (bring the lab up, deploy) and keeps what it
/// returns; the others reuse it. A scenario run alone
/// (`cargo test --test e2e_stack failover`) still works: it is the first,
/// so it sets the lab up. Scenarios hold the suite's lock while they run,
/// so they never interleave on the lab, whatever `--test-threads` says.
///
/// libtest runs a binary's tests in name order (with `--test-threads=1`,
/// as CI does), not in source order: the scenarios are named `sNN_...` so
/// that the order they were written for is the order they run in. A
/// scenario that needs what an earlier one left (a parameter rolled out, a
/// host grown) asks the fixture for it, which does it if it was not done.
///
/// When every scenario listed in `scenarios` has run (passed or failed),
/// the last one drops the state and calls `teardown` (e.g. `lab down`). A
/// run of a subset leaves the lab up for a closer look (`pgdeploy lab
/// down` ends it). Without the lab, every scenario prints one line and
/// returns.
pub struct Suite<S> {
    scenarios: &'static [&'static str],
    setup: fn() -> S,
    teardown: fn(Option<S>) -> Result<(), String>,
    slot: Mutex<Slot<S>>,
    finished: Mutex<Vec<&'static str>>,
}

enum Slot<S> {
    Empty,
    Ready(S),
    Failed(String),
}

impl<S> Suite<S> {
    pub const fn new(
        scenarios: &'static [&'static str],
        setup: fn() -> S,
        teardown: fn(Option<S>) -> Result<(), String>,
    ) -> Self {
        Suite {
            scenarios,
            setup,
            teardown,
            slot: Mutex::new(Slot::Empty),
            finished: Mutex::new(Vec::new()),
        }
    }

    /// Runs the calling test's scenario on the shared lab (set up first if
    /// no scenario did yet). Without the lab, prints why and returns.
    pub fn run(&self, scenario: impl FnOnce(&mut S)) {
        if !lab_available() {
            return;
        }
        let name = test_name();
        let short = name.rsplit("::").next().unwrap_or_default();
        let listed = self
            .scenarios
            .iter()
            .find(|s| **s == short)
            .unwrap_or_else(|| {
                panic!("{name} is not in its file's SCENARIOS list: add it, so the last scenario knows when to tear the lab down")
            });
        // Dropped last (after the lock below is released), also when the scenario panics.
        let _done = Done {
            suite: self,
            name: listed,
        };
        // A scenario that failed poisons the lock; the next ones still run.
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*slot, Slot::Empty) {
            let started = Instant::now();
            match catch_unwind(AssertUnwindSafe(self.setup)) {
                Ok(state) => {
                    println!(
                        "shared set-up of {}: {:.1}s",
                        env!("CARGO_CRATE_NAME"),
                        started.elapsed().as_secs_f64()
                    );
                    *slot = Slot::Ready(state);
                }
                Err(panic) => {
                    *slot = Slot::Failed(panic_text(&*panic));
                    resume_unwind(panic);
                }
            }
        }
        match &mut *slot {
            Slot::Ready(state) => scenario(state),
            Slot::Failed(why) => panic!(
                "the lab set-up this file's scenarios share failed in an earlier test (not set up again): {why}"
            ),
            Slot::Empty => unreachable!("set up above"),
        }
    }
}

/// Records a scenario as finished; the last one tears the lab down.
struct Done<'a, S> {
    suite: &'a Suite<S>,
    name: &'static str,
}

impl<S> Drop for Done<'_, S> {
    fn drop(&mut self) {
        let suite = self.suite;
        let all_ran = {
            let mut finished = suite
                .finished
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !finished.contains(&self.name) {
                finished.push(self.name);
            }
            finished.len() == suite.scenarios.len()
        };
        if !all_ran {
            return;
        }
        let state = std::mem::replace(
            &mut *suite.slot.lock().unwrap_or_else(PoisonError::into_inner),
            Slot::Empty,
        );
        let state = match state {
            Slot::Ready(state) => Some(state),
            Slot::Empty | Slot::Failed(_) => None,
        };
        if let Err(e) = (suite.teardown)(state) {
            // A panic while this scenario's own panic unwinds would abort the whole binary.
            if std::thread::panicking() {
                eprintln!("tearing the lab down failed: {e}");
            } else {
                panic!("tearing the lab down failed: {e}");
            }
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".to_string())
}

/// Teardown of a suite that leaves the machine as it found it: drops the
/// state (its temporary folders), then `pgdeploy lab down`. It does not
/// panic (it may run while a failed scenario unwinds).
pub fn lab_down<S>(state: Option<S>) -> Result<(), String> {
    drop(state);
    let out = pgdeploy(&["lab", "down"]);
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// Teardown of a suite whose lab stays up for the next file (only the
/// state is dropped).
pub fn keep_lab<S>(state: Option<S>) -> Result<(), String> {
    drop(state);
    Ok(())
}

/// The test that every scenario listed in the file's `SCENARIOS` is one of
/// its `#[test]`s, and back (needs no lab).
#[macro_export]
macro_rules! scenarios_are_listed {
    () => {
        #[test]
        fn scenarios_are_listed() {
            assert_eq!(
                common::tests_in(file!(), "scenarios_are_listed"),
                SCENARIOS.map(String::from).to_vec()
            );
        }
    };
}

/// The names of the `#[test]` functions in `file` (a path from the
/// repository root, as `file!()` gives it), except `except`.
pub fn tests_in(file: &str, except: &str) -> Vec<String> {
    let source = std::fs::read_to_string(root().join(file)).expect("the test's source");
    let mut names = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "#[test]" {
            let name = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("fn "))
                .and_then(|l| l.split('(').next())
                .unwrap_or_else(|| panic!("{file}: #[test] not followed by `fn NAME(`"));
            if name != except {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names
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

/// `sql` as the superuser on a fresh connection through the lab's VIP and
/// HAProxy `port`; stdout or the error. The whole call ends after `limit`
/// (coreutils `timeout`), so a connection stuck on a dead host fails.
pub fn vip_psql(port: u16, password: &str, sql: &str, limit: Duration) -> Result<String, String> {
    psql_at(&lab_vip(), port, password, sql, limit)
}

/// `sql` as the superuser on a fresh connection to `address:port`, as
/// [`vip_psql`] runs it.
pub fn psql_at(
    address: &str,
    port: u16,
    password: &str,
    sql: &str,
    limit: Duration,
) -> Result<String, String> {
    let out = Command::new("timeout")
        .arg(format!("{}", limit.as_secs_f64()))
        .args(["psql", "-h", address, "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-Atc", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Polls `check` every second until it gives `Some`, for at most `secs`.
pub fn wait<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        std::thread::sleep(Duration::from_secs(1));
    }
}
