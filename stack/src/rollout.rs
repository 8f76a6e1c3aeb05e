//! The stack's side of a run ([`LiveSystem`]): `plan` compares the live
//! cluster (parameters that need a reload or a restart, members that left
//! their group); `apply`, after its tasks, takes out members that left the
//! `postgres` group, then those that left the `etcd` group, then restarts
//! the etcd members with a pending restart one at a time and defragments
//! fragmented ones (see [`etcd`]), then rolls the dynamic configuration to
//! Patroni ([`dynamic`]), then rolls restart-only parameter changes out
//! (see [`rolling`]) and checks every managed parameter is in force on
//! every member.

use pgdeploy_engine::live::{BoxFuture, LiveError, LiveSection, LiveSystem, Tell};

use crate::cluster::{dynamic, etcd, rolling, Cluster, ClusterError};
use crate::contract::Stack;

/// Replication lag (MB) a replica may have when the roll-out switches over.
const MAX_LAG_MB: f64 = 16.0;

/// The running cluster an apply converges.
pub struct Rollout {
    cluster: Cluster,
}

impl Rollout {
    /// The roll-out of `stack`, when its playbook deploys Patroni members
    /// ([`Stack::has_members`]); `None` for any other playbook.
    pub fn of(stack: Stack) -> Option<Rollout> {
        stack.has_members().then(|| Rollout {
            cluster: Cluster::new(stack),
        })
    }

    async fn sections(&self) -> Vec<LiveSection> {
        let parameters = rolling::parameter_changes(&self.cluster)
            .await
            .map(|changes| changes.iter().map(ToString::to_string).collect());
        let members = rolling::stale_members_plan(&self.cluster).await;
        let dynamic = dynamic::changes(&self.cluster)
            .await
            .map(|(_, changes)| changes.iter().map(ToString::to_string).collect());
        let etcd = etcd::plan(&self.cluster).await;
        vec![
            section("Patroni dynamic configuration", dynamic),
            section("PostgreSQL parameters", parameters),
            section("Cluster members to take out", members),
            section("etcd upkeep", etcd),
        ]
    }

    async fn run(&self, tell: Tell<'_>) -> Result<(), ClusterError> {
        let cluster = &self.cluster;
        let removed = rolling::remove_stale_members(cluster, tell).await?;
        if !removed.is_empty() {
            tell(&format!("members removed: {}", removed.join(", ")));
        }
        let removed = rolling::remove_stale_etcd_members(cluster, tell).await?;
        if !removed.is_empty() {
            tell(&format!("etcd members removed: {}", removed.join(", ")));
        }
        for line in etcd::converge(cluster, tell).await? {
            tell(&line);
        }
        let patched = dynamic::apply(cluster, tell).await?;
        if !patched.is_empty() {
            tell(&format!(
                "patroni dynamic config: {} change(s) taken by every member",
                patched.len()
            ));
        }
        let restarted = rolling::converge(cluster, MAX_LAG_MB, tell).await?;
        if !restarted.is_empty() {
            tell(&format!("rolling restart done: {}", restarted.join(", ")));
        }
        let checked = dynamic::verify(cluster).await?;
        tell(&format!(
            "parameters in force: {checked} checked with SHOW on every member"
        ));
        Ok(())
    }
}

fn section(subject: &str, lines: Result<Vec<String>, ClusterError>) -> LiveSection {
    LiveSection {
        title: format!("{subject} (live cluster)"),
        subject: subject.to_string(),
        lines: lines.map_err(|e| e.to_string()),
    }
}

impl LiveSystem for Rollout {
    fn plan(&self) -> BoxFuture<'_, Vec<LiveSection>> {
        Box::pin(self.sections())
    }

    fn converge<'a>(&'a self, tell: Tell<'a>) -> BoxFuture<'a, Result<(), LiveError>> {
        Box::pin(async move { self.run(tell).await.map_err(LiveError::from) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.cluster.close())
    }
}
