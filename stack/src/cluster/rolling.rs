//! Rolling restarts for PostgreSQL parameters that only take effect after
//! a restart.
//!
//! The playbook's `patroni` role writes the parameters (`postgres_parameters`)
//! into Patroni's configuration and reloads Patroni: parameters PostgreSQL
//! can reload take effect then. [`parameter_changes`] tells, for each
//! member, which desired parameters differ from the live `pg_settings` and
//! whether each needs a reload or a restart (its `context` is
//! `postmaster`); `plan` prints that. [`converge`], run by `apply` after the
//! playbook, restarts the members that still need it: replicas one by one
//! (each streaming again before the next), then a switchover away from the
//! leader (which restarts it as a replica), then the old leader only if it
//! still needs it. [`remove_stale_members`] takes out members that left the
//! inventory's `postgres` group, [`remove_stale_etcd_members`] those that
//! left the `etcd` group.

use crate::contract::{self, Group};
use serde_json::Value as Json;

use super::ops::{self, Say};
use super::{Cluster, ClusterError, PatroniCluster, PatroniMember, PatroniNode};

/// Stops a removed etcd member and keeps its data aside.
const ETCD_RETIRE: &str = include_str!("../sh/etcd-retire.sh");

/// What a parameter change needs to take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Needs {
    /// `pg_reload_conf()` (Patroni's reload) is enough.
    Reload,
    /// The postmaster must restart.
    Restart,
}

/// A desired parameter that differs from a member's live value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ParamChange {
    /// The member.
    pub member: String,
    /// Parameter name.
    pub name: String,
    /// Its live value as `SHOW` prints it.
    pub current: String,
    /// The desired value.
    pub desired: String,
    /// Reload or restart.
    pub needs: Needs,
}

impl std::fmt::Display for ParamChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let needs = match self.needs {
            Needs::Reload => "reload",
            Needs::Restart => "restart: rolling, replicas first, leader last",
        };
        write!(
            f,
            "~ {} {}: {} → {} ({needs})",
            self.member, self.name, self.current, self.desired
        )
    }
}

/// A parameter value as text, the way PostgreSQL reads it.
fn value_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(true) => "on".into(),
        Json::Bool(false) => "off".into(),
        other => other.to_string(),
    }
}

/// Bytes (memory) or microseconds (time) per unit, as PostgreSQL spells
/// units; `None` for anything else.
fn unit_factor(unit: &str) -> Option<f64> {
    let digits: String = unit.chars().take_while(|c| c.is_ascii_digit()).collect();
    let scale: f64 = if digits.is_empty() {
        1.0
    } else {
        digits.parse().ok()?
    };
    let base = match &unit[digits.len()..] {
        "B" => 1.0,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        "min" => 60_000_000.0,
        "h" => 3_600_000_000.0,
        "d" => 86_400_000_000.0,
        _ => return None,
    };
    Some(scale * base)
}

/// A size such as `1GB` in bytes; a bare number is in `default_unit`.
pub fn size_bytes(text: &str, default_unit: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = match unit.trim() {
        "" => default_unit,
        u => u,
    };
    Some(number.parse::<f64>().ok()? * unit_factor(unit)?)
}

fn as_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Whether `desired` (as written in the playbook) equals the live
/// `setting` of a parameter of type `vartype` measured in `unit`.
pub fn same_value(desired: &str, setting: &str, unit: &str, vartype: &str) -> bool {
    match vartype {
        "bool" => as_bool(desired).is_some() && as_bool(desired) == as_bool(setting),
        "integer" | "real" => {
            let desired = desired.trim();
            let split = desired
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
                .unwrap_or(desired.len());
            let (number, suffix) = desired.split_at(split);
            let (Ok(number), Ok(live)) = (number.parse::<f64>(), setting.parse::<f64>()) else {
                return false;
            };
            let suffix = suffix.trim();
            let (want, have) = if unit.is_empty() || suffix.is_empty() {
                (number, live)
            } else {
                match (unit_factor(suffix), unit_factor(unit)) {
                    (Some(a), Some(b)) => (number * a, live * b),
                    _ => return false,
                }
            };
            (want - have).abs() <= 1e-9 * want.abs().max(1.0)
        }
        "enum" => desired.trim().eq_ignore_ascii_case(setting),
        _ => desired == setting,
    }
}

/// The desired parameters of `member` (`postgres_parameters`) that differ
/// from its live values.
pub async fn member_changes(
    cluster: &Cluster,
    member: &str,
) -> Result<Vec<ParamChange>, ClusterError> {
    match cluster.var(member, contract::POSTGRES_PARAMETERS) {
        Some(Json::Object(desired)) => differences(cluster, member, &desired).await,
        _ => Ok(Vec::new()),
    }
}

/// The parameters of `desired` whose live value on `member` differs.
pub async fn differences(
    cluster: &Cluster,
    member: &str,
    desired: &serde_json::Map<String, Json>,
) -> Result<Vec<ParamChange>, ClusterError> {
    if desired.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = desired
        .keys()
        .map(|k| format!("'{}'", k.replace('\'', "''")))
        .collect();
    let rows = cluster
        .query(
            member,
            &format!(
                "select name, setting, coalesce(unit, ''), vartype, context, current_setting(name) \
                 from pg_settings where name in ({})",
                names.join(", ")
            ),
        )
        .await?;
    let mut changes = Vec::new();
    for (name, value) in desired {
        let desired = value_text(value);
        let Some(row) = rows.iter().find(|r| r[0] == *name) else {
            return Err(ClusterError::Input(format!(
                "{member}: postgres_parameters names `{name}`, which PostgreSQL does not know"
            )));
        };
        if !same_value(&desired, &row[1], &row[2], &row[3]) {
            changes.push(ParamChange {
                member: member.to_string(),
                name: name.clone(),
                current: row[5].clone(),
                desired,
                needs: if row[4] == "postmaster" {
                    Needs::Restart
                } else {
                    Needs::Reload
                },
            });
        }
    }
    Ok(changes)
}

/// The parameter changes of every postgres member.
pub async fn parameter_changes(cluster: &Cluster) -> Result<Vec<ParamChange>, ClusterError> {
    let mut all = Vec::new();
    for member in cluster.group(Group::Postgres) {
        all.extend(member_changes(cluster, &member).await?);
    }
    Ok(all)
}

/// Whether `member` needs a restart: a restart-only parameter it manages
/// (`postgres_parameters`, the dynamic configuration's) differs from its
/// live value, or Patroni flags `pending_restart`.
async fn needs_restart(cluster: &Cluster, member: &str) -> Result<bool, ClusterError> {
    let pending = cluster
        .patroni_get::<PatroniNode>(member, "/patroni")
        .await?
        .pending_restart;
    let managed = super::dynamic::managed_parameters(cluster, member)?;
    Ok(pending
        || differences(cluster, member, &managed)
            .await?
            .iter()
            .any(|c| c.needs == Needs::Restart))
}

/// Takes out the Patroni members that are no longer in the inventory's
/// `postgres` group: stops and disables Patroni on the host (when the
/// inventory still knows it), deletes its member key from etcd (through a
/// tunnel to an etcd host's v3 gateway) and waits until Patroni no longer
/// lists it. The leader is never removed: switch over first. Returns the
/// members removed.
pub async fn remove_stale_members(
    cluster: &Cluster,
    say: Say<'_>,
) -> Result<Vec<String>, ClusterError> {
    let (_, patroni) = cluster.patroni_cluster().await?;
    let mut removed = Vec::new();
    for member in stale_patroni_members(cluster, &patroni) {
        let name = &member.name;
        if member.is_leader() {
            return Err(ClusterError::Refused(format!(
                "{name} left the postgres group but leads the cluster: run `pgdeploy switchover` first"
            )));
        }
        say(&format!("remove member {name}: stop Patroni on it"));
        if cluster.inventory().host(name).is_some() {
            cluster
                .exec(name, "systemctl disable --now patroni")
                .await?;
        } else {
            say(&format!(
                "{name} is not in the inventory; its Patroni is left as it is"
            ));
        }
        let key = format!("/service/{}/members/{name}", cluster.name());
        delete_etcd_key(cluster, &key).await?;
        ops::poll(
            &format!("{name} leaving"),
            std::time::Duration::from_secs(60),
            || async {
                let (_, c) = cluster.patroni_cluster().await.map_err(|e| e.to_string())?;
                match c.member(name) {
                    None => Ok(()),
                    Some(m) => Err(format!("{name} is still listed ({})", m.state)),
                }
            },
        )
        .await?;
        say(&format!("{name} removed from the Patroni cluster"));
        removed.push(name.clone());
    }
    Ok(removed)
}

/// What `apply` would take out of the live cluster, for `plan`: Patroni
/// members that left the `postgres` group and etcd members that left the
/// `etcd` group, one line each.
pub async fn stale_members_plan(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let (_, patroni) = cluster.patroni_cluster().await?;
    let mut lines: Vec<String> = stale_patroni_members(cluster, &patroni)
        .map(|m| format!("- Patroni member {} (left the postgres group)", m.name))
        .collect();
    let members = etcd_members(cluster).await?;
    lines.extend(
        stale_etcd_members(&members, &cluster.group(Group::Etcd))
            .map(|m| format!("- etcd member {} (left the etcd group)", m.name)),
    );
    Ok(lines)
}

/// The Patroni members that are not in the inventory's `postgres` group:
/// what [`remove_stale_members`] takes out and `plan` lists.
fn stale_patroni_members<'a>(
    cluster: &Cluster,
    patroni: &'a PatroniCluster,
) -> impl Iterator<Item = &'a PatroniMember> {
    let wanted = cluster.group(Group::Postgres);
    patroni
        .members
        .iter()
        .filter(move |m| !wanted.contains(&m.name))
}

/// The etcd members that are not in `wanted` (the `etcd` group): what
/// [`remove_stale_etcd_members`] takes out and `plan` lists. A member added
/// but not started yet has no name: a join in progress, never stale.
fn stale_etcd_members<'a>(
    members: &'a [EtcdMember],
    wanted: &'a [String],
) -> impl Iterator<Item = &'a EtcdMember> {
    members
        .iter()
        .filter(|m| !m.name.is_empty() && !wanted.contains(&m.name))
}

/// One member of the etcd cluster, as the v3 gateway lists it.
#[derive(Debug, serde::Deserialize)]
struct EtcdMember {
    /// The member's ID (a uint64, sent as a string by the gateway).
    #[serde(rename = "ID")]
    id: String,
    /// Empty for a member added but not started yet.
    #[serde(default)]
    name: String,
}

#[derive(Debug, serde::Deserialize)]
struct EtcdMembers {
    members: Vec<EtcdMember>,
}

/// Takes out the etcd members that are no longer in the inventory's `etcd`
/// group: `member remove` through a remaining member's v3 gateway (etcd
/// removes one member at a time and keeps its quorum), then stops and
/// disables etcd on the host and moves its data directory aside (a removed
/// member can never rejoin with it). A member added but not started yet has
/// no name and is left alone (a join in progress). Refuses when no member of
/// the group would remain. Returns the members removed.
pub async fn remove_stale_etcd_members(
    cluster: &Cluster,
    say: Say<'_>,
) -> Result<Vec<String>, ClusterError> {
    let wanted = cluster.group(Group::Etcd);
    let mut removed = Vec::new();
    loop {
        let members = etcd_members(cluster).await?;
        let Some(stale) = stale_etcd_members(&members, &wanted).next() else {
            return Ok(removed);
        };
        if !members.iter().any(|m| wanted.contains(&m.name)) {
            return Err(ClusterError::Refused(format!(
                "no member of the inventory's etcd group is an etcd member; {} is left as it is",
                stale.name
            )));
        }
        let name = stale.name.clone();
        say(&format!("remove etcd member {name}"));
        let body = serde_json::json!({ "ID": stale.id }).to_string();
        etcd_post(cluster, "/v3/cluster/member/remove", &body).await?;
        if cluster.inventory().host(&name).is_some() {
            let data_dir = cluster
                .stack()
                .required_string(&name, contract::ETCD_DATA_DIR)?;
            cluster.script(&name, ETCD_RETIRE, &[&data_dir]).await?;
            say(&format!(
                "{name}: etcd stopped and disabled; its data moved to {data_dir}.removed-*"
            ));
        } else {
            say(&format!(
                "{name} is not in the inventory; its etcd is left running as it is"
            ));
        }
        removed.push(name);
    }
}

/// The etcd cluster's members, as the first etcd host that answers lists
/// them.
async fn etcd_members(cluster: &Cluster) -> Result<Vec<EtcdMember>, ClusterError> {
    let (host, text) = etcd_post(cluster, "/v3/cluster/member/list", "{}").await?;
    let list: EtcdMembers = serde_json::from_str(&text).map_err(|e| ClusterError::Unparsable {
        host: host.clone(),
        service: "etcd member list".into(),
        reason: e.to_string(),
        answer: super::shortened(&text),
    })?;
    Ok(list.members)
}

/// POSTs `body` to `path` on the first etcd host whose v3 gateway answers
/// 200 (through a tunnel); returns that host and the answer.
async fn etcd_post(
    cluster: &Cluster,
    path: &str,
    body: &str,
) -> Result<(String, String), ClusterError> {
    let mut last = ClusterError::Input(format!(
        "the inventory's `{}` group is empty",
        Group::Etcd.name()
    ));
    for host in cluster.group(Group::Etcd) {
        let port = cluster.port(&host, contract::ETCD_CLIENT_PORT)?;
        match cluster.api(&host, port, "POST", path, Some(body)).await {
            Ok(res) if res.status == 200 => return Ok((host, res.text())),
            Ok(res) => {
                last = ClusterError::Refused(format!(
                    "{host}: etcd {path} answered {}: {}",
                    res.status,
                    res.text().trim()
                ))
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Deletes one key through the first etcd host whose v3 gateway answers.
async fn delete_etcd_key(cluster: &Cluster, key: &str) -> Result<(), ClusterError> {
    use base64::Engine as _;
    let body = serde_json::json!({
        "key": base64::engine::general_purpose::STANDARD.encode(key)
    })
    .to_string();
    etcd_post(cluster, "/v3/kv/deleterange", &body).await?;
    Ok(())
}

/// How long [`settled_cluster`] waits for every answering member to be
/// listed: a member key that lapsed is written again within a `loop_wait`.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(45);

/// The cluster as Patroni lists it, once the listing holds every `postgres`
/// member whose own REST API answers. Right after the playbook reloaded
/// every Patroni, a member's key may be missing from the DCS for a moment
/// (seen once in CI: the roll-out then took the leader for the only member
/// and never restarted the replicas); a member that does not answer is not
/// waited for.
async fn settled_cluster(cluster: &Cluster) -> Result<PatroniCluster, ClusterError> {
    ops::poll("every running member listed by Patroni", SETTLE, || async {
        let (_, listed) = cluster.patroni_cluster().await.map_err(|e| e.to_string())?;
        let mut missing = Vec::new();
        for member in cluster.group(Group::Postgres) {
            if listed.member(&member).is_none()
                && cluster
                    .patroni_get::<PatroniNode>(&member, "/patroni")
                    .await
                    .is_ok()
            {
                missing.push(member);
            }
        }
        if missing.is_empty() {
            Ok(listed)
        } else {
            Err(format!(
                "{} answer(s) but not listed yet",
                missing.join(", ")
            ))
        }
    })
    .await
}

/// How long a member's Patroni may take to reload the configuration the
/// playbook wrote.
const RELOAD_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Restarts `member` once its Patroni flags `pending_restart`: it has
/// reloaded the configuration the playbook (or a PATCH of the dynamic one)
/// changed and written it for PostgreSQL. Patroni reloads in its next
/// cycle; a restart before that brings PostgreSQL back with the old values
/// (seen in CI on a loaded machine). After [`RELOAD_WITHIN`] the restart
/// goes ahead with a warning, and the check after the roll-out tells.
async fn restart_reloaded(
    cluster: &Cluster,
    member: &str,
    say: Say<'_>,
) -> Result<(), ClusterError> {
    let flagged = ops::poll(
        &format!("{member}'s Patroni flagging pending_restart"),
        RELOAD_WITHIN,
        || async {
            let node = cluster
                .patroni_get::<PatroniNode>(member, "/patroni")
                .await
                .map_err(|e| e.to_string())?;
            if node.pending_restart {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;
    if let Err(e) = flagged {
        say(&format!("warning: {e}; restarting anyway"));
    }
    ops::restart(cluster, member, say).await.map(drop)
}

/// Restarts the members that need it, replicas one by one, the leader last
/// (through a switchover when it has a replica). Returns the members
/// restarted, in order.
pub async fn converge(
    cluster: &Cluster,
    max_lag_mb: f64,
    say: Say<'_>,
) -> Result<Vec<String>, ClusterError> {
    let patroni = settled_cluster(cluster).await?;
    let leader = patroni.leader().map(|m| m.name.clone()).ok_or_else(|| {
        ClusterError::Refused("rolling restart: the cluster has no leader".into())
    })?;
    let mut restarted = Vec::new();
    let members: Vec<String> = cluster
        .group(Group::Postgres)
        .into_iter()
        .filter(|m| patroni.member(m).is_some())
        .collect();
    for member in members.iter().filter(|m| **m != leader) {
        if needs_restart(cluster, member).await? {
            say(&format!("rolling restart: replica {member}"));
            restart_reloaded(cluster, member, say).await?;
            restarted.push(member.clone());
        }
    }
    if needs_restart(cluster, &leader).await? {
        if members.len() > 1 {
            say(&format!(
                "rolling restart: leader {leader} last, through a switchover"
            ));
            ops::switchover(cluster, None, max_lag_mb, say).await?;
            if needs_restart(cluster, &leader).await? {
                restart_reloaded(cluster, &leader, say).await?;
            }
        } else {
            say(&format!("rolling restart: {leader}, the only member"));
            restart_reloaded(cluster, &leader, say).await?;
        }
        restarted.push(leader);
    }
    Ok(restarted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_in_units() {
        assert!(same_value("256MB", "32768", "8kB", "integer"));
        assert!(!same_value("512MB", "32768", "8kB", "integer"));
        assert!(same_value("1GB", "1024", "MB", "integer"));
        assert!(same_value("8MB", "8192", "kB", "integer"));
        assert!(same_value("100", "100", "", "integer"));
        assert!(same_value("60s", "60", "s", "integer"));
        assert!(same_value("1min", "60000", "ms", "integer"));
        assert!(!same_value("2min", "60000", "ms", "integer"));
        assert!(same_value("0.9", "0.9", "", "real"));
        assert!(same_value("on", "on", "", "bool"));
        assert!(same_value("true", "on", "", "bool"));
        assert!(!same_value("off", "on", "", "bool"));
        assert!(same_value("Replica", "replica", "", "enum"));
        assert!(!same_value("%m [%p] ", "%m [%p]", "", "string"));
        assert!(!same_value("lots", "100", "", "integer"));
        assert!(!same_value("5parsecs", "5", "s", "integer"));
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("1GB", "MB"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(size_bytes("16", "MB"), Some(16.0 * 1024.0 * 1024.0));
        assert_eq!(size_bytes("lots", "MB"), None);
        assert_eq!(size_bytes("5parsecs", "MB"), None);
    }

    #[test]
    fn values_as_postgres_reads_them() {
        assert_eq!(value_text(&Json::from("256MB")), "256MB");
        assert_eq!(value_text(&Json::from(200)), "200");
        assert_eq!(value_text(&Json::from(true)), "on");
    }

    #[test]
    fn change_lines() {
        let c = ParamChange {
            member: "node2".into(),
            name: "shared_buffers".into(),
            current: "128MB".into(),
            desired: "256MB".into(),
            needs: Needs::Restart,
        };
        assert_eq!(
            c.to_string(),
            "~ node2 shared_buffers: 128MB → 256MB (restart: rolling, replicas first, leader last)"
        );
    }
}
