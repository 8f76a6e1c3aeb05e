//! Patroni's dynamic configuration on a running cluster.
//!
//! Patroni reads `bootstrap.dcs` once, when the cluster is created; after
//! that the DCS settings (`ttl`, `loop_wait`, ...) and the cluster-wide
//! PostgreSQL parameters (those Patroni takes from the DCS only: its
//! CMDLINE_OPTIONS, named by the role's `patroni_dcs_parameters`) change
//! only through `PATCH /config`.
//!
//! One source of truth: the role's variables. [`desired`] builds the
//! dynamic configuration from them by the same rule the role's template
//! writes `bootstrap.dcs` with (a unit test renders the template and
//! compares). `plan` shows [`changes`] against `GET /config`; `apply`
//! PATCHes them ([`apply`]), waits until every member has taken them (in
//! force, or Patroni's pending restart), lets the rolling restart run, then
//! [`verify`] checks every managed parameter with `SHOW` on every member.

use std::collections::BTreeMap;
use std::time::Duration;

use pgdeploy_engine::inventory::json_truthy;
use serde_json::{Map, Value as Json};

use super::ops::{self, Say};
use super::rolling::{self, Needs, ParamChange};
use super::{Cluster, ClusterError, PatroniNode};
use crate::contract::{self, Group, Stack, Var};

/// A DCS setting: the variable and Patroni's key.
struct Setting {
    var: Var,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// An integer, at least this.
    Int(i64),
    /// A boolean.
    Bool,
}

/// The DCS settings pgdeploy manages, in `bootstrap.dcs` order.
const SETTINGS: [Setting; 8] = [
    Setting {
        var: contract::PATRONI_TTL,
        kind: Kind::Int(20),
    },
    Setting {
        var: contract::PATRONI_LOOP_WAIT,
        kind: Kind::Int(1),
    },
    Setting {
        var: contract::PATRONI_RETRY_TIMEOUT,
        kind: Kind::Int(1),
    },
    Setting {
        var: contract::PATRONI_MAXIMUM_LAG_ON_FAILOVER,
        kind: Kind::Int(0),
    },
    Setting {
        var: contract::PATRONI_SYNCHRONOUS_MODE,
        kind: Kind::Bool,
    },
    Setting {
        var: contract::PATRONI_SYNCHRONOUS_MODE_STRICT,
        kind: Kind::Bool,
    },
    Setting {
        var: contract::PATRONI_SYNCHRONOUS_NODE_COUNT,
        kind: Kind::Int(1),
    },
    Setting {
        var: contract::PATRONI_FAILSAFE_MODE,
        kind: Kind::Bool,
    },
];

impl Setting {
    /// Patroni's key: the variable's name without `patroni_`.
    fn key(&self) -> &'static str {
        self.var
            .name
            .strip_prefix("patroni_")
            .unwrap_or(self.var.name)
    }
}

/// Patroni's `postgresql` keys in the DCS that the role fixes.
const FIXED_POSTGRESQL: [&str; 2] = ["use_pg_rewind", "use_slots"];

/// Parameters Patroni sets itself whatever the configuration says (its
/// CMDLINE_OPTIONS that accept no value from the DCS).
const PATRONI_OWNS: [&str; 5] = [
    "hot_standby",
    "wal_log_hints",
    "listen_addresses",
    "port",
    "cluster_name",
];

/// The lower bounds Patroni 3.0.2 checks a DCS parameter against (it
/// silently ignores a value below them).
const PARAMETER_MINIMA: [(&str, i64); 6] = [
    ("max_connections", 25),
    ("max_wal_senders", 3),
    ("max_locks_per_transaction", 32),
    ("max_prepared_transactions", 0),
    ("max_replication_slots", 4),
    ("max_worker_processes", 2),
];

/// A dynamic configuration Patroni would reject or ignore, found before
/// anything changes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DynamicError {
    /// A variable is not set (no role default either).
    #[error("{host}: `{var}` is not set (the patroni role's defaults.yaml gives it)")]
    Missing {
        /// The host whose view was read.
        host: String,
        /// The variable.
        var: &'static str,
    },
    /// A value of the wrong type or out of Patroni's range.
    #[error("`{name}` = {value}: {rule}")]
    Invalid {
        /// The variable or parameter.
        name: String,
        /// Its value as given.
        value: String,
        /// What Patroni accepts.
        rule: String,
    },
    /// Patroni's timing rule.
    #[error("`patroni_loop_wait` {loop_wait} + 2 × `patroni_retry_timeout` {retry_timeout} = {} exceeds `patroni_ttl` {ttl}: Patroni needs loop_wait + 2 × retry_timeout ≤ ttl", loop_wait + 2 * retry_timeout)]
    Timing {
        /// ttl.
        ttl: i64,
        /// loop_wait.
        loop_wait: i64,
        /// retry_timeout.
        retry_timeout: i64,
    },
    /// A parameter Patroni sets itself.
    #[error("`{name}` is set (postgres_parameters or patroni_cluster_parameters), but Patroni always sets it itself: remove it")]
    PatroniOwns {
        /// The parameter.
        name: String,
    },
    /// Two members see a different dynamic configuration (it is one for
    /// the whole cluster).
    #[error("`{key}` is {a} for {host_a} but {b} for {host_b}: the dynamic configuration is cluster-wide, set it for the whole postgres group")]
    Disagree {
        /// The setting or parameter.
        key: String,
        /// One member.
        host_a: String,
        /// Its value.
        a: String,
        /// Another member.
        host_b: String,
        /// Its value.
        b: String,
    },
    /// After apply, a managed parameter is not in force on a member.
    #[error("not in force after apply: {}", list(.0))]
    NotInForce(Vec<ParamChange>),
    /// After apply, a member still waits for a restart.
    #[error("{member}: restart pending for {}", .names.join(", "))]
    PendingRestart {
        /// The member.
        member: String,
        /// The parameters waiting for it.
        names: Vec<String>,
    },
}

fn list(changes: &[ParamChange]) -> String {
    changes
        .iter()
        .map(|c| {
            format!(
                "{} {} = {} (want {})",
                c.member, c.name, c.current, c.desired
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The dynamic configuration the inventory asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Dynamic {
    /// DCS settings by Patroni's key (`ttl`, ...), JSON numbers and booleans.
    pub settings: BTreeMap<String, Json>,
    /// The cluster-wide parameters (`postgresql.parameters`).
    pub parameters: BTreeMap<String, Json>,
}

/// A parameter value as Patroni gets it: booleans as `on`/`off`.
fn parameter_value(v: &Json) -> Json {
    match v {
        Json::Bool(b) => Json::from(if *b { "on" } else { "off" }),
        other => other.clone(),
    }
}

fn integer(v: &Json) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn shown(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn invalid(name: &str, value: &Json, rule: impl Into<String>) -> DynamicError {
    DynamicError::Invalid {
        name: name.to_string(),
        value: shown(value),
        rule: rule.into(),
    }
}

/// The dynamic configuration as `host` sees the variables, checked against
/// Patroni's rules. The parameters: `patroni_cluster_parameters`, then
/// `max_connections` = `postgres_max_connections`, then the entries of
/// `postgres_parameters` that name one of those or a parameter of
/// `patroni_dcs_parameters` (the same rule as the role's template).
pub fn desired(stack: &Stack, host: &str) -> Result<Dynamic, DynamicError> {
    let get = |var: Var| {
        stack.var(host, var).ok_or_else(|| DynamicError::Missing {
            host: host.to_string(),
            var: var.name,
        })
    };
    let mut settings = BTreeMap::new();
    for s in &SETTINGS {
        let value = get(s.var)?;
        let value = match s.kind {
            Kind::Int(min) => match integer(&value) {
                Some(n) if n >= min => Json::from(n),
                _ => return Err(invalid(s.var.name, &value, format!("an integer ≥ {min}"))),
            },
            Kind::Bool => match json_truthy(&value) {
                Some(b) => Json::from(b),
                None => return Err(invalid(s.var.name, &value, "true or false")),
            },
        };
        settings.insert(s.key().to_string(), value);
    }
    let int = |k: &str| settings.get(k).and_then(Json::as_i64).unwrap_or(0);
    let (ttl, loop_wait, retry_timeout) = (int("ttl"), int("loop_wait"), int("retry_timeout"));
    if loop_wait + 2 * retry_timeout > ttl {
        return Err(DynamicError::Timing {
            ttl,
            loop_wait,
            retry_timeout,
        });
    }
    let object = |var: Var| -> Result<Map<String, Json>, DynamicError> {
        match stack.var(host, var) {
            None => Ok(Map::new()),
            Some(Json::Object(m)) => Ok(m),
            Some(other) => Err(invalid(var.name, &other, "a mapping of name: value")),
        }
    };
    let names: Vec<String> = match get(contract::PATRONI_DCS_PARAMETERS)? {
        Json::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        other => {
            return Err(invalid(
                contract::PATRONI_DCS_PARAMETERS.name,
                &other,
                "a list of parameter names",
            ))
        }
    };
    let mut parameters: BTreeMap<String, Json> = object(contract::PATRONI_CLUSTER_PARAMETERS)?
        .into_iter()
        .collect();
    parameters.insert(
        "max_connections".into(),
        get(contract::POSTGRES_MAX_CONNECTIONS)?,
    );
    for (name, value) in object(contract::POSTGRES_PARAMETERS)? {
        if PATRONI_OWNS.contains(&name.as_str()) {
            return Err(DynamicError::PatroniOwns { name });
        }
        if parameters.contains_key(&name) || names.contains(&name) {
            parameters.insert(name, value);
        }
    }
    for (name, value) in parameters.iter_mut() {
        *value = parameter_value(value);
        check_parameter(name, value)?;
    }
    Ok(Dynamic {
        settings,
        parameters,
    })
}

/// Patroni 3.0.2's checks of a DCS parameter (it ignores a value that
/// fails them).
fn check_parameter(name: &str, value: &Json) -> Result<(), DynamicError> {
    if PATRONI_OWNS.contains(&name) {
        return Err(DynamicError::PatroniOwns { name: name.into() });
    }
    if let Some((_, min)) = PARAMETER_MINIMA.iter().find(|(n, _)| *n == name) {
        if integer(value).is_none_or(|n| n < *min) {
            return Err(invalid(name, value, format!("an integer ≥ {min}")));
        }
    }
    let text = shown(value);
    match name {
        "wal_level"
            if !["replica", "logical", "hot_standby"]
                .contains(&text.to_ascii_lowercase().as_str()) =>
        {
            Err(invalid(name, value, "replica or logical"))
        }
        "wal_keep_size"
            if rolling::size_bytes(&text, "MB").is_none_or(|b| b < 16.0 * 1024.0 * 1024.0) =>
        {
            Err(invalid(name, value, "at least 16MB (a size such as 1GB)"))
        }
        _ => Ok(()),
    }
}

/// The dynamic configuration of the cluster: every postgres member must
/// see the same. `None` when the group is empty.
pub fn desired_for_cluster(stack: &Stack) -> Result<Option<Dynamic>, DynamicError> {
    let members = stack.hosts(Group::Postgres);
    let Some(first) = members.first() else {
        return Ok(None);
    };
    let wanted = desired(stack, first)?;
    for other in &members[1..] {
        let theirs = desired(stack, other)?;
        if let Some((key, a, b)) = first_difference(&wanted, &theirs) {
            return Err(DynamicError::Disagree {
                key,
                host_a: first.clone(),
                a,
                host_b: other.clone(),
                b,
            });
        }
    }
    Ok(Some(wanted))
}

fn first_difference(a: &Dynamic, b: &Dynamic) -> Option<(String, String, String)> {
    let text = |v: Option<&Json>| v.map(shown).unwrap_or_else(|| "not set".into());
    let pairs = [(&a.settings, &b.settings), (&a.parameters, &b.parameters)];
    pairs.into_iter().find_map(|(x, y)| {
        x.keys()
            .chain(y.keys())
            .find(|k| x.get(*k) != y.get(*k))
            .map(|k| (k.clone(), text(x.get(k)), text(y.get(k))))
    })
}

/// Refuses, before a run changes anything, a dynamic configuration
/// Patroni would reject or ignore.
pub fn check(stack: &Stack) -> Result<(), DynamicError> {
    if stack.has_members() {
        desired_for_cluster(stack)?;
    }
    Ok(())
}

/// One difference between the desired and the live dynamic configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The DCS key (`loop_wait`) or the parameter's name.
    pub key: String,
    /// Whether it is a PostgreSQL parameter (under `postgresql.parameters`).
    pub parameter: bool,
    /// The live value (`None`: not in the DCS).
    pub current: Option<Json>,
    /// The desired value.
    pub desired: Json,
    /// For a parameter: what it needs to take effect.
    pub needs: Option<Needs>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self
            .current
            .as_ref()
            .map(shown)
            .unwrap_or_else(|| "(not set)".into());
        write!(
            f,
            "~ patroni dynamic config: {} {current} → {}",
            self.key,
            shown(&self.desired)
        )?;
        match self.needs {
            Some(Needs::Restart) => write!(f, " (restart)"),
            Some(Needs::Reload) => write!(f, " (reload)"),
            None => Ok(()),
        }
    }
}

/// Whether a live DCS value is the desired one: same text (any case), or
/// the same boolean, or the same number.
fn same(desired: &Json, live: &Json) -> bool {
    let (d, l) = (shown(desired), shown(live));
    if d.eq_ignore_ascii_case(&l) {
        return true;
    }
    let as_bool = |s: &str| pgdeploy_text::truthy(s);
    if let (Some(a), Some(b)) = (as_bool(&d), as_bool(&l)) {
        return a == b;
    }
    matches!((d.parse::<f64>(), l.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// The differences between `desired` and Patroni's `GET /config` (`live`),
/// settings first; `needs` left unset.
pub fn diff(desired: &Dynamic, live: &Json) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut compare = |key: &String, want: &Json, have: Option<&Json>, parameter: bool| {
        if !have.is_some_and(|h| same(want, h)) {
            changes.push(Change {
                key: key.clone(),
                parameter,
                current: have.cloned(),
                desired: want.clone(),
                needs: None,
            });
        }
    };
    for (k, v) in &desired.settings {
        compare(k, v, live.get(k), false);
    }
    let postgresql = live.get("postgresql");
    for k in FIXED_POSTGRESQL {
        compare(
            &k.to_string(),
            &Json::Bool(true),
            postgresql.and_then(|p| p.get(k)),
            false,
        );
    }
    let parameters = postgresql.and_then(|p| p.get("parameters"));
    for (k, v) in &desired.parameters {
        compare(k, v, parameters.and_then(|p| p.get(k)), true);
    }
    changes
}

/// The `PATCH /config` body that makes `changes`.
pub fn patch_body(changes: &[Change]) -> Json {
    let mut body = Map::new();
    let mut postgresql = Map::new();
    let mut parameters = Map::new();
    for c in changes {
        if c.parameter {
            parameters.insert(c.key.clone(), c.desired.clone());
        } else if FIXED_POSTGRESQL.contains(&c.key.as_str()) {
            postgresql.insert(c.key.clone(), c.desired.clone());
        } else {
            body.insert(c.key.clone(), c.desired.clone());
        }
    }
    if !parameters.is_empty() {
        postgresql.insert("parameters".into(), Json::Object(parameters));
    }
    if !postgresql.is_empty() {
        body.insert("postgresql".into(), Json::Object(postgresql));
    }
    Json::Object(body)
}

/// What the desired dynamic configuration changes on the live cluster,
/// each parameter with whether it needs a restart (its `pg_settings`
/// context on the member that answered).
pub async fn changes(cluster: &Cluster) -> Result<(String, Vec<Change>), ClusterError> {
    let Some(desired) = desired_for_cluster(cluster.stack())? else {
        return Ok((String::new(), Vec::new()));
    };
    let (host, live) = cluster.patroni_any::<Json>("/config").await?;
    let mut changes = diff(&desired, &live);
    let names: Vec<String> = changes
        .iter()
        .filter(|c| c.parameter)
        .map(|c| format!("'{}'", c.key.replace('\'', "''")))
        .collect();
    if !names.is_empty() {
        let rows = cluster
            .query(
                &host,
                &format!(
                    "select name, context from pg_settings where name in ({})",
                    names.join(", ")
                ),
            )
            .await?;
        for c in changes.iter_mut().filter(|c| c.parameter) {
            let context = rows.iter().find(|r| r[0] == c.key).map(|r| r[1].as_str());
            c.needs = Some(if context == Some("postmaster") {
                Needs::Restart
            } else {
                Needs::Reload
            });
        }
    }
    Ok((host, changes))
}

/// The parameters pgdeploy checks on `member`: the desired cluster-wide
/// ones and `postgres_parameters`.
pub fn managed_parameters(
    cluster: &Cluster,
    member: &str,
) -> Result<Map<String, Json>, ClusterError> {
    let mut managed: Map<String, Json> = desired(cluster.stack(), member)?
        .parameters
        .into_iter()
        .collect();
    if let Some(Json::Object(local)) = cluster.var(member, contract::POSTGRES_PARAMETERS) {
        for (k, v) in local {
            managed.entry(k).or_insert(v);
        }
    }
    Ok(managed)
}

/// PATCHes Patroni's dynamic configuration through `host` with `body`.
pub(super) async fn patch_config(
    cluster: &Cluster,
    host: &str,
    body: &Json,
) -> Result<(), ClusterError> {
    let res = cluster
        .patroni_request(host, "PATCH", "/config", Some(&body.to_string()))
        .await?;
    if res.status != 200 {
        return Err(ClusterError::Refused(format!(
            "{host}: Patroni PATCH /config answered {}: {}",
            res.status,
            res.text().trim()
        )));
    }
    Ok(())
}

/// PATCHes the live dynamic configuration to the desired one, then waits
/// until every member has taken it: each changed parameter in force, or
/// Patroni's pending restart flagged. Returns the changes made.
pub async fn apply(cluster: &Cluster, say: Say<'_>) -> Result<Vec<Change>, ClusterError> {
    let (host, changes) = changes(cluster).await?;
    if changes.is_empty() {
        return Ok(changes);
    }
    for c in &changes {
        say(&c.to_string());
    }
    patch_config(cluster, &host, &patch_body(&changes)).await?;
    say(&format!("{host}: Patroni PATCH /config done"));
    let wanted: Map<String, Json> = changes
        .iter()
        .filter(|c| c.parameter)
        .map(|c| (c.key.clone(), c.desired.clone()))
        .collect();
    if wanted.is_empty() {
        return Ok(changes);
    }
    // Each member takes the new configuration on its next loop.
    let loop_wait = desired_for_cluster(cluster.stack())?
        .and_then(|d| d.settings.get("loop_wait").and_then(Json::as_u64))
        .unwrap_or(10);
    let timeout = Duration::from_secs(3 * loop_wait + 30);
    for member in listed_members(cluster).await? {
        ops::poll(
            &format!("{member} taking the new configuration"),
            timeout,
            || async {
                let waiting = rolling::differences(cluster, &member, &wanted)
                    .await
                    .map_err(|e| e.to_string())?;
                if waiting.is_empty() {
                    return Ok(());
                }
                let node: PatroniNode = cluster
                    .patroni_get(&member, "/patroni")
                    .await
                    .map_err(|e| e.to_string())?;
                if node.pending_restart && waiting.iter().all(|c| c.needs == Needs::Restart) {
                    Ok(())
                } else {
                    Err(list(&waiting))
                }
            },
        )
        .await?;
    }
    Ok(changes)
}

/// The postgres members Patroni lists.
async fn listed_members(cluster: &Cluster) -> Result<Vec<String>, ClusterError> {
    let (_, patroni) = cluster.patroni_cluster().await?;
    Ok(cluster
        .group(Group::Postgres)
        .into_iter()
        .filter(|m| patroni.member(m).is_some())
        .collect())
}

/// How long [`verify`] waits for reloaded values to come in force
/// (Patroni reloads PostgreSQL on its next loop after the role's reload).
const VERIFY_WAIT: Duration = Duration::from_secs(30);

/// Checks every managed parameter with `SHOW` (`pg_settings`) on every
/// member: a value not in force (after [`VERIFY_WAIT`] for a reload) is an
/// error, a restart Patroni still waits for is named. Returns how many
/// values were checked.
pub async fn verify(cluster: &Cluster) -> Result<usize, ClusterError> {
    let deadline = std::time::Instant::now() + VERIFY_WAIT;
    loop {
        let mut wrong = Vec::new();
        let mut checked = 0;
        for member in listed_members(cluster).await? {
            let managed = managed_parameters(cluster, &member)?;
            checked += managed.len();
            let differ = rolling::differences(cluster, &member, &managed).await?;
            if differ.is_empty() {
                continue;
            }
            let node: PatroniNode = cluster.patroni_get(&member, "/patroni").await?;
            if node.pending_restart {
                return Err(DynamicError::PendingRestart {
                    member,
                    names: differ.into_iter().map(|c| c.name).collect(),
                }
                .into());
            }
            wrong.extend(differ);
        }
        if wrong.is_empty() {
            return Ok(checked);
        }
        if std::time::Instant::now() > deadline {
            return Err(DynamicError::NotInForce(wrong).into());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dynamic(settings: Json, parameters: Json) -> Dynamic {
        let map = |v: Json| match v {
            Json::Object(m) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        Dynamic {
            settings: map(settings),
            parameters: map(parameters),
        }
    }

    #[test]
    fn diff_finds_changed_and_missing_values_and_patches_only_them() {
        let want = dynamic(
            json!({"ttl": 20, "loop_wait": 4, "failsafe_mode": true}),
            json!({"max_connections": 150, "wal_keep_size": "1GB", "wal_level": "replica"}),
        );
        let live = json!({
            "ttl": 20, "loop_wait": 5,
            "postgresql": {"use_pg_rewind": true, "use_slots": true,
                           "parameters": {"max_connections": 100, "wal_level": "Replica"}}
        });
        let changes = diff(&want, &live);
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "failsafe_mode",
                "loop_wait",
                "max_connections",
                "wal_keep_size"
            ]
        );
        assert_eq!(
            patch_body(&changes),
            json!({"failsafe_mode": true, "loop_wait": 4,
                   "postgresql": {"parameters": {"max_connections": 150, "wal_keep_size": "1GB"}}})
        );
        // Once patched, nothing differs.
        let mut patched = live.clone();
        patched["loop_wait"] = json!(4);
        patched["failsafe_mode"] = json!(true);
        patched["postgresql"]["parameters"]["max_connections"] = json!("150");
        patched["postgresql"]["parameters"]["wal_keep_size"] = json!("1GB");
        assert_eq!(diff(&want, &patched), []);
        // A missing use_slots is put back.
        let bare = json!({"ttl": 20, "loop_wait": 4, "failsafe_mode": "on",
            "postgresql": {"use_pg_rewind": true, "parameters": patched["postgresql"]["parameters"]}});
        assert_eq!(
            patch_body(&diff(&want, &bare)),
            json!({"postgresql": {"use_slots": true}})
        );
    }

    #[test]
    fn change_lines() {
        let mut c = Change {
            key: "max_connections".into(),
            parameter: true,
            current: Some(json!(100)),
            desired: json!(150),
            needs: Some(Needs::Restart),
        };
        assert_eq!(
            c.to_string(),
            "~ patroni dynamic config: max_connections 100 → 150 (restart)"
        );
        c.key = "wal_keep_size".into();
        c.current = None;
        c.desired = json!("1GB");
        c.needs = Some(Needs::Reload);
        assert_eq!(
            c.to_string(),
            "~ patroni dynamic config: wal_keep_size (not set) → 1GB (reload)"
        );
        let s = Change {
            key: "loop_wait".into(),
            parameter: false,
            current: Some(json!(5)),
            desired: json!(4),
            needs: None,
        };
        assert_eq!(s.to_string(), "~ patroni dynamic config: loop_wait 5 → 4");
    }

    #[test]
    fn values_compare_loosely() {
        assert!(same(&json!(100), &json!("100")));
        assert!(same(&json!(true), &json!("true")));
        assert!(same(&json!("on"), &json!(true)));
        assert!(same(&json!("replica"), &json!("REPLICA")));
        assert!(!same(&json!(false), &json!(true)));
        assert!(!same(&json!("1GB"), &json!("128MB")));
    }

    /// The role's template writes `bootstrap.dcs` from the same variables
    /// by the same rule: rendered, it is [`desired`]'s configuration, and
    /// no DCS parameter is left in the local `postgresql.parameters`.
    #[test]
    fn the_template_bootstraps_the_desired_configuration() {
        use pgdeploy_engine::inventory::Inventory;
        use pgdeploy_engine::playbook::Playbook;
        use pgdeploy_engine::resolve::role_defaults;
        use pgdeploy_engine::template::{value, Templater};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let playbook = Playbook::load(&root.join("playbooks/site.yaml")).expect("site playbook");
        let dir = tempfile::tempdir().expect("tmp");
        let inventory = dir.path().join("inv.yaml");
        std::fs::write(
            &inventory,
            "all:\n  vars: {cluster_name: c1, postgres_superuser_password: s, postgres_replication_password: r}\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n  children:\n    etcd: {hosts: {a: {}}}\n    postgres: {hosts: {a: {}}}\n",
        )
        .expect("write");
        let inventory = Inventory::load(&inventory).expect("inventory");
        let cases = [
            json!({}),
            json!({"postgres_max_connections": 150, "patroni_loop_wait": 4,
                   "patroni_synchronous_mode": true,
                   "postgres_parameters": {"max_locks_per_transaction": 128,
                                           "wal_keep_size": "2GB", "work_mem": "8MB"}}),
        ];
        let source = std::fs::read_to_string(root.join("roles/patroni/templates/config.yml.j2"))
            .expect("template");
        for extra in cases {
            let extra: pgdeploy_engine::inventory::Vars = match extra {
                Json::Object(m) => m.into_iter().collect(),
                _ => unreachable!(),
            };
            let stack = Stack::new(inventory.clone(), &playbook, extra.clone());
            let want = desired(&stack, "a").expect("desired");
            let mut vars: Map<String, Json> = role_defaults(&playbook).into_iter().collect();
            vars.extend(inventory.host("a").expect("a").vars.clone());
            vars.extend(extra);
            vars.insert("facts".into(), json!({"memory_mb": 4096, "cpus": 2}));
            vars.insert("inventory_hostname".into(), json!("a"));
            vars.insert("hostvars".into(), json!({"a": {"address": "10.0.0.1"}}));
            vars.insert("groups".into(), json!({"etcd": ["a"], "postgres": ["a"]}));
            let text = Templater::new()
                .render(&source, &value(&Json::Object(vars)))
                .expect("render");
            let config = pgdeploy_engine::yaml::parse(&text, std::path::Path::new("config.yml"))
                .expect("YAML")
                .to_json();
            let dcs = &config["bootstrap"]["dcs"];
            let mut expected: Map<String, Json> = want.settings.clone().into_iter().collect();
            expected.insert(
                "postgresql".into(),
                json!({"use_pg_rewind": true, "use_slots": true,
                       "parameters": Json::Object(want.parameters.clone().into_iter().collect())}),
            );
            assert_eq!(dcs, &Json::Object(expected), "{text}");
            let local = config["postgresql"]["parameters"]
                .as_object()
                .expect("local parameters");
            for name in want.parameters.keys() {
                assert!(!local.contains_key(name), "{name} is local too:\n{text}");
            }
            assert!(local.contains_key("shared_buffers"), "{text}");
        }
        let refused = |extra: Json| {
            let extra = match extra {
                Json::Object(m) => m.into_iter().collect(),
                _ => unreachable!(),
            };
            desired(&Stack::new(inventory.clone(), &playbook, extra), "a").expect_err("refused")
        };
        assert!(matches!(
            refused(json!({"patroni_ttl": 10})),
            DynamicError::Invalid { .. }
        ));
        assert!(matches!(
            refused(json!({"patroni_loop_wait": 10, "patroni_retry_timeout": 6})),
            DynamicError::Timing { ttl: 20, .. }
        ));
        assert_eq!(
            refused(json!({"postgres_parameters": {"hot_standby": "off"}})),
            DynamicError::PatroniOwns {
                name: "hot_standby".into()
            }
        );
    }

    #[test]
    fn refusals_name_patronis_rule() {
        let err = |s: Json, p: Json| {
            let mut d = dynamic(s, p);
            for (_, v) in d.parameters.iter_mut() {
                *v = parameter_value(v);
            }
            d.parameters
                .iter()
                .map(|(k, v)| check_parameter(k, v))
                .find_map(Result::err)
        };
        assert!(matches!(
            err(json!({}), json!({"max_connections": 10})),
            Some(DynamicError::Invalid { .. })
        ));
        assert!(matches!(
            err(json!({}), json!({"wal_keep_size": "8MB"})),
            Some(DynamicError::Invalid { .. })
        ));
        assert!(matches!(
            err(json!({}), json!({"wal_level": "minimal"})),
            Some(DynamicError::Invalid { .. })
        ));
        assert_eq!(
            err(
                json!({}),
                json!({"wal_keep_size": "1GB", "max_connections": 150, "wal_level": "logical"})
            ),
            None
        );
        let timing = DynamicError::Timing {
            ttl: 20,
            loop_wait: 10,
            retry_timeout: 6,
        };
        assert!(
            timing.to_string().contains("= 22 exceeds `patroni_ttl` 20"),
            "{timing}"
        );
    }
}
