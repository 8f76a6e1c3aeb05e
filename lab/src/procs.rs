//! Looking at processes and mounts through /proc: which containers of the
//! lab are running, their init and nspawn processes, their memory.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The processes of one running lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The host's name (the directory name under the lab directory).
    pub host: String,
    /// The container's init (PID 1 inside), as seen from the machine.
    pub init_pid: u32,
    /// The systemd-nspawn process supervising it, if it is still there.
    pub nspawn_pid: Option<u32>,
}

/// Decodes the octal escapes (`\040` etc.) of /proc/*/mountinfo fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of a mountinfo file: mount point, fs type, super options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The file system type.
    pub fstype: String,
    /// The super block options (for overlay: lowerdir=,upperdir=,...).
    pub super_opts: String,
}

/// Parses the text of a /proc/*/mountinfo file.
pub fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let _source = r.next()?;
            let super_opts = r.next().unwrap_or("").to_string();
            Some(MountLine {
                mount_point: PathBuf::from(unescape(mp)),
                fstype,
                super_opts,
            })
        })
        .collect()
}

/// The mount points at or below `dir` in this process's mount namespace,
/// deepest first (the order to unmount them in).
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let mut v: Vec<PathBuf> = parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    Ok(v)
}

/// Whether an overlay in this mount namespace (any lab instance's host)
/// has `lower` as its lower directory.
pub fn overlaid(lower: &Path) -> Result<bool> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text).iter().any(|m| {
        m.fstype == "overlay" && opt_value(&m.super_opts, "lowerdir").map(Path::new) == Some(lower)
    }))
}

/// Whether `path` is a mount point in this mount namespace.
pub fn is_mounted(path: &Path) -> Result<bool> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text).iter().any(|m| m.mount_point == path))
}

/// The value of `key=` in a comma separated option list.
pub fn opt_value<'a>(opts: &'a str, key: &str) -> Option<&'a str> {
    opts.split(',')
        .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
}

/// Fields of /proc/PID/stat after the command name: (state, ppid, starttime).
fn stat_fields(pid: u32) -> Option<(char, u32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let state = f.first()?.chars().next()?;
    let ppid = f.get(1)?.parse().ok()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(stat_fields(pid), Some((s, _, _)) if s != 'Z' && s != 'X')
}

fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The NSpid line of /proc/PID/status: pids from the outermost namespace in.
fn nspids(pid: u32) -> Option<Vec<u32>> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("NSpid:"))?;
    line["NSpid:".len()..]
        .split_whitespace()
        .map(|p| p.parse().ok())
        .collect()
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The host name of a lab container whose root is an overlay with an
/// upper directory `LAB_DIR/<host>/upper`.
fn host_of_root(pid: u32, lab_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let root = parse_mountinfo(&text)
        .into_iter()
        .find(|m| m.mount_point == Path::new("/"))?;
    if root.fstype != "overlay" {
        return None;
    }
    let upper = PathBuf::from(opt_value(&root.super_opts, "upperdir")?);
    if upper.file_name()? != "upper" {
        return None;
    }
    let host_dir = upper.parent()?;
    if host_dir.parent()? != lab_dir {
        return None;
    }
    Some(host_dir.file_name()?.to_str()?.to_string())
}

/// Every running container of the lab in `lab_dir`, by host name. Found
/// from /proc alone (a container's init is a PID 1 of its own pid namespace
/// whose root is the host's overlay), so it needs no state file.
pub fn containers(lab_dir: &Path) -> BTreeMap<String, Container> {
    let mut out = BTreeMap::new();
    for pid in all_pids() {
        let Some(ns) = nspids(pid) else { continue };
        if ns.len() < 2 || ns.last() != Some(&1) || !alive(pid) {
            continue;
        }
        let Some(host) = host_of_root(pid, lab_dir) else {
            continue;
        };
        let nspawn_pid = stat_fields(pid)
            .map(|(_, ppid, _)| ppid)
            .filter(|pp| comm(*pp).as_deref() == Some("systemd-nspawn") && alive(*pp));
        out.insert(
            host.clone(),
            Container {
                host,
                init_pid: pid,
                nspawn_pid,
            },
        );
    }
    out
}

/// systemd-nspawn processes whose `-D` directory is under `lab_dir`, with
/// that directory (also those whose container is gone).
pub fn nspawn_processes(lab_dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    for pid in all_pids() {
        if comm(pid).as_deref() != Some("systemd-nspawn") || !alive(pid) {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let dir = args.iter().enumerate().find_map(|(i, a)| {
            if a == "-D" || a == "--directory" {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix("--directory=").map(str::to_string)
            }
        });
        if let Some(d) = dir.map(PathBuf::from) {
            if d.starts_with(lab_dir) {
                out.push((pid, d));
            }
        }
    }
    out
}

/// The children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    // A read can fail while nspawn sets the container up.
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Waits for the container init under a freshly started boot loop: a
/// PID 1 of its own namespace among its children or grandchildren (the
/// loop's systemd-nspawn, then nspawn's init).
pub fn wait_for_init(boot_pid: u32, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for c in children(boot_pid)
            .into_iter()
            .flat_map(|c| std::iter::once(c).chain(children(c)))
        {
            if let Some(ns) = nspids(c) {
                if ns.len() >= 2 && ns.last() == Some(&1) {
                    return Some(c);
                }
            }
        }
        // Only the deadline or the loop's exit ends the wait.
        if !alive(boot_pid) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Sends `sig` to `pid`; a process already gone is not an error.
pub fn signal(pid: u32, sig: i32) -> Result<()> {
    let p = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill has no memory-safety preconditions.
    let r = unsafe { libc::kill(p, sig) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e).with_context(|| format!("cannot send signal {sig} to pid {pid}"));
        }
    }
    Ok(())
}

/// Waits until `pid` is gone (or a zombie); tells whether it went in time.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Memory of a container: the sum of the proportional set size (PSS) of
/// every process in its pid namespace, in KiB.
pub fn container_pss_kib(init_pid: u32) -> Option<u64> {
    let ns = fs::read_link(format!("/proc/{init_pid}/ns/pid")).ok()?;
    let mut total = 0;
    for pid in all_pids() {
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            if let Some(l) = s.lines().find(|l| l.starts_with("Pss:")) {
                total += l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "99 79 0:39 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/c/rootfs,upperdir=/var/lib/pgdeploy/lab/node1/upper,workdir=/var/lib/pgdeploy/lab/node1/work,uuid=on\n\
100 99 0:40 / /a\\040b rw - tmpfs tmpfs rw\n";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/"));
        assert_eq!(m[0].fstype, "overlay");
        assert_eq!(
            opt_value(&m[0].super_opts, "upperdir"),
            Some("/var/lib/pgdeploy/lab/node1/upper")
        );
        assert_eq!(m[1].mount_point, PathBuf::from("/a b"));
    }

    #[test]
    fn opt_value_exact_key() {
        assert_eq!(opt_value("lowerdir=/x,upperdir=/y", "upperdir"), Some("/y"));
        assert_eq!(opt_value("lowerdir=/x", "dir"), None);
    }

    #[test]
    fn self_is_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }
}
