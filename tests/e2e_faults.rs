//! Faults in the middle of a run on the lab's real hosts, one test per
//! scenario: a host killed during an apply, a host isolated during an
//! apply, Ctrl-C during an apply (each run is started in the background,
//! broken during its 12 s slow step, and must end on its own with the
//! other hosts finished, exit 1 and a recap naming the broken host; a
//! re-run after the host is back converges); the SSH connection dropped
//! during a large upload (the session's sshd killed; the whole session
//! with the upload's own shell); the apt lock held by another process
//! (waited for with a live message, then released; held past the
//! timeout); a full disk on one host.
//!
//! The scenarios share one 4-host lab and a playbook folder, made by the
//! first one that runs (see `Suite` in tests/common); each scenario sets up
//! its own hosts' state, so each also runs alone. Names start `sNN_` to keep
//! the order they were written in (libtest runs them in name order). The
//! last one to finish takes the lab down.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const HOSTS: [&str; 3] = ["node1", "node2", "node3"];

/// Starts `pgdeploy apply` of the slow playbook in the background.
fn spawn_apply(inventory: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .args(["apply", "-i", inventory, &fixture("faults/slow.yaml")])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgdeploy starts")
}

/// Waits until every host runs the slow step's `sleep 12`.
fn wait_for_slow_step() {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if HOSTS
            .iter()
            .all(|h| ssh_output(h, "pgrep -f 'sleep 12'").status.success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the slow step never started on every host");
}

/// Waits for the run with a generous sanity bound (no hang).
fn finish(child: Child, started: Instant, what: &str) -> Output {
    let out = child.wait_with_output().expect("pgdeploy ends");
    let took = started.elapsed();
    println!(
        "{what}: the run ended after {:.1}s with {:?}",
        took.as_secs_f64(),
        out.status.code()
    );
    assert!(
        took < Duration::from_secs(180),
        "{what}: the run hung for {took:?}"
    );
    out
}

fn reset(hosts: &[&str]) {
    for h in hosts {
        ssh(h, "rm -rf /opt/pgd-fault");
    }
}

fn lab(args: &[&str]) {
    pgdeploy_ok(&[&["lab"], args].concat());
}

const SCENARIOS: [&str; 8] = [
    "s01_host_killed_mid_run_others_finish",
    "s02_host_isolated_mid_run_others_finish",
    "s03_ctrl_c_mid_run_ends_the_step_and_starts_no_other",
    "s04_upload_cut_off_by_killing_sshd",
    "s05_upload_cut_off_by_killing_the_whole_session",
    "s06_apt_lock_waited_for_with_a_live_message",
    "s07_apt_lock_held_past_the_timeout_fails_that_host_only",
    "s08_disk_full_on_one_host",
];

static LAB: Suite<FaultsLab> = Suite::new(&SCENARIOS, set_up, lab_down::<FaultsLab>);

struct FaultsLab {
    inventory: String,
    work: Workdir,
}

fn set_up() -> FaultsLab {
    lab_up(4);
    FaultsLab {
        inventory: lab_inventory().to_str().expect("utf8 path").to_string(),
        work: Workdir::new(),
    }
}

scenarios_are_listed!();

#[test]
fn s01_host_killed_mid_run_others_finish() {
    LAB.run(|lab| {
        fault_mid_run(
            &lab.inventory,
            "host killed",
            "node2",
            &["kill", "node2"],
            &["start", "node2"],
        );
    });
}

#[test]
fn s02_host_isolated_mid_run_others_finish() {
    LAB.run(|lab| {
        fault_mid_run(
            &lab.inventory,
            "host isolated",
            "node3",
            &["isolate", "node3"],
            &["heal", "node3"],
        );
    });
}

#[test]
fn s03_ctrl_c_mid_run_ends_the_step_and_starts_no_other() {
    LAB.run(|lab| interrupted(&lab.inventory));
}

#[test]
fn s04_upload_cut_off_by_killing_sshd() {
    LAB.run(|lab| upload_cut_off(&lab.inventory, &lab.work, Cut::SshdOnly));
}

#[test]
fn s05_upload_cut_off_by_killing_the_whole_session() {
    LAB.run(|lab| upload_cut_off(&lab.inventory, &lab.work, Cut::WholeSession));
}

#[test]
fn s06_apt_lock_waited_for_with_a_live_message() {
    LAB.run(|lab| apt_lock_waited_for(&lab.inventory, &lab.work));
}

#[test]
fn s07_apt_lock_held_past_the_timeout_fails_that_host_only() {
    LAB.run(|lab| apt_lock_held_past_timeout(&lab.inventory, &lab.work));
}

#[test]
fn s08_disk_full_on_one_host() {
    LAB.run(|lab| disk_full(&lab.inventory, &lab.work));
}

/// Starts the slow playbook, runs `fault` during its slow step, waits for
/// the run's end; checks exit 1, `finished` hosts done, the recap naming
/// `broken` and the task; runs `restore`; a re-run converges.
fn fault_mid_run(inventory: &str, what: &str, broken: &str, fault: &[&str], restore: &[&str]) {
    reset(&HOSTS);
    let started = Instant::now();
    let child = spawn_apply(inventory);
    wait_for_slow_step();
    lab(fault);
    let out = finish(child, started, what);
    lab(restore);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{what}:\n{all}");
    for h in HOSTS.iter().filter(|h| **h != broken) {
        assert_eq!(
            ssh(h, "cat /opt/pgd-fault/done"),
            "done\n",
            "{what}: {h} finished:\n{all}"
        );
    }
    let recap = &all[all.find("RECAP").unwrap_or(0)..];
    let lines: Vec<&str> = recap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(broken))
        .take(3)
        .collect();
    assert!(
        lines.join("\n").contains("failed at `a slow step`"),
        "{what}: the recap says where {broken} failed:\n{recap}"
    );
    println!("{what}, recap:\n{recap}");
    let again = pgdeploy(&["apply", "-i", inventory, &fixture("faults/slow.yaml")]);
    assert!(
        again.status.success(),
        "{what}: the re-run converges:\n{}",
        text(&again)
    );
    assert_eq!(ssh(broken, "cat /opt/pgd-fault/done"), "done\n");
}

/// Ctrl-C: the slow step finishes, the last step is not started anywhere,
/// exit 130 and a recap saying so; a re-run converges.
fn interrupted(inventory: &str) {
    reset(&HOSTS);
    let started = Instant::now();
    let child = spawn_apply(inventory);
    wait_for_slow_step();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let out = finish(child, started, "Ctrl-C");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(
        all.contains("INTERRUPTED") && all.contains("not run"),
        "{all}"
    );
    for h in HOSTS {
        let state = ssh(h, "ls /opt/pgd-fault");
        assert_eq!(
            state, "slept\n",
            "{h}: the step in progress finished, none started after:\n{all}"
        );
    }
    let recap = &all[all.find("RECAP").unwrap_or(0)..];
    println!("Ctrl-C, recap:\n{recap}");
    let again = pgdeploy(&["apply", "-i", inventory, &fixture("faults/slow.yaml")]);
    assert!(
        again.status.success(),
        "the re-run converges:\n{}",
        text(&again)
    );
    for h in HOSTS {
        assert_eq!(ssh(h, "cat /opt/pgd-fault/done"), "done\n");
    }
}

/// A playbook folder in /tmp for the scenarios that need generated role
/// files (a large upload), removed at the end.
struct Workdir(std::path::PathBuf);

impl Workdir {
    fn new() -> Workdir {
        // One per lab instance (not per process): a run of some scenarios
        // only, which keeps its state, leaves at most this one behind.
        let dir = std::env::temp_dir().join(format!("pgd-faults-{}", lab_instance()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("work dir");
        Workdir(dir)
    }

    /// Writes `rel` (folders made as needed) and returns its path.
    fn write(&self, rel: &str, content: &[u8]) -> String {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        path.to_string_lossy().into_owned()
    }

    /// A playbook running role `role` on node1-3.
    fn playbook(&self, role: &str, tasks: &str) -> String {
        self.write(&format!("roles/{role}/tasks.yaml"), tasks.as_bytes());
        self.write(
            &format!("{role}.yaml"),
            format!("- hosts: node1:node2:node3\n  roles: [{role}]\n").as_bytes(),
        )
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that differ per `seed` (sha256 chained), so an upload
/// cannot be compressed away.
fn bytes(len: usize, seed: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {seed} | sha256sum"))
        .output()
        .expect("sha256sum")
        .stdout;
    while out.len() < len {
        out.extend_from_slice(&block);
        block.reverse();
        block.rotate_left(out.len() % 61 + 1);
    }
    out.truncate(len);
    out
}

/// sha256 of a local file's content, as `sha256sum` prints it.
fn sha256_of(path: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// sha256 of a file on a host (`absent` when missing).
fn remote_sha256(host: &str, path: &str) -> String {
    ssh(
        host,
        &format!("if [ -e {path} ]; then sha256sum < {path} | cut -c1-64; else echo absent; fi"),
    )
    .trim()
    .to_string()
}

/// The upload temporaries (`.pgdeploy-*`) in a folder of a host.
fn temporaries(host: &str, dir: &str) -> Vec<String> {
    ssh(host, &format!("ls -a {dir} | grep '^\\.pgdeploy-' || true"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// A `pgdeploy apply` in the background whose output is read as it comes.
struct LiveRun {
    child: Child,
    started: Instant,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<u8>>>,
}

impl LiveRun {
    fn start(args: &[&str]) -> LiveRun {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
            .args(args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgdeploy starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (err_pipe, mut out_pipe) = (
            child.stderr.take().expect("stderr"),
            child.stdout.take().expect("stdout"),
        );
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
        let bytes = stdout.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = out_pipe.read_to_end(&mut all);
            bytes.lock().expect("lock").extend(all);
        });
        LiveRun {
            child,
            started: Instant::now(),
            stderr,
            stdout,
        }
    }

    /// Waits (up to `limit`) for a stderr line for which `wanted` holds.
    fn wait_for_line(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.stderr.lock().expect("lock").iter().find(|l| wanted(l)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no such line after {limit:?}:\n{}",
                self.stderr.lock().expect("lock").join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the end (sanity bound: no hang); exit code and all output.
    fn finish(mut self, what: &str) -> (Option<i32>, String) {
        let status = self.child.wait().expect("pgdeploy ends");
        let took = self.started.elapsed();
        // The reader threads end with the pipes.
        std::thread::sleep(Duration::from_millis(300));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&self.stdout.lock().expect("lock")),
            self.stderr.lock().expect("lock").join("\n")
        );
        println!(
            "{what}: the run ended after {:.1}s with {:?}",
            took.as_secs_f64(),
            status.code()
        );
        assert!(took < Duration::from_secs(240), "{what}: hung for {took:?}");
        (status.code(), all)
    }
}

/// Applies `playbook` with role file `rel` holding `old` (node1-3 then
/// hold it), removes the `done` markers in `dir`, and puts `new` in the
/// role file; returns the sha256 of both.
fn old_then_new(
    inventory: &str,
    work: &Workdir,
    playbook: &str,
    (rel, dir): (&str, &str),
    old: Vec<u8>,
    new: Vec<u8>,
) -> (String, String) {
    let old = sha256_of(&work.write(rel, &old));
    pgdeploy_ok(&["apply", "-i", inventory, playbook]);
    for h in HOSTS {
        ssh(h, &format!("rm -f {dir}/done"));
    }
    (old, sha256_of(&work.write(rel, &new)))
}

/// Checks a run in which node2 failed at `label`: exit 1, the recap says
/// so, node1 and node3 hold `new` at `path` and finished, node2 still holds
/// `old`. Returns node2's recap lines.
fn only_node2_failed(
    (what, code, all): (&str, Option<i32>, &str),
    label: &str,
    path: &str,
    old: &str,
    new: &str,
) -> String {
    assert_eq!(code, Some(1), "{what}:\n{all}");
    let recap = recap_of(all, "node2");
    assert!(
        recap.contains(&format!("failed at `{label}`")),
        "{what}: the recap says where node2 failed:\n{all}"
    );
    println!("{what}, node2 in the recap:\n{recap}");
    let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
    for h in ["node1", "node3"] {
        assert_eq!(remote_sha256(h, path), new, "{what}: {h}");
        assert_eq!(ssh(h, &format!("cat {dir}/done")), "done\n", "{h} finished");
    }
    assert_eq!(
        remote_sha256("node2", path),
        old,
        "{what}: node2 keeps the old file whole"
    );
    recap
}

/// A re-run succeeds, node2 then holds `new` at `path` and no upload
/// temporary beside it.
fn rerun_converges(what: &str, inventory: &str, playbook: &str, path: &str, new: &str) {
    let again = pgdeploy(&["apply", "-i", inventory, playbook]);
    assert!(
        again.status.success(),
        "{what}: the re-run converges:\n{}",
        text(&again)
    );
    assert_eq!(remote_sha256("node2", path), new, "{what}");
    let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
    assert_eq!(temporaries("node2", dir), Vec::<String>::new(), "{what}");
}

/// The recap's lines about `host`.
fn recap_of(all: &str, host: &str) -> String {
    let recap = &all[all.find("RECAP").unwrap_or(0)..];
    recap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(host))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Shapes the machine's side of a host's link (uploads to it slow down to
/// `rate`); undone when dropped.
struct Slow(String);

impl Slow {
    fn link_to(host: &str, rate: &str) -> Slow {
        let dev = match lab_instance() {
            0 => format!("vb-{host}"),
            n => format!("vb-l{n}-{host}"),
        };
        let ok = Command::new("tc")
            .args(["qdisc", "replace", "dev", &dev, "root", "tbf", "rate", rate])
            .args(["burst", "64kb", "latency", "1s"])
            .status()
            .expect("tc");
        assert!(ok.success(), "tc on {dev}");
        Slow(dev)
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", &self.0, "root"])
            .status();
    }
}

/// How an upload's connection is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// SIGKILL to the session's sshd processes: the connection drops, the
    /// upload's shell sees its input end early.
    SshdOnly,
    /// SIGKILL to the sshd processes, sudo, the shell and its `cat` at once:
    /// nothing on the host gets to clean up.
    WholeSession,
}

const UPLOAD_TASKS: &str =
    "- name: the directory\n  file: {path: /opt/pgd-upload, state: directory}\n\
- name: a large upload\n  copy: {src: big.bin, dest: /opt/pgd-upload/big.bin, mode: \"0644\"}\n\
- name: the last step\n  copy: {dest: /opt/pgd-upload/done, content: \"done\\n\"}\n";

/// The SSH connection to node2 dropped during an 8 MB upload: the others
/// finish, node2 keeps its old file (no half-written one), temporaries are
/// gone after the re-run, which converges.
fn upload_cut_off(inventory: &str, work: &Workdir, cut: Cut) {
    let what = format!("upload cut off ({cut:?})");
    let playbook = work.playbook("upload", UPLOAD_TASKS);
    let (old, new) = old_then_new(
        inventory,
        work,
        &playbook,
        ("roles/upload/files/big.bin", "/opt/pgd-upload"),
        bytes(1 << 20, &format!("old {cut:?}")),
        bytes(8 << 20, &format!("new {cut:?}")),
    );
    let slow = Slow::link_to("node2", "16mbit");
    let run = LiveRun::start(&["apply", "-i", inventory, &playbook]);
    // The upload is under way: its temporary file on node2 is growing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let written = loop {
        let size = ssh(
            "node2",
            "for f in /opt/pgd-upload/.pgdeploy-*; do [ -f \"$f\" ] && stat -c %s \"$f\"; done; true",
        );
        if let Some(n) = size
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .max()
        {
            if n > 256 * 1024 {
                break n;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the upload never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let kill = match cut {
        Cut::SshdOnly => "sshd",
        Cut::WholeSession => "all",
    };
    // The process writing the temporary file, and its ancestors up to (not
    // including) sshd's listener. All are stopped before any is killed, so
    // none reacts to another's end.
    let killed = ssh(
        "node2",
        &format!(
            "writer=; for p in /proc/[0-9]*; do for fd in $p/fd/*; do case $(readlink $fd 2>/dev/null) in */.pgdeploy-*) writer=${{p#/proc/}};; esac; done; done; \
             [ -n \"$writer\" ] || {{ echo no writer >&2; exit 1; }}; \
             pids=; p=$writer; while [ -n \"$p\" ] && [ \"$(ps -o ppid= -p $p | tr -d ' ')\" != 1 ]; do \
               c=$(ps -o comm= -p $p); if [ {kill} = all ] || [ \"$c\" = sshd ]; then pids=\"$pids $p\"; fi; \
               p=$(ps -o ppid= -p $p | tr -d ' '); done; \
             ps -o pid=,comm=,args= -p \"$(echo $pids | tr ' ' ,)\"; kill -STOP $pids; kill -KILL $pids"
        ),
    );
    let (code, all) = run.finish(&what);
    drop(slow);
    println!(
        "{what}: killed on node2 with {written} of {} bytes in the temporary file:\n{killed}",
        8 << 20
    );
    only_node2_failed(
        (&what, code, &all),
        "upload / a large upload",
        "/opt/pgd-upload/big.bin",
        &old,
        &new,
    );
    let left = temporaries("node2", "/opt/pgd-upload");
    match cut {
        Cut::SshdOnly => assert!(left.is_empty(), "{what}: the upload cleaned up: {left:?}"),
        Cut::WholeSession => assert_eq!(
            left.len(),
            1,
            "{what}: a killed upload leaves its temporary"
        ),
    }
    println!("{what}: node2 keeps the old file; temporaries left before the re-run: {left:?}");
    rerun_converges(&what, inventory, &playbook, "/opt/pgd-upload/big.bin", &new);
    println!("{what}: the re-run converged, no temporary left");
}

/// Starts a process on `host` that holds dpkg's frontend lock (as apt
/// does: an fcntl lock) until its unit is stopped.
fn hold_apt_lock(host: &str) -> String {
    ssh(
        host,
        "systemd-run --unit pgd-aptlock --collect python3 -c \
         'import fcntl, time; f = open(\"/var/lib/dpkg/lock-frontend\", \"w\"); fcntl.lockf(f, fcntl.LOCK_EX); time.sleep(900)' >/dev/null 2>&1; \
         for i in $(seq 50); do pid=$(systemctl show -p MainPID --value pgd-aptlock); \
         grep -q \" $pid \" /proc/locks && { echo $pid; exit 0; }; sleep 0.1; done; exit 1",
    )
    .trim()
    .to_string()
}

fn release_apt_lock(host: &str) {
    ssh(host, "systemctl stop pgd-aptlock 2>/dev/null; true");
}

/// With `tree` removed from node1-3 and the apt lock held on node2, starts
/// an apply installing it that waits at most `timeout` s for the lock;
/// returns the holder's pid and the run.
fn apply_while_apt_locked(inventory: &str, playbook: &str, timeout: u32) -> (String, LiveRun) {
    for h in HOSTS {
        ssh(h, "dpkg --purge tree >/dev/null 2>&1; true");
    }
    let holder = hold_apt_lock("node2");
    let timeout = format!("apt_lock_timeout={timeout}");
    let run = LiveRun::start(&["apply", "-i", inventory, playbook, "-e", &timeout]);
    (holder, run)
}

const APT_TASKS: &str =
    "- name: a package\n  package: {name: tree, lock_timeout: \"{{ apt_lock_timeout }}\"}\n";

/// Another process holds the apt lock on node2: the run waits with a live
/// message naming the host, the lock, the process and the time waited, and
/// goes on when it is released.
fn apt_lock_waited_for(inventory: &str, work: &Workdir) {
    let playbook = work.playbook("apt", APT_TASKS);
    let (holder, run) = apply_while_apt_locked(inventory, &playbook, 120);
    let first = run.wait_for_line(Duration::from_secs(90), |l| {
        l.starts_with(
            "node2 | running | a package: waiting for the apt lock /var/lib/dpkg/lock-frontend",
        )
    });
    assert!(
        first.contains(&format!("held by process {holder} (python3)")),
        "{first}"
    );
    let later = run.wait_for_line(Duration::from_secs(30), |l| {
        l.starts_with("node2 | running") && l.contains("(python3), for 10s")
    });
    let mut run = run;
    assert!(run.still_running(), "the run waits for the lock");
    for h in ["node1", "node3"] {
        // The others are not held up.
        let deadline = Instant::now() + Duration::from_secs(90);
        while !ssh_output(h, "dpkg -s tree >/dev/null 2>&1")
            .status
            .success()
        {
            assert!(Instant::now() < deadline, "{h} installs tree meanwhile");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let released = Instant::now();
    release_apt_lock("node2");
    let (code, all) = run.finish("apt lock held, then released");
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("the apt lock was released after"), "{all}");
    println!(
        "apt lock held by python3 (pid {holder}) on node2: live messages\n  {first}\n  {later}\n  the run went on and ended {:.1}s after the release",
        released.elapsed().as_secs_f64()
    );
    assert!(ssh_output("node2", "dpkg -s tree >/dev/null 2>&1")
        .status
        .success());
}

/// The apt lock held past `lock_timeout`: the task fails on node2 naming
/// the lock and the process; the other hosts are done; a re-run converges.
fn apt_lock_held_past_timeout(inventory: &str, work: &Workdir) {
    let playbook = work.playbook("apt", APT_TASKS);
    let (holder, run) = apply_while_apt_locked(inventory, &playbook, 8);
    let (code, all) = run.finish("apt lock held past the timeout");
    release_apt_lock("node2");
    assert_eq!(code, Some(1), "{all}");
    let expected = format!(
        "the apt lock /var/lib/dpkg/lock-frontend is still held by process {holder} (python3) after waiting 8s (lock_timeout 8); giving up"
    );
    let recap = recap_of(&all, "node2");
    assert!(
        recap.contains("failed at `apt / a package`") && all.contains(&expected),
        "{all}"
    );
    for h in ["node1", "node3"] {
        assert!(
            ssh_output(h, "dpkg -s tree >/dev/null 2>&1")
                .status
                .success(),
            "{h}"
        );
    }
    println!("apt lock held past lock_timeout 8, node2 in the recap:\n{recap}");
    let again = pgdeploy(&[
        "apply",
        "-i",
        inventory,
        &playbook,
        "-e",
        "apt_lock_timeout=60",
    ]);
    assert!(
        again.status.success(),
        "the re-run converges:\n{}",
        text(&again)
    );
}

const DISK_TASKS: &str = "- name: the directory\n  file: {path: /opt/pgd-disk, state: directory}\n\
- name: a file larger than the free space\n  copy: {src: data.bin, dest: /opt/pgd-disk/data.bin}\n\
- name: the last step\n  copy: {dest: /opt/pgd-disk/done, content: \"done\\n\"}\n";

/// node2's destination is a 1 MiB file system: the 2 MiB file does not
/// fit. node2 fails naming ENOSPC, keeps the old file and no temporary; the
/// others finish; with room made, a re-run converges.
fn disk_full(inventory: &str, work: &Workdir) {
    let playbook = work.playbook("disk", DISK_TASKS);
    for h in HOSTS {
        ssh(h, "umount /opt/pgd-disk 2>/dev/null; rm -rf /opt/pgd-disk");
    }
    ssh(
        "node2",
        "mkdir -p /opt/pgd-disk && mount -t tmpfs -o size=1m pgd-disk /opt/pgd-disk",
    );
    let (old, new) = old_then_new(
        inventory,
        work,
        &playbook,
        ("roles/disk/files/data.bin", "/opt/pgd-disk"),
        bytes(300 << 10, "old disk"),
        bytes(2 << 20, "new disk"),
    );
    let run = LiveRun::start(&["apply", "-i", inventory, &playbook]);
    let (code, all) = run.finish("disk full");
    let recap = only_node2_failed(
        ("disk full", code, &all),
        "disk / a file larger than the free space",
        "/opt/pgd-disk/data.bin",
        &old,
        &new,
    );
    assert!(
        recap.contains("no space left on device (ENOSPC)")
            && recap.contains("/opt/pgd-disk/data.bin was not changed"),
        "{all}"
    );
    assert_eq!(temporaries("node2", "/opt/pgd-disk"), Vec::<String>::new());
    ssh("node2", "mount -o remount,size=8m /opt/pgd-disk");
    rerun_converges(
        "disk full",
        inventory,
        &playbook,
        "/opt/pgd-disk/data.bin",
        &new,
    );
    ssh("node2", "umount /opt/pgd-disk; rm -rf /opt/pgd-disk");
    println!("disk full: with room made, the re-run converged");
}
