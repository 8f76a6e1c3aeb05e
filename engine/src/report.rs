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

/// Replaces every secret value with `***` in text meant for people or logs.
///
/// Secrets are the values of variables whose names end in `_password`,
/// `_secret`, `_token` or `_passphrase`, or that are listed in
/// `pgdeploy_secret_vars`.
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

impl Masker {
    /// Collects secrets from the inventory and extra vars.
    pub fn new(inventory: &Inventory, extra: &serde_json::Map<String, Json>) -> Self {
        let mut secrets = Vec::new();
        let mut collect = |vars: &serde_json::Map<String, Json>| {
            let listed: Vec<String> = vars
                .get("pgdeploy_secret_vars")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for (name, value) in vars {
                if is_secret_name(name) || listed.contains(name) {
                    if let Some(s) = value.as_str().filter(|s| s.len() >= 4) {
                        secrets.push(s.to_string());
                        // Each long line of a multi-line secret (a PEM key) too: output
                        // that escapes newlines (JSON) still never shows it.
                        if s.contains('\n') {
                            secrets.extend(s.lines().filter(|l| l.len() >= 16).map(str::to_string));
                        }
                    }
                }
            }
        };
        for host in &inventory.hosts {
            collect(&host.vars);
            // A secret written as a template is masked as rendered too.
            let mut rendered: serde_json::Map<String, Json> = host
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
            if let Some(listed) = host.vars.get("pgdeploy_secret_vars") {
                rendered.insert("pgdeploy_secret_vars".into(), listed.clone());
            }
            collect(&rendered);
        }
        collect(extra);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
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
