//! One lab host: its overlay, its configuration, its container process,
//! and SSH to it.

use crate::net::{self, PREFIX};
use crate::paths::Layout;
use crate::procs::{self, Container};
use crate::release::Release;
use crate::rootfs::ADMIN;
use crate::util::{self, run, write_file, write_if_changed};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A host the lab should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Its name and hostname, `node<k>`.
    pub name: String,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
    /// The release its disk overlays.
    pub release: Release,
}

impl HostSpec {
    /// Host `k` (1-based) of `release`.
    pub fn nth(k: usize, release: Release) -> Self {
        Self {
            name: format!("node{k}"),
            address: net::node_addr(k),
            release,
        }
    }
}

/// Mounts the host's overlay on the cache of `release` if it is not
/// mounted; tells whether it mounted it.
pub fn ensure_mounted(layout: &Layout, host: &str, release: Release) -> Result<bool> {
    let merged = layout.merged(host);
    for d in [layout.upper(host), layout.work(host), merged.clone()] {
        fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    if procs::is_mounted(&merged)? {
        return Ok(false);
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        layout.rootfs(release).display(),
        layout.upper(host).display(),
        layout.work(host).display()
    );
    run(
        "mount",
        [
            std::ffi::OsStr::new("-t"),
            "overlay".as_ref(),
            "overlay".as_ref(),
            "-o".as_ref(),
            opts.as_ref(),
            merged.as_os_str(),
        ],
    )
    .with_context(|| format!("cannot mount the overlay of {host}"))?;
    Ok(true)
}

/// Unmounts the host's overlay if mounted (lazily if busy).
pub fn unmount(layout: &Layout, host: &str) -> Result<bool> {
    let merged = layout.merged(host);
    let mut did = false;
    for m in procs::mounts_under(&merged)? {
        if run("umount", [m.as_os_str()]).is_err() {
            run("umount", [std::ffi::OsStr::new("-l"), m.as_os_str()])
                .with_context(|| format!("cannot unmount {}", m.display()))?;
        }
        did = true;
    }
    Ok(did)
}

/// The networkd file for the container's `host0`. Named to sort before the
/// stock `80-container-host0.network`. Carrier loss keeps the address, so
/// `lab isolate`/`heal` cut and restore the link without reconfiguring.
pub fn network_file(address: Ipv4Addr, dns: &str) -> String {
    format!(
        "# Written by pgdeploy lab.\n[Match]\nName=host0\n\n[Network]\nAddress={address}/{PREFIX}\nGateway={}\nDNS={dns}\n\
         LinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\nIgnoreCarrierLoss=yes\n",
        net::gateway()
    )
}

/// /etc/hosts naming every lab host.
pub fn hosts_file(all: &[HostSpec]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for h in all {
        s.push_str(&format!("{}\t{}\n", h.address, h.name));
    }
    s
}

/// Reads uid and gid of `user` from a passwd file.
fn uid_gid(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

fn write_authorized_keys(root: &Path, home: &str, owner: (u32, u32), pubkey: &str) -> Result<bool> {
    let dir = root.join(home.trim_start_matches('/')).join(".ssh");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let f = dir.join("authorized_keys");
    let changed = write_if_changed(&f, &format!("{}\n", pubkey.trim()), 0o600)?;
    std::os::unix::fs::chown(&f, Some(owner.0), Some(owner.1))?;
    Ok(changed)
}

/// Writes a host's own settings into its (mounted) root: hostname, hosts,
/// networkd file, resolver, machine id, SSH host key, authorized keys.
/// Idempotent; tells whether anything changed. An existing host key is kept.
pub fn configure(
    layout: &Layout,
    spec: &HostSpec,
    all: &[HostSpec],
    pubkey: &str,
    dns: &str,
) -> Result<bool> {
    let root = layout.merged(&spec.name);
    let mut changed = false;
    changed |= write_if_changed(
        &root.join("etc/hostname"),
        &format!("{}\n", spec.name),
        0o644,
    )?;
    changed |= write_if_changed(&root.join("etc/hosts"), &hosts_file(all), 0o644)?;
    changed |= write_if_changed(
        &root.join("etc/systemd/network/10-host0.network"),
        &network_file(spec.address, dns),
        0o644,
    )?;
    let resolv = root.join("etc/resolv.conf");
    if fs::symlink_metadata(&resolv).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&resolv)?;
    }
    changed |= write_if_changed(&resolv, &format!("nameserver {dns}\n"), 0o644)?;
    let mid = root.join("etc/machine-id");
    if fs::read_to_string(&mid)
        .map(|s| s.trim().len() != 32)
        .unwrap_or(true)
    {
        write_file(&mid, &format!("{}\n", util::random_hex32()?), 0o444)?;
        changed = true;
    }
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    if !key.exists() {
        run(
            "ssh-keygen",
            [
                std::ffi::OsStr::new("-q"),
                "-t".as_ref(),
                "ed25519".as_ref(),
                "-N".as_ref(),
                "".as_ref(),
                "-C".as_ref(),
                format!("root@{}", spec.name).as_ref(),
                "-f".as_ref(),
                key.as_os_str(),
            ],
        )
        .with_context(|| format!("cannot make the SSH host key of {}", spec.name))?;
        changed = true;
    }
    let passwd = fs::read_to_string(root.join("etc/passwd"))
        .context("cannot read the host's /etc/passwd")?;
    let admin = uid_gid(&passwd, ADMIN)
        .with_context(|| format!("no user {ADMIN} in the root file system"))?;
    changed |= write_authorized_keys(&root, &format!("/home/{ADMIN}"), admin, pubkey)?;
    changed |= write_authorized_keys(&root, "/root", (0, 0), pubkey)?;
    Ok(changed)
}

/// The host's public SSH host key, `type base64` (no comment).
pub fn host_pubkey(layout: &Layout, host: &str) -> Result<String> {
    let p = layout.merged(host).join("etc/ssh/ssh_host_ed25519_key.pub");
    let text = fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let mut w = text.split_whitespace();
    match (w.next(), w.next()) {
        (Some(t), Some(k)) => Ok(format!("{t} {k}")),
        _ => bail!("malformed host key {}", p.display()),
    }
}

/// The loop that runs systemd-nspawn, again when the host reboots.
const BOOT: &str = include_str!("sh/nspawn-boot.sh");

/// A started container: the process that boots it and the container's init.
#[derive(Debug)]
pub struct Started {
    /// The shell running systemd-nspawn (and again after a reboot); a
    /// child of this process until it exits.
    pub nspawn: Child,
    /// The container's init.
    pub init_pid: u32,
}

/// The last lines of a host's console log.
pub fn console_tail(layout: &Layout, host: &str) -> String {
    let text = fs::read_to_string(layout.console_log(host)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Boots the host's container, detached (own session, stdin from
/// /dev/null, console to console.log). Returns once its init exists.
pub fn start(layout: &Layout, host: &str) -> Result<Started> {
    let merged = layout.merged(host);
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(layout.console_log(host))
        .with_context(|| format!("cannot open the console log of {host}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    writeln!(
        log,
        "\n=== pgdeploy lab: starting {host} (unix time {now}) ==="
    )?;
    // nspawn runs under a loop that boots the host again when it reboots.
    let mut cmd = util::command("sh");
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["-c", BOOT, "sh", &net::veth_name(host)])
        .arg(util::find_tool("systemd-nspawn").unwrap_or_else(|| "systemd-nspawn".into()))
        .arg("--directory")
        .arg(&merged)
        .args([
            "--boot",
            &format!("--network-bridge={}", net::bridge()),
            "--register=no",
            "--keep-unit",
            &format!("--machine={}", net::machine_name(host)),
            // keepalived (VRRP), ufw (netfilter in the host's own netns), sysctl
            // writes under /proc/sys/net: the HA stack needs the capabilities.
            "--capability=all",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
            "--console=read-only",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot dup the console log")?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start systemd-nspawn for {host}"))?;
    match procs::wait_for_init(child.id(), Duration::from_secs(20)) {
        Some(init_pid) => Ok(Started {
            nspawn: child,
            init_pid,
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the container of {host} did not start; its console log says:\n{}",
                console_tail(layout, host)
            )
        }
    }
}

/// Stops a running container: a clean poweroff if `graceful` gives a time
/// for it, else (or after it) SIGKILL to its init (a hard crash). Makes sure
/// its nspawn process and veth go too.
pub fn stop(c: &Container, graceful: Option<Duration>) -> Result<()> {
    if let Some(t) = graceful {
        // SIGRTMIN+4 asks systemd for poweroff.target.
        procs::signal(c.init_pid, libc::SIGRTMIN() + 4)?;
        if !procs::wait_gone(c.init_pid, t) {
            eprintln!(
                "lab: {} did not power off within {} s; killing it",
                c.host,
                t.as_secs()
            );
        }
    }
    procs::signal(c.init_pid, libc::SIGKILL)?;
    if !procs::wait_gone(c.init_pid, Duration::from_secs(10)) {
        bail!("the init (pid {}) of {} did not die", c.init_pid, c.host);
    }
    if let Some(n) = c.nspawn_pid {
        if !procs::wait_gone(n, Duration::from_secs(5)) {
            procs::signal(n, libc::SIGKILL)?;
            procs::wait_gone(n, Duration::from_secs(5));
        }
    }
    net::clear_stale_veths(&[&c.host], Duration::from_secs(3))
}

/// Runs `hostname` on a host over SSH as the admin user with the lab's
/// key, checking its host key against the lab's known_hosts.
pub fn ssh_hostname(layout: &Layout, address: Ipv4Addr, connect_timeout: u32) -> Result<String> {
    let out = ssh(layout, address, connect_timeout, "hostname")?;
    Ok(out.trim().to_string())
}

/// Runs a shell command on a host over SSH; returns stdout.
pub fn ssh(
    layout: &Layout,
    address: Ipv4Addr,
    connect_timeout: u32,
    command: &str,
) -> Result<String> {
    let mut c = util::command("ssh");
    c.arg("-F").arg("/dev/null").arg("-i").arg(layout.key());
    for o in [
        format!("UserKnownHostsFile={}", layout.known_hosts().display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "StrictHostKeyChecking=yes".into(),
        "BatchMode=yes".into(),
        "IdentitiesOnly=yes".into(),
        format!("ConnectTimeout={connect_timeout}"),
        "LogLevel=ERROR".into(),
    ] {
        c.arg("-o").arg(o);
    }
    c.arg(format!("{ADMIN}@{address}")).arg(command);
    util::run_cmd(&mut c)
}

/// When sshd answers but the admin user cannot log in, looks as root: the
/// failed units, and a /run/nologin left by a failed
/// systemd-user-sessions.service (which then is retried, with a warning).
fn diagnose_as_root(layout: &Layout, spec: &HostSpec) -> Option<String> {
    let script = "systemctl --failed --no-legend --plain | cut -d' ' -f1 | tr '\\n' ' '; \
                  if [ -e /run/nologin ]; then echo; echo nologin; systemctl restart systemd-user-sessions.service || rm -f /run/nologin; fi";
    let mut c = util::command("ssh");
    c.arg("-F").arg("/dev/null").arg("-i").arg(layout.key());
    for o in [
        format!("UserKnownHostsFile={}", layout.known_hosts().display()),
        "StrictHostKeyChecking=yes".into(),
        "BatchMode=yes".into(),
        "ConnectTimeout=5".into(),
    ] {
        c.arg("-o").arg(o);
    }
    c.arg(format!("root@{}", spec.address)).arg(script);
    let out = util::run_cmd(&mut c).ok()?;
    let failed = out.lines().next().unwrap_or("").trim().to_string();
    let msg = format!(
        "failed units: [{failed}]{}",
        if out.contains("nologin") {
            ", /run/nologin present (retried systemd-user-sessions)"
        } else {
            ""
        }
    );
    eprintln!(
        "lab: warning: {} answers SSH only as root: {msg}",
        spec.name
    );
    Some(msg)
}

/// Whether TCP port 22 of `address` accepts a connection within `t`.
pub fn port22_open(address: Ipv4Addr, t: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((address, 22)), t).is_ok()
}

/// Waits until `hostname` over SSH answers the host's name. Fails early if
/// the container's init goes away.
pub fn wait_ssh(
    layout: &Layout,
    spec: &HostSpec,
    init_pid: Option<u32>,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_err = String::from("port 22 never opened");
    let mut port_open_since: Option<Instant> = None;
    let mut diagnosed = false;
    loop {
        if let Some(p) = init_pid {
            if !procs::alive(p) {
                bail!(
                    "{} stopped while booting; its console log says:\n{}",
                    spec.name,
                    console_tail(layout, &spec.name)
                );
            }
        }
        if port22_open(spec.address, Duration::from_secs(1)) {
            let since = *port_open_since.get_or_insert_with(Instant::now);
            match ssh_hostname(layout, spec.address, 5) {
                Ok(h) if h == spec.name => return Ok(()),
                Ok(h) => last_err = format!("it answered hostname {h:?}"),
                Err(e) => last_err = format!("{e:#}"),
            }
            if !diagnosed && since.elapsed() > Duration::from_secs(20) {
                diagnosed = true;
                if let Some(d) = diagnose_as_root(layout, spec) {
                    last_err.push_str(&format!("; as root: {d}"));
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} ({}) did not answer SSH within {} s ({last_err}); its console log says:\n{}",
                spec.name,
                spec.address,
                timeout.as_secs(),
                console_tail(layout, &spec.name)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_file_is_static() {
        let s = network_file(Ipv4Addr::new(10, 213, 47, 11), "10.9.9.9");
        assert!(s.contains("Name=host0\n"));
        assert!(s.contains("Address=10.213.47.11/24\n"));
        assert!(s.contains("Gateway=10.213.47.1\n"));
        assert!(s.contains("DNS=10.9.9.9\n"));
    }

    #[test]
    fn hosts_lists_everyone() {
        let s = hosts_file(&[
            HostSpec::nth(1, Release::Bookworm),
            HostSpec::nth(2, Release::Trixie),
        ]);
        assert!(s.contains("10.213.47.11\tnode1\n"));
        assert!(s.contains("10.213.47.12\tnode2\n"));
    }

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n";
        assert_eq!(uid_gid(p, "admin"), Some((1000, 1000)));
        assert_eq!(uid_gid(p, "nobody"), None);
    }
}
