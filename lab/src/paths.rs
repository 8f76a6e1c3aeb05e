//! Where the lab keeps things.

use std::path::{Path, PathBuf};

/// The lab's directories and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Per-host state, keys, known_hosts and the state file.
    pub lab_dir: PathBuf,
    /// The cached root file systems, one per release.
    pub cache_dir: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Self::system()
    }
}

impl Layout {
    /// The system-wide lab: /var/lib/pgdeploy/lab and /var/cache/pgdeploy/lab
    /// (instance N, see [`crate::net::instance`]: /var/lib/pgdeploy/lab-N; the cache is shared).
    pub fn system() -> Self {
        let lab_dir = match crate::net::instance() {
            0 => "/var/lib/pgdeploy/lab".into(),
            n => format!("/var/lib/pgdeploy/lab-{n}").into(),
        };
        Self {
            lab_dir,
            cache_dir: "/var/cache/pgdeploy/lab".into(),
        }
    }
    /// The cached Debian root file system of `release` (`rootfs-bookworm`, `rootfs-trixie`).
    pub fn rootfs(&self, release: crate::release::Release) -> PathBuf {
        self.cache_dir.join(format!("rootfs-{release}"))
    }
    /// The lab's SSH private key.
    pub fn key(&self) -> PathBuf {
        self.lab_dir.join("id_ed25519")
    }
    /// The lab's SSH public key.
    pub fn pubkey(&self) -> PathBuf {
        self.lab_dir.join("id_ed25519.pub")
    }
    /// The known_hosts file with every host's key.
    pub fn known_hosts(&self) -> PathBuf {
        self.lab_dir.join("known_hosts")
    }
    /// The JSON state file.
    pub fn state_file(&self) -> PathBuf {
        self.lab_dir.join("state.json")
    }
    /// A host's directory.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.lab_dir.join(host)
    }
    /// A host's overlay upper directory (its disk).
    pub fn upper(&self, host: &str) -> PathBuf {
        self.host_dir(host).join("upper")
    }
    /// A host's overlay work directory.
    pub fn work(&self, host: &str) -> PathBuf {
        self.host_dir(host).join("work")
    }
    /// A host's root: the overlay mount.
    pub fn merged(&self, host: &str) -> PathBuf {
        self.host_dir(host).join("merged")
    }
    /// A host's console log.
    pub fn console_log(&self, host: &str) -> PathBuf {
        self.host_dir(host).join("console.log")
    }
    /// Host directories present under the lab directory (names with an `upper` dir).
    pub fn host_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.lab_dir)
            .map(|rd| {
                rd.filter_map(|e| {
                    let e = e.ok()?;
                    let name = e.file_name().into_string().ok()?;
                    is_dir(&e.path().join("upper")).then_some(name)
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|n| crate::host_sort_key(n));
        v
    }
}

fn is_dir(p: &Path) -> bool {
    p.is_dir()
}
