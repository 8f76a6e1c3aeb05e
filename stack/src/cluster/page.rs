//! `pgdeploy report`: the cluster on one self-contained HTML page (inline
//! CSS and SVG, no script, nothing fetched): the topology as a picture,
//! the status table of `pgdeploy status`, the last apply's results per host
//! (see [`pgdeploy_engine::apply_state`]) and the backups in the pgBackRest
//! repository. Every value that comes from a host or a file is escaped.

use crate::contract::Group;
use std::fmt::Write as _;

use super::status::{self, format_utc, parse_backups, Backup, Limits, Status};
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
            let list = status::pgbackrest_info(cluster, &host)
                .await
                .map_err(|e| e.to_string())
                .and_then(|info| parse_backups(&info));
            Some((host, list))
        }
        None => None,
    };
    let inventory = cluster.inventory();
    Page {
        generated_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
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

/// `text` safe inside HTML or SVG text and attribute values.
pub fn escape(text: &str) -> String {
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#1d2733;background:#fff}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccd}\
.meta{color:#667}.verdict{font-weight:bold;padding:.4em .8em;border-radius:4px;display:inline-block}\
.healthy{background:#d9f2df;color:#14532d}.degraded{background:#fde2e1;color:#7f1d1d}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccd;padding:.3em .7em;text-align:left}\
th{background:#eef1f6}tr.leader td{background:#e7f6ea;font-weight:bold}.bad{color:#b91c1c;font-weight:bold}summary{cursor:pointer}\
svg text{font-family:system-ui,sans-serif}";

/// The whole page.
pub fn render(page: &Page) -> String {
    let s = &page.status;
    let mut out = String::new();
    let verdict_class = if s.healthy { "healthy" } else { "degraded" };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>pgdeploy report: {cluster}</title><style>{STYLE}</style></head><body>\n\
<h1>Cluster <span id=\"cluster\">{cluster}</span></h1>\n\
<p class=\"meta\">Generated {generated} by pgdeploy {version} from {inventory}</p>\n\
<p id=\"verdict\" class=\"verdict {verdict_class}\">{verdict}</p>\n",
        cluster = escape(&s.cluster),
        generated = format_utc(page.generated_at),
        version = env!("CARGO_PKG_VERSION"),
        inventory = escape(&page.inventory),
        verdict = escape(&status::verdict(s)),
    );
    out.push_str("<h2>Topology</h2>\n");
    out.push_str(&topology_svg(page));
    render_status(&mut out, s);
    render_apply(&mut out, page);
    render_backups(&mut out, page);
    out.push_str("</body></html>\n");
    out
}

fn render_status(out: &mut String, s: &Status) {
    let _ = writeln!(
        out,
        "<h2>Status</h2>\n<p>Leader: <strong id=\"leader\">{}</strong></p>",
        escape(s.leader.as_deref().unwrap_or("none"))
    );
    out.push_str(
        "<table id=\"members\"><tr><th>Member</th><th>Host</th><th>Role</th><th>State</th>\
<th>TL</th><th>Lag in MB</th><th>Pending restart</th></tr>\n",
    );
    for m in &s.members {
        let leader = m.role == "leader";
        let _ = writeln!(
            out,
            "<tr class=\"member {class}\" data-member=\"{name}\"><td>{name}</td><td>{host}</td>\
<td>{role}</td><td>{state}</td><td>{tl}</td><td>{lag}</td><td>{pending}</td></tr>",
            class = if leader { "leader" } else { "replica" },
            name = escape(&m.name),
            host = escape(&m.host),
            role = if leader { "Leader" } else { "Replica" },
            state = escape(if m.streaming { "streaming" } else { &m.state }),
            tl = m.timeline.map(|t| t.to_string()).unwrap_or_default(),
            lag = m.lag_mb.map(|l| format!("{l:.1}")).unwrap_or_default(),
            pending = if m.pending_restart { "yes" } else { "" },
        );
    }
    out.push_str(
        "</table>\n<table id=\"services\"><tr><th>Service</th><th>Host</th><th>State</th></tr>\n",
    );
    let mut row = |service: &str, host: &str, state: &str, bad: bool| {
        let _ = writeln!(
            out,
            "<tr><td>{service}</td><td>{}</td><td{}>{}</td></tr>",
            escape(host),
            if bad { " class=\"bad\"" } else { "" },
            escape(state)
        );
    };
    for (host, reason) in &s.unreachable {
        row("SSH", host, &format!("unreachable: {reason}"), true);
    }
    for e in &s.etcd {
        let state = match &e.error {
            Some(err) => format!("unhealthy: {err}"),
            None => "healthy".into(),
        };
        row(Group::Etcd.name(), &e.host, &state, !e.healthy);
    }
    for b in &s.haproxy {
        row("HAProxy", &b.host, &b.view(), b.error.is_some());
    }
    out.push_str("</table>\n");
    if let Some(vip) = &s.vip {
        let _ = writeln!(
            out,
            "<p>VIP <strong id=\"vip\">{}</strong> held by <strong id=\"vip-holders\">{}</strong></p>",
            escape(vip),
            escape(&if s.vip_holders.is_empty() {
                "no balancer".to_string()
            } else {
                s.vip_holders.join(", ")
            })
        );
    }
    if !s.problems.is_empty() {
        out.push_str("<ul id=\"problems\">\n");
        for p in &s.problems {
            let _ = writeln!(out, "<li>{}</li>", escape(p));
        }
        out.push_str("</ul>\n");
    }
}

fn render_apply(out: &mut String, page: &Page) {
    out.push_str("<h2>Last apply</h2>\n");
    let state = match &page.apply {
        Ok(s) if s.hosts.is_empty() => {
            out.push_str("<p id=\"apply\">No apply recorded for this inventory.</p>\n");
            return;
        }
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "<p id=\"apply\" class=\"bad\">{}</p>", escape(e));
            return;
        }
    };
    out.push_str(
        "<table id=\"apply\"><tr><th>Host</th><th>Finished</th><th>ok</th><th>changed</th>\
<th>failed</th><th>skipped</th><th>Result</th><th>Changed tasks</th></tr>\n",
    );
    for (host, a) in &state.hosts {
        let mut problems = Vec::new();
        if let Some(u) = &a.unreachable {
            problems.push(format!("unreachable: {u}"));
        }
        problems.extend(a.failures.iter().map(|f| format!("failed: {f}")));
        if a.interrupted {
            problems.push("interrupted".into());
        }
        let result = if problems.is_empty() {
            "<td class=\"result\">ok</td>".to_string()
        } else {
            format!(
                "<td class=\"result bad\">{}</td>",
                escape(&problems.join("; "))
            )
        };
        let changed = match a.changed_tasks.len() {
            0 => String::new(),
            n => format!(
                "<details><summary>{n} task{}</summary>{}</details>",
                if n == 1 { "" } else { "s" },
                escape(&a.changed_tasks.join(", "))
            ),
        };
        let _ = writeln!(
            out,
            "<tr data-host=\"{h}\"><td>{h}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
{result}<td>{changed}</td></tr>",
            format_utc(a.finished_at),
            a.ok,
            a.changed,
            a.failed,
            a.skipped,
            h = escape(host),
        );
    }
    out.push_str("</table>\n");
}

fn render_backups(out: &mut String, page: &Page) {
    out.push_str("<h2>Backups</h2>\n");
    let (host, list) = match &page.backups {
        None => {
            out.push_str("<p id=\"backups\">The inventory has no <code>backup</code> group.</p>\n");
            return;
        }
        Some((host, Err(e))) => {
            let _ = writeln!(
                out,
                "<p id=\"backups\" class=\"bad\">Cannot read the backups on {}: {}</p>",
                escape(host),
                escape(e)
            );
            return;
        }
        Some((host, Ok(list))) => (host, list),
    };
    if list.is_empty() {
        let _ = writeln!(
            out,
            "<p id=\"backups\" class=\"bad\">No backup in the repository on {}.</p>",
            escape(host)
        );
        return;
    }
    let _ = writeln!(
        out,
        "<p>Repository on <strong>{}</strong>, newest first.</p>",
        escape(host)
    );
    out.push_str(
        "<table id=\"backups\"><tr><th>Label</th><th>Type</th><th>Started</th><th>Finished</th>\
<th>Database size</th><th>In repository</th><th>State</th></tr>\n",
    );
    for b in list {
        let _ = writeln!(
            out,
            "<tr class=\"backup\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            escape(&b.label),
            escape(&b.kind),
            format_utc(b.started_at),
            format_utc(b.stopped_at),
            size(b.size),
            size(b.repository_size),
            if b.error { " class=\"bad\"" } else { "" },
            if b.error { "has errors" } else { "ok" },
        );
    }
    out.push_str("</table>\n");
}

const BOX_W: i64 = 210;
const BOX_H: i64 = 120;
const GAP: i64 = 40;
const MARGIN: i64 = 20;
const BOX_TOP: i64 = 100;

/// The topology as inline SVG: one box per host (groups, Patroni role and
/// state; the leader highlighted, unreachable hosts dashed red), the VIP
/// above the balancer that holds it, and an arrow from the leader to each
/// replica with its lag.
pub fn topology_svg(page: &Page) -> String {
    let s = &page.status;
    let n = page.hosts.len().max(1) as i64;
    let x_of = |i: usize| MARGIN + i as i64 * (BOX_W + GAP);
    let index = |name: &str| page.hosts.iter().position(|h| h.name == name);
    let replicas: Vec<_> = s.members.iter().filter(|m| m.role != "leader").collect();
    let width = 2 * MARGIN + n * BOX_W + (n - 1) * GAP;
    let height = BOX_TOP + BOX_H + 50 + 28 * replicas.len() as i64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg id=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"cluster topology\">\n\
<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" \
orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#2563eb\"/></marker></defs>"
    );
    // The VIP, above its holder (or, held by none, above the first host).
    if let Some(vip) = &s.vip {
        let holder = s.vip_holders.first().and_then(|h| index(h));
        let cx = x_of(holder.unwrap_or(0)) + BOX_W / 2;
        let (fill, label) = match holder {
            Some(_) => ("#fef3c7", format!("VIP {vip}")),
            None => ("#fde2e1", format!("VIP {vip}: no holder")),
        };
        let _ = writeln!(
            svg,
            "<g class=\"vip\"><rect x=\"{}\" y=\"12\" width=\"{BOX_W}\" height=\"36\" rx=\"18\" fill=\"{fill}\" stroke=\"#b45309\"/>\
<text x=\"{cx}\" y=\"35\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>",
            cx - BOX_W / 2,
            escape(&label)
        );
        if holder.is_some() {
            let _ = write!(
                svg,
                "<line x1=\"{cx}\" y1=\"48\" x2=\"{cx}\" y2=\"{BOX_TOP}\" stroke=\"#b45309\" stroke-width=\"2\"/>\
<text x=\"{}\" y=\"78\" font-size=\"11\" fill=\"#b45309\">keepalived</text>",
                cx + 6
            );
        }
        svg.push_str("</g>\n");
    }
    for (i, host) in page.hosts.iter().enumerate() {
        let x = x_of(i);
        let member = s.members.iter().find(|m| m.name == host.name);
        let down = s.unreachable.contains_key(&host.name);
        let is_leader = s.leader.as_deref() == Some(host.name.as_str());
        let (fill, stroke, width, dash) = if down {
            ("#fde2e1", "#b91c1c", 2, " stroke-dasharray=\"6 4\"")
        } else if is_leader {
            ("#d9f2df", "#15803d", 4, "")
        } else if member.is_some() {
            ("#e0ecff", "#2563eb", 2, "")
        } else {
            ("#f3f4f6", "#6b7280", 1, "")
        };
        let role = match (member, down) {
            (_, true) => "unreachable".to_string(),
            (Some(m), _) if is_leader => format!("Leader · {}", m.state),
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
        let vip = if s.vip_holders.contains(&host.name) {
            "holds the VIP"
        } else {
            ""
        };
        let cx = x + BOX_W / 2;
        let _ = writeln!(
            svg,
            "<g class=\"host{}\" data-host=\"{name}\"><rect x=\"{x}\" y=\"{BOX_TOP}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"8\" \
fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{width}\"{dash}/>\
<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{name}</text>\
<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#374151\">{}</text>\
<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" class=\"role\">{}</text>\
<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#4b5563\">{}</text>\
<text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#b45309\">{vip}</text></g>",
            if is_leader { " leader" } else { "" },
            BOX_TOP + 24,
            BOX_TOP + 44,
            escape(&host.address),
            BOX_TOP + 66,
            escape(&role),
            BOX_TOP + 88,
            escape(&groups),
            BOX_TOP + 108,
            name = escape(&host.name),
        );
    }
    // Replication: from the leader's box down and across to each replica.
    let leader_x = s
        .leader
        .as_deref()
        .and_then(index)
        .map(|i| x_of(i) + BOX_W / 2);
    if let Some(lx) = leader_x {
        let bottom = BOX_TOP + BOX_H;
        for (k, m) in replicas.iter().enumerate() {
            let Some(ri) = index(&m.name) else { continue };
            let rx = x_of(ri) + BOX_W / 2 + 12;
            let depth = bottom + 28 + 28 * k as i64;
            let (color, dash) = if m.streaming {
                ("#2563eb", "")
            } else {
                ("#b91c1c", " stroke-dasharray=\"5 4\"")
            };
            let label = match (m.streaming, m.lag_mb) {
                (true, Some(lag)) => format!("streams to {} · lag {lag:.1} MB", m.name),
                (true, None) => format!("streams to {}", m.name),
                (false, _) => format!("{}: not streaming", m.name),
            };
            let _ = writeln!(
                svg,
                "<g class=\"replication\" data-replica=\"{}\"><path d=\"M{} {bottom} L{} {depth} L{rx} {depth} L{rx} {}\" fill=\"none\" \
stroke=\"{color}\" stroke-width=\"2\"{dash} marker-end=\"url(#arrow)\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"{color}\">{}</text></g>",
                escape(&m.name),
                lx - 12 + 6 * k as i64,
                lx - 12 + 6 * k as i64,
                bottom + 2,
                (lx + rx) / 2,
                depth - 4,
                escape(&label)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::status::MemberStatus;
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
                backup: None,
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
        let html = render(&page());
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
        let svg = topology_svg(&page());
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
        let svg = topology_svg(&p);
        assert!(svg.contains("stroke=\"#b91c1c\" stroke-width=\"2\" stroke-dasharray=\"6 4\""));
        assert!(svg.contains(">unreachable</text>"));
        let html = render(&p);
        assert!(
            html.contains("<td>SSH</td><td>node1</td><td class=\"bad\">unreachable: no route</td>")
        );
    }
}
