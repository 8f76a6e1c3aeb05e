//! The lab's small JSON state file: what `lab up` made.

use crate::release::Release;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the lab made, saved in /var/lib/pgdeploy/lab/state.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// The number of hosts asked for.
    pub nodes: usize,
    /// The bridge's name.
    pub bridge: String,
    /// The subnet, `a.b.c.d/len`.
    pub subnet: String,
    /// The nftables table (family ip).
    pub nft_table: String,
    /// Sysctls the lab raised (key under /proc/sys), with their values before.
    #[serde(default)]
    pub sysctl_before: std::collections::BTreeMap<String, String>,
    /// The inventory file last written.
    pub inventory: Option<PathBuf>,
    /// The hosts.
    pub hosts: Vec<HostRecord>,
}

/// One host of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Its name (and hostname).
    pub name: String,
    /// Its address on the lab's bridge.
    pub address: String,
    /// The systemd-nspawn process last started for it.
    pub nspawn_pid: Option<u32>,
    /// Its init, as seen from the machine.
    pub init_pid: Option<u32>,
    /// The release it was made with (the cache its disk overlays); state
    /// files from before releases have none: bookworm.
    #[serde(default)]
    pub release: Release,
}

impl LabState {
    /// Reads the state file; `None` if there is none.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("corrupt lab state file {}", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the state file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot serialise the lab state")?;
        crate::util::write_file(path, &(text + "\n"), 0o644)
    }

    /// The record of `host`, if any.
    pub fn host(&self, host: &str) -> Option<&HostRecord> {
        self.hosts.iter().find(|h| h.name == host)
    }

    /// The release `host` was made with: bookworm without a record (or
    /// from a state file of before releases).
    pub fn release(&self, host: &str) -> Release {
        self.host(host).map(|h| h.release).unwrap_or_default()
    }

    /// The record of `host`, if any, to change.
    pub fn host_mut(&mut self, host: &str) -> Option<&mut HostRecord> {
        self.hosts.iter_mut().find(|h| h.name == host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert_eq!(LabState::load(&p).unwrap(), None);
        let s = LabState {
            nodes: 2,
            bridge: "pgdlab0".into(),
            hosts: vec![HostRecord {
                name: "node1".into(),
                address: "10.213.47.11".into(),
                nspawn_pid: Some(5),
                init_pid: None,
                release: Release::Trixie,
            }],
            ..Default::default()
        };
        s.save(&p).unwrap();
        assert_eq!(LabState::load(&p).unwrap(), Some(s));
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .contains("\"release\": \"trixie\""));
        std::fs::write(&p, "{").unwrap();
        assert!(LabState::load(&p).is_err());
    }

    #[test]
    fn old_state_files_mean_bookworm() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        std::fs::write(
            &p,
            r#"{"nodes": 1, "bridge": "pgdlab0", "subnet": "10.213.47.0/24", "nft_table": "pgdeploy_lab",
                "sysctl_before": {}, "inventory": "inventories/lab.yaml",
                "hosts": [{"name": "node1", "address": "10.213.47.11", "nspawn_pid": 7, "init_pid": 9}]}"#,
        )
        .unwrap();
        let s = LabState::load(&p).unwrap().unwrap();
        assert_eq!(s.host("node1").unwrap().release, Release::Bookworm);
        std::fs::write(&p, r#"{"nodes": 1, "bridge": "b", "subnet": "s", "nft_table": "t", "inventory": null,
                "hosts": [{"name": "node1", "address": "a", "nspawn_pid": null, "init_pid": null, "release": "forky"}]}"#).unwrap();
        assert!(
            LabState::load(&p).is_err(),
            "an unknown release is a corrupt state file"
        );
    }
}
