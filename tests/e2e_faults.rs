//! Faults in the middle of a run on the lab's real hosts, one test,
//! scenarios in order: a host killed during an apply, a host isolated
//! during an apply. Each run is started in the background, broken during
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

    host_killed(inventory);
    host_isolated(inventory);

    lab(&["down"]);
}

/// The others finish, the recap names the host and the task, exit 1; after
/// `lab start` a re-run converges.
fn host_killed(inventory: &str) {
    reset(&HOSTS);
    let started = Instant::now();
    let child = spawn_apply(inventory);
    wait_for_slow_step();
    lab(&["kill", "node2"]);
    let out = finish(child, started, "host killed");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for h in ["node1", "node3"] {
        assert_eq!(
            ssh(h, "cat /opt/pgd-fault/done"),
            "done\n",
            "{h} finished:\n{all}"
        );
    }
    let recap = &all[all.find("RECAP").unwrap_or(0)..];
    let node2 = recap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("node2"))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        node2.contains("a slow step") || node2.contains("unreachable: "),
        "the recap says where node2 failed:\n{recap}"
    );
    println!("host killed, recap:\n{recap}");
    lab(&["start", "node2"]);
    let again = pgdeploy(&["apply", "-i", inventory, &fixture("faults/slow.yaml")]);
    assert!(
        again.status.success(),
        "the re-run converges:\n{}",
        text(&again)
    );
    assert_eq!(ssh("node2", "cat /opt/pgd-fault/done"), "done\n");
}

/// Timeouts, no hang: the isolated host is reported, the others finish.
fn host_isolated(inventory: &str) {
    reset(&HOSTS);
    let started = Instant::now();
    let child = spawn_apply(inventory);
    wait_for_slow_step();
    lab(&["isolate", "node3"]);
    let out = finish(child, started, "host isolated");
    lab(&["heal", "node3"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for h in ["node1", "node2"] {
        assert_eq!(
            ssh(h, "cat /opt/pgd-fault/done"),
            "done\n",
            "{h} finished:\n{all}"
        );
    }
    let recap = &all[all.find("RECAP").unwrap_or(0)..];
    assert!(recap.contains("node3"), "{recap}");
    println!("host isolated, recap:\n{recap}");
    let again = pgdeploy(&["apply", "-i", inventory, &fixture("faults/slow.yaml")]);
    assert!(
        again.status.success(),
        "the re-run converges:\n{}",
        text(&again)
    );
}
