//! A plan as Markdown, for a pull-request comment (`plan --output
//! markdown`): the summary line, then per host its `+ ~ - !` changes with
//! their diffs in ```` ```diff ```` blocks, failures and unreachable hosts.
//! Secrets are masked with the same [`Masker`] as the human output. What
//! comes from the hosts or the playbook (subjects, task names, messages)
//! is put in code spans or fenced blocks, so no text of theirs is read as
//! Markdown.

use std::fmt::Write as _;

use pgdeploy_modules::{Change, ChangeKind};

use crate::live::LiveSection;
use crate::report::{task_label, HostReport, Masker, RunReport, TaskResult, TaskStatus};

/// The plan of `report` as Markdown, masked.
pub fn plan(report: &RunReport, masker: &Masker) -> String {
    let mut out = String::from("### pgdeploy plan\n\n");
    let _ = writeln!(out, "**{}**\n", report.summary_line());
    if report.interrupted {
        out.push_str("> Interrupted: the plan is incomplete.\n\n");
    }
    for host in &report.hosts {
        host_section(&mut out, host);
    }
    masker.mask(&out)
}

/// A live section (`LiveSection`) as Markdown, masked; nothing when it has
/// nothing to say.
pub fn live_section(section: &LiveSection, masker: &Masker) -> String {
    let text = section.text();
    if text.is_empty() {
        return String::new();
    }
    let mut out = format!("#### {}\n\n", plain(&section.subject));
    fenced(&mut out, "", "text", &text);
    out.push('\n');
    masker.mask(&out)
}

/// One host's heading and its changes; nothing for a host with nothing to
/// change that was reached and failed nothing.
fn host_section(out: &mut String, host: &HostReport) {
    if !host.in_plan() {
        return;
    }
    let _ = writeln!(out, "#### {}\n", code(&host.host));
    if let Some(reason) = &host.unreachable {
        let _ = writeln!(out, "- **unreachable**: {}", code(reason));
    }
    for result in &host.results {
        for change in &result.changes {
            change_item(out, result, change);
        }
        if result.status == TaskStatus::Failed {
            let _ = writeln!(out, "- ✗ **failed**: {}", code(&task_label(result)));
            let message = result.message.as_deref().unwrap_or("failed");
            out.push('\n');
            fenced(out, "  ", "text", message);
        }
        if let Some(line) = result.known_after_apply_line() {
            let _ = writeln!(out, "- {}", code(&format!("? {line}")));
        }
    }
    out.push('\n');
}

/// `- `+ subject (before → after)` — `role / task``, then its diff.
fn change_item(out: &mut String, result: &TaskResult, change: &Change) {
    let verb = if result.handler && change.kind == ChangeKind::Run {
        "handler: "
    } else {
        ""
    };
    let states = match (&change.before, &change.after) {
        (Some(b), Some(a)) => format!(" ({b} → {a})"),
        _ => String::new(),
    };
    let line = format!("{} {verb}{}{states}", change.kind.mark(), change.subject);
    let _ = writeln!(out, "- {} — {}", code(&line), code(&task_label(result)));
    if let Some(diff) = &change.diff {
        out.push('\n');
        fenced(out, "  ", "diff", diff);
    }
}

/// `text` in a fenced block indented by `indent` (inside a list item), the
/// fence longer than any run of backticks in it.
fn fenced(out: &mut String, indent: &str, lang: &str, text: &str) {
    let fence = "`".repeat(longest_backtick_run(text).max(2) + 1);
    let _ = writeln!(out, "{indent}{fence}{lang}");
    for line in text.lines() {
        let _ = writeln!(out, "{indent}{line}");
    }
    let _ = writeln!(out, "{indent}{fence}");
}

/// `text` as an inline code span that no backtick in it can close early.
fn code(text: &str) -> String {
    let text = text.replace(['\n', '\r'], " ");
    let ticks = "`".repeat(longest_backtick_run(&text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{text}{pad}{ticks}")
}

/// `text` with Markdown's punctuation escaped, for a heading.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\`*_[]<>#|!".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::inventory::Inventory;
    use crate::report::tests::result;

    fn report(hosts: Vec<HostReport>) -> RunReport {
        RunReport {
            hosts,
            elapsed: Duration::ZERO,
            check: true,
            interrupted: false,
        }
    }

    fn host(name: &str, results: Vec<TaskResult>) -> HostReport {
        HostReport {
            results,
            ..HostReport::new(name)
        }
    }

    /// A masker whose one secret is `Hunter2-secret`.
    fn masker() -> Masker {
        let inventory = Inventory::parse("all:\n  hosts:\n    node1: {}\n", Path::new("inv.yaml"))
            .expect("inventory");
        let mut extra = serde_json::Map::new();
        extra.insert(
            "postgres_superuser_password".into(),
            "Hunter2-secret".into(),
        );
        Masker::new(&inventory, &extra)
    }

    #[test]
    fn the_plan_has_the_summary_then_each_changed_host_with_marks_and_diffs() {
        let diff =
            "--- before\n+++ after\n@@ -1 +1 @@\n-password 'Hunter2-secret'\n+password '***'\n";
        let r = report(vec![
            host(
                "node1",
                vec![
                    result(
                        TaskStatus::Changed,
                        vec![Change::new(ChangeKind::Create, "package haproxy")],
                        false,
                    ),
                    result(
                        TaskStatus::Changed,
                        vec![
                            Change::new(ChangeKind::Update, "file /etc/pgpass").diff(diff),
                            Change::new(ChangeKind::Remove, "file /tmp/y"),
                        ],
                        false,
                    ),
                    result(
                        TaskStatus::Changed,
                        vec![Change::new(ChangeKind::Run, "service haproxy reloaded")],
                        true,
                    ),
                ],
            ),
            host("node2", vec![result(TaskStatus::Ok, vec![], false)]),
        ]);
        let md = plan(&r, &masker());
        let expected = "### pgdeploy plan\n\n\
            **2 hosts: 1 to create, 1 to change, 1 to remove, 1 handler to run**\n\n\
            #### `node1`\n\n\
            - `+ package haproxy` — `r / t`\n\
            - `~ file /etc/pgpass` — `r / t`\n\n  \
            ```diff\n  --- before\n  +++ after\n  @@ -1 +1 @@\n  -password '***'\n  +password '***'\n  ```\n\
            - `- file /tmp/y` — `r / t`\n\
            - `! handler: service haproxy reloaded` — `r / t`\n\n";
        assert_eq!(md, expected);
        assert!(!md.contains("Hunter2"), "{md}");
        assert!(
            !md.contains("node2"),
            "an unchanged host has no section: {md}"
        );
    }

    #[test]
    fn nothing_to_change_is_the_summary_alone() {
        let r = report(vec![host(
            "node1",
            vec![result(TaskStatus::Ok, vec![], false)],
        )]);
        assert_eq!(
            plan(&r, &masker()),
            "### pgdeploy plan\n\n**No changes: the hosts match the playbook.**\n\n"
        );
    }

    #[test]
    fn failures_and_unreachable_hosts_are_shown_and_masked() {
        let mut failed = result(TaskStatus::Failed, vec![], false);
        failed.message = Some("exit 1: role x password Hunter2-secret\nrejected".into());
        let mut down = HostReport::new("node2");
        down.unreachable = Some("connection refused".into());
        let md = plan(&report(vec![host("node1", vec![failed]), down]), &masker());
        assert!(
            md.contains("- ✗ **failed**: `r / t`\n\n  ```text\n  exit 1: role x password ***\n  rejected\n  ```\n"),
            "{md}"
        );
        assert!(
            md.contains("#### `node2`\n\n- **unreachable**: `connection refused`\n"),
            "{md}"
        );
    }

    #[test]
    fn a_task_known_after_apply_is_listed_with_its_reason() {
        let mut unknown = result(TaskStatus::KnownAfterApply, vec![], false);
        unknown.message = Some("/etc/x does not exist".into());
        unknown.depends_on = Some("r / package x".into());
        let md = plan(&report(vec![host("node1", vec![unknown])]), &masker());
        assert!(md.contains("1 known after apply**"), "{md}");
        assert!(
            md.contains("#### `node1`\n\n- ``? r / t (known after apply: /etc/x does not exist; depends on `r / package x`)``\n"),
            "{md}"
        );
    }

    #[test]
    fn backticks_in_a_subject_or_a_diff_cannot_break_out() {
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
        let mut out = String::new();
        fenced(&mut out, "", "diff", "+```\n+x\n");
        assert_eq!(out, "````diff\n+```\n+x\n````\n");
        assert_eq!(plain("a_b*c"), "a\\_b\\*c");
    }

    #[test]
    fn a_live_section_is_a_text_block_under_its_subject() {
        let section = LiveSection {
            title: "PostgreSQL parameters (live cluster)".into(),
            subject: "PostgreSQL parameters".into(),
            lines: Ok(vec!["~ max_connections 100 → 200 (restart)".into()]),
        };
        assert_eq!(
            live_section(&section, &masker()),
            "#### PostgreSQL parameters\n\n```text\nPostgreSQL parameters (live cluster):\n  ~ max_connections 100 → 200 (restart)\n```\n\n"
        );
        let quiet = LiveSection {
            lines: Ok(vec![]),
            ..section
        };
        assert_eq!(live_section(&quiet, &masker()), "");
    }
}
