//! `pgdeploy report`: the cluster on one self-contained HTML page (inline
//! CSS and SVG, no script, nothing fetched): the topology as a picture,
//! the status table of `pgdeploy status`, the last apply's results per host
//! (see [`pgdeploy_engine::apply_state`]) and the backups in the pgBackRest
//! repository. The page and its picture are minijinja templates
//! (`stack/templates/report.html.j2`, `topology.svg.j2`, compiled into the
//! binary) that auto-escape every value; this module computes the values
//! (sizes, times, labels, colours, coordinates) and the templates lay them
//! out.

use crate::contract::Group;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{
    escape_formatter, AutoEscape, Environment, Output, State, UndefinedBehavior, Value,
};
use serde::Serialize;

use super::backup::Backup;
use super::status::{self, format_utc, Limits, MemberStatus, Status};
use super::Cluster;
use pgdeploy_engine::apply_state::ApplyState;

/// One inventory host as the picture shows it.
#[derive(Debug, Clone)]
pub struct HostCard {
    /// Inventory name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its groups (without `all`).
    pub groups: Vec<String>,
}

/// Everything on the page.
#[derive(Debug, Clone)]
pub struct Page {
    /// When the report was made (Unix seconds).
    pub generated_at: i64,
    /// The inventory file.
    pub inventory: String,
    /// The inventory's hosts, in order.
    pub hosts: Vec<HostCard>,
    /// What `pgdeploy status` reports.
    pub status: Status,
    /// The backup host and its backups, newest first; or why they could
    /// not be read. None without a `backup` group.
    pub backups: Option<(String, Result<Vec<Backup>, String>)>,
    /// The last apply per host; or why the state file could not be read.
    pub apply: Result<ApplyState, String>,
}

/// Gathers the page's data: the status (which probes every host), the
/// backups from the backup host and the apply state file at `state`.
pub async fn collect(cluster: &Cluster, limits: Limits, state: &std::path::Path) -> Page {
    let status = status::collect(cluster, limits).await;
    let backups = match cluster.group(Group::Backup).into_iter().next() {
        Some(host) => {
            let list = super::backup::repository(cluster)
                .await
                .map(|r| r.backups)
                .map_err(|e| e.to_string());
            Some((host, list))
        }
        None => None,
    };
    let inventory = cluster.inventory();
    Page {
        generated_at: status::unix_now(),
        inventory: inventory.path.display().to_string(),
        hosts: inventory
            .hosts
            .iter()
            .map(|h| HostCard {
                name: h.name.clone(),
                address: h.connection.address.clone(),
                groups: h.groups.clone(),
            })
            .collect(),
        status,
        backups,
        apply: ApplyState::load(state).map_err(|e| e.to_string()),
    }
}

/// The page's template and the topology's, compiled into the binary: the
/// page stays self-contained and nothing is read at run time.
const REPORT_TEMPLATE: (&str, &str) = (
    "report.html.j2",
    include_str!("../../templates/report.html.j2"),
);
const TOPOLOGY_TEMPLATE: (&str, &str) = (
    "topology.svg.j2",
    include_str!("../../templates/topology.svg.j2"),
);

/// The page could not be rendered: a template does not parse or uses a
/// value the page does not give it. The tests render every branch of both
/// templates, so this points at a template bug, not at the cluster.
#[derive(Debug, thiserror::Error)]
#[error("cannot render the report page: {0}")]
pub struct PageError(#[from] minijinja::Error);

/// The templates, HTML-escaping every value (`.html` and `.svg`), strict
/// about undefined values (a misspelt field fails the tests instead of
/// printing nothing), and without the newlines block tags leave behind.
fn environment() -> Result<Environment<'static>, PageError> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(
        |name| match name.trim_end_matches(".j2").rsplit('.').next() {
            Some("html" | "htm" | "svg" | "xml") => AutoEscape::Html,
            _ => AutoEscape::None,
        },
    );
    env.set_formatter(format_value);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()?,
    );
    for (name, source) in [REPORT_TEMPLATE, TOPOLOGY_TEMPLATE] {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// minijinja's formatter with the page's HTML escape: the same five
/// characters are escaped but `/` stays as it is (minijinja's own escape
/// writes `&#x2f;`, which would make task names and paths unreadable in the
/// page's source). Safe values, non-strings and unescaped templates go to
/// minijinja's formatter.
fn format_value(
    out: &mut Output,
    state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    match (state.auto_escape(), value.as_str()) {
        (AutoEscape::Html, Some(text)) if !value.is_safe() => {
            out.write_str(&escape(text)).map_err(minijinja::Error::from)
        }
        _ => escape_formatter(out, state, value),
    }
}

/// `text` safe inside HTML or SVG text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes as `12.3 MiB`.
fn size(bytes: Option<u64>) -> String {
    let Some(b) = bytes else {
        return String::new();
    };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// What `report.html.j2` shows: the page's values as text, ready to lay out.
#[derive(Debug, Serialize)]
struct PageView {
    cluster: String,
    generated: String,
    version: &'static str,
    inventory: String,
    verdict: String,
    /// `healthy` or `degraded`.
    verdict_class: &'static str,
    topology: Topology,
    /// The leader's name, or `none`.
    leader: String,
    members: Vec<MemberRow>,
    services: Vec<ServiceRow>,
    vip: Option<VipLine>,
    problems: Vec<String>,
    apply: ApplyView,
    backups: BackupsView,
    /// What `restore --to` reaches, `FROM – TO`.
    recovery_window: Option<String>,
}

/// A row of the members table.
#[derive(Debug, Serialize)]
struct MemberRow {
    /// `leader` or `replica`.
    class: &'static str,
    name: String,
    host: String,
    /// `Leader` or `Replica`.
    role: &'static str,
    state: String,
    timeline: String,
    lag: String,
    /// `yes` or empty.
    pending: &'static str,
}

/// A row of the services table (SSH, etcd, HAProxy).
#[derive(Debug, Serialize)]
struct ServiceRow {
    service: &'static str,
    host: String,
    state: String,
    bad: bool,
}

/// The VIP and who holds it.
#[derive(Debug, Serialize)]
struct VipLine {
    address: String,
    holders: String,
}

/// The last apply: the rows per host, or why the state file was unreadable.
#[derive(Debug, Serialize)]
struct ApplyView {
    error: Option<String>,
    hosts: Vec<ApplyRow>,
}

/// One host's last apply.
#[derive(Debug, Serialize)]
struct ApplyRow {
    host: String,
    finished: String,
    ok: usize,
    changed: usize,
    failed: usize,
    skipped: usize,
    /// What went wrong, `; `-separated; empty when all went well.
    problems: String,
    /// `1 task`, `3 tasks`.
    changed_summary: String,
    /// The changed tasks, `, `-separated; empty when none changed.
    changed_tasks: String,
}

/// The backups section.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum BackupsView {
    /// The inventory has no backup group.
    NoGroup,
    /// pgBackRest's list could not be read.
    Unreadable { host: String, error: String },
    /// The repository's backups, newest first (maybe none).
    Repository { host: String, list: Vec<BackupRow> },
}

/// A row of the backups table.
#[derive(Debug, Serialize)]
struct BackupRow {
    label: String,
    kind: String,
    started: String,
    finished: String,
    size: String,
    repository_size: String,
    error: bool,
}

/// The whole page, or why it cannot be rendered (a template bug).
pub fn try_render(page: &Page) -> Result<String, PageError> {
    let env = environment()?;
    let html = env
        .get_template(REPORT_TEMPLATE.0)?
        .render(Serde(page_view(page)))?;
    Ok(html)
}

fn page_view(page: &Page) -> PageView {
    let s = &page.status;
    PageView {
        cluster: s.cluster.clone(),
        generated: format_utc(page.generated_at),
        version: env!("CARGO_PKG_VERSION"),
        inventory: page.inventory.clone(),
        verdict: status::verdict(s),
        verdict_class: if s.healthy { "healthy" } else { "degraded" },
        topology: topology(page),
        leader: s.leader.clone().unwrap_or_else(|| "none".into()),
        members: s.members.iter().map(member_row).collect(),
        services: service_rows(s),
        vip: s.vip.as_ref().map(|vip| VipLine {
            address: vip.clone(),
            holders: if s.vip_holders.is_empty() {
                "no balancer".to_string()
            } else {
                s.vip_holders.join(", ")
            },
        }),
        problems: s.problems.clone(),
        apply: apply_view(&page.apply),
        backups: backups_view(&page.backups),
        recovery_window: s
            .backup
            .as_ref()
            .and_then(|b| b.recovery_window)
            .map(|w| w.view()),
    }
}

fn member_row(m: &MemberStatus) -> MemberRow {
    let leader = m.role == "leader";
    MemberRow {
        class: if leader { "leader" } else { "replica" },
        name: m.name.clone(),
        host: m.host.clone(),
        role: if leader { "Leader" } else { "Replica" },
        state: if m.streaming {
            "streaming".into()
        } else {
            m.state.clone()
        },
        timeline: m.timeline.map(|t| t.to_string()).unwrap_or_default(),
        lag: m.lag_mb.map(|l| format!("{l:.1}")).unwrap_or_default(),
        pending: if m.pending_restart { "yes" } else { "" },
    }
}

fn service_rows(s: &Status) -> Vec<ServiceRow> {
    let mut rows = Vec::new();
    for (host, reason) in &s.unreachable {
        rows.push(ServiceRow {
            service: "SSH",
            host: host.clone(),
            state: format!("unreachable: {reason}"),
            bad: true,
        });
    }
    for e in &s.etcd {
        rows.push(ServiceRow {
            service: Group::Etcd.name(),
            host: e.host.clone(),
            state: match &e.error {
                Some(err) => format!("unhealthy: {err}"),
                None => "healthy".into(),
            },
            bad: !e.healthy,
        });
    }
    for b in &s.haproxy {
        rows.push(ServiceRow {
            service: "HAProxy",
            host: b.host.clone(),
            state: b.view(),
            bad: b.error.is_some(),
        });
    }
    rows
}

fn apply_view(apply: &Result<ApplyState, String>) -> ApplyView {
    let state = match apply {
        Ok(state) => state,
        Err(e) => {
            return ApplyView {
                error: Some(e.clone()),
                hosts: Vec::new(),
            }
        }
    };
    let hosts = state
        .hosts
        .iter()
        .map(|(host, a)| {
            let mut problems = Vec::new();
            if let Some(u) = &a.unreachable {
                problems.push(format!("unreachable: {u}"));
            }
            problems.extend(a.failures.iter().map(|f| format!("failed: {f}")));
            if a.interrupted {
                problems.push("interrupted".into());
            }
            let n = a.changed_tasks.len();
            ApplyRow {
                host: host.clone(),
                finished: format_utc(a.finished_at),
                ok: a.ok,
                changed: a.changed,
                failed: a.failed,
                skipped: a.skipped,
                problems: problems.join("; "),
                changed_summary: format!("{n} task{}", if n == 1 { "" } else { "s" }),
                changed_tasks: a.changed_tasks.join(", "),
            }
        })
        .collect();
    ApplyView { error: None, hosts }
}

fn backups_view(backups: &Option<(String, Result<Vec<Backup>, String>)>) -> BackupsView {
    match backups {
        None => BackupsView::NoGroup,
        Some((host, Err(e))) => BackupsView::Unreadable {
            host: host.clone(),
            error: e.clone(),
        },
        Some((host, Ok(list))) => BackupsView::Repository {
            host: host.clone(),
            list: list
                .iter()
                .map(|b| BackupRow {
                    label: b.label.clone(),
                    kind: b.kind.clone(),
                    started: format_utc(b.started_at),
                    finished: format_utc(b.stopped_at),
                    size: size(b.size),
                    repository_size: size(b.repository_size),
                    error: b.error,
                })
                .collect(),
        },
    }
}

const BOX_W: i64 = 210;
const BOX_H: i64 = 120;
const GAP: i64 = 40;
const MARGIN: i64 = 20;
const BOX_TOP: i64 = 100;

/// What `topology.svg.j2` draws, every coordinate computed: one box per
/// host, the VIP above its holder, an arrow from the leader to each replica.
#[derive(Debug, Serialize)]
struct Topology {
    width: i64,
    height: i64,
    vip: Option<VipBadge>,
    hosts: Vec<HostBox>,
    /// Where the lines of text in a host's box sit.
    text_y: TextRows,
    links: Vec<Link>,
}

/// The VIP's badge, above its holder (or, held by none, above the first host).
#[derive(Debug, Serialize)]
struct VipBadge {
    x: i64,
    cx: i64,
    width: i64,
    label: String,
    fill: &'static str,
    /// Held by a balancer: a line down to its box, marked `keepalived`.
    held: bool,
    line_end: i64,
    note_x: i64,
}

/// The baselines of the lines of text in every host box.
#[derive(Debug, Serialize)]
struct TextRows {
    name: i64,
    address: i64,
    role: i64,
    groups: i64,
    vip: i64,
}

/// One host's box.
#[derive(Debug, Serialize)]
struct HostBox {
    name: String,
    leader: bool,
    x: i64,
    y: i64,
    cx: i64,
    width: i64,
    height: i64,
    fill: &'static str,
    stroke: &'static str,
    stroke_width: i64,
    /// Unreachable: a dashed outline.
    dashed: bool,
    address: String,
    /// Patroni role and state, or what else the host is.
    role: String,
    /// Its groups, shortened to fit.
    groups: String,
    /// `holds the VIP` or empty.
    vip: &'static str,
}

/// The arrow from the leader to one replica.
#[derive(Debug, Serialize)]
struct Link {
    replica: String,
    /// The SVG path: down from the leader, across, up to the replica.
    path: String,
    color: &'static str,
    /// Not streaming: a dashed arrow.
    dashed: bool,
    label_x: i64,
    label_y: i64,
    label: String,
}

/// The topology as inline SVG (the picture on the page): one box per host
/// (groups, Patroni role and state; the leader highlighted, unreachable
/// hosts dashed red), the VIP above the balancer that holds it, and an
/// arrow from the leader to each replica with its lag.
pub fn topology_svg(page: &Page) -> Result<String, PageError> {
    let env = environment()?;
    let svg = env
        .get_template(TOPOLOGY_TEMPLATE.0)?
        .render(minijinja::context! { topology => Serde(topology(page)) })?;
    Ok(svg)
}

fn box_x(i: usize) -> i64 {
    MARGIN + i as i64 * (BOX_W + GAP)
}

fn topology(page: &Page) -> Topology {
    let s = &page.status;
    let n = page.hosts.len().max(1) as i64;
    let index = |name: &str| page.hosts.iter().position(|h| h.name == name);
    let replicas: Vec<_> = s.members.iter().filter(|m| m.role != "leader").collect();
    let vip = s.vip.as_ref().map(|vip| {
        let holder = s.vip_holders.first().and_then(|h| index(h));
        let cx = box_x(holder.unwrap_or(0)) + BOX_W / 2;
        let (fill, label) = match holder {
            Some(_) => ("#fef3c7", format!("VIP {vip}")),
            None => ("#fde2e1", format!("VIP {vip}: no holder")),
        };
        VipBadge {
            x: cx - BOX_W / 2,
            cx,
            width: BOX_W,
            label,
            fill,
            held: holder.is_some(),
            line_end: BOX_TOP,
            note_x: cx + 6,
        }
    });
    // Replication: from the leader's box down and across to each replica.
    let leader_x = s
        .leader
        .as_deref()
        .and_then(index)
        .map(|i| box_x(i) + BOX_W / 2);
    let links = match leader_x {
        Some(lx) => replicas
            .iter()
            .enumerate()
            .filter_map(|(k, m)| Some(link(lx, k, m, box_x(index(&m.name)?) + BOX_W / 2 + 12)))
            .collect(),
        None => Vec::new(),
    };
    Topology {
        width: 2 * MARGIN + n * BOX_W + (n - 1) * GAP,
        height: BOX_TOP + BOX_H + 50 + 28 * replicas.len() as i64,
        vip,
        hosts: page
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| host_box(page, i, host))
            .collect(),
        text_y: TextRows {
            name: BOX_TOP + 24,
            address: BOX_TOP + 44,
            role: BOX_TOP + 66,
            groups: BOX_TOP + 88,
            vip: BOX_TOP + 108,
        },
        links,
    }
}

fn host_box(page: &Page, i: usize, host: &HostCard) -> HostBox {
    let s = &page.status;
    let member = s.members.iter().find(|m| m.name == host.name);
    let down = s.unreachable.contains_key(&host.name);
    let leader = s.leader.as_deref() == Some(host.name.as_str());
    let (fill, stroke, stroke_width) = if down {
        ("#fde2e1", "#b91c1c", 2)
    } else if leader {
        ("#d9f2df", "#15803d", 4)
    } else if member.is_some() {
        ("#e0ecff", "#2563eb", 2)
    } else {
        ("#f3f4f6", "#6b7280", 1)
    };
    let role = match (member, down) {
        (_, true) => "unreachable".to_string(),
        (Some(m), _) if leader => format!("Leader · {}", m.state),
        (Some(m), _) => format!(
            "Replica · {}",
            if m.streaming { "streaming" } else { &m.state }
        ),
        (None, _) if host.groups.iter().any(|g| g == Group::Postgres.name()) => {
            "not a member".into()
        }
        (None, _) if page.backups.as_ref().is_some_and(|(h, _)| *h == host.name) => {
            "pgBackRest repository".into()
        }
        (None, _) => String::new(),
    };
    let mut groups = host.groups.join(", ");
    if groups.chars().count() > 32 {
        groups = groups.chars().take(31).collect::<String>() + "…";
    }
    let x = box_x(i);
    HostBox {
        name: host.name.clone(),
        leader,
        x,
        y: BOX_TOP,
        cx: x + BOX_W / 2,
        width: BOX_W,
        height: BOX_H,
        fill,
        stroke,
        stroke_width,
        dashed: down,
        address: host.address.clone(),
        role,
        groups,
        vip: if s.vip_holders.contains(&host.name) {
            "holds the VIP"
        } else {
            ""
        },
    }
}

/// The `k`th replica's arrow, from the leader's centre `lx` to `rx`.
fn link(lx: i64, k: usize, m: &MemberStatus, rx: i64) -> Link {
    let bottom = BOX_TOP + BOX_H;
    let depth = bottom + 28 + 28 * k as i64;
    let start = lx - 12 + 6 * k as i64;
    let label = match (m.streaming, m.lag_mb) {
        (true, Some(lag)) => format!("streams to {} · lag {lag:.1} MB", m.name),
        (true, None) => format!("streams to {}", m.name),
        (false, _) => format!("{}: not streaming", m.name),
    };
    Link {
        replica: m.name.clone(),
        path: format!(
            "M{start} {bottom} L{start} {depth} L{rx} {depth} L{rx} {}",
            bottom + 2
        ),
        color: if m.streaming { "#2563eb" } else { "#b91c1c" },
        dashed: !m.streaming,
        label_x: (lx + rx) / 2,
        label_y: depth - 4,
        label,
    }
}

#[cfg(test)]
mod tests {
    use crate::cluster::backup::parse_backups;
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::status::{BackendStatus, BalancerStatus, EtcdStatus};
    use pgdeploy_engine::apply_state::HostApply;

    const INFO: &str = r#"[{"name":"lab","backup":[
        {"label":"20261124-042014F","type":"full","error":false,"timestamp":{"start":1795494014,"stop":1795494019},
         "info":{"size":31457280,"delta":31457280,"repository":{"size":4194304,"delta":4194304}}},
        {"label":"20261124-042014F_20261124-050000D","type":"diff","error":false,"timestamp":{"start":1795496400,"stop":1795496410},
         "info":{"size":31457280,"repository":{"size":1024}}}]}]"#;

    fn member(name: &str, role: &str, streaming: bool) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            host: format!("10.0.0.{}", &name[4..]),
            role: role.into(),
            state: "running".into(),
            timeline: Some(3),
            lag_mb: (role != "leader").then_some(0.5),
            streaming,
            pending_restart: false,
        }
    }

    fn page() -> Page {
        let hosts = ["node1", "node2", "node3", "node4"]
            .into_iter()
            .map(|n| HostCard {
                name: n.into(),
                address: format!("10.0.0.{}", &n[4..]),
                groups: if n == "node4" {
                    vec!["backup".into()]
                } else {
                    vec!["etcd".into(), "postgres".into(), "balancers".into()]
                },
            })
            .collect();
        let mut apply = ApplyState::default();
        apply.hosts.insert(
            "node1".into(),
            HostApply {
                finished_at: 1_795_494_000,
                playbook: "playbooks/site.yaml".into(),
                ok: 80,
                changed: 2,
                failed: 0,
                skipped: 1,
                unreachable: None,
                interrupted: false,
                changed_tasks: vec!["haproxy / config".into()],
                failures: Vec::new(),
            },
        );
        apply.hosts.insert(
            "node3".into(),
            HostApply {
                failed: 1,
                failures: vec!["postgres / query: <script>alert(1)</script>".into()],
                ..apply.hosts["node1"].clone()
            },
        );
        Page {
            generated_at: 1_795_500_000,
            inventory: "inventories/lab.yaml".into(),
            hosts,
            status: Status {
                cluster: "lab".into(),
                unreachable: BTreeMap::new(),
                leader: Some("node2".into()),
                members: vec![
                    member("node1", "replica", true),
                    member("node2", "leader", false),
                    member("node3", "replica", false),
                ],
                etcd: Vec::new(),
                haproxy: Vec::new(),
                vip: Some("10.0.0.250".into()),
                vip_holders: vec!["node3".into()],
                backup: Some(super::super::status::BackupStatus {
                    host: "node4".into(),
                    label: "20261124-042014F_20261124-050000D".into(),
                    kind: "diff".into(),
                    stopped_at: 1_795_496_400,
                    age_hours: 1.0,
                    count: 2,
                    newest_wal: None,
                    recovery_window: Some(crate::cluster::backup::RecoveryWindow {
                        from: 1_795_494_019,
                        to: 1_795_499_000,
                    }),
                }),
                archiver: None,
                problems: vec!["replica node3 is not streaming from the leader".into()],
                healthy: false,
            },
            backups: Some(("node4".into(), parse_backups(INFO))),
            apply: Ok(apply),
        }
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<b a="1">Tom & 'Jerry'</b>"#),
            "&lt;b a=&quot;1&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
        assert_eq!(escape("node1"), "node1");
    }

    #[test]
    fn backups_newest_first_with_sizes() {
        let list = parse_backups(INFO).expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].kind, "diff");
        assert_eq!(list[1].size, Some(31_457_280));
        assert_eq!(list[1].repository_size, Some(4_194_304));
        assert_eq!(size(Some(31_457_280)), "30.0 MiB");
        assert_eq!(size(Some(1024)), "1.0 KiB");
        assert_eq!(size(Some(12)), "12 B");
        assert!(parse_backups("{").is_err());
        assert!(parse_backups("{}").is_err());
    }

    #[test]
    fn page_shows_leader_replicas_vip_apply_and_backups() {
        let html = try_render(&page()).expect("renders");
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<strong id=\"leader\">node2</strong>"));
        assert!(html.contains("<tr class=\"member leader\" data-member=\"node2\">"));
        assert!(html.contains("<tr class=\"member replica\" data-member=\"node1\">"));
        assert!(html.contains("<strong id=\"vip-holders\">node3</strong>"));
        assert!(html.contains(
            "<td class=\"result\">ok</td><td><details><summary>1 task</summary>haproxy / config</details></td>"
        ));
        assert!(html.contains("<td class=\"result bad\">failed: postgres / query: &lt;script&gt;"));
        assert!(html.contains("<td>20261124-042014F_20261124-050000D</td><td>diff</td>"));
        assert!(html.contains("<td>30.0 MiB</td><td>4.0 MiB</td>"));
        assert!(html.contains(
            "<p id=\"recovery-window\">Point-in-time recovery (<code>pgdeploy restore --to</code>) reaches 2026-11-24 04:20:19 UTC – 2026-11-24 05:43:20 UTC.</p>"
        ), "{html}");
        assert!(html.contains("class=\"verdict degraded\""));
        // Self-contained: no script, no link, nothing fetched.
        for banned in ["<script", "<link", "src=", "href=", "@import", "url(http"] {
            assert!(!html.contains(banned), "{banned} in the page");
        }
        // A value from a host is escaped.
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn topology_highlights_the_leader_and_draws_replication_and_vip() {
        let svg = topology_svg(&page()).expect("renders");
        assert_eq!(svg.matches("<g class=\"host").count(), 4);
        assert_eq!(svg.matches("<g class=\"host leader\"").count(), 1);
        assert!(svg.contains("<g class=\"host leader\" data-host=\"node2\">"));
        assert!(svg.contains(">Leader · running</text>"));
        assert!(svg.contains(">Replica · streaming</text>"));
        assert_eq!(svg.matches("<g class=\"replication\"").count(), 2);
        assert!(svg.contains(">streams to node1 · lag 0.5 MB</text>"));
        assert!(svg.contains(">node3: not streaming</text>"));
        assert!(svg.contains(">VIP 10.0.0.250</text>"));
        // The VIP sits above its holder, node3 (the third box).
        let holder_cx = MARGIN + 2 * (BOX_W + GAP) + BOX_W / 2;
        assert!(svg.contains(&format!("<line x1=\"{holder_cx}\"")), "{svg}");
        assert!(svg.contains(">holds the VIP</text>"));
        assert!(svg.contains(">pgBackRest repository</text>"));
    }

    #[test]
    fn topology_marks_an_unreachable_host() {
        let mut p = page();
        p.status
            .unreachable
            .insert("node1".into(), "no route".into());
        let svg = topology_svg(&p).expect("renders");
        assert!(svg.contains("stroke=\"#b91c1c\" stroke-width=\"2\" stroke-dasharray=\"6 4\""));
        assert!(svg.contains(">unreachable</text>"));
        let html = try_render(&p).expect("renders");
        assert!(
            html.contains("<td>SSH</td><td>node1</td><td class=\"bad\">unreachable: no route</td>")
        );
    }

    #[test]
    fn templates_parse() {
        let env = environment().expect("the templates parse");
        for (name, _) in [REPORT_TEMPLATE, TOPOLOGY_TEMPLATE] {
            env.get_template(name).expect(name);
        }
    }

    /// A host name that would close an attribute and a failure message
    /// that would open a script: escaped in text and in attributes, in the
    /// page and in the picture, wherever they appear.
    #[test]
    fn hostile_values_are_escaped_everywhere() {
        const HOST: &str = r#"n3" onmouseover="alert('x')"#;
        const HOST_ESC: &str = "n3&quot; onmouseover=&quot;alert(&#39;x&#39;)";
        const FAILURE: &str = r#"<script>alert("pwned") & 'more'</script>"#;
        const FAILURE_ESC: &str =
            "&lt;script&gt;alert(&quot;pwned&quot;) &amp; &#39;more&#39;&lt;/script&gt;";
        let mut p = page();
        p.hosts[2].name = HOST.into();
        p.status.members[2].name = HOST.into();
        p.status.vip_holders = vec![HOST.into()];
        p.status.problems = vec![format!("replica {HOST} is not streaming: {FAILURE}")];
        p.status.unreachable.insert("node1".into(), FAILURE.into());
        let mut state = p.apply.clone().expect("the test page has an apply state");
        let mut hostile = state.hosts.remove("node3").expect("node3 applied");
        hostile.failures = vec![FAILURE.into()];
        hostile.changed_tasks = vec![FAILURE.into()];
        state.hosts.insert(HOST.into(), hostile);
        p.apply = Ok(state);

        let html = try_render(&p).expect("renders");
        for raw in [HOST, FAILURE, "<script", "\" onmouseover", "'more'"] {
            assert!(!html.contains(raw), "{raw} unescaped in the page:\n{html}");
        }
        for escaped in [
            // Attributes and text of the tables.
            format!("<tr class=\"member replica\" data-member=\"{HOST_ESC}\"><td>{HOST_ESC}</td>"),
            format!("<tr data-host=\"{HOST_ESC}\"><td>{HOST_ESC}</td>"),
            format!("<td class=\"result bad\">failed: {FAILURE_ESC}</td>"),
            format!("<details><summary>1 task</summary>{FAILURE_ESC}</details>"),
            format!("<td class=\"bad\">unreachable: {FAILURE_ESC}</td>"),
            format!("<strong id=\"vip-holders\">{HOST_ESC}</strong>"),
            format!("<li>replica {HOST_ESC} is not streaming: {FAILURE_ESC}</li>"),
            // Attributes and text of the picture.
            format!("<g class=\"host\" data-host=\"{HOST_ESC}\">"),
            format!(">{HOST_ESC}</text>"),
            format!("<g class=\"replication\" data-replica=\"{HOST_ESC}\">"),
            format!(">{HOST_ESC}: not streaming</text>"),
        ] {
            assert!(html.contains(&escaped), "no {escaped} in the page:\n{html}");
        }
        // The picture alone escapes the same way.
        let svg = topology_svg(&p).expect("renders");
        assert!(!svg.contains(HOST), "{svg}");
        assert!(svg.contains(&format!("<g class=\"host\" data-host=\"{HOST_ESC}\">")));
    }

    /// Every branch of both templates renders (the templates are strict
    /// about undefined values, so a field missing in one branch would fail
    /// here rather than in `pgdeploy report`).
    #[test]
    fn every_branch_renders() {
        let mut p = page();
        p.status.leader = None;
        p.status.vip_holders.clear();
        p.status.etcd = vec![
            EtcdStatus {
                host: "node1".into(),
                healthy: true,
                error: None,
                db: None,
                alarms: Vec::new(),
            },
            EtcdStatus {
                host: "node2".into(),
                healthy: false,
                error: Some("timeout".into()),
                db: None,
                alarms: Vec::new(),
            },
        ];
        p.status.haproxy = vec![BalancerStatus {
            host: "node1".into(),
            backends: vec![BackendStatus {
                proxy: "postgres_rw".into(),
                server: "node2".into(),
                status: "UP".into(),
            }],
            error: None,
        }];
        p.status.members[0].pending_restart = true;
        p.backups = None;
        p.apply = Err("cannot read the state file: bad json".into());
        let html = try_render(&p).expect("renders");
        assert!(html.contains("<strong id=\"leader\">none</strong>"));
        assert!(html.contains("held by <strong id=\"vip-holders\">no balancer</strong>"));
        assert!(html.contains(">VIP 10.0.0.250: no holder</text>"));
        assert!(!html.contains("class=\"host leader\""));
        assert!(!html.contains("<g class=\"replication\""));
        assert!(html.contains("<tr><td>etcd</td><td>node1</td><td>healthy</td></tr>"));
        assert!(html.contains("<td>node2</td><td class=\"bad\">unhealthy: timeout</td>"));
        assert!(html.contains("<td>HAProxy</td><td>node1</td><td>rw/node2 UP</td>"));
        assert!(html.contains("<td>0.5</td><td>yes</td></tr>"));
        assert!(
            html.contains("<p id=\"apply\" class=\"bad\">cannot read the state file: bad json</p>")
        );
        assert!(
            html.contains("<p id=\"backups\">The inventory has no <code>backup</code> group.</p>")
        );

        p.status.vip = None;
        p.status.problems.clear();
        p.apply = Ok(ApplyState::default());
        p.backups = Some(("node4".into(), Err("ssh: <timeout>".into())));
        let html = try_render(&p).expect("renders");
        assert!(!html.contains("id=\"vip\"") && !html.contains("class=\"vip\""));
        assert!(!html.contains("id=\"problems\""));
        assert!(html.contains("<p id=\"apply\">No apply recorded for this inventory.</p>"));
        assert!(html.contains(
            "<p id=\"backups\" class=\"bad\">Cannot read the backups on node4: ssh: &lt;timeout&gt;</p>"
        ));

        p.backups = Some(("node4".into(), Ok(Vec::new())));
        let html = try_render(&p).expect("renders");
        assert!(html
            .contains("<p id=\"backups\" class=\"bad\">No backup in the repository on node4.</p>"));

        let mut list = parse_backups(INFO).expect("parses");
        list[0].error = true;
        list[0].size = None;
        p.backups = Some(("node4".into(), Ok(list)));
        let html = try_render(&p).expect("renders");
        assert!(html.contains("<td></td><td>1.0 KiB</td><td class=\"bad\">has errors</td></tr>"));
        assert!(html.contains("<td>4.0 MiB</td><td>ok</td></tr>"));
        assert!(html.ends_with("</body></html>\n"));
    }
}
