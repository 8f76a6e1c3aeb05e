//! Authentication without a key file: ssh-agent, then ~/.ssh default keys.
//! Its own test binary because it changes process-wide environment
//! variables (SSH_AUTH_SOCK, HOME); the steps run in one test, in order.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Sshd;
use pgdeploy_transport::{Session, TransportError};

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_then_default_key_files() {
    require_sshd!();
    if Command::new("ssh-agent")
        .arg("-h")
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("!!! skipping agent test: ssh-agent not installed");
        return;
    }
    let sshd = Sshd::start();
    let opts = sshd.trusting_options();
    let mut target = sshd.target();
    target.key_file = None;
    let fake_home = sshd.path("home");
    std::fs::create_dir_all(fake_home.join(".ssh")).expect("home");
    // SAFETY (edition 2021: safe fn): single test in this binary, set before
    // any other thread of ours reads the environment.
    std::env::set_var("HOME", &fake_home);
    std::env::remove_var("SSH_AUTH_SOCK");

    // 1. No agent, no default keys: a clear Auth error.
    let err = Session::connect(&target, &opts)
        .await
        .expect_err("no credentials");
    match &err {
        TransportError::Auth { tried, .. } => assert!(tried.contains("no key"), "{err}"),
        other => panic!("expected Auth, got {other:?}"),
    }

    // 2. ssh-agent holding the authorized key.
    let sock = sshd.path("agent.sock");
    let agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    common::run(
        Command::new("ssh-add")
            .arg(&sshd.client_key)
            .env("SSH_AUTH_SOCK", &sock),
    );
    std::env::set_var("SSH_AUTH_SOCK", &sock);
    let s = Session::connect(&target, &opts).await.expect("agent auth");
    assert_eq!(
        s.exec("echo agent", false, None)
            .await
            .expect("exec")
            .stdout_str(),
        "agent\n"
    );
    s.close().await.expect("close");
    drop(agent);

    // 3. Agent gone (stale socket), key in ~/.ssh/id_ed25519.
    std::fs::copy(&sshd.client_key, fake_home.join(".ssh/id_ed25519")).expect("copy key");
    let s = Session::connect(&target, &opts)
        .await
        .expect("default key file auth");
    assert_eq!(
        s.exec("echo file", false, None)
            .await
            .expect("exec")
            .stdout_str(),
        "file\n"
    );
}
