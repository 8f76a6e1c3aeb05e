//! The bad-input corpus: every case in tests/fixtures/bad/ is a broken
//! inventory, playbook, role, template or command line. `pgdeploy validate`
//! and `pgdeploy apply` must both exit 2, print the case's expected error
//! (file:line:column and what is wrong) and "nothing was applied", and
//! contact no host.
//!
//! A case is a folder laid over `_base/` (a good inventory, playbook and
//! role): its files replace or add to the base ones; `expect.txt` holds the
//! lines stderr must contain; `args.txt` extra arguments, one per line.
//! The inventory's hosts are loopback addresses on the port of a listener
//! this test opens; it records every connection, so "no host contacted" is
//! checked, and a control run with the good base proves the listener sees
//! pgdeploy when it does connect.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Copies `from` into `to`, replacing `@PORT@` with `port` in every file.
fn lay_over(from: &Path, to: &Path, port: u16) {
    for entry in fs::read_dir(from).expect("read case dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            fs::create_dir_all(&target).expect("mkdir");
            lay_over(&entry.path(), &target, port);
        } else {
            let bytes = fs::read(entry.path()).expect("read fixture");
            let text = String::from_utf8_lossy(&bytes).replace("@PORT@", &port.to_string());
            fs::write(&target, text).expect("write fixture");
        }
    }
}

/// A listener on every loopback address that counts connections.
fn listener() -> (u16, Arc<AtomicUsize>) {
    let socket = TcpListener::bind("0.0.0.0:0").expect("bind the listener");
    let port = socket.local_addr().expect("local addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in socket.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            if let Ok(stream) = stream {
                eprintln!("listener: connection from {:?}", stream.peer_addr());
                drop(stream);
            }
        }
    });
    (port, count)
}

/// Runs `pgdeploy COMMAND -i inventory.yaml playbook.yaml ARGS` in `dir`.
fn run(dir: &Path, command: &str, args: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgdeploy"));
    cmd.arg(command)
        .args(["-i", "inventory.yaml", "playbook.yaml"])
        .args(args)
        .current_dir(dir);
    if command == "apply" {
        cmd.args(["--connect-timeout", "3"]);
    }
    cmd.output().expect("pgdeploy runs")
}

/// Builds the case's folder (base + case) in a fresh temporary directory.
fn materialize(corpus: &Path, case: &Path, port: u16) -> (tempfile::TempDir, Vec<String>) {
    let tmp = tempfile::tempdir().expect("tmp");
    lay_over(&corpus.join("_base"), tmp.path(), port);
    lay_over(case, tmp.path(), port);
    let args = fs::read_to_string(tmp.path().join("args.txt"))
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default();
    (tmp, args)
}

#[test]
fn every_bad_input_is_refused_with_its_error_and_no_host_is_contacted() {
    let corpus = common::root().join("tests/fixtures/bad");
    let (port, connections) = listener();

    // Control: the base is good, and an apply of it does reach the listener.
    let (base, _) = materialize(&corpus, &corpus.join("_base"), port);
    let out = run(base.path(), "validate", &[]);
    assert!(
        out.status.success(),
        "base validates:\n{}",
        common::text(&out)
    );
    let out = run(base.path(), "apply", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    let deadline = Instant::now() + Duration::from_secs(5);
    while connections.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after_control = connections.load(Ordering::SeqCst);
    assert!(
        after_control > 0,
        "the control apply must reach the listener, or the check below proves nothing"
    );
    println!("control: apply of the good base made {after_control} connection(s) to the listener");

    let mut cases: Vec<PathBuf> = fs::read_dir(&corpus)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.ends_with("_base"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        let expected = fs::read_to_string(case.join("expect.txt"))
            .unwrap_or_else(|_| panic!("{name}: expect.txt is missing"))
            .replace("@PORT@", &port.to_string());
        assert!(!expected.trim().is_empty(), "{name}: expect.txt is empty");
        let (dir, args) = materialize(&corpus, case, port);
        for command in ["validate", "apply"] {
            let before = connections.load(Ordering::SeqCst);
            let out = run(dir.path(), command, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let mut problems = Vec::new();
            if out.status.code() != Some(2) {
                problems.push(format!("exit code {:?}, not 2", out.status.code()));
            }
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                if !stderr.contains(line) {
                    problems.push(format!("missing `{line}`"));
                }
            }
            if !stderr.contains("nothing was applied") {
                problems.push("no `nothing was applied`".into());
            }
            if connections.load(Ordering::SeqCst) != before {
                problems.push("a host was contacted".into());
            }
            println!(
                "{:<40} {command:<8} {}",
                name,
                if problems.is_empty() { "ok" } else { "FAILED" }
            );
            if !problems.is_empty() {
                failures.push(format!(
                    "{name} ({command}): {}\n--- stderr:\n{stderr}",
                    problems.join("; ")
                ));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    if connections.load(Ordering::SeqCst) != after_control {
        failures.push("the listener saw connections during the corpus".into());
    }
    println!(
        "bad-input corpus: {} cases, each refused by validate and apply with exit 2; \
         listener connections during the corpus: {}",
        cases.len(),
        connections.load(Ordering::SeqCst) - after_control
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        cases.len() >= 40,
        "the corpus has only {} cases",
        cases.len()
    );
}
