//! Rolling package updates (`pgdeploy update`): point releases of
//! PostgreSQL, Patroni, etcd, HAProxy, keepalived, pgBackRest and PgBouncer
//! on a running cluster, one host at a time.
//!
//! The roles hold these packages (`apt-mark hold`, the `*_packages`
//! variables of the stack contract), so unattended upgrades never move
//! them; [`plan`] asks each host's apt (lists refreshed, an upgrade
//! simulated) which packages would move from which version to which, and
//! [`update`] carries it out:
//! - hosts that are not PostgreSQL members first, then the replicas, then
//!   the leader's host after a switchover, one host at a time;
//! - on each: release the hold, upgrade to the planned versions (keeping
//!   pgdeploy's configuration files), hold again;
//! - then wait for what the host serves: its Patroni member running again
//!   (restarted through Patroni when PostgreSQL still runs the old binary)
//!   and streaming, every etcd member healthy (the quorum), every
//!   balancer's HAProxy sending writes to the leader.
//!
//! A step that does not come back in time stops the update there, with
//! the host named; the hosts after it are untouched, and the next `update`
//! plans what is left.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::ops::{self, Say};
use super::{etcd, Cluster, ClusterError, PatroniNode};
use crate::contract::{self, Group, Var};

/// The plan's script: holds and apt's simulated upgrade.
const PLAN: &str = include_str!("../sh/update-plan.sh");
/// The update of one host.
const APPLY: &str = include_str!("../sh/update-apply.sh");

/// How long a member may take to run again after its packages moved.
const MEMBER_BACK_WITHIN: Duration = Duration::from_secs(120);
/// How long the balancers may take to send writes to the leader again.
const BALANCERS_WITHIN: Duration = Duration::from_secs(60);

/// One package that moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The package.
    pub package: String,
    /// The installed version.
    pub from: String,
    /// The version apt installs.
    pub to: String,
}

/// What the update does on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostUpdate {
    /// The host.
    pub host: String,
    /// The components' packages installed there (held after the update).
    pub packages: Vec<String>,
    /// Those not held yet.
    pub unheld: Vec<String>,
    /// Packages that move (the components' and the dependencies they pull).
    pub moves: Vec<Move>,
    /// Packages the inventory pins (`name=version`): left alone.
    pub pinned: Vec<String>,
}

impl HostUpdate {
    /// Whether the update changes anything on the host.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.unheld.is_empty()
    }
}

/// The update of the whole cluster, host by host in the order it runs.
#[derive(Debug, Clone, Serialize)]
pub struct UpdatePlan {
    /// The components asked for.
    pub components: Vec<String>,
    /// The leader when the plan was made (its host goes last).
    pub leader: String,
    /// Every host with one of the components, in the order of the update.
    pub hosts: Vec<HostUpdate>,
}

impl UpdatePlan {
    /// Whether nothing moves and everything is held.
    pub fn is_empty(&self) -> bool {
        self.hosts.iter().all(HostUpdate::is_empty)
    }

    /// The plan as printed: one line per host, then a summary.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "update plan ({}), one host at a time, the leader {} last:",
            self.components.join(", "),
            self.leader
        )];
        for h in &self.hosts {
            let role = if h.host == self.leader {
                " (leader: a switchover first)"
            } else {
                ""
            };
            if h.is_empty() {
                lines.push(format!("  {}{role}: up to date", h.host));
            } else {
                lines.push(format!("  {}{role}:", h.host));
            }
            for m in &h.moves {
                lines.push(format!("    ~ {} {} → {}", m.package, m.from, m.to));
            }
            if !h.unheld.is_empty() {
                lines.push(format!("    + hold {}", h.unheld.join(", ")));
            }
            for p in &h.pinned {
                lines.push(format!("    = {p} (pinned by the inventory: left alone)"));
            }
        }
        let moving = self.hosts.iter().filter(|h| !h.is_empty()).count();
        let packages: usize = self.hosts.iter().map(|h| h.moves.len()).sum();
        lines.push(if self.is_empty() {
            "nothing to update: every package is at apt's candidate and held".into()
        } else {
            format!("{moving} host(s) to update, {packages} package move(s)")
        });
        lines
    }
}

/// The components by name: all of them for an empty list; an unknown name
/// is refused, naming the known ones.
pub fn components(names: &[String]) -> Result<Vec<(&'static str, Var)>, ClusterError> {
    if names.is_empty() {
        return Ok(contract::COMPONENTS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            contract::COMPONENTS
                .iter()
                .find(|(c, _)| c == name)
                .copied()
                .ok_or_else(|| {
                    let known: Vec<&str> = contract::COMPONENTS.iter().map(|(c, _)| *c).collect();
                    ClusterError::Input(format!(
                        "--packages {name}: not a component (one of {})",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// The packages the variables `vars` list as `host` sees them: (names,
/// pinned `name=version`).
pub(super) async fn host_packages(
    cluster: &Cluster,
    host: &str,
    vars: impl IntoIterator<Item = Var>,
) -> Result<(Vec<String>, Vec<String>), ClusterError> {
    let mut names = Vec::new();
    let mut pinned = Vec::new();
    for var in vars {
        let (n, p) = package_specs(cluster.host_var(host, var).await?);
        names.extend(n);
        pinned.extend(p);
    }
    Ok((names, pinned))
}

/// A package variable's value (a list, or one name): (names, pinned
/// `name=version`).
pub(super) fn package_specs(value: Option<serde_json::Value>) -> (Vec<String>, Vec<String>) {
    let list = match value {
        Some(serde_json::Value::Array(list)) => list,
        Some(one @ serde_json::Value::String(_)) => vec![one],
        _ => Vec::new(),
    };
    list.iter()
        .filter_map(|v| v.as_str())
        .map(str::to_string)
        .partition(|spec| !spec.contains('='))
}

/// Every package `names` and `pinned` list, by its name (a pin's version
/// dropped).
pub(super) fn bare_names(mut names: Vec<String>, pinned: &[String]) -> Vec<String> {
    names.extend(
        pinned
            .iter()
            .map(|p| p.split_once('=').map_or(p.as_str(), |(n, _)| n).to_string()),
    );
    names
}

/// Reads `update-plan.sh`'s output.
fn parse_plan(host: &str, out: &str, pinned: Vec<String>) -> HostUpdate {
    let mut update = HostUpdate {
        host: host.to_string(),
        pinned,
        ..HostUpdate::default()
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["held", name, held] => {
                update.packages.push(name.to_string());
                if *held != "yes" {
                    update.unheld.push(name.to_string());
                }
            }
            ["move", name, from, to] => update.moves.push(Move {
                package: name.to_string(),
                from: from.to_string(),
                to: to.to_string(),
            }),
            _ => {}
        }
    }
    update
}

/// Pre-checks (a leader, every member running or streaming, every etcd
/// member healthy), then each host's plan. Refreshes apt's lists on the
/// hosts; changes no package.
pub async fn plan(
    cluster: &Cluster,
    components: &[(&str, Var)],
) -> Result<UpdatePlan, ClusterError> {
    let leader = healthy(cluster, "update").await?;
    // Every host at once: refreshing apt's lists takes seconds each.
    let asked = order(cluster, &leader).into_iter().map(|host| async move {
        let vars = components.iter().map(|(_, var)| *var);
        let (names, pinned) = host_packages(cluster, &host, vars).await?;
        let args: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = cluster.script(&host, PLAN, &args).await?;
        Ok::<_, ClusterError>(parse_plan(&host, &out, pinned))
    });
    let mut hosts = Vec::new();
    for update in futures::future::join_all(asked).await {
        let update = update?;
        if !update.packages.is_empty() || !update.pinned.is_empty() {
            hosts.push(update);
        }
    }
    Ok(UpdatePlan {
        components: components.iter().map(|(c, _)| c.to_string()).collect(),
        leader,
        hosts,
    })
}

/// The pre-checks of a rolling operation (`what`): a leader, every member
/// running or streaming, every etcd member healthy. Returns the leader.
pub(super) async fn healthy(cluster: &Cluster, what: &str) -> Result<String, ClusterError> {
    let refuse = |why: String| ClusterError::Refused(format!("{what} refused: {why}"));
    let (_, patroni) = cluster.patroni_cluster().await?;
    let leader = patroni
        .leader()
        .map(|l| l.name.clone())
        .ok_or_else(|| refuse("the cluster has no leader".into()))?;
    for member in cluster.group(Group::Postgres) {
        match patroni.member(&member) {
            Some(m) if m.state == "running" || m.state == "streaming" => {}
            Some(m) => return Err(refuse(format!("{member} is {}", m.state))),
            None => return Err(refuse(format!("{member} is not in the cluster"))),
        }
    }
    for host in cluster.group(Group::Etcd) {
        etcd::healthy(cluster, &host)
            .await
            .map_err(|e| refuse(format!("etcd is not healthy ({e})")))?;
    }
    Ok(leader)
}

/// Every host of the inventory in the update's order (see [`ordered`]).
fn order(cluster: &Cluster, leader: &str) -> Vec<String> {
    let all: Vec<String> = cluster
        .inventory()
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    ordered(&all, &cluster.group(Group::Postgres), leader)
}

/// `all` in the update's order: the hosts that are not PostgreSQL
/// `members`, then the replicas, then the `leader`, each in inventory order.
fn ordered(all: &[String], members: &[String], leader: &str) -> Vec<String> {
    let others = all.iter().filter(|h| !members.contains(h));
    let replicas = members.iter().filter(|m| *m != leader);
    let led = members.iter().filter(|m| *m == leader);
    others.chain(replicas).chain(led).cloned().collect()
}

/// How the update went.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateOutcome {
    /// The hosts updated, in order.
    pub hosts: Vec<String>,
    /// The switchover away from the leader's host, when there was one:
    /// (old leader, new leader).
    pub switchover: Option<(String, String)>,
    /// Seconds in all.
    pub seconds: f64,
}

/// Carries out `plan` (see the module's documentation).
pub async fn update(
    cluster: &Cluster,
    plan: &UpdatePlan,
    max_lag_mb: f64,
    say: Say<'_>,
) -> Result<UpdateOutcome, ClusterError> {
    let started = Instant::now();
    let mut outcome = UpdateOutcome {
        hosts: Vec::new(),
        switchover: None,
        seconds: 0.0,
    };
    let members = cluster.group(Group::Postgres);
    for h in plan.hosts.iter().filter(|h| !h.is_empty()) {
        let host = h.host.as_str();
        if members.iter().any(|m| m == host) && leads(cluster, host).await? {
            say(&format!("{host} leads: switchover first"));
            let done = ops::switchover(cluster, None, max_lag_mb, say).await?;
            outcome.switchover = Some((done.leader, done.candidate));
        }
        let host_started = Instant::now();
        let mut args: Vec<String> = h.packages.clone();
        args.push("--".into());
        args.extend(h.moves.iter().map(|m| format!("{}={}", m.package, m.to)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        say(&format!(
            "{host}: {} package(s) moving{}",
            h.moves.len(),
            if h.unheld.is_empty() {
                String::new()
            } else {
                format!(", holding {}", h.unheld.join(", "))
            }
        ));
        cluster.script(host, APPLY, &args).await?;
        say(&format!("{host}: packages moved and held"));
        serving_again(cluster, host, say).await?;
        outcome.hosts.push(host.to_string());
        say(&format!(
            "{host}: done ({:.1}s)",
            host_started.elapsed().as_secs_f64()
        ));
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Whether `member` holds the leader lock now.
pub(super) async fn leads(cluster: &Cluster, member: &str) -> Result<bool, ClusterError> {
    let (_, patroni) = cluster.patroni_cluster().await?;
    Ok(patroni.leader().is_some_and(|l| l.name == member))
}

/// Waits for what `host` serves after its packages moved: its Patroni
/// member running on the new binary and streaming (restarted through
/// Patroni when it still runs the old one), the etcd quorum, the
/// balancers.
pub(super) async fn serving_again(
    cluster: &Cluster,
    host: &str,
    say: Say<'_>,
) -> Result<(), ClusterError> {
    if cluster.group(Group::Etcd).iter().any(|h| h == host) {
        etcd::wait_all_healthy(cluster, &format!("etcd healthy after {host}'s update")).await?;
        say(&format!("{host}: every etcd member healthy"));
    }
    if cluster.group(Group::Postgres).iter().any(|h| h == host) {
        let installed = installed_version(cluster, host).await?;
        let running = ops::poll(
            &format!("{host}'s Patroni running its PostgreSQL"),
            MEMBER_BACK_WITHIN,
            || async {
                let node: PatroniNode = cluster
                    .patroni_get(host, "/patroni")
                    .await
                    .map_err(|e| e.to_string())?;
                match (node.state.as_str(), node.server_version) {
                    ("running" | "streaming", Some(v)) => Ok(v),
                    (state, _) => Err(format!("{host} is {state}")),
                }
            },
        )
        .await?;
        if running == installed {
            say(&format!(
                "{host}: PostgreSQL runs {}, the installed binary: no restart",
                version_text(running)
            ));
            ops::wait_for_streaming(cluster, host, MEMBER_BACK_WITHIN).await?;
        } else {
            say(&format!(
                "{host}: PostgreSQL runs {}, the binary is {}: restart",
                version_text(running),
                version_text(installed)
            ));
            ops::restart(cluster, host, say).await?;
        }
    }
    if cluster.group(Group::Balancers).iter().any(|h| h == host) {
        let (_, patroni) = cluster.patroni_cluster().await?;
        if let Some(leader) = patroni.leader() {
            ops::wait_for_haproxy(cluster, &leader.name, BALANCERS_WITHIN).await?;
            say(&format!(
                "{host}: every HAProxy sends writes to {}",
                leader.name
            ));
        }
    }
    Ok(())
}

/// The version number of the PostgreSQL binary Patroni starts on `host`
/// (`postgres -V` in `postgres_bin_dir`), as `server_version_num` writes it.
async fn installed_version(cluster: &Cluster, host: &str) -> Result<u64, ClusterError> {
    let bin_dir = cluster
        .host_string(host, contract::POSTGRES_BIN_DIR)
        .await?;
    let postgres = pgdeploy_text::quote(&format!("{bin_dir}/postgres"));
    let out = cluster.exec(host, &format!("{postgres} -V")).await?;
    version_number(&out).ok_or_else(|| ClusterError::Unparsable {
        host: host.to_string(),
        service: "postgres -V".into(),
        reason: "no version".into(),
        answer: super::shortened(&out),
    })
}

/// `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → 150020.
fn version_number(text: &str) -> Option<u64> {
    let version = text
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let mut parts = version.split('.');
    let major: u64 = parts.next()?.parse().ok()?;
    let minor: u64 = parts.next().unwrap_or("0").parse().ok()?;
    Some(major * 10_000 + minor)
}

/// 150020 → `15.20`.
fn version_text(number: u64) -> String {
    format!("{}.{}", number / 10_000, number % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_variables_split_into_names_and_pins() {
        let list = serde_json::json!(["postgresql-17", "postgresql-client-17=17.6-0+deb13u1"]);
        let (names, pinned) = package_specs(Some(list));
        assert_eq!(names, ["postgresql-17"]);
        assert_eq!(pinned, ["postgresql-client-17=17.6-0+deb13u1"]);
        assert_eq!(
            bare_names(names, &pinned),
            ["postgresql-17", "postgresql-client-17"]
        );
        assert_eq!(
            package_specs(Some(serde_json::json!("haproxy"))).0,
            ["haproxy"]
        );
        assert!(package_specs(None).0.is_empty());
    }

    #[test]
    fn versions() {
        assert_eq!(
            version_number("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(150_020)
        );
        assert_eq!(
            version_number("postgres (PostgreSQL) 17.2\n"),
            Some(170_002)
        );
        assert_eq!(version_number("nonsense"), None);
        assert_eq!(version_text(150_020), "15.20");
    }

    #[test]
    fn plan_output_and_lines() {
        let out = "held postgresql-15 no\nheld postgresql-client-15 yes\n\
                   move libpq5 15.18-0+deb12u1 15.20-0+deb12u1\n\
                   move postgresql-15 15.18-0+deb12u1 15.20-0+deb12u1\n";
        let h = parse_plan("node2", out, vec!["pgbouncer=1.18".into()]);
        assert_eq!(h.packages, ["postgresql-15", "postgresql-client-15"]);
        assert_eq!(h.unheld, ["postgresql-15"]);
        assert_eq!(h.moves.len(), 2);
        let plan = UpdatePlan {
            components: vec!["postgresql".into()],
            leader: "node1".into(),
            hosts: vec![
                h,
                HostUpdate {
                    host: "node1".into(),
                    packages: vec!["postgresql-15".into()],
                    ..HostUpdate::default()
                },
            ],
        };
        assert_eq!(
            plan.lines(),
            [
                "update plan (postgresql), one host at a time, the leader node1 last:",
                "  node2:",
                "    ~ libpq5 15.18-0+deb12u1 → 15.20-0+deb12u1",
                "    ~ postgresql-15 15.18-0+deb12u1 → 15.20-0+deb12u1",
                "    + hold postgresql-15",
                "    = pgbouncer=1.18 (pinned by the inventory: left alone)",
                "  node1 (leader: a switchover first): up to date",
                "1 host(s) to update, 2 package move(s)",
            ]
        );
        assert!(!plan.is_empty());
    }

    #[test]
    fn non_members_then_replicas_then_the_leader() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = names(&["node1", "node2", "node3", "node4", "lb1"]);
        let members = names(&["node1", "node2", "node3"]);
        assert_eq!(
            ordered(&all, &members, "node2"),
            ["node4", "lb1", "node1", "node3", "node2"]
        );
    }

    #[test]
    fn components_by_name() {
        assert_eq!(
            components(&[]).expect("all").len(),
            contract::COMPONENTS.len()
        );
        let one = components(&["etcd".into()]).expect("etcd");
        assert_eq!(one[0].1, contract::ETCD_PACKAGES);
        let err = components(&["postgres".into()]).expect_err("unknown");
        assert!(
            err.to_string().contains("one of postgresql, patroni"),
            "{err}"
        );
    }
}
