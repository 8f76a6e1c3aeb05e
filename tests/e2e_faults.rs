//! Faults in the middle of a run on the lab's real hosts, one test,
//! scenarios in order: a host killed during an apply, a host isolated
//! during an apply, Ctrl-C during an apply. Each run is started in the background, broken during
//! its 12 s slow step, and must end on its own with the other hosts
//! finished, exit 1 and a recap naming the broken host; a re-run after the
//! host is back converges. The lab is left down.

mod common;

use std::process::{Child, Command, Output, Stdio};
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

#[test]
fn faults_mid_run() {
    require_lab_prerequisites();
    lab_up(4);
    let inventory = lab_inventory();
    let inventory = inventory.to_str().expect("utf8 path");

    fault_mid_run(
        inventory,
        "host killed",
        "node2",
        &["kill", "node2"],
        &["start", "node2"],
    );
    fault_mid_run(
        inventory,
        "host isolated",
        "node3",
        &["isolate", "node3"],
        &["heal", "node3"],
    );
    interrupted(inventory);

    lab(&["down"]);
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
