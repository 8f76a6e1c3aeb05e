//! `pgdeploy restore`: point-in-time recovery of the whole cluster from the
//! repository, the Patroni way.
//!
//! [`plan`] reads the repository and the cluster and refuses a target
//! outside the recovery window before anything stops. [`restore`] then:
//! stops Patroni on every member, removes the cluster's keys from etcd,
//! moves every data directory aside (kept, not deleted), bootstraps one
//! member with a custom bootstrap method that runs `pgbackrest restore` and
//! recovers to the target, puts Patroni's own configuration back, takes a
//! full backup on the new timeline, and starts the other members, which
//! rebuild themselves from that backup (`create_replica_methods`). It ends
//! when every member streams and HAProxy routes writes to the new leader.
//!
//! With `--into` ([`plan`]'s `into`), the members stopped and restored are
//! another, already deployed cluster's: the old cluster keeps running. Its
//! backup host lets the new cluster's restoring member read the repository
//! for the bootstrap only (a key line limited to that member's address,
//! removed after; the new member pins the backup host's host key). The new
//! cluster's own repository keeps its old stanza aside and starts a new one.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::backup::{self, Backup, RecoveryWindow};
use super::ops::{self, Say};
use super::{etcd, Cluster, ClusterError, PatroniNode};
use crate::contract::{self, Group};

mod into;
mod target;

use into::shared_host;
pub use into::Origin;
pub use target::{choose_backup, lsn, parse_time, Target};

/// Stops Patroni and PostgreSQL on a member.
pub(super) const STOP: &str = include_str!("../sh/restore-stop.sh");
/// Moves a data directory aside.
const ASIDE: &str = include_str!("../sh/restore-aside.sh");
/// Writes Patroni's configuration with the restore's bootstrap method.
const BOOTSTRAP: &str = include_str!("../sh/restore-bootstrap.sh");
/// Puts Patroni's own configuration back.
const FINISH: &str = include_str!("../sh/restore-finish.sh");
/// Prints the newest timeline history file.
const HISTORY: &str = include_str!("../sh/restore-history.sh");
/// Moves the new cluster's stanza aside (`--into`).
const INTO_REPO: &str = include_str!("../sh/restore-into-repo.sh");

/// Where role patroni writes Patroni's configuration.
const PATRONI_CONFIG: &str = "/etc/patroni/config.yml";
/// Patroni's namespace in etcd (role patroni's `namespace`).
pub(super) const PATRONI_NAMESPACE: &str = "/service/";
/// How long the bootstrap (restore and recovery) may take.
const BOOTSTRAP_WITHIN: Duration = Duration::from_secs(4 * 3600);
/// How long a replica may take to rebuild from the repository and stream.
const REPLICA_WITHIN: Duration = Duration::from_secs(3600);

/// What a restore will do, shown before anything stops.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// What to recover to.
    pub target: Target,
    /// The backup restored first.
    pub backup: Backup,
    /// The window the repository covers.
    pub window: RecoveryWindow,
    /// The member that restores and leads.
    pub bootstrap: String,
    /// Every member (all are stopped; the others rebuild from the repository).
    pub members: Vec<String>,
    /// Each member's data directory.
    pub data_dir: String,
    /// Where each data directory is kept.
    pub aside: String,
    /// The newest timeline before the restore, when a member told.
    pub timeline_before: Option<u64>,
    /// `--into`: the cluster whose backups are restored, when not this one.
    pub origin: Option<Origin>,
}

impl RestorePlan {
    /// Whether the cluster restored onto has a repository of its own: the
    /// full backup on the new timeline, replicas rebuilt from it. Always,
    /// but for a cluster restored `--into` without a backup host.
    pub fn has_repository(&self) -> bool {
        self.origin.as_ref().is_none_or(|o| o.new_repo.is_some())
    }

    /// The plan, one step per line.
    pub fn lines(&self, cluster_name: &str) -> Vec<String> {
        let others: Vec<&str> = self
            .members
            .iter()
            .filter(|m| **m != self.bootstrap)
            .map(String::as_str)
            .collect();
        let (title, source) = match &self.origin {
            None => (
                format!("restore cluster {cluster_name} to {}", self.target.view()),
                None,
            ),
            Some(o) => (
                format!(
                    "restore cluster {}'s backups into cluster {cluster_name}, to {}",
                    o.cluster,
                    self.target.view()
                ),
                Some(format!(
                    "  ~ {} ({}'s backup host; {} keeps running): {} may read the repository until it leads (a key line from its address only, then removed)",
                    o.repo_host, o.cluster, o.cluster, self.bootstrap
                )),
            ),
        };
        let repository = self.origin.as_ref().and_then(|o| {
            o.new_repo.as_ref().map(|host| {
                format!(
                    "  ~ {host}: {cluster_name}'s stanza kept aside as {} (not deleted); a new stanza for the restored data",
                    o.repo_aside
                )
            })
        });
        let mut lines = vec![
            title,
            format!(
                "  recoverable window: {}; restored from backup {} ({}, ended {})",
                self.window.view(),
                self.backup.label,
                self.backup.kind,
                super::status::format_utc(self.backup.stopped_at)
            ),
            format!(
                "  - stop Patroni and PostgreSQL on {} (writes fail until the restore ends)",
                self.members.join(", ")
            ),
            format!(
                "  - remove the cluster's state from etcd ({PATRONI_NAMESPACE}{cluster_name}/)"
            ),
            format!(
                "  ~ keep each data directory aside: {} -> {} (not deleted; remove it when done)",
                self.data_dir, self.aside
            ),
        ];
        lines.extend(source);
        lines.extend(repository);
        let own_repo = self.has_repository();
        lines.extend([
            format!(
                "  + {} restores the backup and recovers to the target, then leads on a new timeline",
                self.bootstrap
            ),
            if own_repo {
                "  + a full backup on the new timeline".to_string()
            } else {
                "  ? no backup on the new timeline (no backup host)".to_string()
            },
            if others.is_empty() {
                "  = no other member to rebuild".to_string()
            } else {
                format!(
                    "  + {} rebuild from the {} and stream",
                    others.join(", "),
                    if own_repo { "repository" } else { "leader" }
                )
            },
        ]);
        lines
    }
}

/// The plan of a restore of `cluster`'s backups to `target` (onto `into`'s
/// members when given, else onto its own), or why it is refused. It
/// changes nothing but the leader's WAL file: `cluster`'s running leader
/// first switches to a new one and the repository receives the one it
/// closed, so that the window reaches the newest writes (the mistake the
/// restore undoes is usually in them). Every member restored onto must
/// answer over SSH: one that could not be stopped might come back and lead
/// with its old data.
pub async fn plan(
    cluster: &Cluster,
    into: Option<&Cluster>,
    target: Target,
    say: Say<'_>,
) -> Result<RestorePlan, ClusterError> {
    let refuse = |why: String| ClusterError::Refused(format!("restore refused: {why}"));
    let dest = into.unwrap_or(cluster);
    let members = dest.group(Group::Postgres);
    let first = members
        .first()
        .cloned()
        .ok_or_else(|| refuse(format!("the `{}` group is empty", Group::Postgres.name())))?;
    if let Some(dest) = into {
        if let Some(shared) = shared_host(cluster, dest) {
            return Err(refuse(format!(
                "--into must name other hosts: {shared} is in both inventories"
            )));
        }
    }
    let source_live = cluster.patroni_cluster().await.ok().map(|(_, c)| c);
    let source_leader = leader_of(source_live.as_ref(), &cluster.group(Group::Postgres));
    if let Some(leader) = &source_leader {
        archive_the_newest_wal(cluster, leader, say).await;
    }
    let repo = backup::repository(cluster).await?;
    if repo.backup_running {
        return Err(refuse(format!(
            "a backup is running on {}; wait for it to end",
            repo.host
        )));
    }
    let chosen = choose_backup(&repo, &target).map_err(refuse)?;
    let window = repo.window().expect("a backup was chosen");
    let down = cluster.probe(Duration::from_secs(10)).await;
    let missing: Vec<String> = members
        .iter()
        .filter_map(|m| down.get(m).map(|why| format!("{m} ({why})")))
        .collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "every member must be reachable to be stopped: {} unreachable",
            missing.join(", ")
        )));
    }
    let stamp = aside_stamp();
    let (live, origin) = match into {
        None => (source_live, None),
        Some(dest) => {
            for member in &members {
                if dest
                    .exec(member, &format!("test -f {PATRONI_CONFIG}"))
                    .await
                    .is_err()
                {
                    return Err(refuse(format!(
                        "{member} has no Patroni configuration ({PATRONI_CONFIG}): deploy the new hosts first (`pgdeploy apply` with their inventory)"
                    )));
                }
            }
            let live = dest.patroni_cluster().await.ok().map(|(_, c)| c);
            (live, Some(into::origin(cluster, dest, &repo.host, &stamp)?))
        }
    };
    let bootstrap = leader_of(live.as_ref(), &members).unwrap_or(first.clone());
    // Another cluster's timelines say nothing of the restored data's.
    let timeline_before = live
        .as_ref()
        .filter(|_| into.is_none())
        .and_then(|c| c.members.iter().filter_map(|m| m.timeline).max());
    let data_dir = dest
        .host_string(&first, contract::POSTGRES_DATA_DIR)
        .await?;
    Ok(RestorePlan {
        target,
        backup: chosen,
        window,
        bootstrap,
        members,
        aside: format!("{data_dir}.before-restore-{stamp}"),
        data_dir,
        timeline_before,
        origin,
    })
}

/// The cluster's leader, when it is one of `members`.
fn leader_of(live: Option<&super::PatroniCluster>, members: &[String]) -> Option<String> {
    live.and_then(|c| c.leader())
        .map(|l| l.name.clone())
        .filter(|l| members.contains(l))
}

/// `YYYYmmddTHHMMSS` of now (UTC), for the folder kept aside.
fn aside_stamp() -> String {
    super::status::format_utc(super::status::unix_now())
        .trim_end_matches(" UTC")
        .replace(['-', ':'], "")
        .replace(' ', "T")
}

/// How a restore ended.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The new leader.
    pub leader: String,
    /// Its timeline.
    pub timeline: Option<u64>,
    /// The last line of its newest timeline history file: where recovery
    /// stopped and why (`before 2026-11-30 14:30:00+00`, `no recovery
    /// target specified`, ...).
    pub stopped: Option<String>,
    /// The backup taken on the new timeline (none for a cluster restored
    /// `--into` without a backup host).
    pub new_backup: Option<String>,
    /// How long the whole restore took, seconds.
    pub seconds: f64,
}

/// Carries out `plan` (see the module's documentation): `cluster`'s
/// backups restored onto `into`'s members when given, else its own.
pub async fn restore(
    cluster: &Cluster,
    into: Option<&Cluster>,
    plan: &RestorePlan,
    say: Say<'_>,
) -> Result<RestoreOutcome, ClusterError> {
    let started = Instant::now();
    let source = cluster;
    let cluster = into.unwrap_or(source);
    let name = cluster.name();
    let b = plan.bootstrap.as_str();
    let bin_dir = cluster.host_string(b, contract::POSTGRES_BIN_DIR).await?;
    // The others first: none of them takes over while the leader stops.
    let mut order: Vec<&String> = plan.members.iter().filter(|m| *m != b).collect();
    order.push(&plan.bootstrap);
    for member in &order {
        cluster
            .script(member, STOP, &[&plan.data_dir, &bin_dir])
            .await?;
        say(&format!("{member}: Patroni and PostgreSQL stopped"));
    }
    let prefix = format!("{PATRONI_NAMESPACE}{name}/");
    let deleted = etcd::delete_prefix(cluster, &prefix).await?;
    say(&format!("etcd: {deleted} key(s) under {prefix} removed"));
    for member in &plan.members {
        // --into: the spool's queue and marks belong to the data replaced.
        let spool = match &plan.origin {
            Some(_) => format!(
                "{}/archive/{name}",
                cluster
                    .stack()
                    .required_string(member, contract::PGBACKREST_SPOOL_PATH)?
            ),
            None => String::new(),
        };
        let kept = cluster
            .script(member, ASIDE, &[&plan.data_dir, &plan.aside, &spool])
            .await?;
        match kept.trim() {
            "" => say(&format!("{member}: no data directory to keep")),
            aside => say(&format!("{member}: data directory kept as {aside}")),
        }
    }
    if let Some(Origin {
        new_repo: Some(host),
        repo_aside,
        ..
    }) = &plan.origin
    {
        let repo_path = cluster
            .stack()
            .required_string(host, contract::PGBACKREST_REPO_PATH)?;
        let moved = cluster
            .script(host, INTO_REPO, &[&repo_path, &name, repo_aside])
            .await?;
        for folder in moved.lines() {
            say(&format!("{host}: kept as {folder}"));
        }
    }
    let method = bootstrap_method(&name, &bin_dir, plan);
    cluster
        .script(b, BOOTSTRAP, &[PATRONI_CONFIG, &method.to_string()])
        .await?;
    if let Some(origin) = &plan.origin {
        into::grant(source, cluster, b, origin).await?;
        say(&format!(
            "{}: {b} may read {}'s repository",
            origin.repo_host, origin.cluster
        ));
    }
    let bootstrapped = match cluster.exec(b, "systemctl start patroni").await {
        Ok(_) => {
            say(&format!(
                "{b}: restoring backup {} and recovering to {} ...",
                plan.backup.label,
                plan.target.view()
            ));
            wait_for_bootstrap(cluster, b, say).await
        }
        Err(e) => Err(e),
    };
    // Patroni's own configuration is back, and the old cluster's backup
    // host trusts no one new, whatever happened.
    let finished = cluster.script(b, FINISH, &[PATRONI_CONFIG]).await;
    let distrusted = match &plan.origin {
        Some(origin) => into::revoke(source, cluster, b, origin).await,
        None => Ok(()),
    };
    bootstrapped?;
    finished?;
    distrusted?;
    say(&format!(
        "{b} leads ({:.0}s); Patroni's configuration is back",
        started.elapsed().as_secs_f64()
    ));
    let has_repo = plan.has_repository();
    if let Some(Origin {
        new_repo: Some(host),
        ..
    }) = &plan.origin
    {
        cluster
            .exec(
                host,
                &format!(
                    "runuser -u postgres -- pgbackrest --stanza={} stanza-create",
                    pgdeploy_text::quote(&name)
                ),
            )
            .await?;
        say(&format!(
            "{host}: stanza {name} created for the restored data"
        ));
    }
    let new_backup = if has_repo {
        let taken = backup::backup(cluster, "full", say).await?;
        say(&format!("backup {} taken on the new timeline", taken.label));
        Some(taken.label)
    } else {
        say("no backup host: no backup on the new timeline");
        None
    };
    let others: Vec<&String> = plan.members.iter().filter(|m| *m != b).collect();
    for member in &others {
        cluster.exec(member, "systemctl start patroni").await?;
    }
    for member in &others {
        ops::wait_for_streaming(cluster, member, REPLICA_WITHIN).await?;
        say(&format!(
            "{member} rebuilt from the {} and streams",
            if has_repo { "repository" } else { "leader" }
        ));
    }
    if !cluster.group(Group::Balancers).is_empty() {
        let readers: Vec<String> = others.iter().map(|m| m.to_string()).collect();
        ops::wait_for_backends(cluster, b, &readers, Duration::from_secs(60)).await?;
        say(&format!(
            "HAProxy routes writes to {b}{}",
            if readers.is_empty() {
                String::new()
            } else {
                format!(", reads to {}", readers.join(", "))
            }
        ));
    }
    let node: PatroniNode = cluster.patroni_get(b, "/patroni").await?;
    let history = cluster.script(b, HISTORY, &[&plan.data_dir]).await?;
    let stopped = history
        .lines()
        .find(|l| !l.starts_with("timeline-file "))
        .map(|l| l.split('\t').skip(2).collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty());
    if let (Some(before), Some(now)) = (plan.timeline_before, node.timeline) {
        if now <= before {
            return Err(ClusterError::Refused(format!(
                "restore ended on timeline {now}, not after the old timeline {before}"
            )));
        }
    }
    Ok(RestoreOutcome {
        leader: b.to_string(),
        timeline: node.timeline,
        stopped,
        new_backup,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Patroni's `bootstrap` additions: the custom method that restores the
/// chosen backup, and the recovery settings PostgreSQL stops with.
///
/// `--into` reads the other cluster's repository (its stanza, its backup
/// host) through pgBackRest's environment options, which win over the
/// configuration file, with no asynchronous archive-get: the spool is the
/// new cluster's.
fn bootstrap_method(name: &str, bin_dir: &str, plan: &RestorePlan) -> serde_json::Value {
    let quote = pgdeploy_text::quote;
    let (stanza, env) = match &plan.origin {
        None => (name.to_string(), String::new()),
        Some(o) => (
            o.cluster.clone(),
            format!(
                "env PGBACKREST_REPO1_HOST={} PGBACKREST_PG1_PATH={} PGBACKREST_ARCHIVE_ASYNC=n ",
                quote(&o.repo_address),
                quote(&plan.data_dir)
            ),
        ),
    };
    let command = format!(
        "{env}/usr/bin/pgbackrest --stanza={} --set={} --delta restore",
        quote(&stanza),
        quote(&plan.backup.label)
    );
    let mut recovery = plan.target.recovery_settings();
    recovery.insert(
        "restore_command".into(),
        json!(format!(
            "{env}/usr/local/sbin/pgdeploy-pgbackrest-wal get {} {bin_dir} %f \"%p\"",
            quote(&stanza)
        )),
    );
    json!({
        "method": "pgdeploy_restore",
        "pgdeploy_restore": {
            "command": command,
            "no_params": true,
            "recovery_conf": recovery,
        }
    })
}

/// Has the leader switch to a new WAL file and waits until the repository
/// holds the one it closed (a minute for each). A leader still starting
/// (after a crash: crash recovery) is asked again; one that never answers
/// leaves the window where it is, and the operator is told.
async fn archive_the_newest_wal(cluster: &Cluster, leader: &str, say: Say<'_>) {
    let switched = ops::poll(
        &format!("{leader} switching WAL files"),
        Duration::from_secs(60),
        || async {
            let rows = cluster
                .query(leader, "select pg_walfile_name(pg_switch_wal())")
                .await
                .map_err(|e| e.to_string())?;
            rows.first()
                .and_then(|r| r.first())
                .cloned()
                .ok_or_else(|| "no answer".to_string())
        },
    )
    .await;
    let closed = match switched {
        Ok(closed) => closed,
        Err(e) => {
            say(&format!(
                "warning: {e}; writes not yet in the repository cannot be restored"
            ));
            return;
        }
    };
    let wanted = super::status::segment_number(&closed);
    let archived = ops::poll(
        &format!("{closed} archived"),
        Duration::from_secs(60),
        || async {
            let repo = backup::repository(cluster)
                .await
                .map_err(|e| e.to_string())?;
            let newest = repo.newest_wal.map(|w| w.name).unwrap_or_default();
            match (super::status::segment_number(&newest), wanted) {
                (Some(n), Some(w)) if n >= w => Ok(()),
                _ => Err(format!("newest archived {newest}")),
            }
        },
    )
    .await;
    match archived {
        Ok(()) => say(&format!(
            "{leader}: WAL up to {closed} is in the repository"
        )),
        Err(e) => say(&format!(
            "warning: {e}; writes not yet in the repository cannot be restored"
        )),
    }
}

/// Waits until `member` leads and runs after its bootstrap, reporting each
/// state Patroni passes through; fails at once when the bootstrap fails.
async fn wait_for_bootstrap(
    cluster: &Cluster,
    member: &str,
    say: Say<'_>,
) -> Result<(), ClusterError> {
    let deadline = Instant::now() + BOOTSTRAP_WITHIN;
    let mut last = String::new();
    loop {
        let seen = match cluster.patroni_get::<PatroniNode>(member, "/patroni").await {
            Ok(n) => format!("{} ({})", n.state, n.role),
            Err(_) => "Patroni not answering yet".to_string(),
        };
        if seen != last {
            say(&format!("  {member}: {seen}"));
            last.clone_from(&seen);
        }
        if seen.contains("failed") {
            return Err(ClusterError::Refused(format!(
                "{member}: the restore's bootstrap failed ({seen}); see `journalctl -u patroni` there"
            )));
        }
        if seen.starts_with("running (") && !seen.contains("replica") {
            if let Ok((_, c)) = cluster.patroni_cluster().await {
                if c.leader().is_some_and(|l| l.name == member) {
                    return Ok(());
                }
            }
        }
        if cluster
            .exec(member, "systemctl is-active --quiet patroni")
            .await
            .is_err()
        {
            return Err(ClusterError::Refused(format!(
                "{member}: Patroni stopped during the restore's bootstrap; see `journalctl -u patroni` there"
            )));
        }
        if Instant::now() > deadline {
            return Err(ClusterError::Refused(format!(
                "{member} did not lead within {}s (last seen: {seen})",
                BOOTSTRAP_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use target::tests::repo;

    fn a_plan(origin: Option<Origin>) -> RestorePlan {
        let r = repo();
        RestorePlan {
            target: Target::Latest,
            backup: r.backups[0].clone(),
            window: r.window().expect("a window"),
            bootstrap: "c1".into(),
            members: vec!["c1".into(), "c2".into()],
            data_dir: "/var/lib/postgresql/15/patroni".into(),
            aside: "/var/lib/postgresql/15/patroni.before-restore-X".into(),
            timeline_before: None,
            origin,
        }
    }

    fn from_lab(new_repo: Option<&str>) -> Origin {
        Origin {
            cluster: "lab".into(),
            repo_host: "node4".into(),
            repo_address: "10.0.0.4".into(),
            new_repo: new_repo.map(str::to_string),
            repo_aside: "/var/lib/pgbackrest-before-restore-X".into(),
        }
    }

    #[test]
    fn a_restore_into_another_cluster_reads_the_old_repository() {
        let own = bootstrap_method("clone", "/usr/lib/postgresql/15/bin", &a_plan(None));
        let method = &own["pgdeploy_restore"];
        assert_eq!(
            method["command"],
            "/usr/bin/pgbackrest --stanza=clone --set=20261130-120000F --delta restore"
        );
        let into = bootstrap_method(
            "clone",
            "/usr/lib/postgresql/15/bin",
            &a_plan(Some(from_lab(Some("c3")))),
        );
        let method = &into["pgdeploy_restore"];
        let env = "env PGBACKREST_REPO1_HOST=10.0.0.4 PGBACKREST_PG1_PATH=/var/lib/postgresql/15/patroni PGBACKREST_ARCHIVE_ASYNC=n ";
        assert_eq!(
            method["command"],
            format!("{env}/usr/bin/pgbackrest --stanza=lab --set=20261130-120000F --delta restore")
        );
        assert_eq!(
            method["recovery_conf"]["restore_command"],
            format!("{env}/usr/local/sbin/pgdeploy-pgbackrest-wal get lab /usr/lib/postgresql/15/bin %f \"%p\"")
        );
    }

    #[test]
    fn the_plan_of_a_restore_into_names_both_clusters() {
        let lines = a_plan(Some(from_lab(Some("c3")))).lines("clone").join("\n");
        assert!(
            lines.starts_with("restore cluster lab's backups into cluster clone, to the end"),
            "{lines}"
        );
        assert!(
            lines.contains(
                "~ node4 (lab's backup host; lab keeps running): c1 may read the repository"
            ),
            "{lines}"
        );
        assert!(
            lines.contains(
                "~ c3: clone's stanza kept aside as /var/lib/pgbackrest-before-restore-X"
            ),
            "{lines}"
        );
        assert!(
            lines.contains("+ a full backup on the new timeline"),
            "{lines}"
        );
        assert!(
            lines.contains("+ c2 rebuild from the repository"),
            "{lines}"
        );
        let no_repo = a_plan(Some(from_lab(None))).lines("clone").join("\n");
        assert!(
            no_repo.contains("? no backup on the new timeline"),
            "{no_repo}"
        );
        assert!(
            no_repo.contains("+ c2 rebuild from the leader"),
            "{no_repo}"
        );
        let own = a_plan(None).lines("lab").join("\n");
        assert!(own.starts_with("restore cluster lab to the end"), "{own}");
        assert!(!own.contains("keeps running"), "{own}");
    }
}
