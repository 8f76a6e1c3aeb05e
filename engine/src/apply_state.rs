//! The last results of `apply` per host, kept in a small JSON file beside
//! the inventory (`lab.yaml` → `lab.last-apply.json`) for `pgdeploy report`.
//! Each host's entry is replaced when an apply runs on it; hosts outside a
//! run's `--limit` keep theirs. The file holds counts, task names and
//! failure messages with every secret masked, never variables; it is
//! written to a temporary file and renamed over the old one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::report::{task_label, Masker, RunReport, TaskStatus};

/// One host's last apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostApply {
    /// When the run ended (Unix seconds).
    pub finished_at: i64,
    /// The playbook applied.
    pub playbook: String,
    /// Tasks with nothing to change.
    pub ok: usize,
    /// Tasks that changed something.
    pub changed: usize,
    /// Tasks that failed.
    pub failed: usize,
    /// Tasks skipped.
    pub skipped: usize,
    /// Why the host could not be reached, if so.
    pub unreachable: Option<String>,
    /// The run was stopped by Ctrl-C.
    pub interrupted: bool,
    /// The tasks that changed something (`role / task`).
    pub changed_tasks: Vec<String>,
    /// The failed tasks with their messages.
    pub failures: Vec<String>,
}

/// The state file: host → its last apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyState {
    /// Per host.
    pub hosts: BTreeMap<String, HostApply>,
}

/// Failures reading or writing the state file, naming it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a state file.
    #[error("{path}: not a pgdeploy apply state file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// The state file of an inventory: beside it, `<stem>.last-apply.json`.
pub fn state_path(inventory: &Path) -> PathBuf {
    let stem = inventory
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "inventory".into());
    inventory.with_file_name(format!("{stem}.last-apply.json"))
}

impl ApplyState {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<ApplyState, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ApplyState::default()),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Replaces the entries of the run's hosts with its results (secrets
    /// masked).
    pub fn record(&mut self, run: &RunReport, playbook: &Path, masker: &Masker) {
        let finished_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for host in &run.hosts {
            let recap = host.recap();
            let labels = |status: TaskStatus| -> Vec<String> {
                host.results
                    .iter()
                    .filter(|r| r.status == status)
                    .map(|r| {
                        let label = task_label(r);
                        match (status, &r.message) {
                            (TaskStatus::Failed, Some(m)) => masker.mask(&format!("{label}: {m}")),
                            _ => masker.mask(&label),
                        }
                    })
                    .collect()
            };
            self.hosts.insert(
                host.host.clone(),
                HostApply {
                    finished_at,
                    playbook: playbook.display().to_string(),
                    ok: recap.ok,
                    changed: recap.changed,
                    failed: recap.failed,
                    skipped: recap.skipped,
                    unreachable: host.unreachable.as_ref().map(|u| masker.mask(u)),
                    interrupted: run.interrupted,
                    changed_tasks: labels(TaskStatus::Changed),
                    failures: labels(TaskStatus::Failed),
                },
            );
        }
    }

    /// Writes the state atomically (see [`crate::files::write_atomically`]).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        crate::files::write_atomically(path, text.as_bytes(), 0o644).map_err(|source| {
            StateError::Io {
                path: path.into(),
                source,
            }
        })
    }
}

/// Records a run in the state file of `inventory` (loaded, updated for the
/// run's hosts, saved); returns the file's path.
pub fn record_run(
    inventory: &Path,
    playbook: &Path,
    run: &RunReport,
    masker: &Masker,
) -> Result<PathBuf, StateError> {
    let path = state_path(inventory);
    let mut state = ApplyState::load(&path)?;
    state.record(run, playbook, masker);
    state.save(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::{HostReport, TaskResult};

    fn result(task: &str, status: TaskStatus, message: Option<&str>) -> TaskResult {
        TaskResult {
            host: "node1".into(),
            task: task.into(),
            role: Some("postgres".into()),
            handler: false,
            status,
            changes: Vec::new(),
            message: message.map(String::from),
            depends_on: None,
            duration: Duration::ZERO,
            started: Duration::ZERO,
            waited: Duration::ZERO,
        }
    }

    fn run(hosts: Vec<HostReport>) -> RunReport {
        RunReport {
            hosts,
            elapsed: Duration::from_secs(3),
            check: false,
            interrupted: false,
        }
    }

    #[test]
    fn records_per_host_masks_secrets_and_keeps_other_hosts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inventory = dir.path().join("lab.yaml");
        let path = state_path(&inventory);
        assert_eq!(path, dir.path().join("lab.last-apply.json"));
        assert_eq!(
            ApplyState::load(&path).expect("empty"),
            ApplyState::default()
        );

        let mut extra = serde_json::Map::new();
        extra.insert("postgres_superuser_password".into(), "Sup3r-secret".into());
        let inv = crate::inventory::Inventory::parse(
            "all:\n  hosts:\n    node1: {}\n",
            Path::new("inv.yaml"),
        )
        .expect("inventory");
        let masker = Masker::new(&inv, &extra);

        let mut node1 = HostReport::new("node1");
        node1.results = vec![
            result("install", TaskStatus::Ok, None),
            result("config", TaskStatus::Changed, None),
            result(
                "psql",
                TaskStatus::Failed,
                Some("password Sup3r-secret rejected"),
            ),
        ];
        let mut node2 = HostReport::new("node2");
        node2.unreachable = Some("connection refused".into());
        let written = record_run(
            &inventory,
            Path::new("playbooks/site.yaml"),
            &run(vec![node1, node2]),
            &masker,
        )
        .expect("recorded");
        assert_eq!(written, path);

        let text = std::fs::read_to_string(&path).expect("written");
        assert!(!text.contains("Sup3r-secret"), "{text}");
        let loaded = ApplyState::load(&path).expect("loads");
        let n1 = &loaded.hosts["node1"];
        assert_eq!((n1.ok, n1.changed, n1.failed), (1, 1, 1));
        assert_eq!(n1.changed_tasks, ["postgres / config"]);
        assert_eq!(n1.failures.len(), 1);
        assert!(n1.failures[0].starts_with("postgres / psql: password "));
        assert_eq!(
            loaded.hosts["node2"].unreachable.as_deref(),
            Some("connection refused")
        );

        // A later run on node2 alone keeps node1's entry.
        let mut again = loaded.clone();
        again.record(
            &run(vec![HostReport::new("node2")]),
            Path::new("playbooks/site.yaml"),
            &masker,
        );
        again.save(&path).expect("saved");
        let loaded = ApplyState::load(&path).expect("loads");
        assert_eq!(loaded.hosts["node1"], *n1);
        assert_eq!(loaded.hosts["node2"].unreachable, None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        std::fs::write(&path, "{not json").expect("write");
        let err = ApplyState::load(&path).expect_err("bad file");
        assert!(err.to_string().contains("lab.last-apply.json"), "{err}");
    }
}
