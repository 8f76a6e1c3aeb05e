//! Printing the task DAG, as text and as Graphviz dot.

use std::fmt::Write as _;

use crate::resolve::Resolved;

/// Per host, its tasks in order, with the cross-host waits under them.
pub fn text(resolved: &Resolved) -> String {
    let mut out = String::new();
    for (host, chain) in &resolved.chains {
        let _ = writeln!(out, "{host}:");
        for (i, id) in chain.iter().enumerate() {
            let node = &resolved.nodes[*id];
            let role = node
                .role
                .as_deref()
                .map(|r| format!("{r} / "))
                .unwrap_or_default();
            let kind = if node.is_handler { " (handler)" } else { "" };
            let _ = writeln!(out, "  {:>3}. {role}{}{kind}", i + 1, node.task.name);
            for pred in &node.waits_on {
                let _ = writeln!(out, "         waits for {}", resolved.label(*pred));
            }
        }
    }
    out
}

/// The DAG in Graphviz dot: one cluster per host.
pub fn dot(resolved: &Resolved) -> String {
    let mut out =
        String::from("digraph pgdeploy {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n");
    for (n, (host, chain)) in resolved.chains.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{n} {{\n    label={};", quote(host));
        for id in chain {
            let node = &resolved.nodes[*id];
            let label = match &node.role {
                Some(role) => format!("{role} / {}", node.task.name),
                None => node.task.name.clone(),
            };
            let style = if node.is_handler {
                ", style=dashed"
            } else {
                ""
            };
            let _ = writeln!(out, "    n{id} [label={}{style}];", quote(&label));
        }
        for pair in chain.windows(2) {
            let _ = writeln!(out, "    n{} -> n{};", pair[0], pair[1]);
        }
        out.push_str("  }\n");
    }
    for node in &resolved.nodes {
        for pred in &node.waits_on {
            let _ = writeln!(out, "  n{pred} -> n{} [color=red];", node.id);
        }
    }
    out.push_str("}\n");
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
