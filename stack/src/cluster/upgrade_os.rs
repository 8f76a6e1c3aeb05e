//! Moving a running cluster to the next Debian release
//! (`pgdeploy upgrade-os --to trixie`), one host at a time, PostgreSQL
//! kept on its major.
//!
//! [`plan`] asks each host's apt what the move would do there (its
//! sources renamed, the new release's lists and the holds as the move
//! leaves them, all in a scratch directory: nothing on the host changes):
//! which component packages move from which version to which, how many
//! packages in all, whether a kept package (the running PostgreSQL major,
//! held throughout) would go, and whether the disk has room. It refuses,
//! naming the host, when the cluster is degraded, a host runs another
//! release, a kept package would be removed, the disk is short, or a
//! member or the backup host lacks the local fact that keeps its
//! PostgreSQL major once its release changes.
//!
//! [`upgrade`] carries it out, one host at a time: the replicas first;
//! then a switchover to a moved replica; then the hosts that are not
//! members (the backup host: pgBackRest wants the same version on the
//! leader and the repository, so it moves right after the leader did);
//! then the old leader's host. On each host: drain it (the services of
//! [`contract::DRAINED_SERVICES`] stopped: the VIP goes to another
//! balancer, PostgreSQL stops through Patroni, the etcd member leaves the
//! quorum to the others), rename the sources, full-upgrade with the kept
//! packages held and no service started by the packages, reboot, and wait
//! until the host answers on the new release with its services active,
//! its member streaming, every etcd member healthy and every HAProxy
//! sending writes to the leader. A step that does not come back in time
//! stops the move there, naming the host; the next `upgrade-os` plans
//! what is left (a host already on the new release is skipped, one
//! interrupted half-way is moved again).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::ops::{self, Say};
use super::update::{self, Move};
use super::{Cluster, ClusterError};
use crate::contract::{self, Group, Var};

/// The plan's script: apt's answer in a scratch directory.
const PLAN: &str = include_str!("../sh/upgrade-os-plan.sh");
/// The move of one host, up to its reboot.
const APPLY: &str = include_str!("../sh/upgrade-os-apply.sh");
/// Whether a host is back from its reboot.
const BACK: &str = include_str!("../sh/upgrade-os-back.sh");
/// The collation versions the new C library changed, and the indexes it
/// may have put out of order.
const COLLATIONS: &str = include_str!("../sh/upgrade-os-collations.sh");

/// The moves `upgrade-os` makes: (from, to).
pub const RELEASES: [(&str, &str); 1] = [("bookworm", "trixie")];

/// Room kept free beyond what apt says the move needs (kB).
const SPACE_MARGIN_KB: u64 = 512 * 1024;
/// How long a host may take to answer on its new release, its services
/// active, after the reboot.
const BACK_WITHIN: Duration = Duration::from_secs(300);
/// How long one look at a rebooting host may take.
const LOOK_WITHIN: Duration = Duration::from_secs(15);

/// The release `to` is reached from.
pub fn from_release(to: &str) -> Result<&'static str, ClusterError> {
    RELEASES
        .iter()
        .find(|(_, t)| *t == to)
        .map(|(from, _)| *from)
        .ok_or_else(|| {
            let known: Vec<String> = RELEASES.iter().map(|(f, t)| format!("{f} → {t}")).collect();
            ClusterError::Input(format!(
                "--to {to}: upgrade-os makes {} only",
                known.join(", ")
            ))
        })
}

/// What the move does on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostMove {
    /// The host.
    pub host: String,
    /// Whether it is a PostgreSQL member.
    pub member: bool,
    /// Its release now (as os-release says).
    pub release: String,
    /// Whether an earlier move of the host did not finish (it is moved
    /// again, whatever its release says).
    pub unfinished: bool,
    /// The packages held throughout (the PostgreSQL major's).
    pub keep: Vec<String>,
    /// The packages whose hold the move releases (set again after).
    pub unhold: Vec<String>,
    /// The kept packages installed there, with their version.
    pub kept: Vec<(String, String)>,
    /// The components' packages that move.
    pub moves: Vec<Move>,
    /// Packages upgraded, newly installed, removed (all of them).
    pub upgraded: u64,
    /// Packages newly installed.
    pub new: u64,
    /// Packages removed.
    pub removed: u64,
    /// Kept packages the move would remove (refused).
    pub lost: Vec<String>,
    /// What the move downloads and adds to the disk (kB).
    pub need_kb: u64,
    /// The room left on /var or /usr, whichever has less (kB).
    pub free_kb: u64,
}

/// The move of the whole cluster, host by host in the order it runs.
#[derive(Debug, Clone, Serialize)]
pub struct OsPlan {
    /// The release the hosts leave.
    pub from: String,
    /// The release they move to.
    pub to: String,
    /// The leader when the plan was made (its host goes last).
    pub leader: String,
    /// Every host, in the order of the move.
    pub hosts: Vec<HostMove>,
    /// Why the move cannot go on, per host; empty when it can.
    pub problems: Vec<String>,
    /// Once every host runs the new release: the databases whose recorded
    /// collation version is not the system's (a move that stopped before
    /// its last step).
    pub stale_collations: Vec<String>,
}

impl OsPlan {
    /// The hosts still to move, in order.
    pub fn pending(&self) -> impl Iterator<Item = &HostMove> {
        self.hosts
            .iter()
            .filter(move |h| h.release != self.to || h.unfinished)
    }

    /// Whether every host already runs the new release, with the
    /// collation versions refreshed.
    pub fn is_empty(&self) -> bool {
        self.pending().next().is_none() && self.stale_collations.is_empty()
    }

    /// The plan as printed: each host with what moves there, then a
    /// summary, then the problems.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "upgrade-os plan: {} → {}, one host at a time: the replicas, a switchover, \
             the other hosts, the old leader {}:",
            self.from, self.to, self.leader
        )];
        let mut switched = false;
        for h in &self.hosts {
            if h.release == self.to && !h.unfinished {
                lines.push(format!("  {}: already on {}", h.host, self.to));
                continue;
            }
            let member_led = h.host == self.leader;
            if !switched && (member_led || !h.member) {
                switched = true;
                lines.push(format!(
                    "  switchover: {} → a replica already on {}",
                    self.leader, self.to
                ));
            }
            lines.push(format!(
                "  {}{}: {} → {}: {} upgraded, {} new, {} removed; {} MB to download and add \
                 ({} MB free)",
                h.host,
                if member_led { " (the old leader)" } else { "" },
                if h.unfinished {
                    format!("{} (an earlier move did not finish)", h.release)
                } else {
                    h.release.clone()
                },
                self.to,
                h.upgraded,
                h.new,
                h.removed,
                h.need_kb / 1024,
                h.free_kb / 1024
            ));
            for m in &h.moves {
                lines.push(format!("    ~ {} {} → {}", m.package, m.from, m.to));
            }
            for (name, version) in &h.kept {
                lines.push(format!(
                    "    = {name} {version} (kept: PostgreSQL stays on its major)"
                ));
            }
            lines.push("    drain, full-upgrade, reboot, wait until it serves again".into());
        }
        lines.push(format!(
            "  then, on the leader: every index that sorts text by the system's locale rebuilt \
             (CONCURRENTLY) and the collation versions refreshed{}",
            if self.stale_collations.is_empty() {
                String::new()
            } else {
                format!(" (stale now: {})", self.stale_collations.join(", "))
            }
        ));
        let pending = self.pending().count();
        lines.push(if pending == 0 {
            format!("nothing to move: every host runs {}", self.to)
        } else {
            format!("{pending} host(s) to move to {}", self.to)
        });
        for p in &self.problems {
            lines.push(format!("refused: {p}"));
        }
        lines
    }
}

/// Reads `upgrade-os-plan.sh`'s output into `host`'s move.
fn parse_plan(mut h: HostMove, out: &str) -> HostMove {
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |w: &str| w.parse::<u64>().unwrap_or(0);
        match words.as_slice() {
            ["release", name] => h.release = name.to_string(),
            ["unfinished"] => h.unfinished = true,
            ["keep", name, version] => h.kept.push((name.to_string(), version.to_string())),
            ["move", name, from, to] => h.moves.push(Move {
                package: name.to_string(),
                from: from.to_string(),
                to: to.to_string(),
            }),
            ["lose", name] => h.lost.push(name.to_string()),
            ["count", "upgraded", n] => h.upgraded = number(n),
            ["count", "new", n] => h.new = number(n),
            ["count", "removed", n] => h.removed = number(n),
            ["space", need, free] => {
                h.need_kb = number(need);
                h.free_kb = number(free);
            }
            _ => {}
        }
    }
    h
}

/// Why `h` cannot move, if it cannot.
fn problems_of(h: &HostMove, from: &str, to: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if h.release != from && h.release != to {
        problems.push(format!(
            "{} runs {}: upgrade-os moves {from} → {to}",
            h.host, h.release
        ));
        return problems;
    }
    if h.release == to && !h.unfinished {
        return problems;
    }
    for name in &h.lost {
        problems.push(format!("{}: the upgrade would remove {name}", h.host));
    }
    if h.need_kb + SPACE_MARGIN_KB > h.free_kb {
        problems.push(format!(
            "{}: the upgrade needs {} MB and {} MB to spare, only {} MB are free on /var or /usr",
            h.host,
            h.need_kb / 1024,
            SPACE_MARGIN_KB / 1024,
            h.free_kb / 1024
        ));
    }
    problems
}

/// `all` in the move's order: the replicas, the hosts that are not
/// PostgreSQL `members`, then the `leader`, each in inventory order.
fn ordered(all: &[String], members: &[String], leader: &str) -> Vec<String> {
    let replicas = members.iter().filter(|m| *m != leader);
    let others = all.iter().filter(|h| !members.contains(h));
    let led = members.iter().filter(|m| *m == leader);
    replicas.chain(others).chain(led).cloned().collect()
}

/// The names of the packages `vars` list for `host` (a pinned
/// `name=version` by its name).
async fn package_names(
    cluster: &Cluster,
    host: &str,
    vars: &[Var],
) -> Result<Vec<String>, ClusterError> {
    let (names, pinned) = update::host_packages(cluster, host, vars.iter().copied()).await?;
    Ok(update::bare_names(names, &pinned))
}

/// Pre-checks, then each host's plan (all hosts at once). Changes nothing.
pub async fn plan(cluster: &Cluster, to: &str) -> Result<OsPlan, ClusterError> {
    let from = from_release(to)?;
    let leader = update::healthy(cluster, "upgrade-os").await?;
    let all: Vec<String> = cluster
        .inventory()
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    let members = cluster.group(Group::Postgres);
    let needs_fact: Vec<String> = members
        .iter()
        .chain(cluster.group(Group::Backup).iter())
        .cloned()
        .collect();
    let others: Vec<Var> = contract::COMPONENTS
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| *v != contract::POSTGRES_PACKAGES)
        .collect();
    let asked = ordered(&all, &members, &leader).into_iter().map(|host| {
        let (others, needs_fact, members) = (&others, &needs_fact, &members);
        async move {
            let keep = package_names(cluster, &host, &[contract::POSTGRES_PACKAGES]).await?;
            let unhold = package_names(cluster, &host, others).await?;
            let mut args: Vec<&str> = vec![to];
            args.extend(keep.iter().map(String::as_str));
            args.push("--");
            args.extend(unhold.iter().map(String::as_str));
            args.push("--");
            args.extend(unhold.iter().map(String::as_str));
            let out = cluster.script(&host, PLAN, &args).await?;
            let h = parse_plan(
                HostMove {
                    host: host.clone(),
                    member: members.contains(&host),
                    keep: keep.clone(),
                    unhold: unhold.clone(),
                    ..HostMove::default()
                },
                &out,
            );
            let mut problems = problems_of(&h, from, to);
            if h.release == from && !h.unfinished && needs_fact.contains(&host) {
                let facts = cluster.facts(&host).await?;
                if facts.pointer(contract::MAJOR_FACT).is_none() {
                    problems.push(format!(
                        "{host} has no local fact postgres.major: run `pgdeploy apply` once \
                         with this version first (role postgres_major records the major, so \
                         that the host keeps it on {to})"
                    ));
                }
            }
            Ok::<_, ClusterError>((h, problems))
        }
    });
    let mut hosts = Vec::new();
    let mut problems = Vec::new();
    for done in futures::future::join_all(asked).await {
        let (h, p) = done?;
        hosts.push(h);
        problems.extend(p);
    }
    let mut plan = OsPlan {
        from: from.to_string(),
        to: to.to_string(),
        leader,
        hosts,
        problems,
        stale_collations: Vec::new(),
    };
    if plan.pending().next().is_none() {
        let out = collations(cluster, &plan.leader, Collations::Check).await?;
        plan.stale_collations = out
            .lines()
            .filter_map(|l| l.strip_prefix("database "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
    }
    Ok(plan)
}

/// What [`collations`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collations {
    /// Lists the stale databases and collations.
    Check,
    /// Rebuilds their indexes and refreshes the versions.
    Fix,
}

/// Runs `upgrade-os-collations.sh` on `leader`.
async fn collations(
    cluster: &Cluster,
    leader: &str,
    mode: Collations,
) -> Result<String, ClusterError> {
    let port = cluster.port(leader, contract::POSTGRES_PORT)?.to_string();
    let mode = match mode {
        Collations::Check => "check",
        Collations::Fix => "fix",
    };
    cluster.script(leader, COLLATIONS, &[&port, mode]).await
}

/// Once every host runs the new release: the indexes the new C library
/// may have put out of order rebuilt and the collation versions refreshed,
/// on the leader (its replicas follow through WAL).
async fn refresh_collations(cluster: &Cluster, say: Say<'_>) -> Result<(), ClusterError> {
    let (_, patroni) = cluster.patroni_cluster().await?;
    let leader = patroni
        .leader()
        .map(|l| l.name.clone())
        .ok_or_else(|| ClusterError::Refused("no leader to rebuild the indexes on".into()))?;
    let out = collations(cluster, &leader, Collations::Fix).await?;
    let mut reindexed = 0;
    for line in out.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["database", db, from, to] => say(&format!(
                "{leader}: database {db}: collation version {from} → {to}"
            )),
            ["reindexed", ..] => reindexed += 1,
            ["not-refreshed", db] => say(&format!(
                "warning: {leader}: database {db}: collation version not refreshed \
                 (ALTER DATABASE {db} REFRESH COLLATION VERSION)"
            )),
            _ => {}
        }
    }
    say(&format!(
        "{leader}: {reindexed} index(es) sorting text by the locale rebuilt, collation versions refreshed"
    ));
    Ok(())
}

/// How the move went.
#[derive(Debug, Clone, Serialize)]
pub struct OsOutcome {
    /// The hosts moved, in order, with the seconds each took (drain to
    /// serving again).
    pub hosts: Vec<(String, f64)>,
    /// The switchover away from the old leader's host: (from, to).
    pub switchover: Option<(String, String)>,
    /// Seconds in all.
    pub seconds: f64,
}

/// Carries out `plan` (see the module's documentation). Refuses a plan
/// with problems.
pub async fn upgrade(
    cluster: &Cluster,
    plan: &OsPlan,
    max_lag_mb: f64,
    say: Say<'_>,
) -> Result<OsOutcome, ClusterError> {
    if !plan.problems.is_empty() {
        return Err(ClusterError::Refused(format!(
            "upgrade-os refused: {}",
            plan.problems.join("; ")
        )));
    }
    let started = Instant::now();
    let mut outcome = OsOutcome {
        hosts: Vec::new(),
        switchover: None,
        seconds: 0.0,
    };
    let members = cluster.group(Group::Postgres);
    let mut moved_members: Vec<String> = plan
        .hosts
        .iter()
        .filter(|h| h.release == plan.to && !h.unfinished && members.contains(&h.host))
        .map(|h| h.host.clone())
        .collect();
    for h in plan.pending() {
        let host = h.host.as_str();
        let member = members.iter().any(|m| m == host);
        // The leader moves off unmoved hosts before the first host that is
        // not a replica: the backup host then follows the new leader.
        let (_, patroni) = cluster.patroni_cluster().await?;
        let leader = patroni.leader().map(|l| l.name.clone()).unwrap_or_default();
        if (leader == host || !member) && !moved_members.contains(&leader) {
            let to = moved_members.first().map(String::as_str);
            say(&format!(
                "{leader} leads on {}: switchover{}",
                plan.from,
                to.map(|t| format!(" to {t}")).unwrap_or_default()
            ));
            let done = ops::switchover(cluster, to, max_lag_mb, say).await?;
            outcome.switchover = Some((done.leader, done.candidate));
        }
        let host_started = Instant::now();
        move_host(cluster, plan, h, say).await?;
        update::serving_again(cluster, host, say).await?;
        if member {
            moved_members.push(host.to_string());
        }
        let seconds = host_started.elapsed().as_secs_f64();
        say(&format!("{host}: on {}, serving ({seconds:.1}s)", plan.to));
        outcome.hosts.push((host.to_string(), seconds));
    }
    refresh_collations(cluster, say).await?;
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Drains `h`'s host, moves its packages, reboots it and waits until it
/// answers on the new release with its services active.
async fn move_host(
    cluster: &Cluster,
    plan: &OsPlan,
    h: &HostMove,
    say: Say<'_>,
) -> Result<(), ClusterError> {
    let host = h.host.as_str();
    let mut args: Vec<&str> = vec![&plan.from, &plan.to];
    args.extend(h.keep.iter().map(String::as_str));
    args.push("--");
    args.extend(h.unhold.iter().map(String::as_str));
    args.push("--");
    args.extend(contract::DRAINED_SERVICES);
    say(&format!(
        "{host}: draining, then {} → {} ({} packages upgraded, {} new)",
        plan.from, plan.to, h.upgraded, h.new
    ));
    let out = cluster.script(host, APPLY, &args).await?;
    let stopped: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("stopping "))
        .collect();
    say(&format!(
        "{host}: packages moved (stopped first: {}); rebooting",
        if stopped.is_empty() {
            "nothing".to_string()
        } else {
            stopped.join(", ")
        }
    ));
    cluster.forget(host).await;
    let release = ops::poll(
        &format!("{host} back on {} with its services", plan.to),
        BACK_WITHIN,
        || async {
            let look = cluster.script(host, BACK, &contract::DRAINED_SERVICES);
            let out = match tokio::time::timeout(LOOK_WITHIN, look).await {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => {
                    cluster.forget(host).await;
                    return Err(e.to_string());
                }
                Err(_) => {
                    cluster.forget(host).await;
                    return Err("no answer".into());
                }
            };
            back(&out, &plan.to)
        },
    )
    .await?;
    say(&format!("{host}: back on {release}, its services active"));
    Ok(())
}

/// Reads `upgrade-os-back.sh`'s output: the release when it is `to` and
/// every service is active.
fn back(out: &str, to: &str) -> Result<String, String> {
    let mut release = None;
    let mut inactive = Vec::new();
    for line in out.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["release", name] => release = Some(name.to_string()),
            ["inactive", unit] => inactive.push(unit.to_string()),
            _ => {}
        }
    }
    match release {
        Some(r) if r != to => Err(format!("it runs {r}, not {to}")),
        None => Err("no release".into()),
        Some(r) if inactive.is_empty() => Ok(r),
        Some(_) => Err(format!("not active yet: {}", inactive.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn replicas_then_other_hosts_then_the_leader() {
        let all = names(&["node1", "node2", "node3", "node4"]);
        let members = names(&["node1", "node2", "node3"]);
        assert_eq!(
            ordered(&all, &members, "node1"),
            ["node2", "node3", "node4", "node1"]
        );
    }

    #[test]
    fn releases() {
        assert_eq!(from_release("trixie").expect("known"), "bookworm");
        let err = from_release("forky").expect_err("unknown");
        assert!(err.to_string().contains("bookworm → trixie only"), "{err}");
    }

    fn node2() -> HostMove {
        let out = "release bookworm\nkeep postgresql-15 15.20-0+deb12u1\n\
                   move patroni 3.0.2-1 4.0.7-1\nmove etcd-server 3.4.23-4+b7 3.5.16-4\n\
                   count upgraded 289\ncount new 41\ncount removed 3\nspace 409600 20971520\n";
        parse_plan(
            HostMove {
                host: "node2".into(),
                member: true,
                ..HostMove::default()
            },
            out,
        )
    }

    #[test]
    fn plan_output() {
        let h = node2();
        assert_eq!(h.release, "bookworm");
        assert_eq!(h.kept, [("postgresql-15".into(), "15.20-0+deb12u1".into())]);
        assert_eq!(h.moves.len(), 2);
        assert_eq!((h.upgraded, h.new, h.removed), (289, 41, 3));
        assert_eq!((h.need_kb, h.free_kb), (409_600, 20_971_520));
        assert!(problems_of(&h, "bookworm", "trixie").is_empty());
    }

    #[test]
    fn refusals_name_the_host() {
        let mut h = node2();
        h.lost.push("postgresql-15".into());
        h.free_kb = 600 * 1024;
        let p = problems_of(&h, "bookworm", "trixie");
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0], "node2: the upgrade would remove postgresql-15");
        assert!(
            p[1].starts_with("node2: the upgrade needs 400 MB"),
            "{}",
            p[1]
        );
        h.release = "bullseye".into();
        assert_eq!(
            problems_of(&h, "bookworm", "trixie"),
            ["node2 runs bullseye: upgrade-os moves bookworm → trixie"]
        );
        h.release = "trixie".into();
        h.lost.clear();
        assert!(problems_of(&h, "bookworm", "trixie").is_empty());
        // A move that did not finish is checked (and made) again.
        h.unfinished = true;
        assert_eq!(problems_of(&h, "bookworm", "trixie").len(), 1);
    }

    #[test]
    fn plan_lines() {
        let mut done = node2();
        done.host = "node3".into();
        done.release = "trixie".into();
        let mut leader = node2();
        leader.host = "node1".into();
        let mut backup = node2();
        backup.host = "node4".into();
        backup.member = false;
        let plan = OsPlan {
            from: "bookworm".into(),
            to: "trixie".into(),
            leader: "node1".into(),
            hosts: vec![node2(), done, backup, leader],
            problems: vec![],
            stale_collations: vec![],
        };
        let lines = plan.lines();
        let at = |prefix: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"))
        };
        assert!(at("  node2: bookworm → trixie: 289 upgraded") < at("  node3: already on trixie"));
        assert!(at("  node3") < at("  switchover: node1 → a replica"));
        assert!(at("  switchover") < at("  node4: bookworm"));
        assert!(at("  node4") < at("  node1 (the old leader)"));
        assert_eq!(
            lines.last().map(String::as_str),
            Some("3 host(s) to move to trixie")
        );
        assert_eq!(plan.pending().count(), 3);
        let mut again = plan.clone();
        again.hosts[1].unfinished = true;
        assert_eq!(again.pending().count(), 4);
        assert!(again
            .lines()
            .iter()
            .any(|l| l.starts_with("  node3: trixie (an earlier move did not finish) → trixie")));
    }

    #[test]
    fn back_from_the_reboot() {
        assert_eq!(back("release trixie\n", "trixie"), Ok("trixie".into()));
        assert_eq!(
            back("release trixie\ninactive patroni\n", "trixie"),
            Err("not active yet: patroni".into())
        );
        assert_eq!(
            back("release bookworm\n", "trixie"),
            Err("it runs bookworm, not trixie".into())
        );
    }
}
