//! Checks the lab's prerequisites, naming the Debian package for each
//! missing tool.

use crate::util::find_in;
use std::path::PathBuf;

/// A tool the lab runs, and the Debian package that provides it.
pub const TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("nft", "nftables"),
    ("ssh-keygen", "openssh-client"),
    ("ssh", "openssh-client"),
    ("ip", "iproute2"),
    ("mount", "mount"),
    ("umount", "mount"),
    ("setsid", "util-linux"),
];

/// A missing prerequisite, with a one-line message naming what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrereqError {
    /// The lab was not run as root.
    #[error("pgdeploy lab must run as root (it creates containers, a bridge and nftables rules); run it with sudo")]
    NotRoot,
    /// A tool is missing.
    #[error(
        "`{tool}` not found: install the Debian package `{package}` (apt-get install {package})"
    )]
    MissingTool {
        /// The missing executable.
        tool: String,
        /// The Debian package that provides it.
        package: String,
    },
}

/// Checks root and every tool in [`TOOLS`] against `$PATH` and the sbin directories.
pub fn check() -> Result<(), PrereqError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    check_with(euid == 0, &dirs)
}

/// [`check`] with the inputs made explicit (for tests).
pub fn check_with(is_root: bool, dirs: &[PathBuf]) -> Result<(), PrereqError> {
    if !is_root {
        return Err(PrereqError::NotRoot);
    }
    for (tool, package) in TOOLS {
        if find_in(tool, dirs).is_none() {
            return Err(PrereqError::MissingTool {
                tool: (*tool).into(),
                package: (*package).into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_root_first() {
        assert_eq!(check_with(false, &[]), Err(PrereqError::NotRoot));
    }

    #[test]
    fn names_the_package() {
        let e = check_with(true, &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`debootstrap`"), "{msg}");
        assert!(msg.contains("apt-get install debootstrap"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn nft_maps_to_nftables() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        for (tool, _) in TOOLS {
            if *tool == "nft" {
                continue;
            }
            let p = d.path().join(tool);
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let e = check_with(true, &[d.path().to_path_buf()]).unwrap_err();
        assert_eq!(
            e,
            PrereqError::MissingTool {
                tool: "nft".into(),
                package: "nftables".into()
            }
        );
    }
}
