//! End-to-end test of `pgdeploy report` and `pgdeploy status --watch` on
//! fresh lab hosts: deploy the stack (apply records its results), make sure
//! a backup exists, render the report in headless Chromium and check what it
//! shows; watch the status over one kept connection per host through a
//! crash of the leader's host and its return; the report shows the new
//! leader.
//!
//! One test per scenario; they share one 4-host lab and one fresh deploy,
//! made by the first scenario that runs (see `Suite` in tests/common),
//! which keeps the apply state file it wrote. Names start `sNN_` because
//! libtest runs them in name order: the reports of a healthy cluster
//! before the crash. The crash, the report during it and the host's return
//! are one scenario: they follow one running `status --watch`. The last
//! one to finish takes the lab down.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SUPERUSER_PASSWORD: &str = "e2e-Super-7f3kq9";
const REPLICATION_PASSWORD: &str = "e2e-Repl-2m8xv4";
const MEMBERS: [&str; 3] = ["node1", "node2", "node3"];

fn work_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgdeploy-e2e-report-{}", lab_instance()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

fn inventory_arg() -> String {
    lab_inventory().to_string_lossy().into_owned()
}

/// Headless Chromium on a local file, with a fresh profile and nothing that
/// talks to the network.
fn chromium(dir: &Path, file: &Path, action: &[&str]) -> Output {
    let profile = tempfile::tempdir_in(dir).expect("profile dir");
    Command::new("timeout")
        .arg("90")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(action)
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("chromium runs (scripts/setup installs it)")
}

/// Generates the report into `dir/name.html` and returns the DOM Chromium
/// renders from it.
fn rendered_report(dir: &Path, name: &str) -> String {
    let file = dir.join(format!("{name}.html"));
    let started = Instant::now();
    let out = pgdeploy(&[
        "report",
        "-i",
        &inventory_arg(),
        "-o",
        &file.to_string_lossy(),
    ]);
    assert!(out.status.success(), "report failed:\n{}", text(&out));
    println!(
        "report {name}: generated in {:.2}s: {}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let html = std::fs::read_to_string(&file).expect("report written");
    for external in ["<script", "<link", "src=", "href=", "@import", "url(http"] {
        assert!(!html.contains(external), "{external} in the page");
    }
    let started = Instant::now();
    let dom = chromium(dir, &file, &["--dump-dom"]);
    assert!(dom.status.success(), "chromium --dump-dom:\n{}", text(&dom));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let png = dir.join(format!("{name}.png"));
    let shot = chromium(dir, &file, &[&format!("--screenshot={}", png.display())]);
    assert!(
        shot.status.success(),
        "chromium --screenshot:\n{}",
        text(&shot)
    );
    let png_size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    println!(
        "report {name}: rendered by chromium in {:.2}s (DOM {} bytes, screenshot {} bytes at {})",
        started.elapsed().as_secs_f64(),
        dom.len(),
        png_size,
        png.display()
    );
    assert!(png_size > 20_000, "the screenshot is nearly empty");
    assert!(
        dom.contains("<svg id=\"topology\""),
        "no topology in the DOM"
    );
    dom
}

/// The `<tr ...>` row of the rendered DOM that starts with `opening`.
fn row<'a>(dom: &'a str, opening: &str) -> &'a str {
    let start = dom
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening} in the report"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// Checks the report shows `leader` leading and streaming to the others,
/// with the replication arrows, and the VIP on `vip_holder`.
fn assert_report_shows(dom: &str, leader: &str, replicas: &[&str], vip_holder: &str) {
    assert!(
        dom.contains(&format!("<strong id=\"leader\">{leader}</strong>")),
        "the report does not name {leader} the leader"
    );
    assert!(dom.contains(&format!(
        "<tr class=\"member leader\" data-member=\"{leader}\">"
    )));
    assert!(dom.contains(&format!("<g class=\"host leader\" data-host=\"{leader}\">")));
    assert_eq!(dom.matches("class=\"host leader\"").count(), 1);
    for replica in replicas {
        let member = row(
            dom,
            &format!("<tr class=\"member replica\" data-member=\"{replica}\">"),
        );
        assert!(member.contains("<td>streaming</td>"), "{member}");
        assert!(
            dom.contains(&format!("streams to {replica} · lag ")),
            "no replication arrow to {replica}"
        );
    }
    assert!(
        dom.contains(&format!("<strong id=\"vip-holders\">{vip_holder}</strong>")),
        "the report does not show the VIP on {vip_holder}"
    );
}

/// The balancers (among `candidates`) that hold the VIP, as `ip addr` says.
fn vip_holders(candidates: &[&str]) -> Vec<String> {
    candidates
        .iter()
        .filter(|h| {
            let out = ssh_output(h, "ip -o -4 addr show");
            String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", lab_vip()))
        })
        .map(|h| h.to_string())
        .collect()
}

/// Waits for the start of the next whole second (the lab hosts share the
/// machine's clock) and returns it in Unix seconds: logins before the call
/// are stamped before it.
fn next_second() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    let next = now.as_secs() + 1;
    std::thread::sleep(Duration::from_secs(next) - now);
    next
}

/// SSH logins of the admin user that `host`'s sshd accepted between two
/// times (Unix seconds).
fn ssh_logins(host: &str, since: u64, until: u64) -> usize {
    ssh(
        host,
        &format!(
            "journalctl -u ssh --no-pager --since @{since} --until @{until} | grep -c 'Accepted publickey for admin ' || true"
        ),
    )
    .trim()
    .parse()
    .expect("a count")
}

/// A `status --watch` process, killed if the test fails before it ends.
struct Watch(std::process::Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The frames of plain `status --watch` output.
fn frames(output: &str) -> Vec<String> {
    output
        .split("refreshed ")
        .skip(1)
        .map(|f| format!("refreshed {f}"))
        .collect()
}

/// The leader a status frame shows, if any.
fn frame_leader(frame: &str) -> Option<String> {
    frame
        .lines()
        .find(|l| l.contains("| Leader "))
        .and_then(|l| l.split('|').nth(1))
        .map(|s| s.trim().to_string())
}

const SCENARIOS: [&str; 5] = [
    "s01_apply_records_each_hosts_results_without_secrets",
    "s02_report_shows_leader_replicas_vip_results_and_backups",
    "s03_status_watch_keeps_one_connection_per_host",
    "s04_status_watch_redraws_on_a_terminal",
    "s05_watch_and_report_follow_a_leader_crash_and_return",
];

static LAB: Suite<ReportLab> = Suite::new(&SCENARIOS, set_up, lab_down::<ReportLab>);

struct ReportLab {
    /// Where reports, screenshots and the watch's log go.
    dir: PathBuf,
    /// The apply state file as the fresh deploy left it.
    state: String,
    /// The labels of the backups (s02 makes sure one exists).
    backups: Option<Vec<String>>,
}

fn set_up() -> ReportLab {
    let dir = work_dir();
    pgdeploy_ok(&["lab", "down"]);
    let started = Instant::now();
    lab_up(4);
    println!("lab up: {:.1}s", started.elapsed().as_secs_f64());
    let state_file = lab_inventory().with_file_name("lab.last-apply.json");
    let _ = std::fs::remove_file(&state_file);
    fresh_deploy("fresh deploy", || {
        let mut args = vec!["apply".to_string(), "-i".into(), inventory_arg()];
        args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        pgdeploy(&refs)
    });
    let state = std::fs::read_to_string(&state_file).expect("apply state written");
    ReportLab {
        dir,
        state,
        backups: None,
    }
}

impl ReportLab {
    /// The labels of the backups: the deploy takes a full one; take one if not.
    fn backups(&mut self) -> Vec<String> {
        self.backups.get_or_insert_with(backup_labels).clone()
    }
}

fn backup_labels() -> Vec<String> {
    let info = ssh(
        "node4",
        "runuser -u postgres -- pgbackrest --stanza=lab info --output=json",
    );
    let info: serde_json::Value = serde_json::from_str(&info).expect("pgbackrest JSON");
    let mut labels: Vec<String> = info[0]["backup"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["label"].as_str().map(String::from))
        .collect();
    if labels.is_empty() {
        ssh(
            "node4",
            "runuser -u postgres -- pgbackrest --stanza=lab --type=full backup",
        );
        let info = ssh(
            "node4",
            "runuser -u postgres -- pgbackrest --stanza=lab info",
        );
        labels.push(
            info.lines()
                .find_map(|l| l.trim().strip_prefix("full backup: "))
                .expect("a full backup")
                .to_string(),
        );
    }
    labels
}

/// The leader and the two replicas.
fn leader_and_replicas() -> (String, Vec<&'static str>) {
    let leader = patroni_leader("node1");
    let replicas = MEMBERS.into_iter().filter(|m| *m != leader).collect();
    (leader, replicas)
}

scenarios_are_listed!();

/// A fresh deploy records each host's results beside the inventory
/// (nothing failed, something changed on each), without secrets.
#[test]
fn s01_apply_records_each_hosts_results_without_secrets() {
    LAB.run(|lab| {
        for secret in [SUPERUSER_PASSWORD, REPLICATION_PASSWORD] {
            assert!(!lab.state.contains(secret), "a secret in the state file");
        }
        let state: serde_json::Value = serde_json::from_str(&lab.state).expect("state JSON");
        for host in ["node1", "node2", "node3", "node4"] {
            let h = &state["hosts"][host];
            assert_eq!(h["failed"], 0, "{host}: {h}");
            assert!(h["changed"].as_u64().unwrap_or(0) > 0, "{host}: {h}");
        }
    });
}

/// The report, rendered by Chromium: leader, replicas, VIP holder, each
/// host's apply result, every backup, and a healthy verdict.
#[test]
fn s02_report_shows_leader_replicas_vip_results_and_backups() {
    LAB.run(|lab| {
        let labels = lab.backups();
        let (leader, replicas) = leader_and_replicas();
        let holders = vip_holders(&MEMBERS);
        assert_eq!(holders.len(), 1, "{holders:?}");
        let dom = rendered_report(&lab.dir, "before");
        assert_report_shows(&dom, &leader, &replicas, &holders[0]);
        for host in ["node1", "node2", "node3", "node4"] {
            let applied = row(&dom, &format!("<tr data-host=\"{host}\">"));
            assert!(
                applied.contains("<td class=\"result\">ok</td><td><details><summary>"),
                "{applied}"
            );
        }
        for label in &labels {
            assert!(
                dom.contains(&format!("<tr class=\"backup\"><td>{label}</td>")),
                "backup {label} not in the report"
            );
        }
        assert!(dom.contains("id=\"verdict\" class=\"verdict healthy\""));
    });
}

/// `status --watch` refreshes 4 times in plain output (no escape
/// sequences, each frame numbered and showing the leader) over one SSH
/// login per host.
#[test]
fn s03_status_watch_keeps_one_connection_per_host() {
    LAB.run(|_| {
        let (leader, _) = leader_and_replicas();
        let since = next_second();
        let started = Instant::now();
        let out = pgdeploy_ok(&[
            "status",
            "-i",
            &inventory_arg(),
            "--watch",
            "--interval",
            "1",
            "--count",
            "4",
        ]);
        let watched = String::from_utf8_lossy(&out.stdout).into_owned();
        // The counting login itself comes a second after `until`.
        let until = next_second();
        std::thread::sleep(Duration::from_millis(1100));
        let logins = ssh_logins(&leader, since, until);
        let list = frames(&watched);
        assert_eq!(list.len(), 4, "{watched}");
        assert!(
            !watched.contains('\x1b'),
            "escape sequences in plain output"
        );
        for (i, f) in list.iter().enumerate() {
            assert!(f.starts_with("refreshed 20"), "{f}");
            assert!(f.contains(&format!("(#{} of 4, took ", i + 1)), "{f}");
            assert_eq!(frame_leader(f).as_deref(), Some(leader.as_str()), "{f}");
            println!("watch refresh: {}", f.lines().next().unwrap_or_default());
        }
        println!(
            "watch: 4 refreshes in {:.1}s; sshd logins on {leader} meanwhile: {logins}",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(logins, 1, "the watch logged in {logins} times, not once");
    });
}

/// On a terminal (script(1) gives it one) each refresh redraws the screen
/// instead of scrolling.
#[test]
fn s04_status_watch_redraws_on_a_terminal() {
    LAB.run(|_| {
        let on_tty = Command::new("script")
            .args(["-qec"])
            .arg(format!(
                "{} status -i {} --watch --interval 1 --count 2",
                env!("CARGO_BIN_EXE_pgdeploy"),
                inventory_arg()
            ))
            .arg("/dev/null")
            .current_dir(root())
            .output()
            .expect("script runs");
        let screen = String::from_utf8_lossy(&on_tty.stdout).into_owned();
        assert!(on_tty.status.success(), "{}", text(&on_tty));
        assert_eq!(
            screen.matches("\x1b[H\x1b[2Jrefreshed ").count(),
            2,
            "{screen:?}"
        );
    });
}

/// A hard crash of the leader's host while `status --watch` runs: the watch
/// shows the host unreachable, then the new leader; the regenerated report
/// shows the new leader, the crashed host unreachable, the VIP where
/// keepalived put it and a degraded verdict; the host boots again and the
/// same watch shows it back as a streaming replica; Ctrl-C ends the watch
/// with 130.
#[test]
fn s05_watch_and_report_follow_a_leader_crash_and_return() {
    LAB.run(|lab| {
        let dir = lab.dir.clone();
        let (leader, replicas) = leader_and_replicas();
        // 5. A hard crash of the leader's host while status --watch runs: the watch shows the host
        //    unreachable and then the new leader.
        let watch_log = dir.join("watch.txt");
        let mut watch = Watch(
            Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
                .args([
                    "status",
                    "-i",
                    &inventory_arg(),
                    "--watch",
                    "--interval",
                    "2",
                ])
                .current_dir(root())
                .stdout(Stdio::from(
                    std::fs::File::create(&watch_log).expect("watch log"),
                ))
                .stderr(Stdio::inherit())
                .spawn()
                .expect("watch starts"),
        );
        let read_frames = || frames(&std::fs::read_to_string(&watch_log).unwrap_or_default());
        let deadline = Instant::now() + Duration::from_secs(30);
        while read_frames().len() < 2 {
            assert!(Instant::now() < deadline, "the watch shows no refreshes");
            std::thread::sleep(Duration::from_millis(200));
        }
        pgdeploy_ok(&["lab", "kill", &leader]);
        let crashed = Instant::now();
        let survivors: Vec<&str> = replicas.clone();
        let mut seen_down = None;
        let (new_leader, seen_new) = loop {
            let list = read_frames();
            let after: Vec<&String> = list.iter().skip(2).collect();
            if seen_down.is_none()
                && after
                    .iter()
                    .any(|f| f.contains(&format!("down:    {leader} unreachable")))
            {
                seen_down = Some(crashed.elapsed());
            }
            if let Some(new) = after
                .iter()
                .filter_map(|f| frame_leader(f))
                .find(|l| *l != leader)
            {
                break (new, crashed.elapsed());
            }
            assert!(
                crashed.elapsed() < Duration::from_secs(120),
                "the watch showed no new leader within 120 s:\n{}",
                list.last().cloned().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        println!(
            "watch through the crash of {leader}: {leader} shown unreachable at {:.1}s, new leader {new_leader} at {:.1}s after the crash",
            seen_down.map_or(f64::NAN, |d| d.as_secs_f64()),
            seen_new.as_secs_f64()
        );
        assert!(
            seen_down.is_some(),
            "no refresh showed {leader} unreachable before the new leader"
        );
        assert!(survivors.contains(&new_leader.as_str()));
        assert_eq!(patroni_leader(survivors[0]), new_leader);

        // 6. The regenerated report (the watch keeps running) shows the new leader, the crashed host
        //    unreachable, and the VIP where keepalived put it.
        let streaming = Instant::now();
        let other: Vec<&str> = survivors
            .iter()
            .copied()
            .filter(|s| *s != new_leader)
            .collect();
        let dom = loop {
            // The remaining replica re-attaches to the new leader within a few seconds.
            let dom = rendered_report(&dir, "after");
            let attached = other.iter().all(|r| {
                dom.contains(&format!(
                    "<tr class=\"member replica\" data-member=\"{r}\">"
                )) && row(&dom, &format!("data-member=\"{r}\"")).contains("<td>streaming</td>")
            });
            if attached || streaming.elapsed() > Duration::from_secs(60) {
                break dom;
            }
            std::thread::sleep(Duration::from_secs(2));
        };
        let holders = vip_holders(&survivors);
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert_report_shows(&dom, &new_leader, &other, &holders[0]);
        assert!(dom.contains(&format!(
            "<td>SSH</td><td>{leader}</td><td class=\"bad\">unreachable: "
        )));
        assert!(dom.contains("id=\"verdict\" class=\"verdict degraded\""));

        // 7. The crashed host boots again: the same watch shows it back, as a streaming replica.
        pgdeploy_ok(&["lab", "start", &leader]);
        let restarted = Instant::now();
        let back = |f: &String| {
            !f.contains(&format!("down:    {leader} unreachable"))
                && f.lines().any(|l| {
                    l.starts_with(&format!("| {leader} "))
                        && l.contains("| Replica ")
                        && l.contains("| streaming ")
                })
        };
        loop {
            let list = read_frames();
            if list.last().is_some_and(back) {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(150),
                "the watch did not show {leader} back within 150 s:\n{}",
                list.last().cloned().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        println!(
            "watch: {leader} back as a streaming replica {:.1}s after its host started",
            restarted.elapsed().as_secs_f64()
        );

        // Ctrl-C ends the watch with 130.
        let interrupted = Instant::now();
        let kill = Command::new("kill")
            .args(["-INT", &watch.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success());
        let status = watch.0.wait().expect("watch ends");
        println!(
            "watch: {} refreshes in all; ended {:.2}s after Ctrl-C with {status}",
            read_frames().len(),
            interrupted.elapsed().as_secs_f64()
        );
        assert_eq!(status.code(), Some(130), "Ctrl-C ends the watch with 130");

    });
}
