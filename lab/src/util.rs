//! Small helpers: locating and running external tools, writing files.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Directories searched for tools in addition to `$PATH` (a root shell
/// without a login environment often lacks the sbin directories).
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Finds `name` in `$PATH` or the usual system directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(EXTRA_DIRS.iter().map(PathBuf::from));
    find_in(name, &dirs)
}

/// Finds an executable `name` in `dirs`.
pub fn find_in(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Builds a [`Command`] for tool `name`, resolved through [`find_tool`].
pub fn command(name: &str) -> Command {
    let mut c = Command::new(find_tool(name).unwrap_or_else(|| PathBuf::from(name)));
    c.env("LC_ALL", "C");
    c
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `name args...`, returns its stdout; fails with its stderr.
pub fn run<I, S>(name: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = command(name);
    c.args(args);
    run_cmd(&mut c)
}

/// Runs a prepared command, returns its stdout; fails with its stderr.
pub fn run_cmd(c: &mut Command) -> Result<String> {
    let what = describe(c);
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{what}`"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        let so = String::from_utf8_lossy(&out.stdout);
        let detail = if err.is_empty() { so.trim() } else { err };
        bail!("`{what}` failed ({}): {}", out.status, tail(detail, 2000));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `name args...` and tells whether it succeeded (output discarded).
pub fn succeeds<I, S>(name: &str, args: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    command(name)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The last `max` bytes of `s` (on a char boundary).
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = s.len() - max;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Writes `contents` to `path` (creating parent directories) with `mode`,
/// replacing a symlink rather than writing through it.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
    {
        fs::remove_file(path)
            .with_context(|| format!("cannot remove symlink {}", path.display()))?;
    }
    let tmp = path.with_extension("pgdeploy-tmp");
    fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

/// Writes `contents` to `path` only if it differs; tells whether it wrote.
pub fn write_if_changed(path: &Path, contents: &str, mode: u32) -> Result<bool> {
    if fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(false);
    }
    write_file(path, contents, mode)?;
    Ok(true)
}

/// Removes a directory tree without crossing into other file systems.
/// Fails if anything is still mounted below it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = crate::procs::mounts_under(dir)?;
    if !mounts.is_empty() {
        bail!(
            "refusing to remove {}: still mounted below it: {}",
            dir.display(),
            mounts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    run(
        "rm",
        [
            OsStr::new("-rf"),
            OsStr::new("--one-file-system"),
            dir.as_os_str(),
        ],
    )?;
    Ok(())
}

/// A random 128-bit value as 32 lowercase hex digits (from the kernel).
pub fn random_hex32() -> Result<String> {
    let uuid =
        fs::read_to_string("/proc/sys/kernel/random/uuid").context("cannot read a random uuid")?;
    let hex: String = uuid.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        bail!("unexpected uuid from the kernel: {uuid:?}");
    }
    Ok(hex)
}

/// An exclusive flock on a file, held until dropped.
pub struct FileLock {
    _file: fs::File,
}

impl FileLock {
    /// Takes the lock on `path`, waiting (with a note naming `holder`) if taken.
    pub fn acquire(path: &str, holder: &str) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {path}"))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("lab: waiting for {holder} to finish ...");
            // SAFETY: as above.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot lock {path}"));
            }
        }
        Ok(Self { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aé", 1), "");
    }

    #[test]
    fn write_if_changed_reports() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x/y.txt");
        assert!(write_if_changed(&p, "a", 0o644).unwrap());
        assert!(!write_if_changed(&p, "a", 0o644).unwrap());
        assert!(write_if_changed(&p, "b", 0o600).unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), "b");
    }

    #[test]
    fn find_in_needs_exec_bit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tool");
        fs::write(&p, "#!/bin/sh\n").unwrap();
        assert!(find_in("tool", &[d.path().to_path_buf()]).is_none());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in("tool", &[d.path().to_path_buf()]), Some(p));
    }

    #[test]
    fn random_hex_is_32() {
        assert_eq!(random_hex32().unwrap().len(), 32);
    }
}
