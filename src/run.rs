//! The scheduler: every host walks its own chain of tasks at its own pace,
//! over one SSH connection, waiting for other hosts only on `after:` edges.
//!
//! For each task: render its parameters, build the module's resource, probe
//! (many tasks' probes go in one round trip, reused until something on the
//! host changes), plan, and, unless in check mode, run exactly the plan's
//! actions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::Value;
use pgdeploy_modules::{Action, Change, ModuleError, Plan, ProbeOutput, Resource};
use pgdeploy_transport::{ConnectOptions, ExecOutput, Session};
use serde_json::{json, Map, Value as Json};
use tokio::sync::{watch, Semaphore};

use crate::facts;
use crate::inventory::{Inventory, Vars};
use crate::report::{HostReport, RunReport, TaskResult, TaskStatus};
use crate::resolve::{Resolved, TaskNode};
use crate::scope::{self, HostValues};
use crate::template::Templater;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Change nothing; report what would change.
    pub check: bool,
    /// Hosts worked on at once (all when `None`).
    pub forks: Option<usize>,
    /// `-e` vars, which beat everything.
    pub extra_vars: Vars,
    /// Record unknown host keys instead of refusing them.
    pub accept_new_host_keys: bool,
    /// SSH connect timeout.
    pub connect_timeout: Option<Duration>,
}

/// Receives progress as the run goes.
pub trait Observer: Send + Sync {
    /// A host starts (`total` tasks to go through).
    fn host_started(&self, host: &str, total: usize);
    /// A task starts on a host.
    fn task_started(&self, host: &str, index: usize, name: &str);
    /// A task ended.
    fn task_finished(&self, result: &TaskResult);
    /// A host is done.
    fn host_finished(&self, host: &HostReport);
}

/// Everything a run needs, shared by all hosts.
pub struct Run {
    /// The inventory.
    pub inventory: Inventory,
    /// Nodes, chains and DAG.
    pub resolved: Resolved,
    /// Templating.
    pub templater: Templater,
    /// Options.
    pub options: RunOptions,
    /// Identifies this run on the hosts.
    pub run_id: String,
    /// `groups` and `hostvars` for templates.
    globals: Value,
    done: Vec<watch::Sender<Option<bool>>>,
    /// Raised by [`Run::interrupt`]: no new task starts.
    interrupted: watch::Sender<bool>,
}

impl Run {
    /// Prepares a run.
    pub fn new(inventory: Inventory, resolved: Resolved, options: RunOptions) -> Run {
        let globals = scope::globals(&inventory);
        let done = resolved
            .nodes
            .iter()
            .map(|_| watch::channel(None).0)
            .collect();
        let run_id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        Run {
            inventory,
            resolved,
            templater: Templater::new(),
            options,
            run_id,
            globals,
            done,
            interrupted: watch::channel(false).0,
        }
    }

    /// Stops the run cleanly (Ctrl-C): tasks in progress finish, no new
    /// task starts, hosts waiting on others stop waiting; the report says
    /// what was done and what was not run.
    pub fn interrupt(&self) {
        self.interrupted.send_replace(true);
    }

    fn is_interrupted(&self) -> bool {
        *self.interrupted.borrow()
    }

    /// Runs every host's chain; returns when all hosts are done.
    pub async fn execute(self: Arc<Self>, observer: Arc<dyn Observer>) -> RunReport {
        let started = Instant::now();
        let forks = Arc::new(Semaphore::new(
            self.options.forks.unwrap_or(usize::MAX >> 4).max(1),
        ));
        let mut handles = Vec::new();
        for (host, chain) in &self.resolved.chains {
            let run = self.clone();
            let observer = observer.clone();
            let forks = forks.clone();
            let host = host.clone();
            let chain = chain.clone();
            handles.push(tokio::spawn(async move {
                run.host(&host, &chain, forks, observer).await
            }));
        }
        let mut hosts = Vec::new();
        for handle in handles {
            match handle.await {
                Ok(report) => hosts.push(report),
                Err(e) => hosts.push(HostReport::crashed(format!("internal error: {e}"))),
            }
        }
        RunReport {
            hosts,
            elapsed: started.elapsed(),
            check: self.options.check,
            interrupted: self.is_interrupted(),
        }
    }

    async fn host(
        &self,
        name: &str,
        chain: &[usize],
        forks: Arc<Semaphore>,
        observer: Arc<dyn Observer>,
    ) -> HostReport {
        observer.host_started(name, chain.len());
        let mut report = HostReport::new(name);
        let mut permit = forks.clone().acquire_owned().await.ok();
        let session = match self.connect(name).await {
            Ok(s) => s,
            Err(reason) => {
                report.unreachable = Some(reason.clone());
                for id in chain {
                    self.finish(*id, false);
                }
                observer.host_finished(&report);
                return report;
            }
        };
        let mut state = HostState::default();
        match session.exec(facts::SCRIPT, false, None).await {
            Ok(out) => state.facts = facts::parse(&out.stdout_str()),
            Err(e) => {
                report.unreachable = Some(format!("reading facts failed: {e}"));
                chain.iter().for_each(|id| self.finish(*id, false));
                let _ = session.close().await;
                observer.host_finished(&report);
                return report;
            }
        }
        let mut stopped: Option<String> = None;
        for (position, id) in chain.iter().enumerate() {
            let node = &self.resolved.nodes[*id];
            if stopped.is_none() && self.is_interrupted() {
                stopped = Some("not run: interrupted".into());
            }
            if let Some(reason) = &stopped {
                self.finish(*id, false);
                if node.selected && !node.is_handler {
                    report
                        .results
                        .push(TaskResult::skipped(node, reason.clone()));
                }
                continue;
            }
            if !node.waits_on.is_empty() {
                permit = None;
                let mut interrupted = self.interrupted.subscribe();
                let failed = tokio::select! {
                    failed = self.wait_for(&node.waits_on) => failed,
                    _ = interrupted.wait_for(|i| *i) => Some(node.waits_on[0]),
                };
                permit = forks.clone().acquire_owned().await.ok().or(permit);
                state.probes.clear();
                if let Some(pred) = failed {
                    let reason = format!("not run: {} did not succeed", self.resolved.label(pred));
                    stopped = Some(reason.clone());
                    self.finish(*id, false);
                    report.results.push(TaskResult::skipped(node, reason));
                    continue;
                }
            }
            if node.is_handler && !state.notified.contains(id) {
                self.finish(*id, true);
                continue;
            }
            observer.task_started(name, position, &node.task.name);
            let started = Instant::now();
            let mut result = self
                .task(node, &chain[position..], &session, &mut state)
                .await;
            result.duration = started.elapsed();
            observer.task_finished(&result);
            let ok = result.status != TaskStatus::Failed || node.task.ignore_errors;
            if result.status == TaskStatus::Changed {
                state.notified.extend(node.notifies.iter().copied());
            }
            if !ok {
                stopped = Some(format!("not run: `{}` failed", node.task.name));
            }
            self.finish(*id, ok);
            report.results.push(result);
        }
        drop(permit);
        let _ = session.close().await;
        observer.host_finished(&report);
        report
    }

    fn finish(&self, id: usize, ok: bool) {
        self.done[id].send_replace(Some(ok));
    }

    /// Waits for nodes on other hosts; returns the first that failed.
    async fn wait_for(&self, ids: &[usize]) -> Option<usize> {
        for id in ids {
            let mut rx = self.done[*id].subscribe();
            let outcome = match rx.wait_for(Option::is_some).await {
                Ok(v) => *v,
                Err(_) => Some(false),
            };
            if outcome != Some(true) {
                return Some(*id);
            }
        }
        None
    }

    async fn connect(&self, name: &str) -> Result<Session, String> {
        let host = self
            .inventory
            .host(name)
            .ok_or_else(|| format!("host {name} is not in the inventory"))?;
        let mut options = host.connection.options(&ConnectOptions {
            accept_new_host_keys: self.options.accept_new_host_keys,
            ..ConnectOptions::default()
        });
        if let Some(timeout) = self.options.connect_timeout {
            options.connect_timeout = timeout;
        }
        let target = host.connection.target(name);
        Session::connect(&target, &options)
            .await
            .map_err(|e| e.to_string())
    }

    /// The variables a node sees.
    fn vars_for(&self, node: &TaskNode, state: &HostState, item: Option<&Json>) -> Value {
        let item = item.map(crate::template::value);
        scope::node_vars(
            &self.inventory,
            &self.resolved,
            &self.globals,
            &self.options.extra_vars,
            node,
            HostValues {
                facts: crate::template::value(&state.facts),
                registered: crate::template::value(&state.registered),
                item: item.as_ref(),
            },
        )
    }

    async fn task(
        &self,
        node: &TaskNode,
        rest: &[usize],
        session: &Session,
        state: &mut HostState,
    ) -> TaskResult {
        if !node.selected {
            return TaskResult::skipped(node, "tags".into());
        }
        let vars = self.vars_for(node, state, None);
        for (condition, _) in &node.task.when {
            match self.templater.condition(condition, &vars) {
                Ok(true) => {}
                Ok(false) => {
                    self.register(
                        node,
                        state,
                        json!({"changed": false, "skipped": true, "failed": false}),
                    );
                    return TaskResult::skipped(node, format!("when: {condition}"));
                }
                Err(e) => return TaskResult::failed(node, format!("`when: {condition}`: {e}")),
            }
        }
        let items = match self.items(node, &vars) {
            Ok(items) => items,
            Err(e) => return TaskResult::failed(node, e),
        };
        let mut changes: Vec<Change> = Vec::new();
        let mut per_item = Vec::new();
        for item in &items {
            let item_vars = if item.is_some() {
                self.vars_for(node, state, item.as_ref())
            } else {
                vars.clone()
            };
            let resource = match self.resource(node, &item_vars) {
                Ok(r) => r,
                Err(e) => return TaskResult::failed(node, e),
            };
            let script = resource.probe();
            if !state
                .probes
                .contains_key(&(script.clone(), node.become_root))
            {
                if let Err(e) = self.probe_batch(node, rest, session, state, &script).await {
                    return TaskResult::failed(node, e);
                }
            }
            let probe = state
                .probes
                .get(&(script, node.become_root))
                .cloned()
                .unwrap_or_default();
            let plan = match resource.plan(&probe) {
                Ok(p) => p,
                Err(e) => return TaskResult::failed(node, format!("{e}")),
            };
            let outcome = if self.options.check {
                ItemOutcome {
                    rc: 0,
                    stdout: String::new(),
                    stderr: String::new(),
                    ran: false,
                }
            } else {
                match self.apply(&plan, node, session, state).await {
                    Ok(o) => o,
                    Err(message) => {
                        changes.extend(plan.changes);
                        let mut failed = TaskResult::failed(node, message);
                        failed.changes = changes;
                        return failed;
                    }
                }
            };
            let (rc, stdout, stderr) = if outcome.ran {
                (outcome.rc, outcome.stdout, outcome.stderr)
            } else {
                (probe.status, probe.stdout.clone(), probe.stderr.clone())
            };
            per_item.push(json!({
                "changed": !plan.changes.is_empty(),
                "rc": rc,
                "stdout": stdout.trim_end(),
                "stdout_lines": stdout.lines().collect::<Vec<_>>(),
                "stderr": stderr.trim_end(),
                "item": item,
            }));
            changes.extend(plan.changes);
        }
        let changed = !changes.is_empty();
        let mut registered = per_item.first().cloned().unwrap_or_else(|| json!({}));
        if node.task.loop_items.is_some() {
            registered = json!({"results": per_item});
        }
        if let Some(obj) = registered.as_object_mut() {
            obj.insert("changed".into(), json!(changed));
            obj.insert("failed".into(), json!(false));
            obj.insert("skipped".into(), json!(false));
        }
        self.register(node, state, registered);
        TaskResult::done(node, changes)
    }

    fn register(&self, node: &TaskNode, state: &mut HostState, value: Json) {
        if let Some(name) = &node.task.register {
            state.registered.insert(name.clone(), value);
        }
    }

    fn items(&self, node: &TaskNode, vars: &Value) -> Result<Vec<Option<Json>>, String> {
        let Some(items) = &node.task.loop_items else {
            return Ok(vec![None]);
        };
        let rendered = self
            .templater
            .render_json(&items.to_json(), vars)
            .map_err(|e| format!("`loop`: {e}"))?;
        match rendered {
            Json::Array(list) => Ok(list.into_iter().map(Some).collect()),
            other => Err(format!("`loop` must give a list, got {other}")),
        }
    }

    fn resource(&self, node: &TaskNode, vars: &Value) -> Result<Box<dyn Resource>, String> {
        let module = pgdeploy_modules::find(&node.task.module.0)
            .ok_or_else(|| format!("unknown module `{}`", node.task.module.0))?;
        let raw = match node.task.params.to_json() {
            Json::String(s) => json!({"cmd": s}),
            Json::Null => json!({}),
            other => other,
        };
        let params = self
            .templater
            .render_json(&raw, vars)
            .map_err(|e| e.to_string())?;
        let ctx = ModuleContext {
            templater: &self.templater,
            vars,
            node,
            run_id: &self.run_id,
        };
        module.resource(&params, &ctx).map_err(|e| e.to_string())
    }

    /// Probes `current` and, in the same round trip, every later task on
    /// this host that can already be rendered.
    async fn probe_batch(
        &self,
        node: &TaskNode,
        rest: &[usize],
        session: &Session,
        state: &mut HostState,
        current: &str,
    ) -> Result<(), String> {
        let mut scripts = vec![current.to_string()];
        for id in rest.iter().skip(1) {
            let next = &self.resolved.nodes[*id];
            if !next.waits_on.is_empty()
                || next.become_root != node.become_root
                || scripts.len() >= 256
            {
                break;
            }
            if next.is_handler || !next.selected {
                continue;
            }
            let vars = self.vars_for(next, state, None);
            let mut when_ok = true;
            let mut unknown = false;
            for (condition, _) in &next.task.when {
                match self.templater.condition(condition, &vars) {
                    Ok(v) => when_ok &= v,
                    Err(_) => unknown = true,
                }
            }
            if unknown {
                break;
            }
            if !when_ok {
                continue;
            }
            let Ok(items) = self.items(next, &vars) else {
                break;
            };
            let mut complete = true;
            for item in &items {
                let item_vars = if item.is_some() {
                    self.vars_for(next, state, item.as_ref())
                } else {
                    vars.clone()
                };
                match self.resource(next, &item_vars) {
                    Ok(r) => {
                        let s = r.probe();
                        if !state.probes.contains_key(&(s.clone(), node.become_root))
                            && !scripts.contains(&s)
                        {
                            scripts.push(s);
                        }
                    }
                    Err(_) => complete = false,
                }
            }
            if !complete {
                break;
            }
        }
        let batch = batch_script(&scripts);
        let out = session
            .exec(&batch, node.become_root, None)
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() && out.stdout.is_empty() {
            return Err(format!(
                "probing failed (exit {}): {}",
                out.status,
                out.stderr_str().trim()
            ));
        }
        let answers = parse_batch(&out.stdout_str(), scripts.len())?;
        for (script, answer) in scripts.into_iter().zip(answers) {
            state.probes.insert((script, node.become_root), answer);
        }
        Ok(())
    }

    /// Runs an action on a new SSH connection to `host`, opened as the
    /// run's own was, then closes it.
    async fn exec_on_new_connection(
        &self,
        host: &str,
        action: &Action,
        become_root: bool,
    ) -> Result<ExecOutput, String> {
        let fresh = self.connect(host).await.map_err(|e| {
            format!(
                "a new SSH connection to {host} failed (the run's own connection still works): {e}"
            )
        })?;
        let out = fresh
            .exec(&action.script, become_root, action.stdin.as_deref())
            .await
            .map_err(|e| format!("on a new SSH connection to {host}: {e}"));
        let _ = fresh.close().await;
        out
    }

    async fn apply(
        &self,
        plan: &Plan,
        node: &TaskNode,
        session: &Session,
        state: &mut HostState,
    ) -> Result<ItemOutcome, String> {
        let mut outcome = ItemOutcome {
            rc: 0,
            stdout: String::new(),
            stderr: String::new(),
            ran: false,
        };
        for action in &plan.actions {
            // Whatever ran may have changed what later probes would see.
            state.probes.clear();
            let out = if action.fresh_connection {
                self.exec_on_new_connection(&node.host, action, node.become_root)
                    .await?
            } else {
                session
                    .exec(&action.script, node.become_root, action.stdin.as_deref())
                    .await
                    .map_err(|e| e.to_string())?
            };
            outcome = ItemOutcome {
                rc: out.status,
                stdout: out.stdout_str().into_owned(),
                stderr: out.stderr_str().into_owned(),
                ran: true,
            };
            if !out.success() {
                let detail = if outcome.stderr.trim().is_empty() {
                    outcome.stdout.trim()
                } else {
                    outcome.stderr.trim()
                };
                let tail: Vec<&str> = detail
                    .lines()
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(format!("exit {}: {}", out.status, tail.join("\n")));
            }
        }
        Ok(outcome)
    }
}

struct ItemOutcome {
    rc: i32,
    stdout: String,
    stderr: String,
    ran: bool,
}

#[derive(Default)]
struct HostState {
    facts: Json,
    registered: Map<String, Json>,
    notified: HashSet<usize>,
    /// Probe answers by (script, become), valid until something changes.
    probes: HashMap<(String, bool), ProbeOutput>,
}

struct ModuleContext<'a> {
    templater: &'a Templater,
    vars: &'a Value,
    node: &'a TaskNode,
    run_id: &'a str,
}

impl pgdeploy_modules::Context for ModuleContext<'_> {
    fn render_template(&self, src: &str) -> Result<String, ModuleError> {
        let path = crate::validate::source_path(self.node, "templates", src);
        self.templater
            .render_file(&path, self.vars)
            .map_err(|e| ModuleError::Source(format!("template {}: {e}", path.display())))
    }
    fn read_file(&self, src: &str) -> Result<Vec<u8>, ModuleError> {
        let path = crate::validate::source_path(self.node, "files", src);
        std::fs::read(&path)
            .map_err(|e| ModuleError::Source(format!("file {}: {e}", path.display())))
    }
    fn run_id(&self) -> &str {
        self.run_id
    }
}

const MARK: &str = "@@pgdeploy-probe";

/// One script that runs every probe (each in its own subshell, stdin
/// closed) and prints, per probe, one line: mark, index, exit status,
/// base64 stdout, base64 stderr.
pub fn batch_script(probes: &[String]) -> String {
    let mut script = String::from("t=$(mktemp -d) || exit 1\ntrap 'rm -rf \"$t\"' EXIT\n");
    for (i, probe) in probes.iter().enumerate() {
        let probe = if probe.trim().is_empty() {
            ":"
        } else {
            probe.as_str()
        };
        script.push_str(&format!(
            "(\n{probe}\n) </dev/null >\"$t/{i}.o\" 2>\"$t/{i}.e\"; echo $? >\"$t/{i}.s\"\n"
        ));
    }
    script.push_str(&format!(
        "i=0\nwhile [ $i -lt {} ]; do printf '{MARK} %s %s %s %s\\n' $i \"$(cat \"$t/$i.s\")\" \"$(base64 -w0 <\"$t/$i.o\")\" \"$(base64 -w0 <\"$t/$i.e\")\"; i=$((i+1)); done\n",
        probes.len()
    ));
    script
}

/// Splits a batch's output back into one answer per probe.
pub fn parse_batch(output: &str, expected: usize) -> Result<Vec<ProbeOutput>, String> {
    use base64::Engine;
    let decode = |s: &str| -> Result<String, String> {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("bad probe output: {e}"))
    };
    let mut answers = vec![None; expected];
    for line in output.lines().filter(|l| l.starts_with(MARK)) {
        let mut parts = line[MARK.len()..].trim_start().splitn(4, ' ');
        let index: usize = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or("bad probe index")?;
        let status: i32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
        let stdout = decode(parts.next().unwrap_or(""))?;
        let stderr = decode(parts.next().unwrap_or(""))?;
        if let Some(slot) = answers.get_mut(index) {
            *slot = Some(ProbeOutput {
                status,
                stdout,
                stderr,
            });
        }
    }
    answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.ok_or_else(|| format!("probe {i} gave no answer")))
        .collect()
}

impl TaskResult {
    fn base(node: &TaskNode, status: TaskStatus) -> TaskResult {
        TaskResult {
            host: node.host.clone(),
            task: node.task.name.clone(),
            role: node.role.clone(),
            handler: node.is_handler,
            status,
            changes: Vec::new(),
            message: None,
            duration: Duration::ZERO,
        }
    }
    fn skipped(node: &TaskNode, reason: String) -> TaskResult {
        TaskResult {
            message: Some(reason),
            ..Self::base(node, TaskStatus::Skipped)
        }
    }
    fn failed(node: &TaskNode, message: String) -> TaskResult {
        TaskResult {
            message: Some(message),
            ..Self::base(node, TaskStatus::Failed)
        }
    }
    fn done(node: &TaskNode, changes: Vec<Change>) -> TaskResult {
        let status = if changes.is_empty() {
            TaskStatus::Ok
        } else {
            TaskStatus::Changed
        };
        TaskResult {
            changes,
            ..Self::base(node, status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_runs_locally_and_splits_back() {
        let probes = vec![
            "echo one".to_string(),
            "printf 'two\\nlines'; echo err >&2; exit 3".to_string(),
            "true".to_string(),
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(batch_script(&probes))
            .output()
            .expect("sh");
        let answers = parse_batch(&String::from_utf8_lossy(&out.stdout), 3).expect("parse");
        assert_eq!(
            answers[0],
            ProbeOutput {
                status: 0,
                stdout: "one\n".into(),
                stderr: String::new()
            }
        );
        assert_eq!(
            answers[1],
            ProbeOutput {
                status: 3,
                stdout: "two\nlines".into(),
                stderr: "err\n".into()
            }
        );
        assert_eq!(answers[2].stdout, "");
    }

    #[test]
    fn a_missing_answer_is_an_error() {
        assert!(parse_batch("", 1).is_err());
    }
}
