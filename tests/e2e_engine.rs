//! End-to-end tests of the engine on the lab's real hosts (node5-7 of a
//! 7-host lab), one test per scenario.
//!
//! The scenarios share one lab, brought up by the first one that runs
//! (see `Suite` in tests/common); the lab stays up for the next file.
//! Names start `sNN_` because libtest runs them in name order: the site
//! playbook's plan on fresh hosts first (it changes nothing), phase 1 on
//! fresh hosts next, phase 2 (modules whose objects phase 1 makes) next,
//! then the scenarios that need phase 1 applied. Those ask the fixture for
//! it (`ensure_phase1`), so each also runs alone.

mod common;

use common::*;

const SCENARIOS: [&str; 13] = [
    "s01_site_plan_on_fresh_hosts_shows_known_after_apply",
    "s02_check_predicts_apply_exactly_on_fresh_hosts",
    "s03_check_predicts_apply_exactly_for_phase2",
    "s04_facts_of_a_lab_host",
    "s05_drift_is_planned_and_repaired",
    "s06_progress_bars_on_a_terminal",
    "s07_a_change_keeps_the_probes_it_cannot_affect",
    "s08_waits_are_not_probed_ahead_while_a_host_changes",
    "s09_slow_host_does_not_hold_up_others",
    "s10_unreachable_host_does_not_stop_others",
    "s11_bad_input_names_file_and_line",
    "s12_sshd_lockout_is_caught_by_a_new_connection",
    "s13_a_command_past_its_timeout_is_stopped_on_the_host",
];

static LAB: Suite<EngineLab> = Suite::new(&SCENARIOS, set_up, keep_lab::<EngineLab>);

struct EngineLab {
    inventory: String,
    /// Whether node5-6 hold what the phase 1 playbook makes.
    phase1: bool,
    /// Whether a scenario changed node5-7 since they were cleaned (s01
    /// wants fresh hosts).
    touched: bool,
}

fn set_up() -> EngineLab {
    lab_up(7);
    let inventory = lab_inventory().to_str().expect("utf8 path").to_string();
    clean_hosts();
    EngineLab {
        inventory,
        phase1: false,
        touched: false,
    }
}

/// Start from hosts that have not seen these fixtures.
fn clean_hosts() {
    for host in ["node5", "node6", "node7"] {
        ssh(
            host,
            "systemctl disable --now pgd-e2e 2>/dev/null; ufw --force disable >/dev/null 2>&1; \
             DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tree ufw >/dev/null 2>&1; \
             rm -rf /opt/pgd-e2e* /etc/pgd-e2e* /etc/systemd/system/pgd-e2e.service /etc/sysctl.d/90-pgd-e2e.conf /tmp/pgd-*; \
             userdel pgde2e 2>/dev/null; groupdel pgde2e 2>/dev/null; systemctl daemon-reload; true",
        );
    }
}

impl EngineLab {
    /// Phase 1 applied on node5-6 (by s01, or here for a scenario run
    /// without it).
    fn ensure_phase1(&mut self) {
        if !self.phase1 {
            pgdeploy_ok(&[
                "apply",
                "-i",
                &self.inventory,
                &fixture("engine/phase1.yaml"),
            ]);
            self.phase1 = true;
            self.touched = true;
        }
    }

    /// Fresh hosts for s01 (cleaned again if a scenario ran before it).
    fn ensure_fresh(&mut self) {
        if self.touched {
            clean_hosts();
            self.phase1 = false;
            self.touched = false;
        }
    }
}

scenarios_are_listed!();

/// `plan` of the whole site playbook on fresh hosts is a preview, not a
/// failure: the tasks whose probes read what an earlier pending change
/// makes (a file the `ufw` package brings, a user a package creates) are
/// "known after apply", counted in the summary, and `--detailed-exitcode`
/// gives 2. The hosts stay fresh (a plan changes nothing) for s02.
#[test]
fn s01_site_plan_on_fresh_hosts_shows_known_after_apply() {
    LAB.run(|lab| {
        lab.ensure_fresh();
        let dir = tempfile::tempdir().expect("tmp");
        let inventory = dir.path().join("site.yaml");
        let lab_vars = std::fs::read_to_string(&lab.inventory).expect("the lab's inventory");
        let vars: String = lab_vars
            .lines()
            .skip_while(|l| l.trim() != "vars:")
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .map(|l| format!("{l}\n"))
            .collect();
        let hosts: String = ["node5", "node6", "node7"]
            .iter()
            .map(|h| format!("    {h}: {{ansible_host: {}}}\n", address(h)))
            .collect();
        std::fs::write(
            &inventory,
            format!(
                "all:\n  vars:\n{vars}  hosts:\n{hosts}  children:\n    \
                 etcd: {{hosts: {{node5: {{}}, node6: {{}}, node7: {{}}}}}}\n    \
                 postgres: {{hosts: {{node5: {{}}, node6: {{}}}}}}\n    \
                 balancers: {{hosts: {{node5: {{}}, node6: {{}}}}}}\n    \
                 backup: {{hosts: {{node7: {{}}}}}}\n"
            ),
        )
        .expect("write the inventory");
        let inventory = inventory.to_str().expect("utf8");
        let started = std::time::Instant::now();
        let mut args = vec!["plan", "-i", inventory, "--detailed-exitcode"];
        let secrets = secret_args("e2e-Super-plan1", "e2e-Repl-plan1");
        args.extend(secrets.iter().map(String::as_str));
        let plan = pgdeploy(&args);
        println!(
            "site plan on fresh hosts: {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let out = text(&plan);
        assert_eq!(
            plan.status.code(),
            Some(2),
            "changes pending, no failure:\n{out}"
        );
        assert!(!out.contains("FAILED"), "a task failed:\n{out}");
        let marked: Vec<&str> = out.lines().filter(|l| l.starts_with("  ? ")).collect();
        assert!(
            marked
                .iter()
                .any(|l| l.contains("(known after apply: ") && l.contains("; depends on `")),
            "no task known after apply with its reason:\n{out}"
        );
        let summary = out
            .lines()
            .rfind(|l| l.starts_with("checked in "))
            .unwrap_or_else(|| panic!("no summary line:\n{out}"));
        assert!(
            summary.contains(&format!(", {} known after apply", marked.len())),
            "the summary counts every `?`: {summary}"
        );
    });
}

/// On fresh hosts, `--check` of phase 1 changes nothing and predicts
/// exactly what apply does; a second apply changes nothing; a registered
/// result reaches a later task and the notified handler ran.
#[test]
fn s02_check_predicts_apply_exactly_on_fresh_hosts() {
    LAB.run(|lab| {
        lab.ensure_fresh();
        lab.touched = true;
        check_predicts_apply_exactly(&lab.inventory, "engine/phase1.yaml");
        lab.phase1 = true;
        assert_eq!(
            ssh("node5", "cat /etc/pgd-e2e-registered").trim(),
            "node5",
            "a registered result reaches a later task"
        );
        assert!(
            ssh("node5", "test -f /opt/pgd-e2e-handler-ran && echo yes").contains("yes"),
            "the notified handler ran"
        );
    });
}

/// Phase 2 (a unit file, the ufw package: objects phase 1 makes): `--check`
/// predicts apply exactly; the service is active, ufw on and rejecting.
#[test]
fn s03_check_predicts_apply_exactly_for_phase2() {
    LAB.run(|lab| {
        lab.ensure_phase1();
        check_predicts_apply_exactly(&lab.inventory, "engine/phase2.yaml");
        assert_eq!(ssh("node6", "systemctl is-active pgd-e2e").trim(), "active");
        let ufw = ssh("node6", "ufw status verbose");
        assert!(
            ufw.contains("Status: active") && ufw.contains("Default: reject (incoming)"),
            "{ufw}"
        );
    });
}

/// `pgdeploy facts` reports the host's name, address and release.
#[test]
fn s04_facts_of_a_lab_host() {
    LAB.run(|lab| {
        let facts = json(&pgdeploy_ok(&["facts", "-i", &lab.inventory, "node5"]));
        assert_eq!(facts["hostname"], "node5", "{facts}");
        assert_eq!(facts["default_ipv4"], address("node5"), "{facts}");
        assert_eq!(facts["os_codename"], "bookworm", "{facts}");
    });
}

#[test]
fn s05_drift_is_planned_and_repaired() {
    LAB.run(|lab| {
        lab.ensure_phase1();
        drift_is_planned_and_repaired(&lab.inventory);
    });
}

#[test]
fn s06_progress_bars_on_a_terminal() {
    LAB.run(|lab| {
        lab.ensure_phase1();
        progress_bars_on_a_terminal(&lab.inventory);
    });
}

#[test]
fn s07_a_change_keeps_the_probes_it_cannot_affect() {
    LAB.run(|lab| {
        lab.touched = true;
        a_change_keeps_the_probes_it_cannot_affect(&lab.inventory);
    });
}

#[test]
fn s08_waits_are_not_probed_ahead_while_a_host_changes() {
    LAB.run(|lab| {
        lab.touched = true;
        waits_are_not_probed_ahead_while_a_host_changes(&lab.inventory);
    });
}

#[test]
fn s09_slow_host_does_not_hold_up_others() {
    LAB.run(|lab| {
        lab.touched = true;
        slow_host_does_not_hold_up_others(&lab.inventory);
    });
}

#[test]
fn s10_unreachable_host_does_not_stop_others() {
    LAB.run(|lab| {
        lab.touched = true;
        unreachable_host_does_not_stop_others();
    });
}

#[test]
fn s11_bad_input_names_file_and_line() {
    LAB.run(|lab| bad_input_names_file_and_line(&lab.inventory));
}

#[test]
fn s12_sshd_lockout_is_caught_by_a_new_connection() {
    LAB.run(|lab| {
        lab.touched = true;
        sshd_lockout_is_caught_by_a_new_connection(&lab.inventory);
    });
}

/// A task's `timeout:` (through sudo, as every task here): the task fails
/// after about its limit, naming the command and the limit; on the host
/// neither the command nor the process it started in the background runs
/// on, and the task after it did not run.
#[test]
fn s13_a_command_past_its_timeout_is_stopped_on_the_host() {
    LAB.run(|lab| {
        lab.touched = true;
        ssh("node7", "rm -f /tmp/pgd-timeout-*");
        let started = std::time::Instant::now();
        let out = pgdeploy(&[
            "apply",
            "-i",
            &lab.inventory,
            &fixture("engine/timeout.yaml"),
        ]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("`shell sleep 97 & sleep 98; echo finished > /tmp/pgd-timeout-finished` did not finish within 2s"),
            "{}",
            text(&out)
        );
        assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
        let left = ssh(
            "node7",
            "sleep 1; pgrep -af 'sleep 9[78]' || true; ls /tmp/pgd-timeout-* 2>/dev/null || true",
        );
        assert_eq!(left.trim(), "", "still running or written on node7");
        println!("timeout: the task failed {:.1}s after the run started", took.as_secs_f64());
    });
}

/// An sshd change that `sshd -t` accepts but that locks the deploy user
/// out: the reload keeps the run's connection, and `ssh_check` (a new
/// connection) fails the run on that host, naming it. Repaired as root.
fn sshd_lockout_is_caught_by_a_new_connection(inventory: &str) {
    let out = pgdeploy(&[
        "apply",
        "-i",
        inventory,
        &fixture("engine/sshd_lockout.yaml"),
        "--output",
        "json",
    ]);
    let repair = ssh_as_root(
        "node7",
        "rm -f /etc/ssh/sshd_config.d/40-pgd-e2e-lockout.conf && systemctl reload ssh",
    );
    assert!(repair.status.success(), "repair: {}", text(&repair));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json(&out);
    let results = report["hosts"][0]["results"].as_array().expect("results");
    let check = results
        .iter()
        .find(|r| r["task"] == "prove a new SSH login works")
        .unwrap_or_else(|| panic!("the check did not run: {report}"));
    assert_eq!(check["status"], "failed", "{check}");
    assert!(
        check["message"]
            .as_str()
            .is_some_and(|m| m.contains("a new SSH connection to node7 failed")),
        "{check}"
    );
    let reload = results
        .iter()
        .find(|r| r["task"] == "reload ssh")
        .expect("reload ran");
    assert_eq!(reload["status"], "changed", "{reload}");
    // sshd re-executes itself on reload: give it a moment to listen again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ssh_output("node7", "true").status.success() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(ssh("node7", "echo back").trim(), "back", "repaired");
}

/// `--check` changes nothing on the hosts and predicts exactly the changes
/// that `apply` then makes; a second apply changes nothing.
fn check_predicts_apply_exactly(inventory: &str, playbook: &str) {
    let playbook = fixture(playbook);
    let before: Vec<String> = ["node5", "node6"]
        .iter()
        .map(|h| host_fingerprint(h))
        .collect();
    let check = pgdeploy_ok(&[
        "apply", "--check", "-i", inventory, &playbook, "--output", "json",
    ]);
    let after: Vec<String> = ["node5", "node6"]
        .iter()
        .map(|h| host_fingerprint(h))
        .collect();
    assert_eq!(before, after, "--check changed a host");
    let predicted = changes(&json(&check));
    assert!(!predicted.is_empty(), "a fresh host needs changes");

    let apply = pgdeploy_ok(&["apply", "-i", inventory, &playbook, "--output", "json"]);
    let applied = changes(&json(&apply));
    assert_eq!(
        predicted, applied,
        "check predicted something else than apply did"
    );
    for result in json(&apply)["hosts"][0]["results"]
        .as_array()
        .expect("results")
    {
        if !result["handler"].as_bool().unwrap_or(false)
            && result["task"] != "read the hostname"
            && result["task"] != "ssh is listening"
        {
            assert_eq!(
                result["status"], "changed",
                "every module changes a fresh host: {result}"
            );
        }
    }

    let again = pgdeploy_ok(&["apply", "-i", inventory, &playbook]);
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        out.contains("No changes: the hosts match the playbook."),
        "second apply changed something:\n{}",
        text(&again)
    );
}

/// A file edit drops only the cached probe answers that read that file: the
/// twenty unrelated files are probed in the first round trip and not again,
/// while the task that edits the changed file probes it afresh (and so
/// keeps the new content, not a stale copy).
fn a_change_keeps_the_probes_it_cannot_affect(inventory: &str) {
    let playbook = fixture("engine/probe_reuse.yaml");
    let apply = |version: &str| {
        json(&pgdeploy_ok(&[
            "apply",
            "-i",
            inventory,
            &playbook,
            "-e",
            &format!("version={version}"),
            "--output",
            "json",
        ]))
    };
    apply("1");
    let report = apply("2");
    let host = &report["hosts"][0];
    let changed: Vec<&str> = host["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] == "changed")
        .filter_map(|r| r["task"].as_str())
        .collect();
    assert_eq!(
        changed,
        [
            "version line",
            "seen line (reads what the version line wrote)"
        ],
        "{report}"
    );
    // One batch held all 22 probes; the first edit dropped only its own
    // file's answers, so only the second edit went back to the host.
    assert_eq!(host["probe_round_trips"], 2, "{report}");
    assert_eq!(
        ssh("node5", "cat /etc/pgd-e2e-reuse.conf"),
        "version=2\nseen=2\n"
    );
    let again = apply("2");
    assert_eq!(changes(&again).len(), 0, "{again}");
    assert_eq!(again["hosts"][0]["probe_round_trips"], 1, "{again}");
}

/// A hand edit shows up in `plan` with its diff (nothing changed on the host),
/// `--detailed-exitcode` says 2, and `apply` puts it back.
fn drift_is_planned_and_repaired(inventory: &str) {
    let playbook = fixture("engine/phase1.yaml");
    ssh("node5", "echo 'hand edit' >> /etc/pgd-e2e-motd");
    let plan = pgdeploy(&["plan", "-i", inventory, &playbook, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(out.contains("~ file /etc/pgd-e2e-motd"), "{out}");
    assert!(
        out.contains("-hand edit"),
        "the plan shows the diff:\n{out}"
    );
    assert!(out.contains("1 host") || out.contains("to change"), "{out}");
    assert!(
        ssh("node5", "cat /etc/pgd-e2e-motd").contains("hand edit"),
        "plan changed the file"
    );
    pgdeploy_ok(&["apply", "-i", inventory, &playbook]);
    assert!(!ssh("node5", "cat /etc/pgd-e2e-motd").contains("hand edit"));
    let clean = pgdeploy(&["plan", "-i", inventory, &playbook, "--detailed-exitcode"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}

/// On a terminal (a pty from `script`, 40 rows by 120 columns), apply draws
/// one bar per host and ends each with its outcome; the changed task is
/// printed above the bars. The pty's bytes are replayed on a terminal
/// emulator (vt100) and the final screen is read row by row.
fn progress_bars_on_a_terminal(inventory: &str) {
    let playbook = fixture("engine/phase1.yaml");
    ssh("node5", "echo 'hand edit' >> /etc/pgd-e2e-motd");
    let command = format!(
        "stty rows 40 cols 120 && {} apply -i {inventory} {playbook}",
        env!("CARGO_BIN_EXE_pgdeploy")
    );
    let out = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .current_dir(root())
        .env("TERM", "xterm")
        .output()
        .expect("script runs");
    assert!(out.status.success(), "{}", text(&out));
    let mut terminal = vt100::Parser::new(40, 120, 0);
    terminal.process(&out.stdout);
    let rows: Vec<String> = terminal.screen().rows(0, 120).collect();
    let screen = rows.join("\n");
    let row = |start: &str| -> String {
        rows.iter()
            .map(|r| r.trim())
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row starting {start:?}:\n{screen}"))
            .to_string()
    };
    // node5: the template and the handler it notified; node6: nothing.
    let node5 = row("node5 [");
    assert!(
        node5.contains(" 17/17 ") && node5.ends_with("done: 2 changed"),
        "{node5:?}\n{screen}"
    );
    let node6 = row("node6 [");
    assert!(
        node6.contains(" 17/17 ") && node6.ends_with("done: 0 changed"),
        "{node6:?}\n{screen}"
    );
    row("node5 | changed | independent / template");
    assert!(!ssh("node5", "cat /etc/pgd-e2e-motd").contains("hand edit"));
}

/// A `wait_for` after changes is not probed ahead with the tasks between
/// them: its check (which logs the host's phase) never runs in phase 1.
/// At the start of a run nothing has changed yet, so the first batch may
/// take it along (the phase file does not exist then).
fn waits_are_not_probed_ahead_while_a_host_changes(inventory: &str) {
    ssh("node5", "rm -f /tmp/pgd-e2e-phase /tmp/pgd-e2e-wait-*");
    pgdeploy_ok(&["apply", "-i", inventory, &fixture("engine/wait_ahead.yaml")]);
    let checks = ssh("node5", "cat /tmp/pgd-e2e-wait-checks");
    let phases: Vec<&str> = checks.lines().collect();
    assert!(
        !phases.contains(&"1"),
        "probed ahead while changing: {phases:?}"
    );
    assert_eq!(
        phases.last(),
        Some(&"2"),
        "the wait ran at its turn: {phases:?}"
    );
}

/// node5 sleeps in one task; node6's tasks finish long before; node7 waits
/// (explicit `after:`) for node5.
fn slow_host_does_not_hold_up_others(inventory: &str) {
    pgdeploy_ok(&["apply", "-i", inventory, &fixture("engine/slow.yaml")]);
    let stamp = |host: &str, file: &str| -> f64 {
        ssh(host, &format!("cat {file}"))
            .trim()
            .parse()
            .expect("a timestamp")
    };
    let slow_done = stamp("node5", "/tmp/pgd-slow-done");
    let fast_done_elsewhere = stamp("node6", "/tmp/pgd-fast-done");
    let waiter_done = stamp("node7", "/tmp/pgd-waiter-done");
    assert!(
        fast_done_elsewhere < slow_done - 3.0,
        "node6 waited for node5: {fast_done_elsewhere} vs {slow_done}"
    );
    assert!(
        waiter_done >= slow_done,
        "node7 did not wait for node5: {waiter_done} vs {slow_done}"
    );
}

/// A host nobody answers for is reported unreachable, the others are done,
/// and the exit code is 1.
fn unreachable_host_does_not_stop_others() {
    let dir = tempfile::tempdir().expect("tmp");
    let inventory = dir.path().join("inv.yaml");
    let lab = std::fs::read_to_string(lab_inventory()).expect("lab inventory");
    let with_ghost = lab.replacen(
        "  hosts:\n",
        &format!("  hosts:\n    ghost: {{ansible_host: {}.99}}\n", lab_net()),
        1,
    );
    std::fs::write(&inventory, with_ghost).expect("write");
    let playbook = dir.path().join("p.yaml");
    std::fs::write(&playbook, "- hosts: ghost:node6\n  tasks:\n    - copy: {dest: /tmp/pgd-reached, content: \"yes\\n\"}\n").expect("write");
    let out = pgdeploy(&[
        "apply",
        "-i",
        inventory.to_str().expect("utf8"),
        playbook.to_str().expect("utf8"),
        "--connect-timeout",
        "3",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["recap"]["ghost"]["unreachable"], true, "{report}");
    assert_eq!(report["recap"]["node6"]["changed"], 1, "{report}");
    assert_eq!(ssh("node6", "cat /tmp/pgd-reached").trim(), "yes");
}

/// Broken input: exit 2, each error names file and line, nothing applied.
fn bad_input_names_file_and_line(inventory: &str) {
    let out = pgdeploy(&["validate", "-i", inventory, &fixture("engine/broken.yaml")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.yaml:4:7: unknown module `pakage` (did you mean `package`?)"),
        "{err}"
    );
    assert!(err.contains("broken.yaml:6:"), "{err}");
    assert!(err.contains("did you mean `content`"), "{err}");
    assert!(err.contains("no_such_var"), "{err}");

    let apply = pgdeploy(&["apply", "-i", inventory, &fixture("engine/broken.yaml")]);
    assert_eq!(apply.status.code(), Some(2));
    assert!(text(&apply).contains("nothing was applied"));

    let cycle = pgdeploy(&["validate", "-i", inventory, &fixture("engine/cycle.yaml")]);
    assert_eq!(cycle.status.code(), Some(2), "{}", text(&cycle));
    let err = String::from_utf8_lossy(&cycle.stderr);
    assert!(
        err.contains("cycle")
            && err.contains("node5: fast / stamp")
            && err.contains("node6: waiter / stamp after node5"),
        "{err}"
    );
}
