//! Test harness: a private sshd on 127.0.0.1, with its own host key and an
//! authorized ed25519 client key, all in a temporary directory.

#![allow(dead_code)]

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgdeploy_transport::{ConnectOptions, Target};

pub const SSHD: &str = "/usr/sbin/sshd";

/// Returns false (after a loud message) when sshd is not installed.
pub fn sshd_available() -> bool {
    if Path::new(SSHD).exists() {
        return true;
    }
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPING sshd integration test: {SSHD} is missing.");
    eprintln!("!!! Install it with: apt-get install -y openssh-server");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    false
}

/// Skips the calling test (returns) when sshd is missing.
#[macro_export]
macro_rules! require_sshd {
    () => {
        if !common::sshd_available() {
            return;
        }
    };
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates an unencrypted key pair `path`, `path.pub`.
pub fn keygen(path: &Path, kind: &str) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "pgdeploy-test", "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd);
}

/// `SHA256:...` fingerprint of a public key file, as ssh-keygen prints it.
pub fn fingerprint_of(pub_path: &Path) -> String {
    let out = run(Command::new("ssh-keygen").arg("-lf").arg(pub_path));
    out.split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

pub fn current_user() -> String {
    run(Command::new("id").arg("-un")).trim().to_string()
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// All descendants of `pid` (children first-level and deeper), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for ent in rd.flatten() {
            let Ok(p) = ent.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(ent.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let Some(ppid) = rest
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Extra settings for the test sshd.
#[derive(Clone)]
pub struct SshdSettings {
    pub max_sessions: u32,
    /// `AllowTcpForwarding` (a jump host needs it).
    pub tcp_forwarding: bool,
}

impl Default for SshdSettings {
    fn default() -> Self {
        SshdSettings {
            max_sessions: 10,
            tcp_forwarding: true,
        }
    }
}

/// A running private sshd. Killed (with its children) on drop.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host_pub: PathBuf,
    pub client_key: PathBuf,
    pub user: String,
    child: Option<Child>,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with(SshdSettings::default())
    }

    pub fn start_with(settings: SshdSettings) -> Sshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let host_key = d.join("ssh_host_ed25519_key");
        keygen(&host_key, "ed25519");
        let client_key = d.join("id_ed25519");
        keygen(&client_key, "ed25519");
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        // Debian's sshd insists on its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 HostKey {}\n\
                 PidFile none\n\
                 UsePAM no\n\
                 AuthorizedKeysFile {}\n\
                 StrictModes no\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowTcpForwarding {}\n\
                 MaxSessions {}\n\
                 MaxStartups 100\n\
                 LogLevel VERBOSE\n",
                host_key.display(),
                d.join("authorized_keys").display(),
                if settings.tcp_forwarding { "yes" } else { "no" },
                settings.max_sessions,
            ),
        )
        .expect("write sshd_config");

        let log_path = d.join("sshd.log");
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("log");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .arg("-p")
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!(
                        "sshd exited with {status}: {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if up {
                return Sshd {
                    port,
                    host_pub: d.join("ssh_host_ed25519_key.pub"),
                    client_key,
                    user: current_user(),
                    child: Some(child),
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            if last_err.is_empty() {
                last_err = format!("sshd did not listen on port {port}");
            }
        }
        panic!("could not start sshd: {last_err}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A target for this sshd (current user, explicit key file).
    pub fn target(&self) -> Target {
        Target {
            name: "testnode".into(),
            address: "127.0.0.1".into(),
            port: self.port,
            user: self.user.clone(),
            key_file: Some(self.client_key.clone()),
            jump: None,
        }
    }

    /// The `known_hosts` line for this sshd's host key.
    pub fn known_hosts_line(&self) -> String {
        let pubkey = std::fs::read_to_string(&self.host_pub).expect("host pub");
        let mut parts = pubkey.split_whitespace();
        let (t, k) = (parts.next().expect("type"), parts.next().expect("key"));
        format!("[127.0.0.1]:{} {t} {k}", self.port)
    }

    /// Options with a known_hosts file that trusts this sshd.
    pub fn trusting_options(&self) -> ConnectOptions {
        let kh = self.path("known_hosts");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&kh)
            .expect("kh");
        writeln!(f, "{}", self.known_hosts_line()).expect("write kh");
        self.options(kh)
    }

    /// Options with the given known_hosts file, short timeouts for tests.
    pub fn options(&self, known_hosts: PathBuf) -> ConnectOptions {
        ConnectOptions {
            known_hosts,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(1),
            keepalive_max: 3,
            max_channels: 8,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills sshd and every process it spawned (connection handlers, shells).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            // Collect the tree first: once sshd dies its children are
            // re-parented to init and can no longer be found.
            let kids = descendants(pid);
            let _ = child.kill();
            if !kids.is_empty() {
                let mut cmd = Command::new("kill");
                cmd.arg("-KILL");
                for k in &kids {
                    cmd.arg(k.to_string());
                }
                let _ = cmd.stderr(Stdio::null()).status();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lines of a file (empty when missing).
pub fn lines(path: &Path) -> Vec<String> {
    match std::fs::File::open(path) {
        Ok(f) => std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .collect(),
        Err(_) => Vec::new(),
    }
}
