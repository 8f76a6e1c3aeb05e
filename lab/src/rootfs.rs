//! The cached Debian root file systems the hosts overlay, one per release
//! (`rootfs-bookworm`, `rootfs-trixie`): each built once with debootstrap
//! into a temporary directory, customised, and renamed into place only when
//! complete.

use crate::release::Release;
use crate::util::{self, run, write_file};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Packages added to the minimal base (of every release; see [`include`]).
pub const INCLUDE: &str =
    "systemd,systemd-sysv,dbus,openssh-server,iproute2,python3,sudo,ca-certificates,procps,iputils-ping";

/// The packages debootstrap adds to the minimal base of `release`: trixie's
/// systemd only dlopens libkmod (bookworm's depends on it), and without it
/// systemd-modules-load.service fails at every boot.
pub fn include(release: Release) -> String {
    match release {
        Release::Bookworm => INCLUDE.to_string(),
        Release::Trixie => format!("{INCLUDE},libkmod2"),
    }
}

/// Bump when [`customize`] changes: an older cache (of every release) is rebuilt.
pub const ROOTFS_VERSION: u32 = 1;
/// The stamp file inside a complete cache.
pub const STAMP: &str = ".pgdeploy-lab-rootfs";
/// The user every host has, with passwordless sudo.
pub const ADMIN: &str = "admin";

/// Units that slow a host's boot or do background work a test host does
/// not want: masked in the cache.
pub const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "getty.target",
    "console-getty.service",
    "systemd-timesyncd.service",
    "remote-fs.target",
];

/// The Debian archive this machine uses, read from its apt sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The main archive (`.../debian`).
    pub main: String,
    /// The security archive, if the machine has one.
    pub security: Option<String>,
}

/// A host's apt sources: the file (relative to its root) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSources {
    /// Relative to the root: `etc/apt/sources.list` (bookworm) or
    /// `etc/apt/sources.list.d/debian.sources` (trixie: deb822).
    pub path: &'static str,
    /// The file's text.
    pub text: String,
}

impl Mirror {
    /// The apt sources of a host of `release`: main, updates and security
    /// suites of that release.
    pub fn apt_sources(&self, release: Release) -> AptSources {
        let r = release.codename();
        match release {
            Release::Bookworm => {
                let mut text = format!(
                    "deb {} {r} main\ndeb {} {r}-updates main\n",
                    self.main, self.main
                );
                if let Some(sec) = &self.security {
                    text.push_str(&format!("deb {sec} {r}-security main\n"));
                }
                AptSources {
                    path: "etc/apt/sources.list",
                    text,
                }
            }
            Release::Trixie => {
                let block = |uri: &str, suites: &str| {
                    format!(
                        "Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\n\
                         Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp\n"
                    )
                };
                let mut text = block(&self.main, &format!("{r} {r}-updates"));
                if let Some(sec) = &self.security {
                    text.push('\n');
                    text.push_str(&block(sec, &format!("{r}-security")));
                }
                AptSources {
                    path: "etc/apt/sources.list.d/debian.sources",
                    text,
                }
            }
        }
    }
}

/// (uri, suites) pairs of a deb822 `.sources` file (only `Types: deb`).
fn parse_deb822(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut is_deb = true;
        let mut enabled = true;
        for line in block.lines() {
            let line = line.trim_end();
            if line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let vals: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            match k.trim().to_ascii_lowercase().as_str() {
                "types" => is_deb = vals.iter().any(|t| t == "deb"),
                "uris" => uris = vals,
                "suites" => suites = vals,
                "enabled" => enabled = !vals.iter().any(|v| v == "no"),
                _ => {}
            }
        }
        if is_deb && enabled {
            out.extend(uris.into_iter().map(|u| (u, suites.clone())));
        }
    }
    out
}

/// (uri, suites) pairs of a one-line-style sources.list.
fn parse_list(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(i) => rest = rest[i + 1..].trim_start(),
                None => continue,
            }
        }
        let mut w = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (w.next(), w.next()) {
            out.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    out
}

/// Picks the main and security archives from (uri, suites) pairs.
pub fn pick_mirror(entries: &[(String, Vec<String>)]) -> Option<Mirror> {
    let is_security = |u: &str, s: &[String]| {
        u.contains("security") || s.iter().any(|x| x.ends_with("-security"))
    };
    let main = entries
        .iter()
        .find(|(u, s)| u.trim_end_matches('/').ends_with("/debian") && !is_security(u, s))?
        .0
        .trim_end_matches('/')
        .to_string();
    let security = entries
        .iter()
        .find(|(u, s)| is_security(u, s))
        .map(|(u, _)| u.trim_end_matches('/').to_string());
    Some(Mirror { main, security })
}

/// Reads the Debian mirror from this machine's apt sources.
pub fn detect_mirror() -> Result<Mirror> {
    let mut entries = Vec::new();
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = rd.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for f in files {
            let Ok(text) = fs::read_to_string(&f) else {
                continue;
            };
            match f.extension().and_then(|e| e.to_str()) {
                Some("sources") => entries.extend(parse_deb822(&text)),
                Some("list") => entries.extend(parse_list(&text)),
                _ => {}
            }
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_list(&text));
    }
    pick_mirror(&entries).context(
        "no Debian archive found in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.sources): \
         the lab needs one to build its hosts",
    )
}

/// The first non-loopback nameserver of this machine's /etc/resolv.conf.
pub fn detect_nameserver() -> Result<String> {
    let text = fs::read_to_string("/etc/resolv.conf").context("cannot read /etc/resolv.conf")?;
    pick_nameserver(&text).context(
        "no usable nameserver in /etc/resolv.conf (a loopback resolver is not reachable from the lab's hosts)",
    )
}

/// The first nameserver of a resolv.conf that is not a loopback address.
pub fn pick_nameserver(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .find(|a| {
            a.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}

/// Whether `dir` holds a complete cache of `release` of the current version.
pub fn is_complete(dir: &Path, release: Release) -> bool {
    fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s.trim() == stamp(release).trim())
}

fn stamp(release: Release) -> String {
    format!(
        "version {ROOTFS_VERSION}\nsuite {release}\ninclude {}\n",
        include(release)
    )
}

/// Removes a (half-built) tree, unmounting whatever a killed debootstrap left mounted in it.
fn discard(dir: &Path) -> Result<()> {
    for m in crate::procs::mounts_under(dir)? {
        let _ = run("umount", [std::ffi::OsStr::new("-l"), m.as_os_str()]);
    }
    util::remove_tree(dir)
}

/// Makes sure a complete cache of `release` is at `dir`; builds it if
/// missing. Tells whether it built it. `in_use` says whether hosts are
/// overlaying it now (an outdated cache is then not replaced under them).
pub fn ensure(dir: &Path, release: Release, mirror: &Mirror, in_use: bool) -> Result<bool> {
    if is_complete(dir, release) {
        return Ok(false);
    }
    // Lab instances share the caches: one builds a release's, the others wait.
    let _lock = util::FileLock::acquire(
        &format!("/run/pgdeploy-lab-cache-{release}.lock"),
        &format!("another lab building the {release} cache"),
    )?;
    if is_complete(dir, release) {
        return Ok(false);
    }
    if dir.exists() && in_use {
        bail!(
            "the cached root file system {} is from another pgdeploy version and hosts still use it: run `pgdeploy lab down` first",
            dir.display()
        );
    }
    let parent = dir.parent().context("cache directory has no parent")?;
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir
        .file_name()
        .context("bad cache directory")?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!("{name}.tmp"));
    discard(&tmp).context("cannot remove a half-built cache")?;
    let started = Instant::now();
    eprintln!(
        "lab: building the Debian {} ({release}) root file system with debootstrap (once; a minute or two) ...",
        release.version()
    );
    let r = build(&tmp, release, mirror);
    if let Err(e) = r {
        let _ = discard(&tmp);
        return Err(e);
    }
    let old = parent.join(format!("{name}.old"));
    if dir.exists() {
        discard(&old)?;
        fs::rename(dir, &old)
            .with_context(|| format!("cannot move the outdated cache {} aside", dir.display()))?;
    }
    fs::rename(&tmp, dir)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))?;
    discard(&old)?;
    eprintln!(
        "lab: root file system cached in {} ({:.0} s)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

fn build(tmp: &Path, release: Release, mirror: &Mirror) -> Result<()> {
    fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let log = tmp.with_extension("log");
    let logf =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = util::command("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={}", include(release)),
            release.codename(),
        ])
        .arg(tmp)
        .arg(&mirror.main)
        .stdin(std::process::Stdio::null())
        .stdout(logf.try_clone().context("cannot dup log file")?)
        .stderr(logf)
        .status()
        .context("cannot run debootstrap")?;
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let hint = if text.contains("signed by unknown key") {
            format!(
                "\n(this machine's debian-archive-keyring lacks the keys of {release}: \
                 apt-get install debian-archive-keyring; bookworm's 2023.3+deb12u2 has trixie's)"
            )
        } else {
            String::new()
        };
        bail!(
            "debootstrap failed ({status}); see {}:\n{}{hint}",
            log.display(),
            util::tail(&text, 1500)
        );
    }
    customize(tmp, release, mirror).context("cannot customise the root file system")?;
    write_file(&tmp.join(STAMP), &stamp(release), 0o644)?;
    let _ = fs::remove_file(&log);
    Ok(())
}

/// What every host shares: apt sources of its release (bookworm: one-line
/// /etc/apt/sources.list; trixie: deb822 sources.list.d/debian.sources, the
/// format Debian 13's apt recommends), no host keys, no machine id, masked
/// units, networkd and ssh.service enabled (on both releases sshd runs as
/// ssh.service, not socket-activated), the admin user with passwordless sudo.
fn customize(root: &Path, release: Release, mirror: &Mirror) -> Result<()> {
    let sources = mirror.apt_sources(release);
    if sources.path != "etc/apt/sources.list" {
        // debootstrap writes a one-line sources.list; the deb822 file replaces it.
        let _ = fs::remove_file(root.join("etc/apt/sources.list"));
    }
    write_file(&root.join(sources.path), &sources.text, 0o644)?;
    // The cache must not share host keys: each host gets its own.
    for e in fs::read_dir(root.join("etc/ssh")).context("no /etc/ssh in the root file system")? {
        let p = e?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ssh_host_"))
        {
            fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    write_file(
        &root.join("etc/ssh/sshd_config.d/10-pgdeploy-lab.conf"),
        "# pgdeploy lab: each host has one host key, made at `lab up`.\nHostKey /etc/ssh/ssh_host_ed25519_key\n",
        0o644,
    )?;
    write_file(&root.join("etc/machine-id"), "", 0o444)?;
    let _ = fs::remove_file(root.join("etc/hostname"));
    let sysd = root.join("etc/systemd/system");
    fs::create_dir_all(&sysd)?;
    for u in MASKED_UNITS {
        let p = sysd.join(u);
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink("/dev/null", &p).with_context(|| format!("cannot mask {u}"))?;
    }
    run(
        "systemctl",
        [
            format!("--root={}", root.display()).as_str(),
            "enable",
            "systemd-networkd.service",
            "ssh.service",
        ],
    )?;
    write_file(
        &root.join("etc/systemd/journald.conf.d/10-pgdeploy-lab.conf"),
        "[Journal]\nSystemMaxUse=64M\nRuntimeMaxUse=8M\n",
        0o644,
    )?;
    let rs = root.as_os_str();
    let chroot = |args: &[&str]| -> Result<String> {
        let mut a = vec![rs.to_os_string()];
        a.extend(args.iter().map(std::ffi::OsString::from));
        run("chroot", a)
    };
    if chroot(&["id", ADMIN]).is_err() {
        chroot(&[
            "useradd",
            "--create-home",
            "--shell",
            "/bin/bash",
            "--groups",
            "sudo",
            ADMIN,
        ])?;
    }
    chroot(&["usermod", "--password", "*", ADMIN])?;
    write_file(
        &root.join(format!("etc/sudoers.d/90-pgdeploy-lab-{ADMIN}")),
        &format!("{ADMIN} ALL=(ALL:ALL) NOPASSWD: ALL\n"),
        0o440,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# http://example.invalid/archive/debian/2025\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn parses_deb822() {
        let m = pick_mirror(&parse_deb822(DEB822)).unwrap();
        assert_eq!(m.main, "http://mirror.invalid/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://mirror.invalid/debian-security")
        );
        let s = m.apt_sources(Release::Bookworm);
        assert_eq!(s.path, "etc/apt/sources.list");
        assert_eq!(
            s.text,
            "deb http://mirror.invalid/debian bookworm main\n\
             deb http://mirror.invalid/debian bookworm-updates main\n\
             deb http://mirror.invalid/debian-security bookworm-security main\n"
        );
    }

    #[test]
    fn trixie_sources_are_deb822_of_trixie() {
        let m = pick_mirror(&parse_deb822(DEB822)).unwrap();
        let s = m.apt_sources(Release::Trixie);
        assert_eq!(s.path, "etc/apt/sources.list.d/debian.sources");
        assert_eq!(
            s.text,
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: trixie trixie-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp\n\n\
             Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: trixie-security\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp\n"
        );
        assert!(!s.text.contains("bookworm"));
        // Read back as apt would: the same archives, trixie's suites.
        let back = parse_deb822(&s.text);
        assert_eq!(back[0].1, vec!["trixie", "trixie-updates"]);
        assert_eq!(back[1].1, vec!["trixie-security"]);
        let no_sec = Mirror {
            main: "http://m.invalid/debian".into(),
            security: None,
        };
        assert!(!no_sec
            .apt_sources(Release::Trixie)
            .text
            .contains("security"));
    }

    #[test]
    fn parses_one_line_style() {
        let text = "# comment\ndeb [arch=amd64] http://m.invalid/debian/ bookworm main\ndeb http://s.invalid/debian-security bookworm-security main\n";
        let m = pick_mirror(&parse_list(text)).unwrap();
        assert_eq!(m.main, "http://m.invalid/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://s.invalid/debian-security")
        );
    }

    #[test]
    fn no_debian_no_mirror() {
        assert!(pick_mirror(&parse_list("deb http://x.invalid/ubuntu jammy main\n")).is_none());
    }

    #[test]
    fn nameserver_skips_loopback() {
        assert_eq!(
            pick_nameserver("nameserver 127.0.0.53\nnameserver 10.1.2.3\n").as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(pick_nameserver("nameserver 127.0.0.53\n"), None);
    }

    #[test]
    fn stamp_check() {
        let d = tempfile::tempdir().unwrap();
        assert!(!is_complete(d.path(), Release::Bookworm));
        fs::write(d.path().join(STAMP), stamp(Release::Bookworm)).unwrap();
        assert!(is_complete(d.path(), Release::Bookworm));
        assert!(
            !is_complete(d.path(), Release::Trixie),
            "a cache is of one release"
        );
        fs::write(d.path().join(STAMP), "version 0\n").unwrap();
        assert!(!is_complete(d.path(), Release::Bookworm));
    }

    #[test]
    fn bookworm_stamp_is_the_one_before_releases() {
        // Existing bookworm caches stay valid (no rebuild under running labs).
        assert_eq!(
            stamp(Release::Bookworm),
            "version 1\nsuite bookworm\ninclude systemd,systemd-sysv,dbus,openssh-server,iproute2,python3,sudo,\
             ca-certificates,procps,iputils-ping\n"
        );
    }
}
