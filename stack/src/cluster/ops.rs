//! Planned operations on a running cluster: switchover, restart and reinit
//! of a member, each step reported as it happens through a callback.

use crate::contract::{self, Group};
use std::time::{Duration, Instant};

use serde_json::json;

use super::status::parse_haproxy_csv;
use super::{Cluster, ClusterError, PatroniCluster, PatroniNode};

/// Receives one line per step, as it happens.
pub type Say<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// How often the cluster is polled while waiting.
const POLL: Duration = Duration::from_millis(500);

/// The member names of the leader and a switchover candidate that passed
/// the pre-checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverPlan {
    /// The current leader.
    pub leader: String,
    /// The member that will lead.
    pub candidate: String,
}

/// Pre-checks of a switchover: a leader exists; the candidate (`to`, or
/// the streaming replica with the least lag) is a running replica,
/// streaming from the leader, lagging at most `max_lag_mb`, and the
/// synchronous standby when the cluster runs in synchronous mode.
pub async fn check_switchover(
    cluster: &Cluster,
    to: Option<&str>,
    max_lag_mb: f64,
) -> Result<SwitchoverPlan, ClusterError> {
    let refuse = |why: String| Err(ClusterError::Refused(format!("switchover refused: {why}")));
    let (_, patroni) = cluster.patroni_cluster().await?;
    let Some(leader) = patroni.leader().map(|m| m.name.clone()) else {
        return refuse("the cluster has no leader".into());
    };
    let node: PatroniNode = cluster.patroni_get(&leader, "/patroni").await?;
    let config: serde_json::Value = cluster.patroni_get(&leader, "/config").await?;
    let sync_mode = config["synchronous_mode"] == true;
    let streaming = |name: &str| {
        node.replication
            .iter()
            .find(|s| s.application_name == name && s.state == "streaming")
    };
    let candidate = match to {
        Some(name) => name.to_string(),
        None => {
            let mut replicas: Vec<_> = patroni
                .members
                .iter()
                .filter(|m| !m.is_leader() && streaming(&m.name).is_some())
                .collect();
            replicas.sort_by_key(|m| m.lag_bytes().unwrap_or(u64::MAX));
            match replicas.first() {
                Some(m) => m.name.clone(),
                None => return refuse("no replica is streaming from the leader".into()),
            }
        }
    };
    let Some(member) = patroni.member(&candidate) else {
        return refuse(format!("{candidate} is not a member of the cluster"));
    };
    if member.is_leader() {
        return refuse(format!("{candidate} is already the leader"));
    }
    if member.state != "running" && member.state != "streaming" {
        return refuse(format!("{candidate} is {}", member.state));
    }
    let Some(sender) = streaming(&candidate) else {
        return refuse(format!(
            "{candidate} is not streaming from the leader {leader}"
        ));
    };
    match member.lag_bytes() {
        Some(lag) if lag as f64 / 1_048_576.0 <= max_lag_mb => {}
        Some(lag) => {
            return refuse(format!(
                "{candidate} lags {:.1} MB (limit {max_lag_mb} MB)",
                lag as f64 / 1_048_576.0
            ))
        }
        None => return refuse(format!("{candidate}'s lag is unknown")),
    }
    if sync_mode && sender.sync_state != "sync" {
        return refuse(format!(
            "synchronous mode is on and {candidate} is not the synchronous standby ({})",
            sender.sync_state
        ));
    }
    Ok(SwitchoverPlan { leader, candidate })
}

/// A planned switchover to `to` (or the best replica): pre-checks, a
/// checkpoint on the leader, Patroni's switchover, then waits for the new
/// leader, for HAProxy to send writes to it, and for the old leader to
/// stream from it.
pub async fn switchover(
    cluster: &Cluster,
    to: Option<&str>,
    max_lag_mb: f64,
    say: Say<'_>,
) -> Result<SwitchoverPlan, ClusterError> {
    let started = Instant::now();
    let plan = check_switchover(cluster, to, max_lag_mb).await?;
    let SwitchoverPlan { leader, candidate } = &plan;
    say(&format!(
        "pre-checks passed: {candidate} is streaming from {leader} within {max_lag_mb} MB"
    ));
    // A checkpoint first makes the old leader's shutdown checkpoint short.
    match cluster.query(leader, "CHECKPOINT").await {
        Ok(_) => say(&format!("checkpoint on {leader}: done")),
        Err(ClusterError::Input(why)) => say(&format!("checkpoint on {leader}: skipped ({why})")),
        Err(e) => return Err(e),
    }
    say(&format!("switchover {leader} -> {candidate} ..."));
    let answer = cluster
        .patroni_post(
            leader,
            "/switchover",
            &json!({"leader": leader, "candidate": candidate}),
        )
        .await?;
    say(&format!("Patroni: {answer}"));
    wait_for_leader(cluster, candidate, Duration::from_secs(60)).await?;
    say(&format!(
        "new leader {candidate} is running ({:.1}s)",
        started.elapsed().as_secs_f64()
    ));
    wait_for_haproxy(cluster, candidate, Duration::from_secs(30)).await?;
    say(&format!(
        "HAProxy sends writes to {candidate} on every balancer ({:.1}s)",
        started.elapsed().as_secs_f64()
    ));
    wait_for_streaming(cluster, leader, Duration::from_secs(120)).await?;
    say(&format!(
        "{leader} streams from {candidate} as a replica ({:.1}s)",
        started.elapsed().as_secs_f64()
    ));
    Ok(plan)
}

/// Restarts one member's PostgreSQL through Patroni and waits until it
/// runs again (a replica: streaming). Returns the old and new postmaster
/// start times.
pub async fn restart(
    cluster: &Cluster,
    member: &str,
    say: Say<'_>,
) -> Result<(String, String), ClusterError> {
    let before: PatroniNode = cluster.patroni_get(member, "/patroni").await?;
    let before_start = before.postmaster_start_time.unwrap_or_default();
    say(&format!(
        "restart {member} (PostgreSQL started {before_start}) ..."
    ));
    let answer = cluster.patroni_post(member, "/restart", &json!({})).await?;
    say(&format!("Patroni: {answer}"));
    let after = wait_for_restart(cluster, member, &before_start).await?;
    say(&format!("{member} runs again (started {after})"));
    if !is_leader_node(&cluster.patroni_get(member, "/patroni").await?) {
        wait_for_streaming(cluster, member, Duration::from_secs(120)).await?;
        say(&format!("{member} streams from the leader"));
    }
    Ok((before_start, after))
}

/// Rebuilds a replica from the leader (Patroni's reinitialize: a fresh
/// base backup) and waits until it streams again.
pub async fn reinit(cluster: &Cluster, member: &str, say: Say<'_>) -> Result<(), ClusterError> {
    let (_, patroni) = cluster.patroni_cluster().await?;
    match patroni.member(member) {
        None => {
            return Err(ClusterError::Refused(format!(
                "reinit refused: {member} is not a member of the cluster"
            )))
        }
        Some(m) if m.is_leader() => {
            return Err(ClusterError::Refused(format!(
                "reinit refused: {member} is the leader; switch over first"
            )))
        }
        Some(_) => {}
    }
    say(&format!("reinitialize {member} from the leader ..."));
    let answer = cluster
        .patroni_post(member, "/reinitialize", &json!({"force": true}))
        .await?;
    say(&format!("Patroni: {answer}"));
    // The member goes through `creating replica` before it runs again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_streaming(cluster, member, Duration::from_secs(600)).await?;
    say(&format!("{member} streams from the leader"));
    Ok(())
}

fn is_leader_node(node: &PatroniNode) -> bool {
    matches!(node.role.as_str(), "master" | "primary")
}

/// Polls `check` until it yields a value or `timeout` passes; the error
/// names `what` and the last observation.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(why) => why,
        };
        if Instant::now() > deadline {
            return Err(ClusterError::Refused(format!(
                "{what} did not happen within {}s (last seen: {last})",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `member` holds the leader lock and is running.
pub async fn wait_for_leader(
    cluster: &Cluster,
    member: &str,
    timeout: Duration,
) -> Result<(), ClusterError> {
    poll(&format!("{member} leading"), timeout, || async {
        let (_, c): (String, PatroniCluster) =
            cluster.patroni_cluster().await.map_err(|e| e.to_string())?;
        match c.leader() {
            Some(l) if l.name == member && l.state == "running" => Ok(()),
            Some(l) => Err(format!("leader {} ({})", l.name, l.state)),
            None => Err("no leader".into()),
        }
    })
    .await
}

/// Waits until every balancer's HAProxy has exactly `leader` UP in its
/// read-write backend.
pub async fn wait_for_haproxy(
    cluster: &Cluster,
    leader: &str,
    timeout: Duration,
) -> Result<(), ClusterError> {
    wait_for_backends(cluster, leader, &[], timeout).await
}

/// Waits until every balancer's HAProxy has exactly `leader` UP in its
/// read-write backend and exactly `readers` UP in its read-only one (an
/// empty list: that backend is not checked).
pub async fn wait_for_backends(
    cluster: &Cluster,
    leader: &str,
    readers: &[String],
    timeout: Duration,
) -> Result<(), ClusterError> {
    let mut readers = readers.to_vec();
    readers.sort();
    poll(&format!("HAProxy following {leader}"), timeout, || async {
        for host in cluster.group(Group::Balancers) {
            let port = cluster
                .port(&host, contract::HAPROXY_STATS_PORT)
                .map_err(|e| e.to_string())?;
            let res = cluster
                .http(&host, port, "GET", "/;csv", None)
                .await
                .map_err(|e| e.to_string())?;
            let backends = parse_haproxy_csv(&res.text());
            let up = |proxy: &str| {
                let mut up: Vec<String> = backends
                    .iter()
                    .filter(|b| b.proxy == proxy && b.status.starts_with("UP"))
                    .map(|b| b.server.clone())
                    .collect();
                up.sort();
                up
            };
            let writers = up("postgres_rw");
            if writers != [leader] {
                return Err(format!("{host} has [{}] up for writes", writers.join(", ")));
            }
            let reading = up("postgres_ro");
            if !readers.is_empty() && reading != readers {
                return Err(format!("{host} has [{}] up for reads", reading.join(", ")));
            }
        }
        Ok(())
    })
    .await
}

/// Waits until `member` runs as a replica with a `streaming` walsender on
/// the leader.
pub async fn wait_for_streaming(
    cluster: &Cluster,
    member: &str,
    timeout: Duration,
) -> Result<(), ClusterError> {
    poll(&format!("{member} streaming"), timeout, || async {
        let (_, c) = cluster.patroni_cluster().await.map_err(|e| e.to_string())?;
        let leader = c.leader().ok_or("no leader")?.name.clone();
        let m = c
            .member(member)
            .ok_or(format!("{member} not in the cluster"))?;
        if m.state != "running" && m.state != "streaming" {
            return Err(format!("{member} is {}", m.state));
        }
        let node: PatroniNode = cluster
            .patroni_get(&leader, "/patroni")
            .await
            .map_err(|e| e.to_string())?;
        if !node
            .replication
            .iter()
            .any(|s| s.application_name == member && s.state == "streaming")
        {
            return Err(format!("{member} has no streaming walsender on {leader}"));
        }
        // The leader may still list the walsender of the member's previous
        // postmaster for a moment: the member's own WAL receiver (which
        // belongs to the running postmaster) must stream too. Without the
        // superuser password (not needed otherwise) the leader's view is
        // all there is.
        match cluster
            .query(member, "select status from pg_stat_wal_receiver")
            .await
        {
            Ok(rows)
                if rows
                    .first()
                    .is_some_and(|r| r.first().is_some_and(|s| s == "streaming")) =>
            {
                Ok(())
            }
            Ok(_) => Err(format!("{member}'s WAL receiver is not streaming yet")),
            Err(ClusterError::Input(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Waits until `member`'s postmaster start time differs from `before` and
/// Patroni says it runs; returns the new start time.
async fn wait_for_restart(
    cluster: &Cluster,
    member: &str,
    before: &str,
) -> Result<String, ClusterError> {
    poll(
        &format!("{member} restarting"),
        Duration::from_secs(120),
        || async {
            let node: PatroniNode = cluster
                .patroni_get(member, "/patroni")
                .await
                .map_err(|e| e.to_string())?;
            match node.postmaster_start_time {
                Some(t) if t != before && node.state == "running" => Ok(t),
                _ => Err(format!("{member} is {}", node.state)),
            }
        },
    )
    .await
}
