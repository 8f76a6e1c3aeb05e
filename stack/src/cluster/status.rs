//! `pgdeploy status`: the cluster's health in one look: Patroni members
//! (role, state, timeline, lag), etcd health, HAProxy's view of each
//! backend, the VIP's holder, the newest backup with its age, each etcd
//! member's database size and alarms, and the leader's WAL archiver.

use crate::contract::{self, Group};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;

use super::backup::{self as repo, ArchivedWal, RecoveryWindow, Repository};
use super::{etcd as upkeep, Cluster, ClusterError, PatroniNode};

/// Limits beyond which the cluster counts as degraded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest acceptable replication lag, in MB.
    pub max_lag_mb: f64,
    /// Largest acceptable age of the newest backup, in hours.
    pub max_backup_age_hours: f64,
}

/// One Patroni member as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// Member name.
    pub name: String,
    /// Its address.
    pub host: String,
    /// `leader` or `replica` (Patroni's role).
    pub role: String,
    /// Patroni's state, e.g. `running`.
    pub state: String,
    /// Timeline.
    pub timeline: Option<u64>,
    /// Replication lag in MB (replicas).
    pub lag_mb: Option<f64>,
    /// A replica with a walsender in state `streaming` on the leader.
    pub streaming: bool,
    /// A parameter change waits for a restart.
    pub pending_restart: bool,
}

/// One etcd member's health.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdStatus {
    /// Inventory host.
    pub host: String,
    /// `/health` said `"health": "true"`.
    pub healthy: bool,
    /// Why not, when not.
    pub error: Option<String>,
    /// Its database, when the maintenance status API answered.
    pub db: Option<EtcdDb>,
    /// The alarms raised for it (`NOSPACE`, `CORRUPT`).
    pub alarms: Vec<String>,
}

/// One etcd member's database file.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdDb {
    /// Size of the file, bytes.
    pub size_bytes: u64,
    /// Bytes of it in use (the rest is free pages, until defragmented).
    pub in_use_bytes: u64,
    /// The size limit (`etcd_quota_backend_bytes`), when known.
    pub quota_bytes: Option<u64>,
}

/// The leader's WAL archiver (`pg_stat_archiver`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArchiverStatus {
    /// The member asked (the leader).
    pub member: String,
    /// WAL files archived since the statistics were reset.
    pub archived_count: u64,
    /// Failed attempts since then.
    pub failed_count: u64,
    /// The newest WAL file archived.
    pub last_archived_wal: Option<String>,
    /// Seconds since it was archived.
    pub last_archived_age_s: Option<f64>,
    /// The WAL file of the newest failure.
    pub last_failed_wal: Option<String>,
    /// Seconds since that failure.
    pub last_failed_age_s: Option<f64>,
    /// WAL files waiting to be archived (`.ready` in pg_wal/archive_status).
    pub waiting: u64,
    /// The WAL file the leader writes now.
    pub current_wal: Option<String>,
    /// The leader's `archive_timeout`, in seconds (0: none).
    pub archive_timeout_s: Option<f64>,
}

/// WAL waiting while nothing was archived for this long is degraded too.
pub const ARCHIVE_STALL_S: f64 = 900.0;

impl ArchiverStatus {
    /// Why the archiver counts as failing, when it does: its newest
    /// attempt failed (the newest failure is more recent than the newest
    /// success), or WAL is waiting while the newest archived file is older
    /// than [`ARCHIVE_STALL_S`]. Failures followed by a success (say before
    /// the repository's stanza existed, on a fresh deploy) are history.
    pub fn problem(&self) -> Option<String> {
        let ago = |s: Option<f64>| s.map_or("never".to_string(), |s| format!("{s:.0} s ago"));
        if let Some(failed) = self.last_failed_age_s {
            if self.last_archived_age_s.is_none_or(|ok| failed < ok) {
                return Some(format!(
                    "WAL archiving fails on {}: {} failure(s), the newest for {} {}",
                    self.member,
                    self.failed_count,
                    self.last_failed_wal.as_deref().unwrap_or("?"),
                    ago(self.last_failed_age_s)
                ));
            }
        }
        if self.waiting > 0
            && self
                .last_archived_age_s
                .is_none_or(|age| age > ARCHIVE_STALL_S)
        {
            return Some(format!(
                "WAL archiving is stuck on {}: {} file(s) waiting, the newest archived {}",
                self.member,
                self.waiting,
                ago(self.last_archived_age_s)
            ));
        }
        None
    }

    /// One line: counts, the newest archived file and its age.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} archived, {} failed, {} waiting, newest {}{}",
            self.member,
            self.archived_count,
            self.failed_count,
            self.waiting,
            self.last_archived_wal.as_deref().unwrap_or("none"),
            self.last_archived_age_s
                .map(|s| format!(" {s:.0} s ago"))
                .unwrap_or_default()
        )
    }
}

/// One HAProxy server line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackendStatus {
    /// Proxy (`postgres_rw`, `postgres_ro`).
    pub proxy: String,
    /// Server (member name).
    pub server: String,
    /// `UP`, `DOWN`, `MAINT`, ...
    pub status: String,
}

/// What one balancer's HAProxy sees.
#[derive(Debug, Clone, Serialize)]
pub struct BalancerStatus {
    /// Inventory host.
    pub host: String,
    /// Server lines of the PostgreSQL proxies.
    pub backends: Vec<BackendStatus>,
    /// Why the stats page could not be read.
    pub error: Option<String>,
}

impl BalancerStatus {
    /// Its servers as `rw/node1 UP, ro/node2 UP, ...`, or why the stats
    /// page could not be read.
    pub fn view(&self) -> String {
        match &self.error {
            Some(e) => format!("unreachable: {e}"),
            None => self
                .backends
                .iter()
                .map(|s| {
                    format!(
                        "{}/{} {}",
                        s.proxy.trim_start_matches("postgres_"),
                        s.server,
                        s.status
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The newest backup in the repository.
#[derive(Debug, Clone, Serialize)]
pub struct BackupStatus {
    /// The repository host.
    pub host: String,
    /// pgBackRest's label.
    pub label: String,
    /// `full`, `diff`, `incr`.
    pub kind: String,
    /// When it finished (Unix seconds).
    pub stopped_at: i64,
    /// Its age in hours when `status` ran.
    pub age_hours: f64,
    /// How many usable backups the repository holds.
    pub count: usize,
    /// The newest archived WAL segment.
    pub newest_wal: Option<ArchivedWal>,
    /// The oldest backup's end to the newest archived WAL: what
    /// `pgdeploy restore --to` can reach.
    pub recovery_window: Option<RecoveryWindow>,
}

/// How long the reachability probe of each host may take.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// Everything `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `cluster_name`.
    pub cluster: String,
    /// Inventory hosts that did not answer over SSH, with why; the checks
    /// skip them.
    pub unreachable: BTreeMap<String, String>,
    /// The leader's name.
    pub leader: Option<String>,
    /// Patroni members.
    pub members: Vec<MemberStatus>,
    /// etcd members.
    pub etcd: Vec<EtcdStatus>,
    /// HAProxy on each balancer.
    pub haproxy: Vec<BalancerStatus>,
    /// The VIP's address.
    pub vip: Option<String>,
    /// The balancers holding the VIP (one when healthy).
    pub vip_holders: Vec<String>,
    /// The newest backup.
    pub backup: Option<BackupStatus>,
    /// The leader's WAL archiver, when there is a leader to ask.
    pub archiver: Option<ArchiverStatus>,
    /// What makes the cluster degraded; empty when healthy.
    pub problems: Vec<String>,
    /// `problems` is empty.
    pub healthy: bool,
}

/// Gathers the status of the inventory's cluster.
pub async fn collect(cluster: &Cluster, limits: Limits) -> Status {
    let unreachable = cluster.probe(PROBE_LIMIT).await;
    let mut problems: Vec<String> = unreachable
        .keys()
        .map(|host| format!("{host} is unreachable"))
        .collect();
    let (members, leader) = members(cluster, limits, &mut problems).await;
    let etcd = etcd(cluster, &mut problems).await;
    let haproxy = haproxy(cluster, leader.as_deref(), &mut problems).await;
    let (vip, vip_holders) = vip(cluster, &mut problems).await;
    let repository = repository(cluster, &mut problems).await;
    let archiver = archiver(cluster, leader.as_deref(), &mut problems).await;
    let now = unix_now();
    let backup = repository
        .as_ref()
        .and_then(|r| backup_status(r, limits, now, &mut problems));
    if let (Some(a), Some(w)) = (
        &archiver,
        repository.as_ref().and_then(|r| r.newest_wal.as_ref()),
    ) {
        problems.extend(archive_behind(a, w, now));
    }
    Status {
        cluster: cluster.name(),
        unreachable,
        leader,
        members,
        etcd,
        haproxy,
        vip,
        vip_holders,
        backup,
        archiver,
        healthy: problems.is_empty(),
        problems,
    }
}

async fn members(
    cluster: &Cluster,
    limits: Limits,
    problems: &mut Vec<String>,
) -> (Vec<MemberStatus>, Option<String>) {
    let (asked, patroni) = match cluster.patroni_cluster().await {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("no Patroni member answers: {e}"));
            return (Vec::new(), None);
        }
    };
    let leader = patroni.leader().map(|m| m.name.clone());
    let senders = match &leader {
        Some(l) => cluster
            .patroni_get::<PatroniNode>(l, "/patroni")
            .await
            .map(|n| n.replication)
            .unwrap_or_default(),
        None => {
            problems.push(format!("no leader (Patroni on {asked} lists none)"));
            Vec::new()
        }
    };
    let mut list = Vec::new();
    for m in &patroni.members {
        let streaming = senders
            .iter()
            .any(|s| s.application_name == m.name && s.state == "streaming");
        let lag_mb = m.lag_bytes().map(|b| b as f64 / 1_048_576.0);
        if !m.is_leader() {
            if m.state != "running" && m.state != "streaming" {
                problems.push(format!("replica {} is {}", m.name, m.state));
            } else if !streaming && leader.is_some() {
                problems.push(format!(
                    "replica {} is not streaming from the leader",
                    m.name
                ));
            }
            match lag_mb {
                Some(lag) if lag > limits.max_lag_mb => problems.push(format!(
                    "replica {} lags {lag:.1} MB (limit {} MB)",
                    m.name, limits.max_lag_mb
                )),
                None if leader.is_some() => {
                    problems.push(format!("replica {} has an unknown lag", m.name))
                }
                _ => {}
            }
        }
        list.push(MemberStatus {
            name: m.name.clone(),
            host: m.host.clone(),
            role: m.role.clone(),
            state: m.state.clone(),
            timeline: m.timeline,
            lag_mb,
            streaming,
            pending_restart: m.pending_restart,
        });
    }
    for host in cluster.group(Group::Postgres) {
        if patroni.member(&host).is_none() {
            problems.push(format!("{host} is not a member of the Patroni cluster"));
        }
    }
    (list, leader)
}

async fn etcd(cluster: &Cluster, problems: &mut Vec<String>) -> Vec<EtcdStatus> {
    let hosts = cluster.group(Group::Etcd);
    let mut list = Vec::new();
    for host in &hosts {
        let answer = match cluster.port(host, contract::ETCD_CLIENT_PORT) {
            Ok(port) => cluster.api(host, port, "GET", "/health", None).await,
            Err(e) => Err(e),
        };
        let (healthy, error) = match answer {
            Ok(res) => match serde_json::from_slice::<Json>(&res.body) {
                Ok(v) if v["health"] == "true" => (true, None),
                _ => (false, Some(format!("/health: {}", res.text().trim()))),
            },
            Err(e) => (false, Some(e.to_string())),
        };
        let db = upkeep::member_status(cluster, host)
            .await
            .ok()
            .map(|s| EtcdDb {
                size_bytes: s.db_size,
                in_use_bytes: s.db_size_in_use,
                quota_bytes: upkeep::quota(cluster, host),
            });
        list.push(EtcdStatus {
            host: host.clone(),
            healthy,
            error,
            db,
            alarms: Vec::new(),
        });
    }
    etcd_alarms(cluster, &mut list, problems).await;
    let up = list.iter().filter(|e| e.healthy).count();
    if !hosts.is_empty() && up * 2 <= hosts.len() {
        problems.push(format!(
            "etcd has no quorum ({up} of {} members healthy)",
            hosts.len()
        ));
    } else {
        for e in list.iter().filter(|e| !e.healthy) {
            problems.push(format!("etcd on {} is unhealthy", e.host));
        }
    }
    list
}

/// Puts the cluster's alarms on the members they are raised for (the
/// member IDs matched through each member's own status).
async fn etcd_alarms(cluster: &Cluster, list: &mut [EtcdStatus], problems: &mut Vec<String>) {
    let Some(asked) = list.iter().find(|e| e.healthy).map(|e| e.host.clone()) else {
        return;
    };
    let alarms = match upkeep::alarms(cluster, &asked).await {
        Ok(a) => a,
        Err(e) => {
            problems.push(format!("cannot read etcd's alarms: {e}"));
            return;
        }
    };
    for (id, alarm) in alarms {
        let mut owner = None;
        for e in list.iter_mut() {
            if let Ok(s) = upkeep::member_status(cluster, &e.host).await {
                if s.id == id {
                    owner = Some(e.host.clone());
                    e.alarms.push(alarm.clone());
                }
            }
        }
        problems.push(format!(
            "etcd alarm {alarm} on {}",
            owner.unwrap_or_else(|| format!("member {id}"))
        ));
    }
}

/// Reads `pg_stat_archiver` on a member (as postgres, over SSH).
const ARCHIVER: &str = include_str!("../sh/pg-archiver.sh");

/// Reads the line [`ARCHIVER`] prints: counts, WAL names and ages.
pub fn parse_archiver(member: &str, line: &str) -> Result<ArchiverStatus, String> {
    let fields: Vec<&str> = line.trim().split('|').collect();
    if fields.len() != 9 {
        return Err(format!("expected 9 fields, got `{}`", line.trim()));
    }
    let text = |i: usize| Some(fields[i].to_string()).filter(|s| !s.is_empty());
    let num = |i: usize| text(i).and_then(|s| s.parse::<f64>().ok());
    Ok(ArchiverStatus {
        member: member.to_string(),
        archived_count: num(0).unwrap_or(0.0) as u64,
        failed_count: num(1).unwrap_or(0.0) as u64,
        last_archived_wal: text(2),
        last_archived_age_s: num(3),
        last_failed_wal: text(4),
        last_failed_age_s: num(5),
        waiting: num(6).unwrap_or(0.0) as u64,
        current_wal: text(7),
        archive_timeout_s: num(8),
    })
}

/// The leader's `pg_stat_archiver` and the WAL waiting to be archived.
pub async fn archiver_status(
    cluster: &Cluster,
    leader: &str,
) -> Result<ArchiverStatus, ClusterError> {
    let port = cluster.port(leader, contract::POSTGRES_PORT)?;
    let line = cluster
        .script(leader, ARCHIVER, &[&port.to_string()])
        .await?;
    parse_archiver(leader, &line).map_err(|reason| ClusterError::Unparsable {
        host: leader.to_string(),
        service: "pg_stat_archiver".into(),
        reason,
        answer: super::shortened(&line),
    })
}

async fn archiver(
    cluster: &Cluster,
    leader: Option<&str>,
    problems: &mut Vec<String>,
) -> Option<ArchiverStatus> {
    let leader = leader?;
    match archiver_status(cluster, leader).await {
        Ok(a) => {
            problems.extend(a.problem());
            Some(a)
        }
        Err(e) => {
            problems.push(format!("cannot read the WAL archiver on {leader}: {e}"));
            None
        }
    }
}

/// The server lines of HAProxy's CSV stats (`/;csv`) for the PostgreSQL
/// proxies (`postgres_*`), without the FRONTEND/BACKEND summary lines.
pub fn parse_haproxy_csv(csv: &str) -> Vec<BackendStatus> {
    let mut header: Vec<&str> = Vec::new();
    let mut list = Vec::new();
    for line in csv.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            header = h.split(',').collect();
            continue;
        }
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            continue;
        };
        let fields: Vec<&str> = line.split(',').collect();
        let get = |i: usize| fields.get(i).copied().unwrap_or_default();
        if get(px).starts_with("postgres_") && !matches!(get(sv), "FRONTEND" | "BACKEND") {
            list.push(BackendStatus {
                proxy: get(px).to_string(),
                server: get(sv).to_string(),
                status: get(st).to_string(),
            });
        }
    }
    list
}

async fn haproxy(
    cluster: &Cluster,
    leader: Option<&str>,
    problems: &mut Vec<String>,
) -> Vec<BalancerStatus> {
    let mut list = Vec::new();
    for host in cluster.group(Group::Balancers) {
        let answer = match cluster.port(&host, contract::HAPROXY_STATS_PORT) {
            Ok(port) => cluster.http(&host, port, "GET", "/;csv", None).await,
            Err(e) => Err(e),
        };
        let (backends, error) = match answer {
            Ok(res) if res.status == 200 => (parse_haproxy_csv(&res.text()), None),
            Ok(res) => (
                Vec::new(),
                Some(format!("stats page answered {}", res.status)),
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        if let Some(e) = &error {
            problems.push(format!("HAProxy on {host}: {e}"));
        } else if let Some(leader) = leader {
            let up: Vec<&str> = backends
                .iter()
                .filter(|b| b.proxy == "postgres_rw" && b.status.starts_with("UP"))
                .map(|b| b.server.as_str())
                .collect();
            if up != [leader] {
                problems.push(format!(
                    "HAProxy on {host} sends writes to [{}], not to the leader {leader}",
                    up.join(", ")
                ));
            }
        }
        list.push(BalancerStatus {
            host,
            backends,
            error,
        });
    }
    list
}

async fn vip(cluster: &Cluster, problems: &mut Vec<String>) -> (Option<String>, Vec<String>) {
    let balancers = cluster.group(Group::Balancers);
    let Some(vip) = balancers
        .first()
        .and_then(|h| cluster.var_str(h, contract::VIP_ADDRESS))
    else {
        return (None, Vec::new());
    };
    let mut holders = Vec::new();
    for host in &balancers {
        let script = format!(
            "ip -o -4 addr show | awk '{{print $4}}' | cut -d/ -f1 | grep -qxF {}",
            pgdeploy_text::quote(&vip)
        );
        if cluster.exec(host, &script).await.is_ok() {
            holders.push(host.clone());
        }
    }
    match holders.len() {
        0 => problems.push(format!("no balancer holds the VIP {vip}")),
        1 => {}
        _ => problems.push(format!(
            "the VIP {vip} is held by several balancers: {}",
            holders.join(", ")
        )),
    }
    (Some(vip), holders)
}

/// What the repository holds; no backup in it, or none readable, is a
/// problem.
async fn repository(cluster: &Cluster, problems: &mut Vec<String>) -> Option<Repository> {
    let host = cluster.group(Group::Backup).into_iter().next()?;
    match repo::repository(cluster).await {
        Ok(r) => {
            if r.newest().is_none() {
                problems.push(format!("no backup in the repository on {host}"));
            }
            Some(r)
        }
        Err(e) => {
            problems.push(format!("cannot read the backups on {host}: {e}"));
            None
        }
    }
}

/// The newest backup and the recovery window, as `status` shows them;
/// a backup older than the limit is a problem.
fn backup_status(
    repo: &Repository,
    limits: Limits,
    now: i64,
    problems: &mut Vec<String>,
) -> Option<BackupStatus> {
    let newest = repo.newest()?;
    let age_hours = (now - newest.stopped_at).max(0) as f64 / 3600.0;
    if age_hours > limits.max_backup_age_hours {
        problems.push(format!(
            "the newest backup ({}) is {age_hours:.1} h old (limit {} h)",
            newest.label, limits.max_backup_age_hours
        ));
    }
    Some(BackupStatus {
        host: repo.host.clone(),
        label: newest.label.clone(),
        kind: newest.kind.clone(),
        stopped_at: newest.stopped_at,
        age_hours,
        count: repo.usable().count(),
        newest_wal: repo.newest_wal.clone(),
        recovery_window: repo.window(),
    })
}

/// A WAL segment's place in the WAL stream, whatever its timeline (16 MB
/// segments: 256 per log file).
pub fn segment_number(name: &str) -> Option<u64> {
    let hex = |r: std::ops::Range<usize>| u64::from_str_radix(name.get(r)?, 16).ok();
    (name.len() >= 24).then_some(())?;
    Some(hex(8..16)? * 0x100 + hex(16..24)?)
}

/// Why the repository's WAL counts as stalled, when it does: a segment the
/// leader finished is missing from the repository, and the newest one there
/// arrived more than 3 × `archive_timeout` ago, so the recovery window
/// stopped moving.
pub fn archive_behind(archiver: &ArchiverStatus, newest: &ArchivedWal, now: i64) -> Option<String> {
    let current = segment_number(archiver.current_wal.as_deref()?)?;
    let archived = segment_number(&newest.name)?;
    let limit = 3.0 * archiver.archive_timeout_s.filter(|t| *t > 0.0)?;
    let age = (now - newest.archived_at) as f64;
    (archived + 1 < current && age > limit).then(|| {
        format!(
            "the repository's newest WAL {} arrived {age:.0} s ago (limit 3 × archive_timeout = {limit:.0} s) while {} segment(s) the leader finished are missing: the recovery window stopped moving",
            newest.name,
            current - archived - 1
        )
    })
}

/// The status as text: a member table like `patronictl list`, then etcd,
/// HAProxy, VIP and backup lines, then the verdict.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Cluster: {}", status.cluster);
    out.push_str(&member_table(&status.members));
    for (host, reason) in &status.unreachable {
        let _ = writeln!(out, "down:    {host} unreachable: {reason}");
    }
    let _ = writeln!(out, "etcd:    {}", etcd_summary(&status.etcd));
    for b in &status.haproxy {
        let _ = writeln!(out, "haproxy: {}: {}", b.host, b.view());
    }
    if let Some(vip) = &status.vip {
        let _ = writeln!(
            out,
            "vip:     {vip} on {}",
            if status.vip_holders.is_empty() {
                "no balancer".into()
            } else {
                status.vip_holders.join(", ")
            }
        );
    }
    let _ = writeln!(out, "backup:  {}", backup_summary(status.backup.as_ref()));
    if let Some(a) = &status.archiver {
        let _ = writeln!(out, "archive: {}", a.summary());
    }
    let _ = writeln!(out, "{}", verdict(status));
    out
}

/// The Patroni members as a table like `patronictl list`, one line each.
fn member_table(members: &[MemberStatus]) -> String {
    let header = [
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Lag in MB",
        "Pending",
    ];
    let rows: Vec<[String; 7]> = members.iter().map(member_row).collect();
    text_table(&header, &rows)
}

/// One member's cells, in the order of [`member_table`]'s header.
fn member_row(m: &MemberStatus) -> [String; 7] {
    [
        m.name.clone(),
        m.host.clone(),
        if m.role == "leader" {
            "Leader".into()
        } else {
            "Replica".into()
        },
        if m.streaming {
            "streaming".into()
        } else {
            m.state.clone()
        },
        m.timeline.map(|t| t.to_string()).unwrap_or_default(),
        m.lag_mb.map(|l| format!("{l:.1}")).unwrap_or_default(),
        if m.pending_restart {
            "*".into()
        } else {
            String::new()
        },
    ]
}

/// A boxed text table: a rule, the header, a rule, the rows, a rule; each
/// column as wide as its widest cell.
fn text_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    let rule = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out = String::new();
    let _ = writeln!(out, "{rule}\n{}\n{rule}", line(header));
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", line(&cells));
    }
    let _ = writeln!(out, "{rule}");
    out
}

/// The etcd members as `node1 healthy (db 1.2 MB, 0.4 MB in use, 0.1 %
/// of quota), node2 UNHEALTHY, ...`, alarms named.
fn etcd_summary(etcd: &[EtcdStatus]) -> String {
    let etcd: Vec<String> = etcd
        .iter()
        .map(|e| {
            let db = e.db.as_ref().map(|d| {
                let share = d
                    .quota_bytes
                    .filter(|q| *q > 0)
                    .map(|q| format!(", {:.1} % of quota", d.size_bytes as f64 * 100.0 / q as f64))
                    .unwrap_or_default();
                format!(
                    " (db {}, {} in use{share})",
                    upkeep::mb(d.size_bytes),
                    upkeep::mb(d.in_use_bytes)
                )
            });
            let alarms: String = e.alarms.iter().map(|a| format!(" ALARM {a}")).collect();
            format!(
                "{} {}{}{alarms}",
                e.host,
                if e.healthy { "healthy" } else { "UNHEALTHY" },
                db.unwrap_or_default()
            )
        })
        .collect();
    etcd.join(", ")
}

/// The newest backup as `LABEL (KIND) on HOST, N h old`, or `none`.
fn backup_summary(backup: Option<&BackupStatus>) -> String {
    match backup {
        Some(b) => format!(
            "{} ({}) on {}, {:.1} h old, {} backup(s); recoverable {}",
            b.label,
            b.kind,
            b.host,
            b.age_hours,
            b.count,
            b.recovery_window
                .map_or("nowhere".to_string(), |w| w.view())
        ),
        None => "none".into(),
    }
}

/// `healthy`, or `degraded: ` and every problem on one line.
pub fn verdict(status: &Status) -> String {
    if status.healthy {
        "healthy".into()
    } else {
        format!("degraded: {}", status.problems.join("; "))
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `unix` (seconds) as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Why `collect` could not even start (bad inventory).
pub fn check_inventory(cluster: &Cluster) -> Result<(), ClusterError> {
    if cluster.group(Group::Postgres).is_empty() {
        return Err(ClusterError::Input(format!(
            "{}: the inventory has no `{}` group with hosts",
            cluster.inventory().path.display(),
            Group::Postgres.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_csv_server_lines() {
        let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
stats,FRONTEND,,,0,1,1000,2,0,0,0,0,0,,,,,OPEN,\n\
postgres_rw,FRONTEND,,,0,1,1000,2,0,0,0,0,0,,,,,OPEN,\n\
postgres_rw,node1,0,0,0,1,1000,2,0,0,,0,,0,0,0,0,UP,1\n\
postgres_rw,node2,0,0,0,1,1000,2,0,0,,0,,0,0,0,0,DOWN,1\n\
postgres_rw,BACKEND,0,0,0,1,1000,2,0,0,,0,,0,0,0,0,UP,1\n\
postgres_ro,node2,0,0,0,1,1000,2,0,0,,0,,0,0,0,0,UP 1/2,1\n";
        let lines = parse_haproxy_csv(csv);
        assert_eq!(
            lines
                .iter()
                .map(|b| format!("{} {} {}", b.proxy, b.server, b.status))
                .collect::<Vec<_>>(),
            [
                "postgres_rw node1 UP",
                "postgres_rw node2 DOWN",
                "postgres_ro node2 UP 1/2"
            ]
        );
    }

    #[test]
    fn utc_times() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_795_500_062), "2026-11-24 06:01:02 UTC");
    }

    #[test]
    fn verdict_is_one_line() {
        let status = Status {
            cluster: "lab".into(),
            unreachable: BTreeMap::new(),
            leader: None,
            members: Vec::new(),
            etcd: Vec::new(),
            haproxy: Vec::new(),
            vip: None,
            vip_holders: Vec::new(),
            backup: None,
            archiver: None,
            problems: vec!["no leader".into(), "node2 is not a member".into()],
            healthy: false,
        };
        assert_eq!(
            verdict(&status),
            "degraded: no leader; node2 is not a member"
        );
        assert!(render(&status).ends_with("degraded: no leader; node2 is not a member\n"));
    }

    fn archiver_fixture() -> ArchiverStatus {
        ArchiverStatus {
            member: "node1".into(),
            archived_count: 40,
            failed_count: 3,
            last_archived_wal: Some("000000010000000000000028".into()),
            last_archived_age_s: Some(20.0),
            last_failed_wal: Some("000000010000000000000029".into()),
            last_failed_age_s: Some(1000.0),
            waiting: 1,
            current_wal: Some("00000001000000000000002A".into()),
            archive_timeout_s: Some(60.0),
        }
    }

    #[test]
    fn archiver_failing_or_stuck() {
        let ok = archiver_fixture();
        assert_eq!(ok.problem(), None, "an old failure, archiving since");
        let failing = ArchiverStatus {
            last_failed_age_s: Some(12.0),
            ..archiver_fixture()
        };
        assert_eq!(
            failing.problem().as_deref(),
            Some("WAL archiving fails on node1: 3 failure(s), the newest for 000000010000000000000029 12 s ago")
        );
        // Nothing failed, but nothing was archived for an hour while WAL waits.
        let stuck = ArchiverStatus {
            last_archived_age_s: Some(3600.0),
            last_failed_wal: None,
            last_failed_age_s: None,
            ..archiver_fixture()
        };
        assert!(
            stuck.problem().is_some_and(|p| p.contains("stuck")),
            "{stuck:?}"
        );
        // Idle: nothing waiting, however old the newest archived file.
        let idle = ArchiverStatus {
            waiting: 0,
            ..stuck
        };
        assert_eq!(idle.problem(), None);
        assert_eq!(
            ok.summary(),
            "node1: 40 archived, 3 failed, 1 waiting, newest 000000010000000000000028 20 s ago"
        );
    }

    #[test]
    fn archiver_line() {
        let line = "40|3|000000010000000000000028|20.5|||1|000000020000000100000003|60\n";
        let a = parse_archiver("node1", line).expect("parses");
        assert_eq!(a.archived_count, 40);
        assert_eq!(a.last_archived_age_s, Some(20.5));
        assert_eq!(a.last_failed_wal, None);
        assert_eq!(a.waiting, 1);
        assert_eq!(a.current_wal.as_deref(), Some("000000020000000100000003"));
        assert_eq!(a.archive_timeout_s, Some(60.0));
        assert!(parse_archiver("node1", "1|2").is_err());
    }

    #[test]
    fn segments_in_wal_order_whatever_the_timeline() {
        assert_eq!(segment_number("000000010000000000000007"), Some(7));
        assert_eq!(segment_number("0000000300000001000000FF"), Some(0x1FF));
        assert_eq!(segment_number("000000020000000200000000"), Some(0x200));
        assert_eq!(segment_number("00000002000000020000000"), None);
        assert_eq!(segment_number("00000002000000020000000X"), None);
    }

    #[test]
    fn the_repository_behind_the_leader_for_three_archive_timeouts() {
        let leader = archiver_fixture(); // writes ...2A, archive_timeout 60 s
        let wal = |name: &str, archived_at: i64| ArchivedWal {
            name: name.into(),
            archived_at,
        };
        let now = 10_000;
        // The segment before the current one is archived: up to date, however old.
        assert_eq!(
            archive_behind(&leader, &wal("000000010000000000000029", 0), now),
            None
        );
        // One finished segment missing, but for less than 180 s: in flight.
        assert_eq!(
            archive_behind(&leader, &wal("000000010000000000000028", now - 170), now),
            None
        );
        let stalled = archive_behind(&leader, &wal("000000010000000000000028", now - 200), now)
            .expect("stalled");
        assert!(
            stalled.contains("000000010000000000000028 arrived 200 s ago"),
            "{stalled}"
        );
        assert!(stalled.contains("1 segment(s)"), "{stalled}");
        // A new timeline's name does not hide the gap.
        let promoted = ArchiverStatus {
            current_wal: Some("00000002000000000000002A".into()),
            ..archiver_fixture()
        };
        assert!(archive_behind(&promoted, &wal("000000010000000000000027", 0), now).is_some());
        // Without archive_timeout nothing is expected.
        let no_timeout = ArchiverStatus {
            archive_timeout_s: Some(0.0),
            ..archiver_fixture()
        };
        assert_eq!(
            archive_behind(&no_timeout, &wal("000000010000000000000020", 0), now),
            None
        );
    }

    #[test]
    fn etcd_line_shows_size_and_alarms() {
        let s = full_status();
        assert_eq!(
            etcd_summary(&s.etcd),
            "node3 UNHEALTHY, node2 healthy (db 4.0 MB, 1.0 MB in use, 0.2 % of quota) ALARM NOSPACE"
        );
    }

    /// The errors of `doc` against `docs/schema/status.schema.json`.
    fn schema_errors(doc: &Json) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/schema/status.schema.json");
        let text = std::fs::read_to_string(&path).expect("the schema file");
        let schema: Json = serde_json::from_str(&text).expect("the schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        validator
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// A degraded cluster's status using every field, absent values too.
    fn full_status() -> Status {
        let member = |name: &str, role: &str, lag_mb: Option<f64>| MemberStatus {
            name: name.into(),
            host: format!("10.0.0.{}", name.len()),
            role: role.into(),
            state: "running".into(),
            timeline: lag_mb.map(|_| 3),
            lag_mb,
            streaming: lag_mb.is_some(),
            pending_restart: false,
        };
        Status {
            cluster: "main".into(),
            unreachable: BTreeMap::from([("node4".into(), "connection refused".into())]),
            leader: Some("node1".into()),
            members: vec![
                member("node1", "leader", None),
                member("node2", "replica", Some(0.5)),
            ],
            etcd: vec![
                EtcdStatus {
                    host: "node3".into(),
                    healthy: false,
                    error: Some("timed out".into()),
                    db: None,
                    alarms: Vec::new(),
                },
                EtcdStatus {
                    host: "node2".into(),
                    healthy: true,
                    error: None,
                    db: Some(EtcdDb {
                        size_bytes: 4_194_304,
                        in_use_bytes: 1_048_576,
                        quota_bytes: Some(2_147_483_648),
                    }),
                    alarms: vec!["NOSPACE".into()],
                },
            ],
            haproxy: vec![BalancerStatus {
                host: "node1".into(),
                backends: vec![BackendStatus {
                    proxy: "postgres_rw".into(),
                    server: "node1".into(),
                    status: "UP".into(),
                }],
                error: None,
            }],
            vip: Some("10.0.0.100".into()),
            vip_holders: vec!["node1".into()],
            backup: Some(BackupStatus {
                host: "backup".into(),
                label: "20261124-042014F".into(),
                kind: "full".into(),
                stopped_at: 1_795_494_019,
                age_hours: 3.5,
                count: 2,
                newest_wal: Some(ArchivedWal {
                    name: "000000010000000000000007".into(),
                    archived_at: 1_795_500_000,
                }),
                recovery_window: Some(RecoveryWindow {
                    from: 1_795_400_000,
                    to: 1_795_500_000,
                }),
            }),
            archiver: Some(archiver_fixture()),
            problems: vec!["node4 is unreachable".into()],
            healthy: false,
        }
    }

    #[test]
    fn the_json_status_matches_its_schema_and_a_renamed_field_does_not() {
        let doc = serde_json::to_value(full_status()).expect("json");
        let errors = schema_errors(&doc);
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
        let empty = Status {
            leader: None,
            members: vec![],
            etcd: vec![],
            haproxy: vec![],
            vip: None,
            vip_holders: vec![],
            backup: None,
            archiver: None,
            ..full_status()
        };
        let doc = serde_json::to_value(empty).expect("json");
        assert!(schema_errors(&doc).is_empty(), "{doc:#}");

        for (pointer, from) in [
            ("", "vip_holders"),
            ("/members/1", "lag_mb"),
            ("/etcd/0", "healthy"),
            ("/etcd/1", "alarms"),
            ("/etcd/1/db", "in_use_bytes"),
            ("/archiver", "failed_count"),
            ("/haproxy/0", "backends"),
            ("/haproxy/0/backends/0", "server"),
            ("/backup", "age_hours"),
            ("/backup/recovery_window", "to"),
        ] {
            let mut doc = serde_json::to_value(full_status()).expect("json");
            let object = doc
                .pointer_mut(pointer)
                .and_then(Json::as_object_mut)
                .expect("an object");
            let value = object.remove(from).expect("the field");
            object.insert("renamed".into(), value);
            assert!(
                !schema_errors(&doc).is_empty(),
                "{pointer}/{from} renamed still validates"
            );
        }
    }
}
