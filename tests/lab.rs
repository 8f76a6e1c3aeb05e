//! End-to-end test of `pgdeploy lab`: real containers, real SSH, real
//! network. ONE test function runs every scenario in order, a second one a
//! lab of mixed Debian releases, both on a dedicated lab: instance 1
//! (`PGDEPLOY_LAB_INSTANCE=1`: bridge pgdlab1, subnet 10.213.51.0/24,
//! /var/lib/pgdeploy/lab-1), so they never touch the main lab (instance 0)
//! that the other end-to-end tests and people use.
//! Needs root and the Debian packages debootstrap, systemd-container,
//! nftables and openssh-client; without them (or root) it says so and passes.
//! A third test checks the Vagrant topology with `vagrant validate`.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LAB_DIR: &str = "/var/lib/pgdeploy/lab-1";
const KEY: &str = "/var/lib/pgdeploy/lab-1/id_ed25519";
const KNOWN_HOSTS: &str = "/var/lib/pgdeploy/lab-1/known_hosts";
const INSTANCE: &str = "1";
const BRIDGE: &str = "pgdlab1";
const NFT_TABLE: &str = "pgdeploy_lab_1";
const NET: &str = "10.213.51";
const ROOTFS: &str = "/var/cache/pgdeploy/lab/rootfs-bookworm";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pgdeploy_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let started = Instant::now();
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgdeploy"));
    c.args(args)
        .current_dir(repo())
        .env("PGDEPLOY_LAB_INSTANCE", INSTANCE)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("pgdeploy runs");
    eprintln!(
        "[lab test] pgdeploy {} -> {} in {:.1} s",
        args.join(" "),
        o.status,
        started.elapsed().as_secs_f64()
    );
    o
}

fn pgdeploy(args: &[&str]) -> Output {
    pgdeploy_env(args, &[])
}

fn pgdeploy_ok(args: &[&str]) -> String {
    let o = pgdeploy(args);
    assert!(
        o.status.success(),
        "pgdeploy {args:?} failed:\n{}",
        text(&o)
    );
    text(&o)
}

fn addr(n: usize) -> String {
    format!("{NET}.{}", 10 + n)
}

fn ssh_as(user: &str, n: usize, cmd: &str) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i", KEY])
        .args(["-o", &format!("UserKnownHostsFile={KNOWN_HOSTS}")])
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=4",
        ])
        .arg(format!("{user}@{}", addr(n)))
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs")
}

/// Runs `cmd` on node `n` as admin; panics unless it succeeds; returns stdout.
fn ssh(n: usize, cmd: &str) -> String {
    let o = ssh_as("admin", n, cmd);
    assert!(
        o.status.success(),
        "ssh node{n} {cmd:?} failed:\n{}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn sh(cmd: &str) -> String {
    let o = Command::new("bash")
        .args(["-c", cmd])
        .output()
        .expect("bash runs");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Everything the lab could leave behind on the machine, as a list of findings.
fn leftovers() -> Vec<String> {
    let mut v = Vec::new();
    if Path::new(&format!("/sys/class/net/{BRIDGE}")).exists() {
        v.push(format!("bridge {BRIDGE}"));
    }
    let links = sh("ip -o link show | grep -o 'vb-l1-node[0-9]*' || true");
    if !links.is_empty() {
        v.push(format!("veths {links}"));
    }
    if Command::new("nft")
        .args(["list", "table", "ip", NFT_TABLE])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        v.push(format!("nft table ip {NFT_TABLE}"));
    }
    let mounts = sh(&format!("grep ' {LAB_DIR}' /proc/self/mounts || true"));
    if !mounts.is_empty() {
        v.push(format!("mounts {mounts}"));
    }
    let procs = nspawn_processes("");
    if !procs.is_empty() {
        v.push(format!("systemd-nspawn processes {procs:?}"));
    }
    for f in [KEY, KNOWN_HOSTS, "/var/lib/pgdeploy/lab-1/state.json"] {
        if Path::new(f).exists() {
            v.push(f.to_string());
        }
    }
    v
}

/// Live (not zombie) systemd-nspawn processes of the test's lab whose
/// command line contains `LAB_DIR/<sub>`.
fn nspawn_processes(sub: &str) -> Vec<u32> {
    let pattern = format!("{LAB_DIR}/{sub}");
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'));
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if comm.trim() == "systemd-nspawn"
            && !zombie
            && String::from_utf8_lossy(&cmdline).contains(&pattern)
        {
            v.push(pid);
        }
    }
    v
}

/// The host lines of `pgdeploy lab status`, split in words: HOST ADDRESS
/// RELEASE STATE SSH NETWORK MEMORY.
fn status_words() -> Vec<Vec<String>> {
    pgdeploy_ok(&["lab", "status"])
        .lines()
        .filter(|l| l.starts_with("node"))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// Parsed `pgdeploy lab status`: (host, state, ssh, network).
fn status() -> Vec<(String, String, String, String)> {
    status_words()
        .into_iter()
        .map(|w| (w[0].clone(), w[3].clone(), w[4].clone(), w[5].clone()))
        .collect()
}

fn host_status(name: &str) -> (String, String, String) {
    let s = status();
    let h = s
        .iter()
        .find(|h| h.0 == name)
        .unwrap_or_else(|| panic!("{name} not in lab status: {s:?}"));
    (h.1.clone(), h.2.clone(), h.3.clone())
}

/// The pid of a host's init, from /proc (a PID 1 whose root overlay is the host's).
fn init_pid(name: &str) -> Option<u32> {
    let upper = format!("upperdir={LAB_DIR}/{name}/upper,");
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let nspid = status
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .unwrap_or("");
        if nspid.split_whitespace().count() < 3 || !nspid.ends_with("\t1") {
            continue;
        }
        let mi = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        if mi
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/") && l.contains(&upper))
        {
            return Some(pid);
        }
    }
    None
}

/// TCP connect from inside host `from` (its own network namespace, entered
/// from the machine, so it works while the host is isolated) to node `to`.
fn tcp_from_netns(from: &str, to: usize) -> bool {
    let pid = init_pid(from).unwrap_or_else(|| panic!("{from} has no init"));
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "timeout", "3", "bash", "-c"])
        .arg(format!("</dev/tcp/{}/22", addr(to)))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wait_system_running(n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let o = ssh_as("admin", n, "systemctl is-system-running");
        let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if state != "starting" && state != "initializing" {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "node{n} still {state} after 90 s"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Serialises tests that take the whole lab.
struct TestLock(#[allow(dead_code)] fs::File);

fn test_lock() -> TestLock {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/pgdeploy-lab-tests.lock")
        .expect("open the lab test lock");
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc_flock(f.as_raw_fd()) },
        0,
        "lock the lab test lock"
    );
    TestLock(f)
}

extern "C" {
    fn flock(fd: i32, op: i32) -> i32;
}

unsafe fn libc_flock(fd: i32) -> i32 {
    const LOCK_EX: i32 = 2;
    flock(fd, LOCK_EX)
}

#[test]
fn lab_end_to_end() {
    if !common::lab_available() {
        return;
    }
    let _lock = test_lock();
    let t0 = Instant::now();

    // 0. Start from nothing.
    pgdeploy_ok(&["lab", "down"]);
    assert!(leftovers().is_empty(), "after down: {:?}", leftovers());
    let o = pgdeploy(&["lab", "down"]);
    assert!(
        o.status.success() && text(&o).contains("nothing to do"),
        "second down: {}",
        text(&o)
    );

    // 1. A missing prerequisite is one clear line.
    if sh("command -v setpriv").is_empty() {
        eprintln!("[lab test] no setpriv: not-root check skipped");
    } else {
        let o = Command::new("setpriv")
            .env("PGDEPLOY_LAB_INSTANCE", INSTANCE)
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_pgdeploy"),
                "lab",
                "up",
            ])
            .output()
            .expect("setpriv runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "lab up as nobody must fail");
        assert!(
            err.contains("must run as root") && err.trim().lines().count() == 1,
            "{err}"
        );
    }

    // 2. A failure part way cleans up what it made (the cache is built if missing).
    let tmp = tempfile::tempdir().expect("tempdir");
    let inv = tmp.path().join("lab.yaml");
    let inv_s = inv.to_str().expect("utf-8 path");
    for step in ["bridge", "boot"] {
        let o = pgdeploy_env(
            &["lab", "up", "--inventory", inv_s],
            &[("PGDEPLOY_LAB_FAIL_AFTER", step)],
        );
        assert!(
            !o.status.success(),
            "injected failure after {step} must fail: {}",
            text(&o)
        );
        assert!(text(&o).contains("injected failure"), "{}", text(&o));
        assert!(
            leftovers().is_empty(),
            "failure after {step} left: {:?}",
            leftovers()
        );
        assert!(!inv.exists(), "no inventory after a failed up");
    }
    assert!(
        Path::new(ROOTFS).join(".pgdeploy-lab-rootfs").exists(),
        "the cache stays"
    );

    // 3. Up: 4 hosts, SSH, inventory; a second up does nothing.
    let t = Instant::now();
    let out = pgdeploy_ok(&["lab", "up", "--inventory", inv_s]);
    eprintln!(
        "[lab test] warm up of 4 hosts: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(out.contains("lab is up: 4 hosts"), "{out}");
    let y = fs::read_to_string(&inv).expect("inventory written");
    for n in 1..=4 {
        assert!(
            y.contains(&format!("    node{n}: {{ansible_host: {}}}\n", addr(n))),
            "{y}"
        );
    }
    assert!(y.contains(&format!("    vip_address: {NET}.250\n")), "{y}");
    assert!(y.contains("    backup: {hosts: {node4: {}}}\n"), "{y}");
    assert!(
        y.contains(&format!("    ansible_ssh_private_key_file: {KEY}\n")),
        "{y}"
    );
    let out = pgdeploy_ok(&["lab", "up", "--inventory", inv_s]);
    assert!(out.contains("lab is up: 4 hosts, nothing to do"), "{out}");
    let kh = fs::read_to_string(KNOWN_HOSTS).expect("known_hosts");
    let keys: std::collections::BTreeSet<&str> = kh
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(keys.len(), 4, "every host has its own host key:\n{kh}");

    // 4. Each host: hostname, address, systemd, sudo, resolver.
    for n in 1..=4 {
        assert_eq!(ssh(n, "hostname"), format!("node{n}"));
        let ip = ssh(n, "ip -4 -o addr show dev host0");
        assert!(
            ip.contains(&format!("inet {}/24", addr(n))),
            "node{n}: {ip}"
        );
        let state = wait_system_running(n);
        let failed = ssh(n, "systemctl --failed --no-legend --plain");
        eprintln!(
            "[lab test] node{n}: systemctl is-system-running = {state}; failed units: [{failed}]"
        );
        assert!(
            state == "running" || state == "degraded",
            "node{n} is {state}; failed: {failed}"
        );
        assert_eq!(ssh(n, "sudo -n id -un"), "root");
        assert_eq!(
            String::from_utf8_lossy(&ssh_as("root", n, "id -un").stdout).trim(),
            "root"
        );
    }
    // 5. Host to host, and out (a package install through NAT).
    for to in 2..=4 {
        ssh(1, &format!("timeout 3 bash -c '</dev/tcp/{}/22'", addr(to)));
        ssh(to, &format!("ping -c1 -W2 {}", addr(1)));
    }
    ssh(1, &format!("getent hosts node3 | grep -q {}", addr(3)));
    let t = Instant::now();
    ssh(1, "sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q tree >/dev/null");
    assert!(ssh(1, "tree --version").contains("tree"));
    eprintln!(
        "[lab test] apt-get update + install tree: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // 6. kill: a hard crash; the disk stays; start boots it again.
    ssh(2, "echo kept | sudo tee /var/tmp/marker >/dev/null; sync");
    let old_init = init_pid("node2").expect("node2 runs");
    pgdeploy_ok(&["lab", "kill", "node2"]);
    assert!(
        init_pid("node2").is_none(),
        "node2's init survived the kill"
    );
    assert!(
        !Path::new(&format!("/proc/{old_init}")).exists()
            || sh(&format!("ps -o stat= -p {old_init}")).starts_with('Z')
    );
    assert!(
        nspawn_processes("node2/").is_empty(),
        "node2's nspawn survived"
    );
    assert!(
        !Path::new("/sys/class/net/vb-l1-node2").exists(),
        "node2's veth survived"
    );
    assert!(
        !ssh_as("admin", 2, "true").status.success(),
        "node2 answers SSH after kill"
    );
    assert_eq!(host_status("node2").0, "stopped");
    assert!(
        !pgdeploy(&["lab", "kill", "node2"]).status.success(),
        "killing a stopped host must fail"
    );
    assert_eq!(host_status("node1").0, "running", "the others run on");
    pgdeploy_ok(&["lab", "start", "node2"]);
    assert_eq!(ssh(2, "cat /var/tmp/marker"), "kept");
    assert_eq!(
        host_status("node2"),
        ("running".into(), "yes".into(), "ok".into())
    );
    assert!(pgdeploy_ok(&["lab", "start", "node2"]).contains("already running"));

    // 6b. A reboot inside a host boots it again, as a machine would (nspawn
    // exits 133 and the lab's loop starts it again); the disk stays.
    let before = init_pid("node2").expect("node2 runs");
    ssh(
        2,
        "sudo touch /run/reboot-marker && sudo systemd-run --quiet --on-active=1 /bin/systemctl reboot",
    );
    let t = Instant::now();
    loop {
        let rebooted = init_pid("node2").is_some_and(|p| p != before);
        if rebooted
            && ssh_as("admin", 2, "test ! -e /run/reboot-marker")
                .status
                .success()
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "node2 did not come back from its reboot (init {before} -> {:?})",
            init_pid("node2")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "[lab test] reboot inside node2: back on SSH in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(ssh(2, "cat /var/tmp/marker"), "kept");
    assert_eq!(
        host_status("node2"),
        ("running".into(), "yes".into(), "ok".into())
    );

    // 7. isolate/heal: traffic to and from the host fails, the host runs on.
    assert!(
        tcp_from_netns("node3", 1),
        "node3 reaches node1 before isolate"
    );
    pgdeploy_ok(&["lab", "isolate", "node3"]);
    assert_eq!(
        host_status("node3"),
        ("running".into(), "no".into(), "isolated".into())
    );
    let o = ssh_as(
        "admin",
        1,
        &format!("timeout 3 bash -c '</dev/tcp/{}/22'", addr(3)),
    );
    assert!(!o.status.success(), "node1 reaches isolated node3");
    assert!(!tcp_from_netns("node3", 1), "isolated node3 reaches node1");
    assert!(
        !ssh_as("admin", 3, "true").status.success(),
        "isolated node3 answers SSH"
    );
    pgdeploy_ok(&["lab", "heal", "node3"]);
    ssh(1, &format!("timeout 5 bash -c '</dev/tcp/{}/22'", addr(3)));
    assert!(tcp_from_netns("node3", 1), "healed node3 reaches node1");
    assert_eq!(ssh(3, "hostname"), "node3");

    // 8. Scale up and back down.
    let out = pgdeploy_ok(&["lab", "up", "--nodes", "5", "--inventory", inv_s]);
    assert!(out.contains("booted node5"), "{out}");
    assert_eq!(ssh(5, "hostname"), "node5");
    assert!(
        ssh(1, "getent hosts node5").contains(&addr(5)),
        "node1 knows node5"
    );
    let out = pgdeploy_ok(&["lab", "up", "--nodes", "4", "--inventory", inv_s]);
    assert!(out.contains("removed node5"), "{out}");
    assert!(!Path::new(&format!("{LAB_DIR}/node5")).exists());

    // 9. A half-alive lab (every container process gone, mounts, bridge and
    // rules still there) is repaired by up; disks survive.
    for n in 1..=4 {
        let pid = init_pid(&format!("node{n}")).expect("running");
        sh(&format!("kill -9 {pid}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (1..=4).any(|n| init_pid(&format!("node{n}")).is_some()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(Path::new(&format!("/sys/class/net/{BRIDGE}")).exists());
    assert!(
        !sh(&format!("grep ' {LAB_DIR}' /proc/self/mounts || true")).is_empty(),
        "mounts stay"
    );
    assert!(status().iter().all(|h| h.1 == "stopped"), "{:?}", status());
    let out = pgdeploy_ok(&["lab", "up", "--inventory", inv_s]);
    assert!(out.contains("booted node1, node2, node3, node4"), "{out}");
    assert_eq!(ssh(2, "cat /var/tmp/marker"), "kept");
    assert!(
        status().iter().all(|h| h.1 == "running" && h.2 == "yes"),
        "{:?}",
        status()
    );

    // Scale: 30 hosts come up and answer SSH (the benchmarks need them).
    let t30 = Instant::now();
    pgdeploy_ok(&["lab", "up", "--nodes", "30", "--inventory", inv_s]);
    let hosts = status();
    assert_eq!(hosts.len(), 30, "{hosts:?}");
    assert!(
        hosts.iter().all(|h| h.1 == "running" && h.2 == "yes"),
        "{hosts:?}"
    );
    eprintln!(
        "[lab test] 30 hosts up and answering SSH in {:.1} s",
        t30.elapsed().as_secs_f64()
    );
    assert_eq!(ssh(30, "hostname"), "node30");
    pgdeploy_ok(&["lab", "up", "--nodes", "4", "--inventory", inv_s]);

    // 10. Half-alive again, and down clears it.
    for n in 1..=4 {
        if let Some(pid) = init_pid(&format!("node{n}")) {
            sh(&format!("kill -9 {pid}"));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let out = pgdeploy_ok(&["lab", "down"]);
    assert!(out.contains(&format!("removed bridge {BRIDGE}")), "{out}");
    assert!(leftovers().is_empty(), "after down: {:?}", leftovers());
    assert!(
        Path::new(ROOTFS).join(".pgdeploy-lab-rootfs").exists(),
        "the cache stays after down"
    );

    eprintln!(
        "[lab test] all scenarios passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// A lab of mixed releases: node1 bookworm, node2 trixie (the trixie cache
/// is built once, about 100 s, and shared like bookworm's).
#[test]
fn lab_mixed_releases() {
    if !common::lab_available() {
        return;
    }
    let _lock = test_lock();
    let t0 = Instant::now();
    pgdeploy_ok(&["lab", "down"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let inv = tmp.path().join("lab.yaml");
    let inv_s = inv.to_str().expect("utf-8 path");
    let up = |release: &str| {
        pgdeploy(&[
            "lab",
            "up",
            "--nodes",
            "2",
            "--release",
            release,
            "--inventory",
            inv_s,
        ])
    };

    // A bad --release changes nothing.
    for (release, says) in [
        ("jessie", "unknown release \"jessie\""),
        ("node3=trixie", "node1..node2"),
    ] {
        let o = up(release);
        assert!(!o.status.success(), "--release {release} must fail");
        assert!(text(&o).contains(says), "{}", text(&o));
    }
    assert!(leftovers().is_empty(), "after bad input: {:?}", leftovers());

    let o = up("trixie,node1=bookworm");
    assert!(o.status.success(), "mixed up failed:\n{}", text(&o));
    assert!(text(&o).contains("lab is up: 2 hosts"), "{}", text(&o));
    for (n, release) in [(1, "bookworm"), (2, "trixie")] {
        assert_eq!(
            ssh(n, ". /etc/os-release && echo $VERSION_CODENAME"),
            release
        );
        let state = wait_system_running(n);
        let failed = ssh(n, "systemctl --failed --no-legend --plain");
        eprintln!("[lab test] node{n} ({release}): {state}; failed units: [{failed}]");
        assert!(
            state == "running" || state == "degraded",
            "node{n} is {state}; failed: {failed}"
        );
        assert_eq!(ssh(n, "sudo -n id -un"), "root");
        assert!(
            ssh(n, "grep -rh '^[^#]' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true")
                .contains(&format!("{release}-security")),
            "node{n}'s apt sources name {release}"
        );
    }
    ssh(2, "sudo apt-get update -q >/dev/null");
    let releases: Vec<(String, String)> = status_words()
        .into_iter()
        .map(|w| (w[0].clone(), w[2].clone()))
        .collect();
    assert_eq!(
        releases,
        vec![
            ("node1".into(), "bookworm".into()),
            ("node2".into(), "trixie".into())
        ]
    );
    let y = fs::read_to_string(&inv).expect("inventory written");
    assert!(
        !y.contains("bookworm") && !y.contains("trixie"),
        "no release in the inventory:\n{y}"
    );

    // Another release for a host that exists is refused, naming it; the lab runs on.
    let o = up("bookworm");
    assert!(!o.status.success(), "a release change must be refused");
    assert!(
        text(&o).contains("node2 exists and runs trixie, not bookworm as asked")
            && text(&o).contains("lab down"),
        "{}",
        text(&o)
    );
    assert_eq!(ssh(2, "hostname"), "node2");
    // Without --release, hosts keep theirs.
    let out = pgdeploy_ok(&["lab", "up", "--nodes", "2", "--inventory", inv_s]);
    assert!(out.contains("nothing to do"), "{out}");

    pgdeploy_ok(&["lab", "down"]);
    assert!(leftovers().is_empty(), "after down: {:?}", leftovers());
    for r in ["bookworm", "trixie"] {
        let stamp =
            Path::new("/var/cache/pgdeploy/lab").join(format!("rootfs-{r}/.pgdeploy-lab-rootfs"));
        assert!(stamp.exists(), "the {r} cache stays");
    }
    eprintln!(
        "[lab test] mixed releases passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn vagrant_topology_validates() {
    let vdir = repo().join("vagrant");
    let inv = fs::read_to_string(repo().join("inventories/vagrant.yaml"))
        .expect("inventories/vagrant.yaml");
    let vf = fs::read_to_string(vdir.join("Vagrantfile")).expect("vagrant/Vagrantfile");
    for n in 1..=4 {
        let a = format!("10.213.48.{}", 10 + n);
        assert!(
            inv.contains(&format!("node{n}: {{ansible_host: {a}}}")),
            "inventory lacks node{n}"
        );
    }
    assert!(vf.contains("10.213.48.") && vf.contains("debian/bookworm64"));
    if Command::new("vagrant").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "vagrant is not installed (CI installs it)"
        );
        eprintln!("vagrant_topology_validates: vagrant not installed: validate skipped");
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    let key = home.path().join("id_ed25519.pub");
    fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJtest test@lab\n",
    )
    .expect("write key");
    let o = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(&vdir)
        .env("VAGRANT_HOME", home.path().join("vagrant.d"))
        .env("PGDEPLOY_SSH_PUBKEY", &key)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("vagrant runs");
    assert!(o.status.success(), "vagrant validate failed:\n{}", text(&o));
    assert!(
        text(&o).contains("Vagrantfile validated successfully"),
        "{}",
        text(&o)
    );
}
