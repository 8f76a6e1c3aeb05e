//! The Debian release of a lab host: bookworm (12) or trixie (13), chosen
//! per host by `lab up --release` (`trixie`, `node4=trixie`, or both:
//! `trixie,node1=bookworm`), and read back from a host's /etc/os-release.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A Debian release the lab's hosts can run.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// Debian 12 (the default; what a host without a recorded release runs).
    #[default]
    Bookworm,
    /// Debian 13.
    Trixie,
}

impl Release {
    /// Every release the lab can build.
    pub const ALL: [Release; 2] = [Release::Bookworm, Release::Trixie];

    /// The codename: the apt suite, `VERSION_CODENAME` in /etc/os-release.
    pub fn codename(self) -> &'static str {
        match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        }
    }

    /// The Debian version number.
    pub fn version(self) -> u32 {
        match self {
            Release::Bookworm => 12,
            Release::Trixie => 13,
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.codename())
    }
}

impl FromStr for Release {
    type Err = ReleaseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Release::ALL
            .into_iter()
            .find(|r| r.codename() == s)
            .ok_or_else(|| ReleaseError::UnknownRelease(s.to_string()))
    }
}

/// A bad `--release`: always found before `lab up` changes anything.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    /// Not a release the lab builds.
    #[error(
        "unknown release {0:?}: the lab's hosts run bookworm (Debian 12) or trixie (Debian 13)"
    )]
    UnknownRelease(String),
    /// `HOST=RELEASE` with a host not named `node<k>`.
    #[error("--release {item}: {host:?} is not a lab host (they are node1, node2, ...)")]
    BadHost {
        /// The item as given.
        item: String,
        /// The host part.
        host: String,
    },
    /// A host beyond `--nodes`.
    #[error("--release {host}=...: the lab has the hosts node1..node{nodes} (--nodes {nodes})")]
    HostOutsideLab {
        /// The host.
        host: String,
        /// The number of hosts asked for.
        nodes: usize,
    },
    /// Two releases for the same hosts.
    #[error("--release names two releases for {target}: {first} and {second}")]
    Conflict {
        /// `every host` or the host.
        target: String,
        /// The first release named.
        first: Release,
        /// The other one.
        second: Release,
    },
}

/// One item of `--release`: a release for every host, or for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseItem {
    /// `trixie`: every host not named on its own.
    All(Release),
    /// `node4=trixie`: host `k` (node<k>).
    Host(usize, Release),
}

impl FromStr for ReleaseItem {
    type Err = ReleaseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some((host, release)) = s.split_once('=') else {
            return Ok(ReleaseItem::All(s.parse()?));
        };
        let (host, release) = (host.trim(), release.trim());
        let k = host
            .strip_prefix("node")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|k| *k >= 1 && format!("node{k}") == host)
            .ok_or_else(|| ReleaseError::BadHost {
                item: s.to_string(),
                host: host.to_string(),
            })?;
        Ok(ReleaseItem::Host(k, release.parse()?))
    }
}

/// The releases `--release` asks for: one for every host, and per host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Releases {
    all: Option<Release>,
    hosts: BTreeMap<usize, Release>,
}

impl Releases {
    /// The releases of `--release`'s items; two different releases for the
    /// same hosts are an error.
    pub fn from_items(items: &[ReleaseItem]) -> Result<Self, ReleaseError> {
        let mut r = Releases::default();
        for item in items {
            let (before, target, release) = match *item {
                ReleaseItem::All(rel) => (r.all.replace(rel), "every host".to_string(), rel),
                ReleaseItem::Host(k, rel) => (r.hosts.insert(k, rel), format!("node{k}"), rel),
            };
            if let Some(first) = before.filter(|b| *b != release) {
                return Err(ReleaseError::Conflict {
                    target,
                    first,
                    second: release,
                });
            }
        }
        Ok(r)
    }

    /// Checks that every host named is one of node1..node`nodes`.
    pub fn check_hosts(&self, nodes: usize) -> Result<(), ReleaseError> {
        match self.hosts.keys().find(|k| **k > nodes) {
            Some(k) => Err(ReleaseError::HostOutsideLab {
                host: format!("node{k}"),
                nodes,
            }),
            None => Ok(()),
        }
    }

    /// The release asked for host `k`, if any.
    pub fn asked(&self, k: usize) -> Option<Release> {
        self.hosts.get(&k).copied().or(self.all)
    }

    /// The release a new host `k` gets: the one asked, else bookworm.
    pub fn for_new_host(&self, k: usize) -> Release {
        self.asked(k).unwrap_or_default()
    }
}

/// `VERSION_CODENAME` of an os-release file's text.
pub fn parse_codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.trim().strip_prefix("VERSION_CODENAME=")?;
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The codename a root file system runs, from its /etc/os-release (or
/// /usr/lib/os-release); an absolute symlink is followed inside `root`.
pub fn codename_of_root(root: &Path) -> Option<String> {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            let mut path = root.join(p);
            if let Ok(target) = std::fs::read_link(&path) {
                if let Ok(rel) = target.strip_prefix("/") {
                    path = root.join(rel);
                }
            }
            std::fs::read_to_string(&path).ok()
        })
        .and_then(|t| parse_codename(&t))
}

/// An existing host that runs another release than `--release` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The host.
    pub host: String,
    /// The codename it runs (or was made with).
    pub runs: String,
    /// The release asked for it.
    pub asked: Release,
}

/// `lab up` refuses to recreate hosts: their disks are the tests' data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{}: `lab up` never recreates a host (its disk is kept); run `pgdeploy lab down` first for a lab of \
     other releases, or name in --release only hosts that do not exist yet (hosts that exist keep theirs)",
    .0.iter().map(|m| format!("{} exists and runs {}, not {} as asked", m.host, m.runs, m.asked)).collect::<Vec<_>>().join("; ")
)]
pub struct ReleaseMismatch(pub Vec<Mismatch>);

#[cfg(test)]
mod tests {
    use super::*;

    fn items(s: &[&str]) -> Result<Vec<ReleaseItem>, ReleaseError> {
        s.iter().map(|i| i.parse()).collect()
    }

    #[test]
    fn parses_items() {
        assert_eq!(
            items(&["trixie", "node1=bookworm", " node12 = trixie "]).unwrap(),
            vec![
                ReleaseItem::All(Release::Trixie),
                ReleaseItem::Host(1, Release::Bookworm),
                ReleaseItem::Host(12, Release::Trixie),
            ]
        );
        assert_eq!(
            "jessie".parse::<ReleaseItem>(),
            Err(ReleaseError::UnknownRelease("jessie".into()))
        );
        assert_eq!(
            "node2=sid".parse::<ReleaseItem>(),
            Err(ReleaseError::UnknownRelease("sid".into()))
        );
        for bad in [
            "db1=trixie",
            "node0=trixie",
            "node01=trixie",
            "node=trixie",
            "=trixie",
        ] {
            assert!(
                matches!(
                    bad.parse::<ReleaseItem>(),
                    Err(ReleaseError::BadHost { .. })
                ),
                "{bad}"
            );
        }
        let e = "jessie".parse::<ReleaseItem>().unwrap_err().to_string();
        assert!(
            e.contains("\"jessie\"") && e.contains("bookworm") && e.contains("trixie"),
            "{e}"
        );
    }

    #[test]
    fn resolves_per_host() {
        let r = Releases::from_items(&items(&["trixie", "node1=bookworm"]).unwrap()).unwrap();
        assert_eq!(r.asked(1), Some(Release::Bookworm));
        assert_eq!(r.asked(2), Some(Release::Trixie));
        let r = Releases::from_items(&items(&["node4=trixie"]).unwrap()).unwrap();
        assert_eq!(r.asked(4), Some(Release::Trixie));
        assert_eq!(r.asked(1), None);
        assert_eq!(r.for_new_host(1), Release::Bookworm);
        assert_eq!(r.for_new_host(4), Release::Trixie);
        assert_eq!(
            Releases::from_items(&[]).unwrap().for_new_host(3),
            Release::Bookworm
        );
        // The same twice is fine; two different ones are not.
        assert!(Releases::from_items(&items(&["trixie", "trixie"]).unwrap()).is_ok());
        assert_eq!(
            Releases::from_items(&items(&["node2=trixie", "node2=bookworm"]).unwrap()),
            Err(ReleaseError::Conflict {
                target: "node2".into(),
                first: Release::Trixie,
                second: Release::Bookworm
            })
        );
        assert!(Releases::from_items(&items(&["bookworm", "trixie"]).unwrap()).is_err());
    }

    #[test]
    fn hosts_within_the_lab() {
        let r = Releases::from_items(&items(&["node3=trixie"]).unwrap()).unwrap();
        assert!(r.check_hosts(3).is_ok());
        let e = r.check_hosts(2).unwrap_err();
        assert_eq!(
            e,
            ReleaseError::HostOutsideLab {
                host: "node3".into(),
                nodes: 2
            }
        );
        assert!(e.to_string().contains("node1..node2"), "{e}");
    }

    #[test]
    fn reads_codename() {
        let t = "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_ID=\"13\"\nVERSION_CODENAME=trixie\n";
        assert_eq!(parse_codename(t).as_deref(), Some("trixie"));
        assert_eq!(
            parse_codename("VERSION_CODENAME=\"bookworm\"\n").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            parse_codename("PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\n"),
            None
        );
        let d = tempfile::tempdir().unwrap();
        assert_eq!(codename_of_root(d.path()), None);
        std::fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("usr/lib/os-release"), t).unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", d.path().join("etc/os-release")).unwrap();
        assert_eq!(codename_of_root(d.path()).as_deref(), Some("trixie"));
    }

    #[test]
    fn mismatch_names_host_release_and_way_out() {
        let e = ReleaseMismatch(vec![Mismatch {
            host: "node2".into(),
            runs: "trixie".into(),
            asked: Release::Bookworm,
        }])
        .to_string();
        assert!(
            e.contains("node2 exists and runs trixie, not bookworm as asked"),
            "{e}"
        );
        assert!(e.contains("pgdeploy lab down"), "{e}");
    }
}
