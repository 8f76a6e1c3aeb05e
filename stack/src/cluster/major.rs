//! Moving a running cluster to a new PostgreSQL major
//! (`pgdeploy upgrade --to 17`) with `pg_upgrade --link`.
//!
//! [`plan`] checks everything with nothing stopped: the cluster healthy;
//! each member's paths for both majors, as the roles render them (the new
//! major's from the host's facts with the major replaced); the new
//! major's packages installed and held on the members (nothing starts);
//! on the leader, the extensions the new major must have, the settings it
//! would not know, prepared transactions, unlogged tables, the room
//! `--link` needs, and `pg_upgrade --check` against a scratch cluster; a
//! recent backup.
//!
//! [`upgrade`] then pauses Patroni (no failover from here), stops the
//! leader, then the replicas (each receives the leader's shutdown
//! checkpoint first), checks that every replica had received everything
//! (the same latest checkpoint), runs
//! `pg_upgrade --link` on the leader, points its configuration at the new
//! major, clears the cluster's state in etcd and starts it: the cut-over,
//! when the new leader accepts writes. Until then any failure puts the old
//! major back on every member reached ([`put_back`]). After it: the
//! repository's stanza is upgraded and a full backup taken, the replicas
//! are rebuilt on the new major by Patroni from that backup (their old
//! data directories stay where they are), statistics are gathered in
//! stages, and the dynamic configuration is rolled out again.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value as Json};

use super::ops::{self, Say};
use super::restore::{PATRONI_NAMESPACE, STOP};
use super::{backup, dynamic, etcd, update, Cluster, ClusterError, PatroniNode};
use crate::contract::{self, Group};

/// The leader's pre-checks.
const PLAN: &str = include_str!("../sh/major-plan.sh");
/// The new major's packages, installed and held.
const INSTALL: &str = include_str!("../sh/major-install.sh");
/// initdb and pg_upgrade (`check` or `link`).
const UPGRADE: &str = include_str!("../sh/major-upgrade.sh");
/// A host's configuration (or its local fact) pointed at a major.
const SWITCH: &str = include_str!("../sh/major-switch.sh");
/// The old cluster put back on a member.
const UNDO: &str = include_str!("../sh/major-undo.sh");
/// The old majors' directories and packages a finished upgrade leaves.
const FINISH: &str = include_str!("../sh/major-finish.sh");

/// Starts Patroni, also after systemd gave up restarting it (a member
/// that found the new cluster's identifier exits at once, again and
/// again). Tried twice: once in the lab, on Debian 13, systemd answered the
/// start right after the switch with "Failed to spawn executor: No such
/// file or directory", and the next start worked.
const START_PATRONI: &str = "systemctl reset-failed patroni 2>/dev/null; systemctl start patroni \
     || { sleep 2; systemctl reset-failed patroni; systemctl start patroni; }";

/// How old the newest backup may be.
const BACKUP_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// One step on a host before the cut-over (a host that stops answering
/// must not hold the cluster down).
const STEP_WITHIN: Duration = Duration::from_secs(60);
/// pg_upgrade itself (catalog only with `--link`).
const PG_UPGRADE_WITHIN: Duration = Duration::from_secs(3600);
/// The new leader's start.
const LEAD_WITHIN: Duration = Duration::from_secs(90);
/// A replica's rebuild from the new backup.
const REPLICA_WITHIN: Duration = Duration::from_secs(3600);

/// One major's paths and packages on a host, as the roles render them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Side {
    /// The major (`15`).
    pub major: String,
    /// Patroni's `data_dir`.
    pub data_dir: String,
    /// Patroni's `bin_dir`.
    pub bin_dir: String,
    /// The server packages (`postgres_packages`, without pins).
    pub packages: Vec<String>,
}

/// A host the upgrade touches: a member or a backup host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostMajor {
    /// The host.
    pub host: String,
    /// Whether it is a PostgreSQL member (else a backup host).
    pub member: bool,
    /// The major it runs now.
    pub old: Side,
    /// The major it moves to.
    pub new: Side,
    /// The new major's packages installed there: (name, version).
    pub installed: Vec<(String, String)>,
}

/// The old cluster's settings the new cluster's initdb must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Initdb {
    /// Encoding (`UTF8`).
    pub encoding: String,
    /// LC_COLLATE.
    pub collate: String,
    /// LC_CTYPE.
    pub ctype: String,
    /// Locale provider (`c` libc, `i` ICU).
    pub provider: String,
    /// ICU locale, `-` for none.
    pub icu: String,
    /// Data checksums on.
    pub checksums: bool,
    /// WAL segment size in MB.
    pub walseg_mb: String,
}

/// An extension installed in a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extension {
    /// The database.
    pub database: String,
    /// The extension.
    pub name: String,
    /// The new major has it.
    pub available: bool,
    /// The package that provides it for the old major, when known.
    pub package: Option<String>,
}

/// What the leader's pre-checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// `server_version_num` of the running cluster.
    pub old_version: String,
    /// The new major's `postgres -V` version.
    pub new_version: String,
    /// What initdb must match.
    pub initdb: Initdb,
    /// Every extension, per database.
    pub extensions: Vec<Extension>,
    /// Settings the cluster sets that the new major does not know:
    /// (name, where it is set).
    pub unknown: Vec<(String, String)>,
    /// Databases whose recorded collation version is not the system's:
    /// (database, recorded, actual).
    pub stale: Vec<(String, String, String)>,
    /// Prepared transactions.
    pub prepared: u64,
    /// Unlogged tables: (database, table, bytes).
    pub unlogged: Vec<(String, String, u64)>,
    /// The room `--link` needs, and the room there is (kB).
    pub need_kb: u64,
    /// See `need_kb`.
    pub free_kb: u64,
}

/// The whole upgrade, checked.
#[derive(Debug, Clone, Serialize)]
pub struct MajorPlan {
    /// The major the cluster runs.
    pub from: String,
    /// The major it moves to.
    pub to: String,
    /// The leader (pg_upgrade runs there).
    pub leader: String,
    /// The members and backup hosts.
    pub hosts: Vec<HostMajor>,
    /// The leader's pre-checks.
    pub findings: Findings,
    /// `pg_upgrade --check` passed.
    pub checked: bool,
    /// The newest backup: (label, age in seconds), when there is one.
    pub backup: Option<(String, u64)>,
    /// Why the upgrade cannot go on; empty when it can.
    pub problems: Vec<String>,
}

impl MajorPlan {
    /// Whether the cluster already runs `to`.
    pub fn is_empty(&self) -> bool {
        self.from == self.to
    }

    fn members(&self) -> impl Iterator<Item = &HostMajor> {
        self.hosts.iter().filter(|h| h.member)
    }

    fn replicas(&self) -> Vec<&HostMajor> {
        self.members().filter(|h| h.host != self.leader).collect()
    }

    fn host(&self, name: &str) -> Option<&HostMajor> {
        self.hosts.iter().find(|h| h.host == name)
    }

    /// The plan as printed.
    pub fn lines(&self) -> Vec<String> {
        let f = &self.findings;
        let mut lines = vec![format!(
            "upgrade plan: PostgreSQL {} → {}{}, pg_upgrade --link on the leader {}:",
            self.from,
            self.to,
            if f.new_version.is_empty() {
                String::new()
            } else {
                format!(" ({} → {})", version_text(&f.old_version), f.new_version)
            },
            self.leader
        )];
        if self.is_empty() {
            return lines;
        }
        for h in self.members() {
            if !h.installed.is_empty() {
                let each: Vec<String> = h
                    .installed
                    .iter()
                    .map(|(n, v)| format!("{n} {v}"))
                    .collect();
                lines.push(format!(
                    "  = {}: {} installed and held (nothing started)",
                    h.host,
                    each.join(", ")
                ));
            }
        }
        if self.checked {
            lines.push("  = pg_upgrade --check passed".into());
        }
        let ext: Vec<String> = f
            .extensions
            .iter()
            .filter(|e| e.available)
            .map(|e| format!("{}.{}", e.database, e.name))
            .collect();
        if !ext.is_empty() {
            lines.push(format!(
                "  = extensions the new major has: {}",
                ext.join(", ")
            ));
        }
        if f.need_kb > 0 {
            lines.push(format!(
                "  = room on {}: {} MB needed, {} MB free",
                self.leader,
                f.need_kb / 1024,
                f.free_kb / 1024
            ));
        }
        if let Some((label, age)) = &self.backup {
            lines.push(format!("  = newest backup {label}, {} old", age_text(*age)));
        }
        for (db, table, bytes) in &f.unlogged {
            lines.push(format!(
                "  ! unlogged table {table} (database {db}, {} kB): moved with the leader's data; \
                 the replicas rebuilt from the backup have it empty, as after any failover",
                bytes / 1024
            ));
        }
        let replicas: Vec<&str> = self.replicas().iter().map(|h| h.host.as_str()).collect();
        let leader = self.host(&self.leader).cloned().unwrap_or_default();
        lines.push("  steps:".into());
        lines.push(format!(
            "    - pause Patroni; stop the leader {} (writes stop), then {}; every replica must \
             have the leader's last checkpoint",
            self.leader,
            if replicas.is_empty() {
                "no replica".into()
            } else {
                replicas.join(", ")
            }
        ));
        lines.push(format!(
            "    ~ {}: pg_upgrade --link {} → {}",
            self.leader, leader.old.data_dir, leader.new.data_dir
        ));
        lines.push(format!(
            "    ~ {}: Patroni points at {} ({}); the cluster's state in etcd is cleared",
            self.leader, self.to, leader.new.bin_dir
        ));
        lines.push(format!(
            "    + {} starts on {}: the cut-over, writes resume. Until here a failure puts {} back",
            self.leader, self.to, self.from
        ));
        for h in self.hosts.iter().filter(|h| !h.member) {
            lines.push(format!(
                "    ~ {}: pgBackRest points at {}, stanza-upgrade, then a full backup",
                h.host, self.to
            ));
        }
        for r in &replicas {
            lines.push(format!(
                "    + {r}: rebuilt on {} by Patroni ({}); its {} data directory stays",
                self.to,
                if self.hosts.iter().any(|h| !h.member) {
                    "from the new backup"
                } else {
                    "from the leader"
                },
                self.from
            ));
        }
        lines.push("    ~ ANALYZE in stages; the dynamic configuration rolled out again".into());
        for p in &self.problems {
            lines.push(format!("refused: {p}"));
        }
        lines
    }
}

/// The major of a `server_version_num` (`170012` → `17`).
fn major_of(num: &str) -> String {
    match num.parse::<u64>() {
        Ok(n) if n >= 100_000 => (n / 10_000).to_string(),
        _ => num.to_string(),
    }
}

/// `150014` as `15.14`.
fn version_text(num: &str) -> String {
    match num.parse::<u64>() {
        Ok(n) if n >= 100_000 => format!("{}.{}", n / 10_000, n % 10_000),
        _ => num.to_string(),
    }
}

fn age_text(seconds: u64) -> String {
    if seconds < 3600 {
        format!("{} min", seconds / 60)
    } else {
        format!("{:.1} h", seconds as f64 / 3600.0)
    }
}

/// Reads `major-plan.sh`'s output.
fn parse_findings(out: &str) -> Findings {
    let mut f = Findings::default();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["version", old, new] => {
                f.old_version = old.to_string();
                f.new_version = new.to_string();
            }
            ["initdb", encoding, collate, ctype, provider, icu, checksums, walseg] => {
                f.initdb = Initdb {
                    encoding: encoding.to_string(),
                    collate: collate.to_string(),
                    ctype: ctype.to_string(),
                    provider: provider.to_string(),
                    icu: icu.to_string(),
                    checksums: *checksums == "1",
                    walseg_mb: walseg.to_string(),
                }
            }
            ["ext", db, name, state, package] => f.extensions.push(Extension {
                database: db.to_string(),
                name: name.to_string(),
                available: *state == "ok",
                package: (*package != "-").then(|| package.to_string()),
            }),
            ["unknown", name, source @ ..] => f.unknown.push((name.to_string(), source.join(" "))),
            ["prepared", n] => f.prepared = n.parse().unwrap_or(0),
            ["stale", db, recorded, actual] => {
                f.stale
                    .push((db.to_string(), recorded.to_string(), actual.to_string()))
            }
            ["unlogged", db, table, bytes] => f.unlogged.push((
                db.to_string(),
                table.to_string(),
                bytes.parse().unwrap_or(0),
            )),
            ["space", need, free] => {
                f.need_kb = need.parse().unwrap_or(0);
                f.free_kb = free.parse().unwrap_or(0);
            }
            _ => {}
        }
    }
    f
}

/// The problems the findings make: each names what is wrong and how to fix it.
fn findings_problems(leader: &str, to: &str, f: &Findings) -> Vec<String> {
    let mut problems = Vec::new();
    for e in f.extensions.iter().filter(|e| !e.available) {
        // The server package itself: a contrib module the new major dropped.
        let contrib = e.package.as_deref().is_some_and(|p| {
            p.strip_prefix("postgresql-")
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        });
        let fix = if contrib {
            format!(
                " (a contrib module of {}, which PostgreSQL {to} no longer ships): DROP EXTENSION {} \
                 in {} first",
                e.package.as_deref().unwrap_or_default(),
                e.name,
                e.database
            )
        } else {
            format!(
                "{}: install its PostgreSQL {to} package on every member (postgres_packages), or \
                 DROP EXTENSION {} in {} if it is not used",
                e.package
                    .as_ref()
                    .map(|p| format!(" (installed for the running major by {p})"))
                    .unwrap_or_default(),
                e.name,
                e.database
            )
        };
        problems.push(format!(
            "extension {} (database {}) is not available for PostgreSQL {to}{fix}",
            e.name, e.database
        ));
    }
    for (name, source) in &f.unknown {
        problems.push(format!(
            "setting {name} (set in: {source}) does not exist in PostgreSQL {to} (removed or \
             renamed): remove it from postgres_parameters or the dynamic configuration first"
        ));
    }
    for (db, recorded, actual) in &f.stale {
        problems.push(format!(
            "database {db} records collation version {recorded}, the system provides {actual}: \
             indexes on text may be out of order, and pg_upgrade keeps the stale version; \
             `pgdeploy upgrade-os --to trixie` rebuilds them and refreshes it (or REINDEX them and \
             ALTER DATABASE {db} REFRESH COLLATION VERSION)"
        ));
    }
    if f.prepared > 0 {
        problems.push(format!(
            "{} prepared transaction(s) on {leader}: COMMIT PREPARED or ROLLBACK PREPARED them \
             (pg_prepared_xacts lists them)",
            f.prepared
        ));
    }
    if f.need_kb > f.free_kb {
        problems.push(format!(
            "{leader}: {} MB needed for the new cluster's catalog and WAL, {} MB free",
            f.need_kb / 1024,
            f.free_kb / 1024
        ));
    }
    problems
}

/// A member's (or backup host's) paths for its own major and for `to`.
async fn sides(cluster: &Cluster, host: &str, to: &str) -> Result<(Side, Side), ClusterError> {
    let facts = cluster.facts(host).await?;
    let new_facts = contract::with_major(&facts, to);
    let side = |facts: &Json| -> Result<Side, ClusterError> {
        let stack = cluster.stack();
        let (names, pinned) = update::package_specs(stack.var_with_facts(
            host,
            facts,
            contract::POSTGRES_PACKAGES,
        )?);
        Ok(Side {
            major: stack.required_string_with_facts(host, facts, contract::POSTGRES_VERSION)?,
            data_dir: stack.required_string_with_facts(host, facts, contract::POSTGRES_DATA_DIR)?,
            bin_dir: stack.required_string_with_facts(host, facts, contract::POSTGRES_BIN_DIR)?,
            packages: update::bare_names(names, &pinned),
        })
    };
    Ok((side(&facts)?, side(&new_facts)?))
}

/// The members and backup hosts, each once.
fn touched_hosts(cluster: &Cluster) -> Vec<String> {
    let mut hosts = cluster.group(Group::Postgres);
    for h in cluster.group(Group::Backup) {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts
}

/// Whether `host` has the local fact of its major.
async fn has_fact(cluster: &Cluster, host: &str) -> Result<bool, ClusterError> {
    let facts = cluster.facts(host).await?;
    Ok(facts.pointer(contract::MAJOR_FACT).is_some())
}

/// Pre-checks with nothing stopped (see the module's documentation).
/// Installs and holds the new major's packages on the members (nothing
/// starts); changes nothing else.
pub async fn plan(
    cluster: &Cluster,
    to: &str,
    backup_check: bool,
) -> Result<MajorPlan, ClusterError> {
    if to.is_empty() || !to.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ClusterError::Input(format!(
            "--to {to}: a PostgreSQL major (17)"
        )));
    }
    let leader = update::healthy(cluster, "upgrade").await?;
    let members = cluster.group(Group::Postgres);
    let names = touched_hosts(cluster);
    let mut plan = MajorPlan {
        from: String::new(),
        to: to.to_string(),
        leader: leader.clone(),
        hosts: Vec::new(),
        findings: Findings::default(),
        checked: false,
        backup: None,
        problems: Vec::new(),
    };
    for name in &names {
        if !has_fact(cluster, name).await? {
            plan.problems.push(format!(
                "{name} lacks the local fact postgres.major: run `pgdeploy apply` once first \
                 (role postgres_major), so that its paths stay on the running major"
            ));
        }
        let (old, new) = sides(cluster, name, to).await?;
        if new.major != to {
            plan.problems.push(format!(
                "{name}: postgres_version is {} whatever the host's fact says: remove it from the \
                 inventory, the major comes from the host",
                new.major
            ));
        }
        plan.hosts.push(HostMajor {
            host: name.clone(),
            member: members.contains(name),
            old,
            new,
            installed: Vec::new(),
        });
    }
    let leader_side = plan
        .host(&leader)
        .map(|h| h.old.clone())
        .ok_or_else(|| ClusterError::Input(format!("leader {leader} is not in the inventory")))?;
    plan.from = leader_side.major.clone();
    for h in &plan.hosts {
        if h.old.major != plan.from {
            plan.problems.push(format!(
                "{} runs PostgreSQL {}, the leader {}: one major per cluster",
                h.host, h.old.major, plan.from
            ));
        }
    }
    if plan.is_empty() || !plan.problems.is_empty() {
        return Ok(plan);
    }
    if plan.from.parse::<u32>().unwrap_or(0) > to.parse::<u32>().unwrap_or(0) {
        return Err(ClusterError::Input(format!(
            "--to {to}: the cluster runs {}; pg_upgrade moves forward only",
            plan.from
        )));
    }
    // The new packages on every member at once.
    let installs = plan.hosts.iter().filter(|h| h.member).map(|h| async move {
        let args: Vec<&str> = h.new.packages.iter().map(String::as_str).collect();
        let out = cluster.script(&h.host, INSTALL, &args).await?;
        Ok::<_, ClusterError>((h.host.clone(), out))
    });
    for done in futures::future::join_all(installs).await {
        let (host, out) = done?;
        let mut installed = Vec::new();
        for line in out.lines() {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["installed", name, version] => {
                    installed.push((name.to_string(), version.to_string()))
                }
                ["unavailable", name] => plan.problems.push(format!(
                    "{host}: no apt source offers {name} (Debian 13 ships PostgreSQL 17: move \
                     the hosts with `pgdeploy upgrade-os` first)"
                )),
                _ => {}
            }
        }
        if let Some(h) = plan.hosts.iter_mut().find(|h| h.host == host) {
            h.installed = installed;
        }
    }
    if !plan.problems.is_empty() {
        return Ok(plan);
    }
    let new_side = plan
        .host(&leader)
        .map(|h| h.new.clone())
        .unwrap_or_default();
    let port = cluster.port(&leader, contract::POSTGRES_PORT)?.to_string();
    let out = cluster
        .script(
            &leader,
            PLAN,
            &[&port, &leader_side.data_dir, &new_side.bin_dir, to],
        )
        .await?;
    plan.findings = parse_findings(&out);
    plan.problems
        .extend(findings_problems(&leader, to, &plan.findings));
    if plan.problems.is_empty() {
        match pg_upgrade(cluster, &plan, Mode::Check, &port).await {
            Ok(_) => plan.checked = true,
            Err(ClusterError::CommandFailed { stderr, .. }) => plan.problems.push(format!(
                "pg_upgrade --check on {leader} failed:\n{}",
                stderr.trim_end()
            )),
            Err(e) => return Err(e),
        }
    }
    if backup_check {
        match backup::backup_host(cluster) {
            Err(_) => plan.problems.push(
                "no backup host: nothing to fall back on after the cut-over; give \
                 --no-backup-check to go on without a backup"
                    .into(),
            ),
            Ok(_) => {
                let repo = backup::repository(cluster).await?;
                let now = super::status::unix_now();
                match repo.newest() {
                    Some(b) => {
                        let age = (now - b.stopped_at).max(0) as u64;
                        if age > BACKUP_MAX_AGE.as_secs() {
                            plan.problems.push(format!(
                                "the newest backup ({}) is {} old: take one with `pgdeploy \
                                 backup`, or give --no-backup-check",
                                b.label,
                                age_text(age)
                            ));
                        }
                        plan.backup = Some((b.label.clone(), age));
                    }
                    None => plan.problems.push(
                        "the repository holds no backup: take one with `pgdeploy backup`, or \
                         give --no-backup-check"
                            .into(),
                    ),
                }
            }
        }
    }
    Ok(plan)
}

/// How [`pg_upgrade`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--check` against a scratch cluster, the old one running.
    Check,
    /// `--link` into the new data directory, the old cluster stopped.
    Link,
}

/// Runs `major-upgrade.sh` on the leader in `mode`.
async fn pg_upgrade(
    cluster: &Cluster,
    plan: &MajorPlan,
    mode: Mode,
    port: &str,
) -> Result<String, ClusterError> {
    let mode = match mode {
        Mode::Check => "check",
        Mode::Link => "link",
    };
    let h = plan
        .host(&plan.leader)
        .ok_or_else(|| ClusterError::Input(format!("{} is not in the inventory", plan.leader)))?;
    let i = &plan.findings.initdb;
    let cpus = cluster.facts(&plan.leader).await?["cpus"]
        .as_u64()
        .unwrap_or(1)
        .max(1)
        .to_string();
    cluster
        .script(
            &plan.leader,
            UPGRADE,
            &[
                mode,
                &h.old.bin_dir,
                &h.new.bin_dir,
                &h.old.data_dir,
                &h.new.data_dir,
                port,
                &i.encoding,
                &i.collate,
                &i.ctype,
                &i.provider,
                &i.icu,
                if i.checksums { "1" } else { "0" },
                &i.walseg_mb,
                &cpus,
            ],
        )
        .await
}

/// How the upgrade went.
#[derive(Debug, Clone, Serialize)]
pub struct MajorOutcome {
    /// The leader on the new major.
    pub leader: String,
    /// From the leader's stop to the new leader accepting writes (s).
    pub write_downtime: f64,
    /// pg_upgrade itself (s).
    pub pg_upgrade_seconds: f64,
    /// The new full backup, when there is a backup host.
    pub backup: Option<String>,
    /// Each replica's rebuild (s).
    pub replicas: Vec<(String, f64)>,
    /// The whole upgrade (s).
    pub seconds: f64,
}

/// A step on a host that must answer within `within`.
async fn bounded<T>(
    what: &str,
    within: Duration,
    step: impl Future<Output = Result<T, ClusterError>>,
) -> Result<T, ClusterError> {
    tokio::time::timeout(within, step).await.map_err(|_| {
        ClusterError::Refused(format!("{what}: no answer within {}s", within.as_secs()))
    })?
}

/// `pg_controldata`'s state and latest checkpoint of a stopped member.
async fn checkpoint(cluster: &Cluster, host: &HostMajor) -> Result<(String, String), ClusterError> {
    let out = cluster
        .exec(
            &host.host,
            &format!(
                "LC_ALL=C runuser -u postgres -- {}/pg_controldata {}",
                pgdeploy_text::quote(&host.old.bin_dir),
                pgdeploy_text::quote(&host.old.data_dir)
            ),
        )
        .await?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    Ok((
        field("Database cluster state:"),
        field("Latest checkpoint location:"),
    ))
}

/// Carries out `plan` (see the module's documentation).
pub async fn upgrade(
    cluster: &Cluster,
    plan: &MajorPlan,
    say: Say<'_>,
) -> Result<MajorOutcome, ClusterError> {
    let started = Instant::now();
    let leader = update::healthy(cluster, "upgrade").await?;
    if leader != plan.leader {
        return Err(ClusterError::Refused(format!(
            "upgrade refused: {leader} leads now, not {} as planned; run it again",
            plan.leader
        )));
    }
    let port = cluster.port(&leader, contract::POSTGRES_PORT)?.to_string();
    let replicas = plan.replicas();
    pause(cluster, &leader, true).await?;
    say("Patroni paused: no failover while the leader is down");
    let l = plan.host(&leader).cloned().unwrap_or_default();
    let writes_stopped = Instant::now();
    let cut = cut_over(cluster, plan, &l, &port, say).await;
    let pg_upgrade_seconds = match cut {
        Ok(s) => s,
        Err(e) => {
            say(&format!("failed before the cut-over: {e}"));
            say(&format!("putting PostgreSQL {} back ...", plan.from));
            let missed = put_back(cluster, plan, say).await;
            return Err(ClusterError::Refused(format!(
                "upgrade failed before the cut-over ({e}); PostgreSQL {} serves again{}",
                plan.from,
                if missed.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; not reached: {} (once back, `pgdeploy upgrade --to {} --rollback` \
                         puts {} back there)",
                        missed.join(", "),
                        plan.to,
                        plan.from
                    )
                }
            )));
        }
    };
    let write_downtime = writes_stopped.elapsed().as_secs_f64();
    say(&format!(
        "cut-over: {leader} accepts writes on PostgreSQL {} ({write_downtime:.1}s after the writes stopped)",
        plan.to
    ));
    // From here on the new major is the cluster: the rest only adds to it.
    switch(cluster, &l, Way::Forward, Part::Fact).await?;
    let mut new_backup = None;
    for b in plan.hosts.iter().filter(|h| !h.member) {
        switch(cluster, b, Way::Forward, Part::Config).await?;
        switch(cluster, b, Way::Forward, Part::Fact).await?;
        cluster
            .exec(
                &b.host,
                &format!(
                    "runuser -u postgres -- pgbackrest --stanza={} stanza-upgrade",
                    pgdeploy_text::quote(&cluster.name())
                ),
            )
            .await?;
        say(&format!(
            "{}: stanza upgraded to PostgreSQL {}",
            b.host, plan.to
        ));
    }
    if plan.hosts.iter().any(|h| !h.member) {
        let taken = backup::backup(cluster, "full", say).await?;
        say(&format!(
            "backup {} taken on PostgreSQL {}",
            taken.label, plan.to
        ));
        new_backup = Some(taken.label);
    }
    let mut rebuilt = Vec::new();
    for r in &replicas {
        let began = Instant::now();
        switch(cluster, r, Way::Forward, Part::Config).await?;
        switch(cluster, r, Way::Forward, Part::Fact).await?;
        cluster
            .exec(
                &r.host,
                &format!(
                    "install -d -o postgres -g postgres -m 0700 {} && {START_PATRONI}",
                    pgdeploy_text::quote(&r.new.data_dir)
                ),
            )
            .await?;
        ops::wait_for_streaming(cluster, &r.host, REPLICA_WITHIN).await?;
        let seconds = began.elapsed().as_secs_f64();
        say(&format!(
            "{}: rebuilt on PostgreSQL {} and streaming ({seconds:.0}s); its {} data stays in {}",
            r.host, plan.to, plan.from, r.old.data_dir
        ));
        rebuilt.push((r.host.clone(), seconds));
    }
    cluster
        .exec(
            &leader,
            &format!(
                "runuser -u postgres -- {}/vacuumdb --all --analyze-in-stages --quiet -p {}",
                pgdeploy_text::quote(&l.new.bin_dir),
                port
            ),
        )
        .await?;
    say(&format!(
        "{leader}: statistics gathered (ANALYZE in stages)"
    ));
    let changes = dynamic::apply(cluster, say).await?;
    if !changes.is_empty() {
        say(&format!(
            "dynamic configuration: {} change(s) rolled out again",
            changes.len()
        ));
    }
    if !cluster.group(Group::Balancers).is_empty() {
        let readers: Vec<String> = replicas.iter().map(|r| r.host.clone()).collect();
        ops::wait_for_backends(cluster, &leader, &readers, Duration::from_secs(60)).await?;
        say(&format!(
            "HAProxy routes writes to {leader} and reads to the replicas"
        ));
    }
    Ok(MajorOutcome {
        leader,
        write_downtime,
        pg_upgrade_seconds,
        backup: new_backup,
        replicas: rebuilt,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// From the leader's stop to the new leader accepting writes; returns
/// pg_upgrade's seconds. Every step on the leader is bounded: a leader
/// that stops answering fails the step, and the caller puts the old major
/// back.
async fn cut_over(
    cluster: &Cluster,
    plan: &MajorPlan,
    l: &HostMajor,
    port: &str,
    say: Say<'_>,
) -> Result<f64, ClusterError> {
    let leader = l.host.as_str();
    bounded(
        &format!("{leader}: stopping"),
        Duration::from_secs(180),
        cluster.script(leader, STOP, &[&l.old.data_dir, &l.old.bin_dir]),
    )
    .await?;
    say(&format!(
        "{leader}: Patroni and PostgreSQL stopped (writes stop)"
    ));
    // After the leader: a replica receives its shutdown checkpoint first.
    for r in plan.replicas() {
        bounded(
            &format!("{}: stopping", r.host),
            Duration::from_secs(180),
            cluster.script(&r.host, STOP, &[&r.old.data_dir, &r.old.bin_dir]),
        )
        .await?;
        say(&format!("{}: Patroni and PostgreSQL stopped", r.host));
    }
    let (state, last) = bounded(
        &format!("{leader}: pg_controldata"),
        STEP_WITHIN,
        checkpoint(cluster, l),
    )
    .await?;
    if state != "shut down" {
        return Err(ClusterError::Refused(format!(
            "{leader}: PostgreSQL is `{state}`, not cleanly shut down"
        )));
    }
    for r in plan.replicas() {
        let (state, at) = bounded(
            &format!("{}: pg_controldata", r.host),
            STEP_WITHIN,
            checkpoint(cluster, r),
        )
        .await?;
        if at != last {
            return Err(ClusterError::Refused(format!(
                "{} had not received everything: its last checkpoint is {at} ({state}), the leader's {last}",
                r.host
            )));
        }
    }
    say(&format!(
        "every replica has the leader's last checkpoint ({last})"
    ));
    let began = Instant::now();
    bounded(
        &format!("{leader}: pg_upgrade"),
        PG_UPGRADE_WITHIN,
        pg_upgrade(cluster, plan, Mode::Link, port),
    )
    .await?;
    let seconds = began.elapsed().as_secs_f64();
    say(&format!("{leader}: pg_upgrade --link done ({seconds:.1}s)"));
    bounded(
        &format!("{leader}: switching"),
        STEP_WITHIN,
        switch(cluster, l, Way::Forward, Part::Config),
    )
    .await?;
    let prefix = format!("{PATRONI_NAMESPACE}{}/", cluster.name());
    let deleted = etcd::delete_prefix(cluster, &prefix).await?;
    say(&format!("etcd: {deleted} key(s) under {prefix} removed"));
    bounded(
        &format!("{leader}: starting Patroni"),
        STEP_WITHIN,
        cluster.exec(leader, START_PATRONI),
    )
    .await?;
    ops::poll(
        &format!("{leader} accepting writes on {}", plan.to),
        LEAD_WITHIN,
        || async {
            let look = async {
                let node: PatroniNode = cluster.patroni_get(leader, "/patroni").await?;
                if !matches!(node.role.as_str(), "master" | "primary") || node.state != "running" {
                    return Ok(format!("{} ({})", node.state, node.role));
                }
                let rows = cluster
                    .query(
                        leader,
                        "select current_setting('server_version_num'), pg_is_in_recovery()",
                    )
                    .await?;
                Ok::<_, ClusterError>(match rows.first().map(|r| r.as_slice()) {
                    Some([v, r]) if major_of(v) == plan.to && r == "f" => String::new(),
                    Some(row) => format!("version {}", row.join(" ")),
                    None => "no answer".into(),
                })
            };
            match tokio::time::timeout(Duration::from_secs(15), look).await {
                Ok(Ok(seen)) if seen.is_empty() => Ok(()),
                Ok(Ok(seen)) => Err(seen),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("{leader} not answering")),
            }
        },
    )
    .await?;
    Ok(seconds)
}

/// Sets Patroni's maintenance mode (`on`) through `leader` and waits until
/// every member runs in it; clears it when it cannot be set everywhere.
async fn pause(cluster: &Cluster, leader: &str, on: bool) -> Result<(), ClusterError> {
    dynamic::patch_config(cluster, leader, &json!({ "pause": on })).await?;
    let paused = ops::poll("every member paused", Duration::from_secs(60), || async {
        for m in cluster.group(Group::Postgres) {
            let node: Json = cluster
                .patroni_get(&m, "/patroni")
                .await
                .map_err(|e| e.to_string())?;
            if (node["pause"] == true) != on {
                return Err(format!("{m} not yet"));
            }
        }
        Ok(())
    })
    .await;
    if paused.is_err() && on {
        let _ = dynamic::patch_config(cluster, leader, &json!({ "pause": false })).await;
    }
    paused
}

/// What [`switch`] points at a major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Patroni's and pgBackRest's configuration.
    Config,
    /// The local fact the roles read the major from.
    Fact,
}

/// Which way [`switch`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// To the new major.
    Forward,
    /// Back to the old one.
    Back,
}

/// Points `part` of `host` at the new major or back at the old one.
async fn switch(
    cluster: &Cluster,
    host: &HostMajor,
    way: Way,
    part: Part,
) -> Result<(), ClusterError> {
    let (from, to) = match way {
        Way::Forward => (&host.old, &host.new),
        Way::Back => (&host.new, &host.old),
    };
    let part = match part {
        Part::Config => "config",
        Part::Fact => "fact",
    };
    cluster
        .script(
            &host.host,
            SWITCH,
            &[
                &from.data_dir,
                &to.data_dir,
                &from.bin_dir,
                &to.bin_dir,
                &to.major,
                part,
            ],
        )
        .await?;
    Ok(())
}

/// Puts the old major back on one member, Patroni stopped (see
/// `major-undo.sh`), its configuration and fact pointed back; returns what
/// the undo did, a line per step.
async fn undo_host(cluster: &Cluster, h: &HostMajor) -> Result<String, ClusterError> {
    cluster.exec(&h.host, "systemctl stop patroni").await?;
    let out = cluster
        .script(&h.host, UNDO, &[&h.old.data_dir, &h.new.data_dir])
        .await?;
    switch(cluster, h, Way::Back, Part::Config).await?;
    switch(cluster, h, Way::Back, Part::Fact).await?;
    Ok(out)
}

/// Puts the old major back after a failure before the cut-over: on every
/// member reached, Patroni stopped, the old cluster's control file put
/// back and the new data directory removed, the configuration pointed back;
/// the new cluster's state cleared from etcd; then Patroni started on the
/// old leader (or, when it is not reached, on a replica: every replica had
/// its last checkpoint) until it leads, then on the others. Returns the
/// members not reached.
pub async fn put_back(cluster: &Cluster, plan: &MajorPlan, say: Say<'_>) -> Vec<String> {
    let mut order: Vec<&HostMajor> = plan.members().filter(|h| h.host == plan.leader).collect();
    order.extend(plan.replicas());
    let mut reached = Vec::new();
    let mut missed = Vec::new();
    for h in order {
        match bounded(&h.host, STEP_WITHIN, undo_host(cluster, h)).await {
            Ok(out) => {
                for line in out.lines() {
                    say(&format!("  {}: {line}", h.host));
                }
                reached.push(h);
            }
            Err(e) => {
                say(&format!("  {}: not put back ({e})", h.host));
                cluster.forget(&h.host).await;
                missed.push(h.host.clone());
            }
        }
    }
    let prefix = format!("{PATRONI_NAMESPACE}{}/", cluster.name());
    if let Err(e) = etcd::delete_prefix(cluster, &prefix).await {
        say(&format!("  etcd: {prefix} not cleared ({e})"));
    }
    let Some((first, others)) = reached.split_first() else {
        return missed;
    };
    let started = async {
        cluster.exec(&first.host, START_PATRONI).await?;
        ops::wait_for_leader(cluster, &first.host, LEAD_WITHIN).await
    };
    match started.await {
        Ok(()) => say(&format!(
            "  {}: leads on PostgreSQL {}",
            first.host, plan.from
        )),
        Err(e) => say(&format!("  {}: did not lead again ({e})", first.host)),
    }
    for h in others {
        let back = async {
            cluster.exec(&h.host, START_PATRONI).await?;
            ops::wait_for_streaming(cluster, &h.host, Duration::from_secs(180)).await
        };
        match back.await {
            Ok(()) => say(&format!(
                "  {}: streams on PostgreSQL {}",
                h.host, plan.from
            )),
            Err(e) => say(&format!("  {}: not streaming ({e})", h.host)),
        }
    }
    // The cluster's state was cleared: its dynamic configuration comes
    // back from the leader's bootstrap section; the roll-out makes it the
    // inventory's again.
    if let Err(e) = dynamic::apply(cluster, say).await {
        say(&format!(
            "  dynamic configuration not rolled out again ({e})"
        ));
    }
    missed
}

/// Whether `host` carries what an upgrade that did not reach its cut-over
/// left: the new major's data directory, the old control file renamed,
/// or its configuration pointing at the new major.
async fn leftovers(cluster: &Cluster, h: &HostMajor) -> Result<bool, ClusterError> {
    let test = format!(
        "test -e {new} || test -e {old}/global/pg_control.old || grep -qF {new} /etc/patroni/config.yml",
        new = pgdeploy_text::quote(&h.new.data_dir),
        old = pgdeploy_text::quote(&h.old.data_dir),
    );
    Ok(cluster.exec(&h.host, &test).await.is_ok())
}

/// `upgrade --to N --rollback` while the cluster still runs its old major
/// (an upgrade failed before its cut-over and some member was not reached
/// then): every member with leftovers, or not serving, gets the old major
/// back and is rebuilt from the leader when it does not stream. Returns the members
/// put back.
pub async fn rollback(
    cluster: &Cluster,
    to: &str,
    say: Say<'_>,
) -> Result<Vec<String>, ClusterError> {
    let (_, patroni) = cluster.patroni_cluster().await?;
    let leader = patroni.leader().map(|l| l.name.clone()).ok_or_else(|| {
        ClusterError::Refused("rollback refused: the cluster has no leader".into())
    })?;
    let mut done = Vec::new();
    for host in cluster.group(Group::Postgres) {
        let (old, new) = sides(cluster, &host, to).await?;
        if old.major == to {
            return Err(ClusterError::Refused(format!(
                "rollback refused: {host} runs PostgreSQL {to} already (after the cut-over, \
                 rolling back is not built yet: see docs/upgrades.md)"
            )));
        }
        let h = HostMajor {
            host: host.clone(),
            member: true,
            old,
            new,
            installed: Vec::new(),
        };
        let serving = patroni
            .member(&host)
            .is_some_and(|m| m.state == "running" || m.state == "streaming");
        if host == leader || (serving && !leftovers(cluster, &h).await?) {
            continue;
        }
        for line in undo_host(cluster, &h).await?.lines() {
            say(&format!("{host}: {line}"));
        }
        cluster.exec(&host, START_PATRONI).await?;
        if ops::wait_for_streaming(cluster, &host, Duration::from_secs(90))
            .await
            .is_err()
        {
            say(&format!("{host}: not streaming; rebuilt from the leader"));
            ops::reinit(cluster, &host, say).await?;
        }
        say(&format!("{host}: streams on PostgreSQL {}", h.old.major));
        done.push(host);
    }
    Ok(done)
}

/// What `upgrade --to N --finish` removes on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Leftovers {
    /// The host.
    pub host: String,
    /// The serving cluster's data directory there (never removed).
    pub data_dir: String,
    /// Old majors' data directories: (path, kB freed by removing it).
    pub dirs: Vec<(String, u64)>,
    /// Old majors' packages, purged.
    pub packages: Vec<String>,
    /// Packages apt would purge along with them (they depend on the old
    /// major): the finish is refused while there are any.
    pub along: Vec<String>,
}

/// `upgrade --to N --finish`, checked: what each host still holds of the
/// majors before `to`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinishPlan {
    /// The major the cluster runs.
    pub to: String,
    /// Hosts with something to remove.
    pub hosts: Vec<Leftovers>,
    /// The newest backup of the new major, when there is one.
    pub backup: Option<String>,
    /// Why the finish cannot go on; empty when it can.
    pub problems: Vec<String>,
}

impl FinishPlan {
    /// Nothing left to remove.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The plan as printed.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "finish plan: what the majors before {} left on the hosts (no rollback to them afterwards)",
            self.to
        )];
        for h in &self.hosts {
            for (dir, kb) in &h.dirs {
                out.push(format!(
                    "  - {}: {dir} ({:.1} MB freed)",
                    h.host,
                    *kb as f64 / 1024.0
                ));
            }
            if !h.packages.is_empty() {
                out.push(format!("  - {}: purge {}", h.host, h.packages.join(", ")));
            }
        }
        if let Some(b) = &self.backup {
            out.push(format!("  newest backup of PostgreSQL {}: {b}", self.to));
        }
        out.extend(self.problems.iter().map(|p| format!("  ! {p}")));
        out
    }
}

/// Reads what [`FINISH`] `list` printed on `host`.
fn parse_leftovers(host: &str, data_dir: &str, out: &str) -> Leftovers {
    let mut l = Leftovers {
        host: host.to_string(),
        data_dir: data_dir.to_string(),
        ..Default::default()
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["dir", path, kb] => l.dirs.push((path.to_string(), kb.parse().unwrap_or(0))),
            ["pkg", name] => l.packages.push(name.to_string()),
            ["also", name] => l.along.push(name.to_string()),
            _ => {}
        }
    }
    l
}

/// Checks that the cluster is done with its move to `to` (healthy, every
/// host on `to`, a backup of `to` in the repository when there is one)
/// and lists what the old majors left on each host.
pub async fn finish_plan(cluster: &Cluster, to: &str) -> Result<FinishPlan, ClusterError> {
    let leader = update::healthy(cluster, "upgrade --finish").await?;
    let mut plan = FinishPlan {
        to: to.to_string(),
        ..Default::default()
    };
    let version = cluster.query(&leader, "SHOW server_version_num").await?;
    let serving = version
        .first()
        .and_then(|r| r.first())
        .map(|v| major_of(v))
        .unwrap_or_default();
    if serving != to {
        plan.problems.push(format!(
            "the leader {leader} serves PostgreSQL {serving}, not {to}: run `pgdeploy upgrade --to {to}` first"
        ));
    }
    for host in touched_hosts(cluster) {
        let (now, _) = sides(cluster, &host, to).await?;
        if now.major != to {
            plan.problems.push(format!(
                "{host} is set up for PostgreSQL {} (its local fact), not {to}",
                now.major
            ));
            continue;
        }
        let out = cluster
            .script(&host, FINISH, &["list", to, &now.data_dir])
            .await?;
        let l = parse_leftovers(&host, &now.data_dir, &out);
        if !l.along.is_empty() {
            plan.problems.push(format!(
                "{host}: apt would also purge {} (they depend on the old major): remove or move them first",
                l.along.join(", ")
            ));
        }
        if !l.dirs.is_empty() || !l.packages.is_empty() {
            plan.hosts.push(l);
        }
    }
    if backup::backup_host(cluster).is_ok() && !plan.is_empty() {
        let repo = backup::repository(cluster).await?;
        let newest = repo
            .usable()
            .find(|b| b.major.as_deref() == Some(to))
            .map(|b| b.label.clone());
        match newest {
            Some(label) => plan.backup = Some(label),
            None => plan.problems.push(format!(
                "the repository holds no backup of PostgreSQL {to}: take one with `pgdeploy backup` first \
                 (after the finish, it is all there is to go back to)"
            )),
        }
    }
    Ok(plan)
}

/// Removes what [`finish_plan`] listed, host by host; returns what was
/// removed, per host.
pub async fn finish(
    cluster: &Cluster,
    plan: &FinishPlan,
    say: Say<'_>,
) -> Result<Vec<String>, ClusterError> {
    let mut done = Vec::new();
    for h in &plan.hosts {
        let out = cluster
            .script(&h.host, FINISH, &["remove", &plan.to, &h.data_dir])
            .await?;
        for line in out.lines() {
            say(&format!("{}: {line}", h.host));
        }
        done.push(h.host.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN_OUT: &str = "version 150014 17.6\n\
        initdb UTF8 en_US.UTF-8 en_US.UTF-8 c - 1 16\n\
        stale template1 2.36 2.41\n\
        unknown old_snapshot_threshold configuration file\n\
        prepared 0\n\
        ext postgres plpgsql ok -\n\
        ext app adminpack missing postgresql-15\n\
        ext app vector missing postgresql-15-pgvector\n\
        unlogged app public.cache 16384\n\
        space 300000 70000000\n";

    #[test]
    fn the_leaders_findings_are_read() {
        let f = parse_findings(PLAN_OUT);
        assert_eq!(f.old_version, "150014");
        assert_eq!(version_text(&f.old_version), "15.14");
        assert_eq!(major_of(&f.old_version), "15");
        assert_eq!(f.initdb.collate, "en_US.UTF-8");
        assert!(f.initdb.checksums);
        assert_eq!(f.initdb.walseg_mb, "16");
        assert_eq!(
            f.unknown,
            vec![(
                "old_snapshot_threshold".to_string(),
                "configuration file".to_string()
            )]
        );
        assert_eq!(f.extensions.len(), 3);
        assert!(!f.extensions[1].available);
        assert_eq!(f.extensions[1].package.as_deref(), Some("postgresql-15"));
        assert_eq!(
            f.unlogged,
            vec![("app".into(), "public.cache".into(), 16384)]
        );
        assert_eq!((f.need_kb, f.free_kb), (300000, 70000000));
    }

    #[test]
    fn a_missing_extension_and_an_unknown_setting_are_refused_by_name() {
        let f = parse_findings(PLAN_OUT);
        let problems = findings_problems("node2", "17", &f).join("\n");
        assert!(
            problems
                .contains("extension adminpack (database app) is not available for PostgreSQL 17"),
            "{problems}"
        );
        assert!(
            problems.contains("setting old_snapshot_threshold"),
            "{problems}"
        );
        assert!(!problems.contains("plpgsql"), "{problems}");
        assert!(
            problems.contains("(a contrib module of postgresql-15, which PostgreSQL 17 no longer ships): DROP EXTENSION adminpack in app first"),
            "{problems}"
        );
        assert!(
            problems.contains("extension vector (database app) is not available for PostgreSQL 17 (installed for the running major by postgresql-15-pgvector): install its PostgreSQL 17 package"),
            "{problems}"
        );
        let mut short = f.clone();
        short.free_kb = 1000;
        short.prepared = 2;
        let problems = findings_problems("node2", "17", &short).join("\n");
        assert!(problems.contains("node2: 292 MB needed"), "{problems}");
        assert!(
            problems.contains("2 prepared transaction(s) on node2"),
            "{problems}"
        );
    }

    fn side(major: &str) -> Side {
        Side {
            major: major.into(),
            data_dir: format!("/var/lib/postgresql/{major}/patroni"),
            bin_dir: format!("/usr/lib/postgresql/{major}/bin"),
            packages: vec![format!("postgresql-{major}")],
        }
    }

    #[test]
    fn the_finish_lists_directories_packages_and_what_apt_takes_along() {
        let l = parse_leftovers(
            "node1",
            "/var/lib/postgresql/17/patroni",
            "dir /var/lib/postgresql/15 1048576\npkg postgresql-15\npkg postgresql-client-15\nalso pgbadger\n",
        );
        assert_eq!(l.dirs, vec![("/var/lib/postgresql/15".into(), 1048576)]);
        assert_eq!(l.packages, ["postgresql-15", "postgresql-client-15"]);
        assert_eq!(l.along, ["pgbadger"]);
        assert_eq!(l.data_dir, "/var/lib/postgresql/17/patroni");
        let plan = FinishPlan {
            to: "17".into(),
            hosts: vec![l],
            backup: Some("20261201-100000F".into()),
            problems: vec![],
        };
        let text = plan.lines().join("\n");
        assert!(
            text.contains("  - node1: /var/lib/postgresql/15 (1024.0 MB freed)"),
            "{text}"
        );
        assert!(
            text.contains("  - node1: purge postgresql-15, postgresql-client-15"),
            "{text}"
        );
        assert!(text.contains("no rollback to them afterwards"), "{text}");
    }

    #[test]
    fn the_plan_names_the_cut_over_and_what_each_host_does() {
        let host = |name: &str, member: bool| HostMajor {
            host: name.into(),
            member,
            old: side("15"),
            new: side("17"),
            installed: vec![("postgresql-17".into(), "17.6-0+deb13u1".into())],
        };
        let plan = MajorPlan {
            from: "15".into(),
            to: "17".into(),
            leader: "node2".into(),
            hosts: vec![
                host("node1", true),
                host("node2", true),
                host("node3", true),
                host("node4", false),
            ],
            findings: parse_findings(PLAN_OUT),
            checked: true,
            backup: Some(("20261201-100000F".into(), 7200)),
            problems: vec![],
        };
        let text = plan.lines().join("\n");
        assert!(
            text.starts_with("upgrade plan: PostgreSQL 15 → 17 (15.14 → 17.6)"),
            "{text}"
        );
        assert!(
            text.contains("pause Patroni; stop the leader node2 (writes stop), then node1, node3;"),
            "{text}"
        );
        assert!(
            text.contains("~ node2: pg_upgrade --link /var/lib/postgresql/15/patroni → /var/lib/postgresql/17/patroni"),
            "{text}"
        );
        assert!(
            text.contains("the cut-over, writes resume. Until here a failure puts 15 back"),
            "{text}"
        );
        assert!(
            text.contains("~ node4: pgBackRest points at 17, stanza-upgrade"),
            "{text}"
        );
        assert!(text.contains("+ node3: rebuilt on 17 by Patroni (from the new backup); its 15 data directory stays"), "{text}");
        assert!(
            text.contains("newest backup 20261201-100000F, 2.0 h old"),
            "{text}"
        );
        assert!(!text.contains("node4: postgresql-17"), "{text}");
    }
}
