//! The backup repository (pgBackRest on the `backup` host): the backups it
//! holds, the window a point-in-time restore can reach (the oldest backup's
//! end to the newest archived WAL), and on-demand backups.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value as Json;

use super::ops::Say;
use super::{Cluster, ClusterError};
use crate::contract::{self, Group};

/// Reads pgBackRest's info and the newest archived WAL segment.
const REPO_INFO: &str = include_str!("../sh/repo-info.sh");
/// Takes a backup.
const BACKUP_RUN: &str = include_str!("../sh/backup-run.sh");

/// One backup in the repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backup {
    /// pgBackRest's label.
    pub label: String,
    /// `full`, `diff`, `incr`.
    pub kind: String,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// When it finished (Unix seconds): the earliest point it restores to.
    pub stopped_at: i64,
    /// The WAL position it is consistent at (`0/6000050`).
    pub lsn_stop: Option<String>,
    /// Size of the database it copied, in bytes.
    pub size: Option<u64>,
    /// Size it takes in the repository (compressed), in bytes.
    pub repository_size: Option<u64>,
    /// pgBackRest flagged it as having errors.
    pub error: bool,
    /// The PostgreSQL major of the cluster it copied (`17`), from the
    /// stanza's database history.
    pub major: Option<String>,
}

/// The backups of `pgbackrest info --output=json`, newest first.
pub fn parse_backups(info: &str) -> Result<Vec<Backup>, String> {
    let doc: Json = serde_json::from_str(info).map_err(|e| format!("not JSON: {e}"))?;
    let stanzas = doc.as_array().ok_or("not a list of stanzas".to_string())?;
    let mut list: Vec<Backup> = stanzas
        .iter()
        .flat_map(|stanza| {
            let history = stanza["db"].as_array().cloned().unwrap_or_default();
            let backups = &stanza["backup"]; // not a group: the key of pgBackRest's info JSON
            backups
                .as_array()
                .into_iter()
                .flatten()
                .map(move |b| (b, history.clone()))
        })
        .map(|(b, history)| Backup {
            major: history
                .iter()
                .find(|db| db["id"] == b["database"]["id"])
                .and_then(|db| db["version"].as_str())
                .map(str::to_string),
            label: b["label"].as_str().unwrap_or("?").to_string(),
            kind: b["type"].as_str().unwrap_or("?").to_string(),
            started_at: b["timestamp"]["start"].as_i64().unwrap_or(0),
            stopped_at: b["timestamp"]["stop"].as_i64().unwrap_or(0),
            lsn_stop: b["lsn"]["stop"].as_str().map(str::to_string),
            size: b["info"]["size"].as_u64(),
            repository_size: b["info"]["repository"]["size"].as_u64(),
            error: b["error"] == true,
        })
        .collect();
    list.sort_by_key(|b| std::cmp::Reverse(b.stopped_at));
    Ok(list)
}

/// The newest archived WAL segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchivedWal {
    /// Its name (`000000010000000000000007`).
    pub name: String,
    /// When it reached the repository (Unix seconds).
    pub archived_at: i64,
}

/// How far back and forward a point-in-time restore can reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RecoveryWindow {
    /// The end of the oldest usable backup (Unix seconds).
    pub from: i64,
    /// The arrival of the newest archived WAL, or the newest backup's end
    /// when that is later (Unix seconds).
    pub to: i64,
}

impl RecoveryWindow {
    /// `FROM – TO` in UTC.
    pub fn view(&self) -> String {
        format!(
            "{} – {}",
            super::status::format_utc(self.from),
            super::status::format_utc(self.to)
        )
    }
}

/// What the repository holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repository {
    /// The backup host.
    pub host: String,
    /// Its backups, newest first.
    pub backups: Vec<Backup>,
    /// The newest archived WAL segment, if any.
    pub newest_wal: Option<ArchivedWal>,
    /// A backup holds pgBackRest's lock right now.
    pub backup_running: bool,
    /// The running backup's progress: bytes done and of how many, when
    /// pgBackRest tells.
    pub progress: Option<(u64, u64)>,
}

impl Repository {
    /// The usable backups (without errors), newest first.
    pub fn usable(&self) -> impl Iterator<Item = &Backup> {
        self.backups.iter().filter(|b| !b.error)
    }

    /// The newest usable backup.
    pub fn newest(&self) -> Option<&Backup> {
        self.usable().next()
    }

    /// The recovery window; `None` without a usable backup.
    pub fn window(&self) -> Option<RecoveryWindow> {
        let from = self.usable().map(|b| b.stopped_at).min()?;
        let newest = self.usable().map(|b| b.stopped_at).max().unwrap_or(from);
        let to = self
            .newest_wal
            .as_ref()
            .map_or(newest, |w| w.archived_at.max(newest));
        Some(RecoveryWindow { from, to })
    }
}

/// Reads what [`REPO_INFO`] printed on `host`.
pub fn parse_repository(host: &str, text: &str) -> Result<Repository, String> {
    let mut lines = text.lines();
    let info = lines.next().unwrap_or_default();
    let backups = parse_backups(info)?;
    let doc: Json = serde_json::from_str(info).map_err(|e| format!("not JSON: {e}"))?;
    let lock = &doc[0]["status"]["lock"]["backup"]; // not a group: the key of pgBackRest's info JSON
    let progress = match (lock["size-cplt"].as_u64(), lock["size"].as_u64()) {
        (Some(done), Some(all)) => Some((done, all)),
        _ => None,
    };
    let newest_wal = match lines.find(|l| l.starts_with("newest-wal ")) {
        None => None,
        Some(line) => {
            let mut fields = line.split_whitespace().skip(1);
            let at = fields
                .next()
                .and_then(|t| t.parse::<f64>().ok())
                .ok_or_else(|| format!("bad line `{line}`"))?;
            let file = fields.next().ok_or_else(|| format!("bad line `{line}`"))?;
            Some(ArchivedWal {
                name: file.chars().take(24).collect(),
                archived_at: at as i64,
            })
        }
    };
    Ok(Repository {
        host: host.to_string(),
        backups,
        newest_wal,
        backup_running: lock["held"] == true,
        progress,
    })
}

/// The backup host; an input error when the inventory has none.
pub fn backup_host(cluster: &Cluster) -> Result<String, ClusterError> {
    cluster
        .group(Group::Backup)
        .into_iter()
        .next()
        .ok_or_else(|| {
            ClusterError::Input(format!(
                "the inventory has no `{}` host: there is no repository",
                Group::Backup.name()
            ))
        })
}

/// What the repository on the backup host holds.
pub async fn repository(cluster: &Cluster) -> Result<Repository, ClusterError> {
    let host = backup_host(cluster)?;
    let repo_path = cluster
        .stack()
        .required_string(&host, contract::PGBACKREST_REPO_PATH)?;
    let text = cluster
        .script(&host, REPO_INFO, &[&cluster.name(), &repo_path])
        .await?;
    parse_repository(&host, &text).map_err(|reason| ClusterError::Unparsable {
        host: host.clone(),
        service: "pgbackrest info".into(),
        reason,
        answer: super::shortened(&text),
    })
}

/// The kinds of backup pgBackRest takes.
pub const BACKUP_TYPES: [&str; 3] = ["full", "diff", "incr"];

/// Takes a backup of `kind` on the backup host, reporting its progress
/// every few seconds, and returns it. Refused while another backup runs
/// (a timer's, or another operator's).
pub async fn backup(cluster: &Cluster, kind: &str, say: Say<'_>) -> Result<Backup, ClusterError> {
    if !BACKUP_TYPES.contains(&kind) {
        return Err(ClusterError::Input(format!(
            "--type {kind}: one of {}",
            BACKUP_TYPES.join(", ")
        )));
    }
    let before = repository(cluster).await?;
    let host = before.host.clone();
    if before.backup_running {
        return Err(already_running(&host));
    }
    say(&format!(
        "{kind} backup of {} on {host} ...",
        cluster.name()
    ));
    let started = Instant::now();
    let name = cluster.name();
    let args = [name.as_str(), kind];
    let run = cluster.script(&host, BACKUP_RUN, &args);
    tokio::pin!(run);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tick.tick() => {
                if let Ok(Repository { progress: Some((done, all)), .. }) = repository(cluster).await {
                    say(&format!(
                        "  {:.0}% ({} of {} MB, {:.0}s)",
                        done as f64 * 100.0 / all.max(1) as f64,
                        done / 1_048_576,
                        all / 1_048_576,
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
        }
    };
    match result {
        // pgBackRest's LockAcquireError: another backup holds the stanza's lock.
        Err(ClusterError::CommandFailed { status: 50, .. }) => {
            return Err(already_running(&host));
        }
        other => other?,
    };
    let after = repository(cluster).await?;
    let new = after
        .usable()
        .find(|b| !before.backups.iter().any(|o| o.label == b.label))
        .cloned();
    new.ok_or_else(|| {
        ClusterError::Refused(format!(
            "pgBackRest on {host} ended without error, but no new backup is in the repository"
        ))
    })
}

fn already_running(host: &str) -> ClusterError {
    ClusterError::Refused(format!(
        "a backup is already running on {host} (pgBackRest's lock is held); not starting another"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = r#"[{"archive":[{"id":"15-1","max":"00000001000000000000001B","min":"000000010000000000000005"}],"backup":[{"label":"20261124-042014F","type":"full","error":false,"database":{"id":1,"repo-key":1},"lsn":{"start":"0/5000028","stop":"0/6000050"},"timestamp":{"start":1795494014,"stop":1795494019}},
            {"label":"20261124-042014F_20261125-010000D","type":"diff","error":false,"database":{"id":2,"repo-key":1},"timestamp":{"start":1795570000,"stop":1795570060}},
            {"label":"broken","type":"incr","error":true,"timestamp":{"start":1795580000,"stop":1795580060}}],"db":[{"id":1,"repo-key":1,"system-id":7441,"version":"15"},{"id":2,"repo-key":1,"system-id":7442,"version":"17"}],"name":"lab","status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    /// The info on one line, as the script prints it.
    fn info() -> String {
        INFO.replace('\n', "")
    }

    #[test]
    fn backups_newest_first_and_the_usable_ones() {
        let repo = parse_repository("node4", &info()).expect("parses");
        let labels: Vec<&str> = repo.backups.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "broken",
                "20261124-042014F_20261125-010000D",
                "20261124-042014F"
            ]
        );
        assert_eq!(
            repo.newest().map(|b| b.label.as_str()),
            Some("20261124-042014F_20261125-010000D")
        );
        assert_eq!(repo.backups[2].lsn_stop.as_deref(), Some("0/6000050"));
        // The major each copied, from the stanza's history (after a stanza-upgrade).
        let majors: Vec<Option<&str>> = repo.backups.iter().map(|b| b.major.as_deref()).collect();
        assert_eq!(majors, [None, Some("17"), Some("15")]);
        assert!(!repo.backup_running);
        assert_eq!(repo.newest_wal, None);
        // Without archived WAL the window ends with the newest backup.
        assert_eq!(
            repo.window(),
            Some(RecoveryWindow {
                from: 1795494019,
                to: 1795570060
            })
        );
    }

    #[test]
    fn the_window_reaches_the_newest_archived_wal() {
        let text = format!(
            "{}\nnewest-wal 1795600000.25 00000001000000000000001B-8b606e2e287a9fed3e8a489055c256d692106205.lz4\n",
            info()
        );
        let repo = parse_repository("node4", &text).expect("parses");
        assert_eq!(
            repo.newest_wal,
            Some(ArchivedWal {
                name: "00000001000000000000001B".into(),
                archived_at: 1795600000
            })
        );
        assert_eq!(
            repo.window().map(|w| (w.from, w.to)),
            Some((1795494019, 1795600000))
        );
    }

    #[test]
    fn a_running_backup_and_its_progress() {
        let info = r#"[{"backup":[],"name":"lab","status":{"code":0,"lock":{"backup":{"held":true,"size":2000,"size-cplt":500}}}}]"#;
        let repo = parse_repository("node4", info).expect("parses");
        assert!(repo.backup_running);
        assert_eq!(repo.progress, Some((500, 2000)));
        assert_eq!(repo.newest(), None);
        assert_eq!(repo.window(), None);
    }

    #[test]
    fn unreadable_answers_are_errors() {
        assert!(parse_repository("node4", "{").is_err());
        assert!(parse_repository("node4", "{}").is_err());
        assert!(parse_repository("node4", &format!("{}\nnewest-wal soon x\n", info())).is_err());
    }
}
