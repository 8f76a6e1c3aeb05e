//! etcd upkeep on the running cluster: each member's database size and
//! alarms (for `status`), rolling restarts of the members whose
//! configuration or certificate changed, and defragmentation of fragmented
//! members.
//!
//! The etcd role never restarts etcd itself: its `restart etcd` handler
//! leaves a marker file (`etcd_restart_pending_file`) on the member. After
//! the tasks, `apply` restarts the members that have one ([`converge`]):
//! one at a time, every member healthy before each restart and again after
//! it, the leader last. Then it defragments, one member at a time, every
//! member whose database file is mostly free space (`dbSize` against
//! `dbSizeInUse` from the maintenance status API): compaction frees pages
//! inside the file but never shrinks it. `plan` lists both ([`plan`]).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;

use crate::contract::{self, Group, Var};

use super::ops::{self, Say};
use super::{Cluster, ClusterError};

/// Prints `pending` when a member has the restart marker.
const PENDING: &str = include_str!("../sh/etcd-pending.sh");
/// Restarts a member and clears its marker.
const RESTART: &str = include_str!("../sh/etcd-restart.sh");

/// How long a member (and the whole cluster) may take to be healthy again.
const HEALTHY_WITHIN: Duration = Duration::from_secs(90);

/// One member's maintenance status (`/v3/maintenance/status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberStatus {
    /// The member's ID.
    pub id: String,
    /// The ID of the member it sees as leader.
    pub leader: String,
    /// Size of its database file, bytes.
    pub db_size: u64,
    /// Bytes of that file in use (the rest is free pages).
    pub db_size_in_use: u64,
}

impl MemberStatus {
    /// It is the leader.
    pub fn is_leader(&self) -> bool {
        !self.id.is_empty() && self.id == self.leader
    }

    /// Free bytes in its database file.
    pub fn free(&self) -> u64 {
        self.db_size.saturating_sub(self.db_size_in_use)
    }
}

/// A uint64 of the v3 gateway's JSON (sent as a string, or absent for 0).
fn uint(v: &Json) -> u64 {
    match v {
        Json::String(s) => s.parse().unwrap_or(0),
        Json::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// Reads the answer of `/v3/maintenance/status`.
pub fn parse_status(text: &str) -> Result<MemberStatus, String> {
    let v: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let id = uint(&v["header"]["member_id"]);
    if id == 0 {
        return Err("no header.member_id".into());
    }
    Ok(MemberStatus {
        id: id.to_string(),
        leader: uint(&v["leader"]).to_string(),
        db_size: uint(&v["dbSize"]),
        db_size_in_use: uint(&v["dbSizeInUse"]),
    })
}

/// The alarms of `/v3/maintenance/alarm` (action GET) as (member ID, alarm).
pub fn parse_alarms(text: &str) -> Result<Vec<(String, String)>, String> {
    let v: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(v["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                uint(&a["memberID"]).to_string(),
                a["alarm"].as_str().unwrap_or("NONE").to_string(),
            )
        })
        .filter(|(_, alarm)| alarm != "NONE")
        .collect())
}

/// Whether a member's database is fragmented enough to defragment: at
/// least `min_free` bytes free and that at least `min_ratio` of the file.
pub fn fragmented(status: &MemberStatus, min_free: u64, min_ratio: f64) -> bool {
    let free = status.free();
    status.db_size > 0 && free >= min_free && free as f64 >= min_ratio * status.db_size as f64
}

/// The order of a rolling restart of `pending` members: the others first
/// (in the given order), `leader` last.
pub fn restart_order(pending: &[String], leader: Option<&str>) -> Vec<String> {
    let (last, mut order): (Vec<String>, Vec<String>) = pending
        .iter()
        .cloned()
        .partition(|m| Some(m.as_str()) == leader);
    order.extend(last);
    order
}

/// Bytes as `12.3 MB`.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// A number the inventory gives for `var` on `host` (a number, or text
/// from `-e`), or `default`.
fn number(cluster: &Cluster, host: &str, var: Var, default: f64) -> f64 {
    match cluster.var(host, var) {
        Some(Json::Number(n)) => n.as_f64().unwrap_or(default),
        Some(Json::String(s)) => s.trim().parse().unwrap_or(default),
        _ => default,
    }
}

/// The database size limit of `host` (bytes), when the inventory knows it.
pub fn quota(cluster: &Cluster, host: &str) -> Option<u64> {
    let q = number(cluster, host, contract::ETCD_QUOTA_BACKEND_BYTES, 0.0);
    (q > 0.0).then_some(q as u64)
}

/// POSTs `body` to `path` on `host`'s own etcd (its v3 gateway).
async fn post(
    cluster: &Cluster,
    host: &str,
    path: &str,
    body: &str,
) -> Result<String, ClusterError> {
    let port = cluster.port(host, contract::ETCD_CLIENT_PORT)?;
    let res = cluster.api(host, port, "POST", path, Some(body)).await?;
    if res.status != 200 {
        return Err(ClusterError::Refused(format!(
            "{host}: etcd {path} answered {}: {}",
            res.status,
            res.text().trim()
        )));
    }
    Ok(res.text())
}

/// The end of the key range holding every key that starts with `prefix`
/// (etcd's prefix convention: the last byte plus one).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// Deletes every key under `prefix` through the first healthy etcd member;
/// returns how many were deleted.
pub async fn delete_prefix(cluster: &Cluster, prefix: &str) -> Result<u64, ClusterError> {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = serde_json::json!({
        "key": b64(prefix.as_bytes()),
        "range_end": b64(&prefix_end(prefix.as_bytes())),
    })
    .to_string();
    let mut last = ClusterError::Input(format!(
        "the inventory's `{}` group is empty",
        Group::Etcd.name()
    ));
    for host in cluster.group(Group::Etcd) {
        match post(cluster, &host, "/v3/kv/deleterange", &body).await {
            Ok(text) => {
                let answer: Json = serde_json::from_str(&text).unwrap_or_default();
                // The gateway gives int64 as strings, and leaves out zeros.
                return Ok(match &answer["deleted"] {
                    Json::String(n) => n.parse().unwrap_or(0),
                    n => n.as_u64().unwrap_or(0),
                });
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The maintenance status of `host`'s member.
pub async fn member_status(cluster: &Cluster, host: &str) -> Result<MemberStatus, ClusterError> {
    let text = post(cluster, host, "/v3/maintenance/status", "{}").await?;
    parse_status(&text).map_err(|reason| ClusterError::Unparsable {
        host: host.to_string(),
        service: "etcd maintenance status".into(),
        reason,
        answer: super::shortened(&text),
    })
}

/// The cluster's active alarms as `host` reports them: (member ID, alarm).
pub async fn alarms(cluster: &Cluster, host: &str) -> Result<Vec<(String, String)>, ClusterError> {
    let text = post(
        cluster,
        host,
        "/v3/maintenance/alarm",
        r#"{"action":"GET"}"#,
    )
    .await?;
    parse_alarms(&text).map_err(|reason| ClusterError::Unparsable {
        host: host.to_string(),
        service: "etcd alarm list".into(),
        reason,
        answer: super::shortened(&text),
    })
}

/// Whether `host`'s member answers `/health` with `"health": "true"`.
pub async fn healthy(cluster: &Cluster, host: &str) -> Result<(), String> {
    let port = cluster
        .port(host, contract::ETCD_CLIENT_PORT)
        .map_err(|e| e.to_string())?;
    let res = cluster
        .api(host, port, "GET", "/health", None)
        .await
        .map_err(|e| e.to_string())?;
    match serde_json::from_slice::<Json>(&res.body) {
        Ok(v) if v["health"] == "true" => Ok(()),
        _ => Err(format!("{host}: /health: {}", res.text().trim())),
    }
}

/// Waits until every member of the `etcd` group is healthy.
pub(crate) async fn wait_all_healthy(cluster: &Cluster, why: &str) -> Result<(), ClusterError> {
    let hosts = cluster.group(Group::Etcd);
    ops::poll(why, HEALTHY_WITHIN, || async {
        for host in &hosts {
            healthy(cluster, host).await?;
        }
        Ok(())
    })
    .await
}

/// The members with a pending restart, in group order.
pub async fn pending_restarts(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let mut pending = Vec::new();
    for host in cluster.group(Group::Etcd) {
        let marker = cluster
            .stack()
            .required_string(&host, contract::ETCD_RESTART_PENDING_FILE)?;
        if cluster.script(&host, PENDING, &[&marker]).await?.trim() == "pending" {
            pending.push(host);
        }
    }
    Ok(pending)
}

/// The leader among the group's members, as the first that answers sees it.
async fn leader(cluster: &Cluster) -> Result<Option<String>, ClusterError> {
    let mut statuses = Vec::new();
    for host in cluster.group(Group::Etcd) {
        if let Ok(s) = member_status(cluster, &host).await {
            statuses.push((host, s));
        }
    }
    Ok(statuses
        .iter()
        .find(|(_, s)| s.is_leader())
        .map(|(h, _)| h.clone()))
}

/// The members fragmented enough to defragment, with their status.
async fn fragmented_members(
    cluster: &Cluster,
) -> Result<Vec<(String, MemberStatus)>, ClusterError> {
    let mut list = Vec::new();
    for host in cluster.group(Group::Etcd) {
        let status = member_status(cluster, &host).await?;
        let min_free =
            number(cluster, &host, contract::ETCD_DEFRAG_MIN_FREE_MB, 64.0) * 1_048_576.0;
        let ratio = number(cluster, &host, contract::ETCD_DEFRAG_MIN_FREE_RATIO, 0.5);
        if fragmented(&status, min_free as u64, ratio) {
            list.push((host, status));
        }
    }
    Ok(list)
}

/// What `apply` would do to etcd, one line each, for `plan`.
pub async fn plan(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let pending = pending_restarts(cluster).await?;
    let leader = leader(cluster).await?;
    let mut lines: Vec<String> = restart_order(&pending, leader.as_deref())
        .into_iter()
        .map(|m| {
            format!(
                "~ etcd member {m}: restart{} (configuration or certificate changed; one member at a time, quorum checked between)",
                if Some(&m) == leader.as_ref() { ", the leader, last" } else { "" }
            )
        })
        .collect();
    lines.extend(fragmented_members(cluster).await?.iter().map(|(m, s)| {
        format!(
            "~ etcd member {m}: defragment (database {}, {} of it free)",
            mb(s.db_size),
            mb(s.free())
        )
    }));
    Ok(lines)
}

/// Restarts the members with a pending restart one at a time (every member
/// healthy before and after each, the leader last), then defragments the
/// fragmented members one at a time. Returns what it did, one line each.
pub async fn converge(cluster: &Cluster, say: Say<'_>) -> Result<Vec<String>, ClusterError> {
    let mut done = Vec::new();
    loop {
        let pending = pending_restarts(cluster).await?;
        let leader = leader(cluster).await?;
        let Some(member) = restart_order(&pending, leader.as_deref())
            .into_iter()
            .next()
        else {
            break;
        };
        wait_all_healthy(cluster, "every etcd member healthy before a restart").await?;
        say(&format!("etcd rolling restart: {member}"));
        let marker = cluster
            .stack()
            .required_string(&member, contract::ETCD_RESTART_PENDING_FILE)?;
        cluster.script(&member, RESTART, &[&marker]).await?;
        wait_all_healthy(
            cluster,
            &format!("every etcd member healthy after {member}'s restart"),
        )
        .await?;
        done.push(format!("etcd member {member} restarted"));
    }
    for (member, before) in fragmented_members(cluster).await? {
        wait_all_healthy(
            cluster,
            "every etcd member healthy before a defragmentation",
        )
        .await?;
        say(&format!(
            "etcd defragment: {member} ({} free)",
            mb(before.free())
        ));
        post(cluster, &member, "/v3/maintenance/defragment", "{}").await?;
        let after = member_status(cluster, &member).await?;
        done.push(format!(
            "etcd member {member} defragmented: {} → {}",
            mb(before.db_size),
            mb(after.db_size)
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_range() {
        assert_eq!(prefix_end(b"/service/lab/"), b"/service/lab0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }

    fn status(db: u64, in_use: u64) -> MemberStatus {
        MemberStatus {
            id: "1".into(),
            leader: "2".into(),
            db_size: db,
            db_size_in_use: in_use,
        }
    }

    #[test]
    fn status_of_the_gateway() {
        let text = r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"12","raft_term":"3"},"version":"3.4.23","dbSize":"20480","leader":"10276657743932975437","raftIndex":"30","raftTerm":"3","raftAppliedIndex":"30","dbSizeInUse":"16384"}"#;
        let s = parse_status(text).expect("parses");
        assert_eq!(s.db_size, 20480);
        assert_eq!(s.db_size_in_use, 16384);
        assert_eq!(s.free(), 4096);
        assert!(s.is_leader());
        assert!(parse_status(r#"{"dbSize":"1"}"#).is_err());
        assert!(parse_status("nope").is_err());
    }

    #[test]
    fn alarms_of_the_gateway() {
        assert_eq!(parse_alarms(r#"{"header":{}}"#), Ok(vec![]));
        assert_eq!(
            parse_alarms(r#"{"alarms":[{"memberID":"42","alarm":"NOSPACE"},{"memberID":"7"}]}"#),
            Ok(vec![("42".to_string(), "NOSPACE".to_string())])
        );
    }

    #[test]
    fn fragmented_needs_both_limits() {
        let mb = 1_048_576;
        assert!(fragmented(&status(100 * mb, 10 * mb), 64 * mb, 0.5));
        // Enough free space, but not half the file.
        assert!(!fragmented(&status(200 * mb, 120 * mb), 64 * mb, 0.5));
        // Half the file, but too little to bother.
        assert!(!fragmented(&status(10 * mb, mb), 64 * mb, 0.5));
        assert!(!fragmented(&status(0, 0), 0, 0.0));
    }

    #[test]
    fn the_leader_restarts_last() {
        let pending: Vec<String> = ["node1", "node2", "node3"].map(String::from).to_vec();
        assert_eq!(
            restart_order(&pending, Some("node1")),
            ["node2", "node3", "node1"]
        );
        assert_eq!(restart_order(&pending, None), ["node1", "node2", "node3"]);
        assert_eq!(restart_order(&pending[..1], Some("node3")), ["node1"]);
    }
}
