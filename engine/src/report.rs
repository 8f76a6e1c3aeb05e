//! What a run did (or, in check mode, would do): per-task results, the plan
//! printed like Terraform's (`+ create`, `~ change`, `- remove`, `! run`),
//! the recap per host, and the JSON document. Secrets are masked in all of
//! it by [`Masker`].

use std::fmt::Write as _;
use std::time::Duration;

use pgdeploy_modules::{Change, ChangeKind};
use serde::Serialize;
use serde_json::Value as Json;

use crate::inventory::Inventory;

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Nothing to change.
    Ok,
    /// Changed something (or would have, in check mode).
    Changed,
    /// Failed.
    Failed,
    /// Not run (tags, `when`, or an earlier failure).
    Skipped,
    /// Check mode: what it would do is known only after apply (its probe
    /// reads what an earlier pending change would make).
    #[serde(rename = "known_after_apply")]
    KnownAfterApply,
}

/// The result of one task on one host.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    /// The host.
    pub host: String,
    /// The task's name.
    pub task: String,
    /// Its role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether it is a handler.
    pub handler: bool,
    /// How it ended.
    pub status: TaskStatus,
    /// The changes made (or planned).
    pub changes: Vec<Change>,
    /// Why it failed, was skipped or is known only after apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a task known only after apply: the earlier task (`role /
    /// task`) whose pending change it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<String>,
    /// How long it took (after its `after:` waits).
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// When it started, from the start of the run (`started_ms`).
    #[serde(rename = "started_ms", serialize_with = "millis")]
    pub started: Duration,
    /// How long it waited for other hosts (`after:` edges) before it
    /// started (`waited_ms`).
    #[serde(rename = "waited_ms", serialize_with = "millis")]
    pub waited: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Everything one host did.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    /// The host.
    pub host: String,
    /// Why it could not be reached, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Its task results in order.
    pub results: Vec<TaskResult>,
    /// When it had connected and read its facts, from the start of the run
    /// (`connect_ms`).
    #[serde(rename = "connect_ms", serialize_with = "millis")]
    pub connect: Duration,
    /// When it was done, from the start of the run (`finished_ms`).
    #[serde(rename = "finished_ms", serialize_with = "millis")]
    pub finished: Duration,
    /// Round trips spent probing (each carries many tasks' probes).
    pub probe_round_trips: usize,
}

/// Counts per host, as in Ansible's recap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recap {
    /// Tasks with nothing to change.
    pub ok: usize,
    /// Tasks that changed something.
    pub changed: usize,
    /// Tasks that failed.
    pub failed: usize,
    /// Tasks skipped.
    pub skipped: usize,
    /// Tasks known only after apply (check mode).
    pub known_after_apply: usize,
    /// Whether the host was unreachable.
    pub unreachable: bool,
}

impl HostReport {
    /// An empty report for `host`.
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_string(),
            unreachable: None,
            results: Vec::new(),
            connect: Duration::ZERO,
            finished: Duration::ZERO,
            probe_round_trips: 0,
        }
    }
    /// A report for a host whose worker crashed.
    pub fn crashed(reason: String) -> Self {
        Self {
            unreachable: Some(reason),
            ..Self::new("?")
        }
    }
    /// The host's counts.
    pub fn recap(&self) -> Recap {
        let count = |s| self.results.iter().filter(|r| r.status == s).count();
        Recap {
            ok: count(TaskStatus::Ok),
            changed: count(TaskStatus::Changed),
            failed: count(TaskStatus::Failed),
            skipped: count(TaskStatus::Skipped),
            known_after_apply: count(TaskStatus::KnownAfterApply),
            unreachable: self.unreachable.is_some(),
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Per host, in inventory order.
    pub hosts: Vec<HostReport>,
    /// Wall time.
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
    /// Whether it was a check (nothing changed).
    pub check: bool,
    /// Whether it was stopped by Ctrl-C (tasks in progress finished, no new
    /// one started).
    pub interrupted: bool,
}

/// Totals of a plan, for its one-line summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// Hosts in the run.
    pub hosts: usize,
    /// Objects to create.
    pub create: usize,
    /// Objects to change.
    pub update: usize,
    /// Objects to remove.
    pub remove: usize,
    /// Commands and handlers to run.
    pub run: usize,
    /// Of which handlers.
    pub handlers: usize,
    /// Tasks whose changes are known only after apply (`?`).
    pub known_after_apply: usize,
}

impl PlanSummary {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.create + self.update + self.remove + self.run + self.known_after_apply == 0
    }
}

impl RunReport {
    /// Whether every host was reached and no task failed.
    pub fn success(&self) -> bool {
        !self.interrupted
            && self
                .hosts
                .iter()
                .all(|h| h.unreachable.is_none() && h.recap().failed == 0)
    }

    /// Counts changes by kind.
    pub fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary {
            hosts: self.hosts.len(),
            ..Default::default()
        };
        for result in self.hosts.iter().flat_map(|h| &h.results) {
            if result.status == TaskStatus::KnownAfterApply {
                s.known_after_apply += 1;
            }
            for change in &result.changes {
                match change.kind {
                    ChangeKind::Create => s.create += 1,
                    ChangeKind::Update => s.update += 1,
                    ChangeKind::Remove => s.remove += 1,
                    ChangeKind::Run => {
                        s.run += 1;
                        if result.handler {
                            s.handlers += 1;
                        }
                    }
                }
            }
        }
        s
    }

    /// The plan, Terraform style: per host its changes, then one summary line.
    pub fn plan_text(&self, with_diffs: bool) -> String {
        let mut out = String::new();
        for host in &self.hosts {
            if !host.in_plan() {
                continue;
            }
            let _ = writeln!(out, "{}:", host.host);
            if let Some(reason) = &host.unreachable {
                let _ = writeln!(out, "  unreachable: {reason}");
            }
            for result in &host.results {
                for change in &result.changes {
                    let states = match (&change.before, &change.after) {
                        (Some(b), Some(a)) => format!(" ({b} → {a})"),
                        _ => String::new(),
                    };
                    let verb = if result.handler && change.kind == ChangeKind::Run {
                        "handler: "
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "  {} {verb}{}{states}    [{}]",
                        change.kind.mark(),
                        change.subject,
                        task_label(result)
                    );
                    if with_diffs {
                        if let Some(diff) = &change.diff {
                            for line in diff.lines() {
                                let _ = writeln!(out, "      {line}");
                            }
                        }
                    }
                }
                if result.status == TaskStatus::Failed {
                    let _ = writeln!(
                        out,
                        "  ✗ {}: {}",
                        task_label(result),
                        result.message.as_deref().unwrap_or("failed")
                    );
                }
                if let Some(line) = result.known_after_apply_line() {
                    let _ = writeln!(out, "  ? {line}");
                }
            }
        }
        let _ = writeln!(out, "{}", self.summary_line());
        out
    }

    /// "3 hosts: 12 to create, 4 to change, 0 to remove, 2 handlers to run"
    /// or "No changes: the hosts match the playbook."
    pub fn summary_line(&self) -> String {
        let s = self.summary();
        if s.is_empty() {
            return "No changes: the hosts match the playbook.".into();
        }
        let commands = s.run - s.handlers;
        let mut line = format!(
            "{} host{}: {} to create, {} to change, {} to remove",
            s.hosts,
            if s.hosts == 1 { "" } else { "s" },
            s.create,
            s.update,
            s.remove
        );
        if commands > 0 {
            let _ = write!(
                line,
                ", {commands} command{} to run",
                if commands == 1 { "" } else { "s" }
            );
        }
        let _ = write!(
            line,
            ", {} handler{} to run",
            s.handlers,
            if s.handlers == 1 { "" } else { "s" }
        );
        if s.known_after_apply > 0 {
            let _ = write!(line, ", {} known after apply", s.known_after_apply);
        }
        line
    }

    /// The recap: one line per host, then the wall time.
    pub fn recap_text(&self) -> String {
        let mut out = String::from("\nRECAP\n");
        let width = self.hosts.iter().map(|h| h.host.len()).max().unwrap_or(4);
        for host in &self.hosts {
            let r = host.recap();
            let _ = writeln!(
                out,
                "  {:width$}  ok={:<3} changed={:<3} failed={:<3} skipped={:<3} unreachable={}",
                host.host,
                r.ok,
                r.changed,
                r.failed,
                r.skipped,
                u8::from(r.unreachable)
            );
            if r.known_after_apply > 0 {
                let _ = writeln!(
                    out,
                    "  {:width$}  known after apply={}",
                    "", r.known_after_apply
                );
            }
            if let Some(reason) = &host.unreachable {
                let _ = writeln!(out, "  {:width$}  unreachable: {reason}", "");
            }
            for failed in host
                .results
                .iter()
                .filter(|r| r.status == TaskStatus::Failed)
            {
                let _ = writeln!(
                    out,
                    "  {:width$}  failed at `{}`: {}",
                    "",
                    task_label(failed),
                    failed.message.as_deref().unwrap_or("")
                );
            }
        }
        if self.interrupted {
            let not_run = self
                .hosts
                .iter()
                .flat_map(|h| &h.results)
                .filter(|r| r.message.as_deref() == Some("not run: interrupted"))
                .count();
            let _ = writeln!(
                out,
                "INTERRUPTED: the tasks in progress finished, {not_run} tasks were not run; the counts above are what was done. Run again to converge."
            );
        }
        let verb = if self.check { "checked" } else { "applied" };
        let _ = writeln!(
            out,
            "{} in {:.1}s: {}",
            verb,
            self.elapsed.as_secs_f64(),
            self.summary_line()
        );
        out
    }

    /// The JSON document for `--output json`.
    pub fn json(&self) -> Json {
        let recap: serde_json::Map<String, Json> = self
            .hosts
            .iter()
            .map(|h| {
                (
                    h.host.clone(),
                    serde_json::to_value(h.recap()).unwrap_or(Json::Null),
                )
            })
            .collect();
        serde_json::json!({
            "check": self.check,
            "success": self.success(),
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "summary": self.summary(),
            "summary_line": self.summary_line(),
            "recap": recap,
            "hosts": self.hosts,
        })
    }
}

/// `role / task` or just `task`.
pub fn task_label(result: &TaskResult) -> String {
    role_task(result.role.as_deref(), &result.task)
}

/// `role / task`, or just `task` without a role.
pub fn role_task(role: Option<&str>, task: &str) -> String {
    match role {
        Some(role) => format!("{role} / {task}"),
        None => task.to_string(),
    }
}

impl HostReport {
    /// Whether the plan shows the host: it has changes, tasks known only
    /// after apply, failures, or it was unreachable.
    pub fn in_plan(&self) -> bool {
        self.unreachable.is_some()
            || self.results.iter().any(|r| {
                !r.changes.is_empty()
                    || matches!(r.status, TaskStatus::Failed | TaskStatus::KnownAfterApply)
            })
    }
}

impl TaskResult {
    /// For a task known only after apply: `role / task (known after apply:
    /// REASON; after `role / task`)`.
    pub fn known_after_apply_line(&self) -> Option<String> {
        if self.status != TaskStatus::KnownAfterApply {
            return None;
        }
        let mut line = format!("{} (known after apply", task_label(self));
        if let Some(reason) = &self.message {
            let _ = write!(line, ": {reason}");
        }
        if let Some(after) = &self.depends_on {
            let _ = write!(line, "; depends on `{after}`");
        }
        line.push(')');
        Some(line)
    }
}

impl TaskResult {
    /// What a `no_log` task shows: each change's kind and subject, and
    /// whether it failed; no diff, no states, no message.
    pub fn hide_output(&mut self) {
        for change in &mut self.changes {
            change.diff = None;
            change.before = None;
            change.after = None;
        }
        if self.message.is_some() {
            self.message = Some(NO_LOG.into());
        }
    }
}

/// The message of a `no_log` task.
pub const NO_LOG: &str = "output hidden (no_log)";

/// Replaces every secret value with `***` in text meant for people or logs.
///
/// Secrets are the values of variables whose names end in `_password`,
/// `_secret`, `_token` or `_passphrase`, or that are listed in
/// `pgdeploy_secret_vars`: in the inventory, the extra vars and the
/// playbook's play, role and task `vars:`. Each is also masked in every
/// form the templates can write it in (`tojson`, `to_json`, `quote`,
/// `urlencode`) and as JSON-escaped text of each form. [`Masker::mask_report`]
/// also masks the old values a diff removes (a rotated password).
#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

/// Whether a variable name marks its value as secret.
pub fn is_secret_name(name: &str) -> bool {
    ["_password", "_secret", "_token", "_passphrase"]
        .iter()
        .any(|s| name.ends_with(s))
        || name == "password"
}

/// The names `vars` lists in its `pgdeploy_secret_vars`.
fn listed_names(vars: &serde_json::Map<String, Json>) -> Vec<String> {
    vars.get("pgdeploy_secret_vars")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The secret values of `vars`: those of secret names or listed in its
/// `pgdeploy_secret_vars` (or in `listed`, from an outer scope).
fn secret_values(vars: &serde_json::Map<String, Json>, listed: &[String]) -> Vec<String> {
    let mut names = listed_names(vars);
    names.extend_from_slice(listed);
    vars.iter()
        .filter(|(name, _)| is_secret_name(name) || names.contains(name))
        .filter_map(|(_, value)| value.as_str())
        .filter(|s| s.len() >= 4)
        .map(str::to_string)
        .collect()
}

/// `secret` as the templates (`templater`) can write it, and each of those
/// as a JSON string's inside (what `--output json` shows of a line holding
/// it).
fn forms(templater: &crate::template::Templater, secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    // Each long line of a multi-line secret (a PEM key) too: output that
    // escapes newlines (JSON) still never shows it.
    if secret.contains('\n') {
        out.extend(secret.lines().filter(|l| l.len() >= 16).map(str::to_string));
    }
    let vars = crate::template::value(&serde_json::json!({ "s": secret }));
    for filter in ["tojson", "to_json", "quote", "urlencode"] {
        if let Ok(text) = templater.render(&format!("{{{{ s | {filter} }}}}"), &vars) {
            // A JSON string without its quotes; a shell word as written.
            let inner = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(&text);
            out.push(inner.to_string());
        }
    }
    let escaped: Vec<String> = out
        .iter()
        .filter_map(|f| serde_json::to_string(f).ok())
        .map(|j| j[1..j.len() - 1].to_string())
        .collect();
    out.extend(escaped);
    out.retain(|f| f.len() >= 4);
    out
}

/// `state` (a change's before or after) with the hash after each `sha256`
/// replaced by `***`.
fn mask_hashes(state: &str) -> String {
    let mut out = Vec::new();
    let mut after_sha = false;
    for word in state.split(' ') {
        out.push(if after_sha { "***" } else { word });
        after_sha = word == "sha256";
    }
    out.join(" ")
}

impl Masker {
    /// Collects secrets from the inventory and extra vars.
    pub fn new(inventory: &Inventory, extra: &serde_json::Map<String, Json>) -> Self {
        let mut secrets = Vec::new();
        for host in &inventory.hosts {
            secrets.extend(secret_values(&host.vars, &[]));
            // A secret written as a template is masked as rendered too.
            let listed = listed_names(&host.vars);
            let rendered: serde_json::Map<String, Json> = host
                .vars
                .iter()
                .filter(|(_, v)| v.as_str().is_some_and(|s| s.contains("{{")))
                .filter_map(|(name, _)| {
                    let value = crate::scope::host_var(
                        inventory,
                        &serde_json::Map::new(),
                        extra,
                        &host.name,
                        name,
                    )?;
                    Some((name.clone(), value))
                })
                .collect();
            secrets.extend(secret_values(&rendered, &listed));
        }
        secrets.extend(secret_values(extra, &[]));
        Self::default().with(secrets)
    }

    /// Adds the secrets written in the playbook's play, role-reference,
    /// role-default and task `vars:` (literal values: a template there
    /// renders another variable's value, masked as that one).
    pub fn with_playbook(self, playbook: &crate::playbook::Playbook) -> Self {
        let mut secrets = Vec::new();
        let mut add = |vars: &serde_json::Map<String, Json>| {
            secrets.extend(
                secret_values(vars, &[])
                    .into_iter()
                    .filter(|s| !s.contains("{{")),
            );
        };
        for play in &playbook.plays {
            add(&play.vars);
            play.roles.iter().for_each(|r| add(&r.vars));
            play.tasks
                .iter()
                .chain(&play.handlers)
                .for_each(|t| add(&t.vars));
        }
        for role in playbook.roles.values() {
            add(&role.defaults);
            role.dependencies.iter().for_each(|r| add(&r.vars));
            role.tasks
                .iter()
                .chain(&role.handlers)
                .for_each(|t| add(&t.vars));
        }
        self.with(secrets)
    }

    /// This masker and the `added` secret values in all their forms,
    /// longest first (so a secret inside another is not masked first).
    fn with(mut self, added: Vec<String>) -> Self {
        let templater = crate::template::Templater::new();
        self.secrets
            .extend(added.iter().flat_map(|s| forms(&templater, s)));
        self.secrets
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.secrets.dedup();
        self
    }

    /// Whether `text` holds a secret.
    fn holds_secret(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.as_str()))
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// The first and last secret of `line`: the text before the first and
    /// after the last, when it holds one.
    fn around<'a>(&self, line: &'a str) -> Option<(&'a str, &'a str)> {
        let spans = self.secrets.iter().flat_map(|s| {
            line.match_indices(s.as_str())
                .map(|(i, m)| (i, i + m.len()))
        });
        let (start, end) = spans.fold(None, |acc: Option<(usize, usize)>, (i, j)| match acc {
            None => Some((i, j)),
            Some((a, b)) => Some((a.min(i), b.max(j))),
        })?;
        Some((&line[..start], &line[end..]))
    }

    /// `old` with its value masked when it has the shape of a line of `new`
    /// that holds a secret: the same text before and after it. A rotated
    /// password's old value is masked so; the masker knows only the new one.
    fn mask_old_line(&self, old: &str, new: &[(&str, &str)]) -> String {
        for (before, after) in new {
            if old.len() > before.len() + after.len()
                && old.starts_with(before)
                && old.ends_with(after)
            {
                return format!("{before}***{after}");
            }
        }
        old.to_string()
    }

    /// A unified diff with the old lines masked that stand where the new
    /// side holds a secret ([`Masker::mask_old_line`]); the new side is
    /// masked by [`Masker::mask`] at output.
    pub fn mask_diff(&self, diff: &str) -> String {
        let shapes: Vec<(&str, &str)> = diff
            .lines()
            .filter(|l| !l.starts_with("+++") && (l.starts_with('+') || l.starts_with(' ')))
            .filter_map(|l| self.around(&l[1..]))
            .collect();
        if shapes.is_empty() {
            return diff.to_string();
        }
        let mut out = String::with_capacity(diff.len());
        for line in diff.split_inclusive('\n') {
            match line.strip_prefix('-') {
                Some(old) if !line.starts_with("---") => {
                    let (body, eol) = match old.strip_suffix('\n') {
                        Some(b) => (b, "\n"),
                        None => (old, ""),
                    };
                    out.push('-');
                    out.push_str(&self.mask_old_line(body, &shapes));
                    out.push_str(eol);
                }
                _ => out.push_str(line),
            }
        }
        out
    }

    /// `report` with the old side of every change masked where the new side
    /// holds a secret: diffs line by line, and a one-line `before` shaped
    /// like its `after`. Text and JSON output are made from it.
    pub fn mask_report(&self, mut report: RunReport) -> RunReport {
        for host in &mut report.hosts {
            for result in &mut host.results {
                for change in &mut result.changes {
                    if let Some(diff) = &change.diff {
                        if self.holds_secret(diff) {
                            // A content hash of a file holding a secret is
                            // a test of guesses at it.
                            change.before = change.before.as_deref().map(mask_hashes);
                            change.after = change.after.as_deref().map(mask_hashes);
                        }
                        change.diff = Some(self.mask_diff(diff));
                    }
                    if let (Some(before), Some(after)) = (&change.before, &change.after) {
                        if let Some(shape) = self.around(after) {
                            change.before = Some(self.mask_old_line(before, &[shape]));
                        }
                    }
                }
            }
        }
        report
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A result of task `t` of role `r` on node1 (the markdown tests use it too).
    pub(crate) fn result(status: TaskStatus, changes: Vec<Change>, handler: bool) -> TaskResult {
        TaskResult {
            host: "node1".into(),
            task: "t".into(),
            role: Some("r".into()),
            handler,
            status,
            changes,
            message: None,
            depends_on: None,
            duration: Duration::ZERO,
            started: Duration::ZERO,
            waited: Duration::ZERO,
        }
    }

    fn report(results: Vec<TaskResult>) -> RunReport {
        RunReport {
            interrupted: false,
            hosts: vec![HostReport {
                results,
                ..HostReport::new("node1")
            }],
            elapsed: Duration::ZERO,
            check: true,
        }
    }

    #[test]
    fn plan_marks_and_summary_line() {
        let r = report(vec![
            result(
                TaskStatus::Changed,
                vec![Change::new(ChangeKind::Create, "package haproxy")],
                false,
            ),
            result(
                TaskStatus::Changed,
                vec![
                    Change::new(ChangeKind::Update, "file /etc/x").diff("-a\n+b\n"),
                    Change::new(ChangeKind::Remove, "file /tmp/y"),
                ],
                false,
            ),
            result(
                TaskStatus::Changed,
                vec![Change::new(ChangeKind::Run, "service haproxy reloaded")],
                true,
            ),
            result(TaskStatus::Ok, vec![], false),
        ]);
        let text = r.plan_text(true);
        assert!(text.contains("  + package haproxy"), "{text}");
        assert!(text.contains("  ~ file /etc/x"), "{text}");
        assert!(text.contains("      +b"), "{text}");
        assert!(text.contains("  - file /tmp/y"), "{text}");
        assert!(
            text.contains("  ! handler: service haproxy reloaded"),
            "{text}"
        );
        assert_eq!(
            r.summary_line(),
            "1 host: 1 to create, 1 to change, 1 to remove, 1 handler to run"
        );
    }

    #[test]
    fn known_after_apply_is_shown_and_counted_as_pending() {
        let mut unknown = result(TaskStatus::KnownAfterApply, vec![], false);
        unknown.message = Some("/etc/ufw/sysctl.conf does not exist".into());
        unknown.depends_on = Some("r / ufw package".into());
        let r = report(vec![unknown]);
        let text = r.plan_text(false);
        assert!(
            text.contains("  ? r / t (known after apply: /etc/ufw/sysctl.conf does not exist; depends on `r / ufw package`)"),
            "{text}"
        );
        assert!(
            !r.summary().is_empty(),
            "pending: plan --detailed-exitcode gives 2"
        );
        assert_eq!(
            r.summary_line(),
            "1 host: 0 to create, 0 to change, 0 to remove, 0 handlers to run, 1 known after apply"
        );
        assert!(r.success(), "not a failure");
        assert_eq!(r.hosts[0].recap().known_after_apply, 1);
    }

    #[test]
    fn nothing_to_do_says_so() {
        let r = report(vec![result(TaskStatus::Ok, vec![], false)]);
        assert_eq!(
            r.summary_line(),
            "No changes: the hosts match the playbook."
        );
        assert!(r.summary().is_empty());
    }

    #[test]
    fn secrets_are_masked() {
        let m = Masker {
            secrets: vec!["s3cr3t-pass".into()],
        };
        assert_eq!(m.mask("password=s3cr3t-pass;"), "password=***;");
        assert!(is_secret_name("postgres_superuser_password"));
        assert!(!is_secret_name("ansible_ssh_private_key_file"));
    }

    fn masker_of(secret: &str) -> Masker {
        let inventory = Inventory::parse(
            "all:\n  hosts:\n    a: {}\n",
            std::path::Path::new("inv.yaml"),
        )
        .expect("inventory");
        let mut extra = serde_json::Map::new();
        extra.insert("postgres_superuser_password".into(), secret.into());
        Masker::new(&inventory, &extra)
    }

    /// The diff of a rotation: the old value is not a secret the masker
    /// knows, and is masked for standing where the new one stands.
    #[test]
    fn a_rotated_passwords_old_value_is_masked_in_text_and_json() {
        let m = masker_of("N3w-Secret-9");
        let diff = "--- /etc/patroni/config.yml\n+++ /etc/patroni/config.yml\n@@ -1,3 +1,3 @@\n superuser:\n-  password: \"0ld-Secret-1\"\n+  password: \"N3w-Secret-9\"\n-  max_connections: 100\n+  max_connections: 200\n";
        let change = Change {
            diff: Some(diff.into()),
            ..Change::new(ChangeKind::Update, "file /etc/patroni/config.yml")
                .states("content sha256 0a1b2c3d4e5f", "content sha256 9f8e7d6c5b4a")
        };
        let r = m.mask_report(report(vec![result(
            TaskStatus::Changed,
            vec![change],
            false,
        )]));
        let text = m.mask(&r.plan_text(true));
        let json = m.mask(&serde_json::to_string(&r.json()).expect("json"));
        for out in [&text, &json] {
            assert!(!out.contains("0ld-Secret-1"), "{out}");
            assert!(!out.contains("N3w-Secret-9"), "{out}");
            assert!(
                out.contains("max_connections: 100"),
                "other lines stay: {out}"
            );
        }
        assert!(text.contains("-  password: \"***\""), "{text}");
        assert!(
            !text.contains("0a1b2c3d4e5f"),
            "no hash of the content: {text}"
        );
        assert!(text.contains("+  password: \"***\""), "{text}");
        // A one-line state too.
        let mut change =
            Change::new(ChangeKind::Update, "line").states("pw=0ld-Secret-1", "pw=N3w-Secret-9");
        change.diff = None;
        let r = m.mask_report(report(vec![result(
            TaskStatus::Changed,
            vec![change],
            false,
        )]));
        assert!(!m.mask(&r.plan_text(true)).contains("0ld-Secret-1"));
    }

    /// The forms the templates write a secret in, and those forms inside
    /// JSON output.
    #[test]
    fn a_secret_is_masked_in_every_escaped_form() {
        let secret = "Ab'c<d>e&f \"g\\h/i";
        let m = masker_of(secret);
        let t = crate::template::Templater::new();
        let vars = crate::template::value(&serde_json::json!({ "s": secret }));
        for filter in ["tojson", "to_json", "quote", "urlencode"] {
            let written = t
                .render(&format!("x={{{{ s | {filter} }}}};"), &vars)
                .expect("render");
            let masked = m.mask(&written);
            assert!(
                !masked.contains("c<d") && !masked.contains("u003c") && !masked.contains("%3C"),
                "{filter}: {written} -> {masked}"
            );
            let json = serde_json::to_string(&written).expect("json");
            let masked = m.mask(&json);
            assert!(
                masked.contains("***"),
                "{filter} in JSON: {json} -> {masked}"
            );
            assert!(
                !masked.contains("Ab"),
                "{filter} in JSON: {json} -> {masked}"
            );
        }
    }

    #[test]
    fn play_and_task_vars_secrets_are_masked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("site.yaml");
        std::fs::write(
            &path,
            "- hosts: all\n  vars: {app_password: Pl4y-Secret}\n  tasks:\n    - name: t\n      command: {cmd: 'true'}\n      vars: {api_token: T4sk-Secret, note: '{{ app_password }}'}\n",
        )
        .expect("write");
        let playbook = crate::playbook::Playbook::load(&path).expect("playbook");
        let m = Masker::default().with_playbook(&playbook);
        assert_eq!(m.mask("a=Pl4y-Secret b=T4sk-Secret"), "a=*** b=***");
    }

    #[test]
    fn a_secret_written_as_a_template_is_masked_as_rendered() {
        let inventory = Inventory::parse(
            "all:\n  vars: {base: s3cr3t-base, db_password: '{{ base }}-x'}\n  hosts:\n    a: {}\n",
            std::path::Path::new("inv.yaml"),
        )
        .expect("inventory");
        let m = Masker::new(&inventory, &serde_json::Map::new());
        assert_eq!(m.mask("pw=s3cr3t-base-x;"), "pw=***;");
    }

    #[test]
    fn every_long_line_of_a_multi_line_secret_is_masked() {
        let inventory = Inventory {
            path: "inventory.yaml".into(),
            hosts: Vec::new(),
            groups: Default::default(),
        };
        let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\nAwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
        let mut extra = serde_json::Map::new();
        extra.insert("tls_ca_key_secret".into(), key.into());
        let m = Masker::new(&inventory, &extra);
        assert_eq!(m.mask(key), "***");
        let escaped = serde_json::to_string(key).expect("json");
        let masked = m.mask(&escaped);
        assert!(
            !masked.contains("MIGHAgEAMBMGByqGSM49AgEGCCqGSM49"),
            "{masked}"
        );
        assert!(!masked.contains("PRIVATE KEY"), "{masked}");
    }

    /// The errors of `doc` against `docs/schema/NAME`.
    fn schema_errors(name: &str, doc: &Json) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/schema")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("the schema file");
        let schema: Json = serde_json::from_str(&text).expect("the schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
        validator
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// A report using every field, the optional ones included.
    fn full_report() -> RunReport {
        let mut failed = result(TaskStatus::Failed, vec![], false);
        failed.message = Some("exit 1".into());
        failed.role = None;
        let mut unknown = result(TaskStatus::KnownAfterApply, vec![], false);
        unknown.message = Some("/etc/x does not exist".into());
        unknown.depends_on = Some("r / package x".into());
        let mut update = Change::new(ChangeKind::Update, "file /etc/x").diff("-a\n+b\n");
        update.before = Some("0644".into());
        update.after = Some("0600".into());
        let mut r = report(vec![
            result(
                TaskStatus::Changed,
                vec![update, Change::new(ChangeKind::Create, "package x")],
                false,
            ),
            result(TaskStatus::Skipped, vec![], true),
            failed,
            unknown,
        ]);
        let mut down = HostReport::new("node2");
        down.unreachable = Some("connection refused".into());
        r.hosts.push(down);
        r
    }

    #[test]
    fn the_json_document_matches_its_schema_and_a_renamed_field_does_not() {
        let doc = full_report().json();
        let errors = schema_errors("run-report.schema.json", &doc);
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
        let doc = report(vec![]).json();
        assert!(schema_errors("run-report.schema.json", &doc).is_empty());

        // A field renamed anywhere (top level, a host, a task, a change) is
        // caught: every field is required or closed by additionalProperties.
        let renamed = |pointer: &str, from: &str, to: &str| {
            let mut doc = full_report().json();
            let object = doc
                .pointer_mut(pointer)
                .and_then(Json::as_object_mut)
                .expect("an object");
            let value = object.remove(from).expect("the field");
            object.insert(to.into(), value);
            schema_errors("run-report.schema.json", &doc)
        };
        for (pointer, from) in [
            ("", "elapsed_ms"),
            ("/summary", "handlers"),
            ("/recap/node1", "changed"),
            ("/hosts/0", "probe_round_trips"),
            ("/hosts/1", "unreachable"),
            ("/hosts/0/results/0", "waited_ms"),
            ("/hosts/0/results/0", "role"),
            ("/hosts/0/results/3", "depends_on"),
            ("/summary", "known_after_apply"),
            ("/hosts/0/results/0/changes/0", "diff"),
        ] {
            assert!(
                !renamed(pointer, from, "renamed").is_empty(),
                "{pointer}/{from} renamed still validates"
            );
        }
    }
}
