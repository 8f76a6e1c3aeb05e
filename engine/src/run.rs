//! The scheduler: every host walks its own chain of tasks at its own pace,
//! over one SSH connection, waiting for other hosts only on `after:` edges.
//!
//! For each task: render its parameters, build the module's resource, probe
//! (many tasks' probes go in one round trip, reused until something on the
//! host changes), plan, and, unless in check mode, run exactly the plan's
//! actions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::Value;
use pgdeploy_modules::{
    Action, Change, ChangeKind, Footprint, ModuleError, Plan, ProbeOutput, Resource,
    PROGRESS_PREFIX,
};
use pgdeploy_transport::{ConnectOptions, ExecOutput, Session, TransportError};
use serde_json::{json, Map, Value as Json};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::facts;
use crate::inventory::{Inventory, Vars};
use crate::prepare::{Contexts, Item, Prep, PrepareError, Prepared};
use crate::report::{HostReport, RunReport, TaskResult, TaskStatus};
use crate::resolve::{Resolved, TaskNode};
use crate::scope::{self, HostValues};
use crate::template::{Templater, Unknown};

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
    /// How long any remote command (a probe batch, an action) may run
    /// before it is stopped on its host and its task fails; a task's
    /// `timeout:` beats it for its actions. No limit when `None`.
    pub command_timeout: Option<Duration>,
}

/// Receives progress as the run goes.
pub trait Observer: Send + Sync {
    /// A host starts (`total` tasks to go through).
    fn host_started(&self, host: &str, total: usize);
    /// A task starts on a host.
    fn task_started(&self, host: &str, index: usize, name: &str);
    /// A running task reports progress (an action's
    /// [`pgdeploy_modules::PROGRESS_PREFIX`] line, without the prefix), for
    /// example that it waits for a lock held by another process.
    fn task_progress(&self, _host: &str, _task: &str, _message: &str) {}
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
                run.host(&host, &chain, forks, observer, started).await
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
        run_started: Instant,
    ) -> HostReport {
        observer.host_started(name, chain.len());
        let mut report = HostReport::new(name);
        let mut permit = forks.clone().acquire_owned().await.ok();
        let (session, mut state) = match self.open(name).await {
            Ok(opened) => opened,
            Err(reason) => {
                report.unreachable = Some(reason);
                report.finished = run_started.elapsed();
                chain.iter().for_each(|id| self.finish(*id, false));
                observer.host_finished(&report);
                return report;
            }
        };
        report.connect = run_started.elapsed();
        let walk = HostWalk {
            name,
            chain,
            session: &session,
            observer: &*observer,
            run_started,
        };
        let mut stopped: Option<String> = None;
        for (position, id) in chain.iter().enumerate() {
            let node = &self.resolved.nodes[*id];
            if stopped.is_none() && self.is_interrupted() {
                stopped = Some("not run: interrupted".into());
            }
            if let Some(reason) = &stopped {
                self.not_run(node, reason, &mut report);
                continue;
            }
            let mut waited = Duration::ZERO;
            if !node.waits_on.is_empty() {
                let failed;
                (waited, failed) = self.wait_turn(node, &forks, &mut permit).await;
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
            let result = self.run_task(&walk, position, &mut state, waited).await;
            stopped = self.record(node, result, &mut state, &mut report);
        }
        drop(permit);
        let _ = session.close().await;
        report.probe_round_trips = state.probe_round_trips;
        report.finished = run_started.elapsed();
        observer.host_finished(&report);
        report
    }

    /// A node after its host stopped (a failure, an interrupt): done as
    /// failed, and reported as not run unless it is a handler or was not
    /// selected.
    fn not_run(&self, node: &TaskNode, reason: &str, report: &mut HostReport) {
        self.finish(node.id, false);
        if node.selected && !node.is_handler {
            report
                .results
                .push(TaskResult::skipped(node, reason.to_string()));
        }
    }

    /// Runs the node at `position` of the host's chain, telling the
    /// observer, and adjusts how far probes reach ahead.
    async fn run_task(
        &self,
        walk: &HostWalk<'_>,
        position: usize,
        state: &mut HostState,
        waited: Duration,
    ) -> TaskResult {
        let node = &self.resolved.nodes[walk.chain[position]];
        let (observer, name) = (walk.observer, walk.name);
        observer.task_started(name, position, &node.task.name);
        let started = Instant::now();
        let unbounded_before = state.unbounded_actions;
        let progress = |message: &str| {
            if !node.task.no_log {
                observer.task_progress(name, &node.task.name, message)
            }
        };
        let mut result = self
            .task(
                node,
                &walk.chain[position..],
                walk.session,
                state,
                &progress,
            )
            .await;
        result.duration = started.elapsed();
        state.reach = if state.unbounded_actions == unbounded_before {
            (state.reach * 2).clamp(1, MAX_BATCH)
        } else {
            0
        };
        result.started = started.duration_since(walk.run_started);
        result.waited = waited;
        if node.task.no_log {
            result.hide_output();
        }
        observer.task_finished(&result);
        result
    }

    /// Records a task's result: notifies its handlers if it changed
    /// something, marks it done; gives why the host stops if it failed
    /// (and does not ignore errors).
    fn record(
        &self,
        node: &TaskNode,
        result: TaskResult,
        state: &mut HostState,
        report: &mut HostReport,
    ) -> Option<String> {
        let ok = result.status != TaskStatus::Failed || node.task.ignore_errors;
        if matches!(
            result.status,
            TaskStatus::Changed | TaskStatus::KnownAfterApply
        ) {
            state.notified.extend(node.notifies.iter().copied());
        }
        let stopped = (!ok).then(|| format!("not run: `{}` failed", node.task.name));
        self.finish(node.id, ok);
        report.results.push(result);
        stopped
    }

    /// Waits for the tasks `node` waits on (other hosts), without holding
    /// a fork meanwhile. Gives how long it waited and the first of them that
    /// failed (or the first, when the run was interrupted).
    async fn wait_turn(
        &self,
        node: &TaskNode,
        forks: &Arc<Semaphore>,
        permit: &mut Option<OwnedSemaphorePermit>,
    ) -> (Duration, Option<usize>) {
        let waiting = Instant::now();
        let held = permit.take();
        drop(held);
        let mut interrupted = self.interrupted.subscribe();
        let failed = tokio::select! {
            failed = self.wait_for(&node.waits_on) => failed,
            _ = interrupted.wait_for(|i| *i) => Some(node.waits_on[0]),
        };
        *permit = forks.clone().acquire_owned().await.ok();
        (waiting.elapsed(), failed)
    }

    /// Connects to a host and reads its facts; the error is why the host
    /// is unreachable.
    async fn open(&self, name: &str) -> Result<(Session, HostState), String> {
        let session = self.connect(name).await.map_err(|e| e.to_string())?;
        let mut state = HostState::default();
        match session.exec(facts::SCRIPT, false, None).await {
            Ok(out) => state.facts = facts::parse(&out.stdout_str()),
            Err(e) => {
                let _ = session.close().await;
                return Err(format!("reading facts failed: {e}"));
            }
        }
        Ok((session, state))
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

    async fn connect(&self, name: &str) -> Result<Session, TransportError> {
        self.try_connect(name).await
    }

    /// Opens a connection to `name` as the run's options say.
    async fn try_connect(&self, name: &str) -> Result<Session, TransportError> {
        let host = self
            .inventory
            .host(name)
            .ok_or_else(|| TransportError::Connect {
                host: name.to_string(),
                reason: "not in the inventory".into(),
            })?;
        let mut options = host.connection.options(&ConnectOptions {
            accept_new_host_keys: self.options.accept_new_host_keys,
            ..ConnectOptions::default()
        });
        if let Some(timeout) = self.options.connect_timeout {
            options.connect_timeout = timeout;
        }
        let target = host.connection.target(name);
        Session::connect(&target, &options).await
    }

    /// The variables a node sees. A result registered by a task that is
    /// known only after apply is a placeholder ([`Unknown`]) that raises
    /// its flag in `unknown` when read.
    fn vars_for(
        &self,
        node: &TaskNode,
        state: &HostState,
        unknown: &UnknownReads,
        item: Option<&Json>,
    ) -> Value {
        let item = item.map(crate::template::value);
        let placeholders = unknown
            .0
            .iter()
            .map(|(name, _, known, used)| (name.clone(), Unknown::partly(used, known)));
        let registered = minijinja::value::merge_maps([
            crate::template::value(&state.registered),
            Value::from_pairs(placeholders.collect::<Vec<_>>()),
        ]);
        scope::node_vars(
            &self.templater,
            &self.inventory,
            &self.resolved,
            &self.globals,
            &self.options.extra_vars,
            node,
            HostValues {
                facts: crate::template::value(&state.facts),
                registered,
                item: item.as_ref(),
            },
        )
    }

    /// The one preparation of `node` ([`Prep::prepare`]) with this host's
    /// variables; `ahead`: for a probe batch, where a `when` that cannot be
    /// decided yet counts as true.
    fn prepare(
        &self,
        node: &TaskNode,
        state: &HostState,
        ahead: bool,
        unknown: &UnknownReads,
    ) -> Result<Prepared, PrepareError> {
        let prep = Prep {
            templater: &self.templater,
            node,
            undecided_when_runs: ahead,
        };
        let contexts = TaskContexts {
            templater: &self.templater,
            node,
            run_id: &self.run_id,
        };
        prep.prepare(|item| self.vars_for(node, state, unknown, item), &contexts)
    }

    async fn task(
        &self,
        node: &TaskNode,
        rest: &[usize],
        session: &Session,
        state: &mut HostState,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> TaskResult {
        if !node.selected {
            return TaskResult::skipped(node, "tags".into());
        }
        let unknown = UnknownReads::of(state);
        let prepared = self.prepare(node, state, false, &unknown);
        if let Some((name, by)) = unknown.read() {
            // What the task does depends on a result only apply will give.
            let reason = format!("reads `{name}`, the result of `{by}`, known after apply");
            return self.known_after_apply(node, state, reason, by, None);
        }
        let items = match prepared {
            Ok(Prepared::Items(items)) => items,
            Ok(Prepared::Skipped { condition }) => {
                self.register(
                    node,
                    state,
                    json!({"changed": false, "skipped": true, "failed": false}),
                );
                return TaskResult::skipped(node, format!("when: {condition}"));
            }
            Err(e) => return TaskResult::failed(node, TaskError::from(e)),
        };
        let mut changes: Vec<Change> = Vec::new();
        let mut per_item = Vec::new();
        let mut unknown_item = None;
        for Item { item, resource, .. } in items {
            let outcome = match resource {
                Ok(resource) => {
                    self.item(node, rest, session, state, progress, &*resource, item)
                        .await
                }
                Err(e) => Err((TaskError::from(e), Vec::new())),
            };
            match outcome {
                Ok(ItemDone::Planned(result, item_changes)) => {
                    per_item.push(result);
                    changes.extend(item_changes);
                }
                Ok(ItemDone::KnownAfterApply { reason, depends_on }) => {
                    unknown_item.get_or_insert((reason, depends_on));
                }
                Err((error, item_changes)) => {
                    // What earlier items (and this one, up to its failing
                    // action) changed stays in the report.
                    changes.extend(item_changes);
                    let mut failed = TaskResult::failed(node, error);
                    failed.changes = changes;
                    return failed;
                }
            }
        }
        if let Some((reason, depends_on)) = unknown_item {
            return self.known_after_apply(node, state, reason, depends_on, Some(changes));
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
        match &node.task.register {
            // Check mode: what a command that apply runs prints, and its
            // status, are known after apply; that it changes something is
            // known now (`when: result.changed` is planned).
            Some(name)
                if self.options.check && changes.iter().any(|c| c.kind == ChangeKind::Run) =>
            {
                state.registered.remove(name);
                let known: Map<String, Json> = ["changed", "failed", "skipped"]
                    .into_iter()
                    .filter_map(|k| Some((k.to_string(), registered.get(k)?.clone())))
                    .collect();
                let known = Json::Object(known);
                state
                    .unknown_registered
                    .insert(name.clone(), (node_label(node), known));
            }
            _ => self.register(node, state, registered),
        }
        TaskResult::done(node, changes)
    }

    /// One item of a task: probe (in a batch with what follows), plan,
    /// and apply unless checking. Gives the item's registered result and
    /// changes, or the error with the changes planned up to it.
    #[allow(clippy::too_many_arguments)] // the host's run state, passed through
    async fn item(
        &self,
        node: &TaskNode,
        rest: &[usize],
        session: &Session,
        state: &mut HostState,
        progress: &(dyn Fn(&str) + Send + Sync),
        resource: &dyn Resource,
        item: Option<Json>,
    ) -> Result<ItemDone, (TaskError, Vec<Change>)> {
        let script = resource.probe();
        if !state
            .probes
            .contains_key(&(script.clone(), node.become_root))
        {
            let current = (script.clone(), resource.reads());
            self.probe_batch(node, rest, session, state, current)
                .await
                .map_err(|e| (e, Vec::new()))?;
        }
        let probe = state
            .probes
            .get(&(script, node.become_root))
            .map(|cached| cached.answer.clone())
            .unwrap_or_default();
        let plan = match resource.plan(&probe) {
            Ok(plan) => plan,
            Err(error) => {
                // In check mode, an earlier pending change this probe reads
                // (a package that brings the file, a user, ...) explains the
                // failure: apply will probe again after making it.
                let explained = self.options.check.then(|| state.explains(resource));
                let Some(depends_on) = explained.flatten() else {
                    return Err((TaskError::Plan(error), Vec::new()));
                };
                state.pending.push(PendingChange {
                    label: node_label(node),
                    writes: resource.writes(),
                });
                return Ok(ItemDone::KnownAfterApply {
                    reason: error.to_string(),
                    depends_on,
                });
            }
        };
        if self.options.check && !plan.changes.is_empty() {
            state.pending.push(PendingChange {
                label: node_label(node),
                writes: resource.writes(),
            });
        }
        let outcome = if self.options.check {
            ItemOutcome {
                rc: 0,
                stdout: String::new(),
                stderr: String::new(),
                ran: false,
            }
        } else {
            match self
                .apply(&plan, &resource.writes(), node, session, state, progress)
                .await
            {
                Ok(o) => o,
                Err(error) => return Err((error, plan.changes)),
            }
        };
        let (rc, stdout, stderr) = if outcome.ran {
            (outcome.rc, outcome.stdout, outcome.stderr)
        } else {
            (probe.status, probe.stdout.clone(), probe.stderr.clone())
        };
        let result = json!({
            "changed": !plan.changes.is_empty(),
            "rc": rc,
            "stdout": stdout.trim_end(),
            "stdout_lines": stdout.lines().collect::<Vec<_>>(),
            "stderr": stderr.trim_end(),
            "item": item,
        });
        Ok(ItemDone::Planned(result, plan.changes))
    }

    /// A task that only apply can plan (check mode): reported with its
    /// reason and the pending task it depends on; its registered result is
    /// a placeholder, so the tasks that read it are known after apply too,
    /// and what it may write counts as pending.
    fn known_after_apply(
        &self,
        node: &TaskNode,
        state: &mut HostState,
        reason: String,
        depends_on: String,
        changes: Option<Vec<Change>>,
    ) -> TaskResult {
        if let Some(name) = &node.task.register {
            state.registered.remove(name);
            state
                .unknown_registered
                .insert(name.clone(), (node_label(node), Json::Null));
        }
        state.pending.push(PendingChange {
            label: node_label(node),
            writes: Footprint::Everything,
        });
        TaskResult {
            message: Some(reason),
            depends_on: Some(depends_on),
            changes: changes.unwrap_or_default(),
            ..TaskResult::base(node, TaskStatus::KnownAfterApply)
        }
    }

    fn register(&self, node: &TaskNode, state: &mut HostState, value: Json) {
        if let Some(name) = &node.task.register {
            state.unknown_registered.remove(name);
            state.registered.insert(name.clone(), value);
        }
    }

    /// Probes `current` and, in the same round trip, the other items of
    /// its task and the later tasks on this host whose probes can already
    /// be rendered, up to the next cross-host wait and within the host's
    /// probe reach (see [`HostState::reach`]). Probes are read-only, so a
    /// task whose `when` cannot be decided yet (it reads a result that an
    /// earlier task registers) is probed as if it will run, and a task that
    /// cannot be rendered yet is left for its own batch, without ending
    /// this one. While the host is changing (the reach is not whole), probes
    /// that wait on time or other hosts (`wait_for`) are left for their turn.
    async fn probe_batch(
        &self,
        node: &TaskNode,
        rest: &[usize],
        session: &Session,
        state: &mut HostState,
        current: (String, Footprint),
    ) -> Result<(), TaskError> {
        let mut scripts = vec![current];
        let budget = 1 + state.reach.min(MAX_BATCH - 1);
        'tasks: for (offset, id) in rest.iter().enumerate() {
            let next = &self.resolved.nodes[*id];
            if offset > 0 && !next.waits_on.is_empty() {
                break;
            }
            if next.become_root != node.become_root || next.is_handler || !next.selected {
                continue;
            }
            // A task whose loop or parameters cannot be rendered yet is left
            // for its own batch.
            let unknown = UnknownReads::of(state);
            let Ok(Prepared::Items(items)) = self.prepare(next, state, true, &unknown) else {
                continue;
            };
            if unknown.read().is_some() {
                continue;
            }
            for item in items {
                if scripts.len() >= budget {
                    break 'tasks;
                }
                let Ok(resource) = item.resource else {
                    continue;
                };
                if state.reach < MAX_BATCH && !resource.probe_ahead_while_changing() {
                    continue;
                }
                let script = resource.probe();
                if !state
                    .probes
                    .contains_key(&(script.clone(), node.become_root))
                    && !scripts.iter().any(|(s, _)| *s == script)
                {
                    scripts.push((script, resource.reads()));
                }
            }
        }
        let mark = batch_mark();
        let texts: Vec<&str> = scripts.iter().map(|(s, _)| s.as_str()).collect();
        let batch = batch_script(&texts, &mark);
        state.probe_round_trips += 1;
        let limit = self.options.command_timeout;
        let out = session
            .exec_limited(&batch, node.become_root, None, &|_| {}, limit)
            .await?;
        if out.timed_out {
            return Err(TaskError::TimedOut {
                what: "probing the host".into(),
                limit: limit.unwrap_or_default(),
            });
        }
        if !out.success() && out.stdout.is_empty() {
            return Err(TaskError::Probing {
                status: out.status,
                stderr: out.stderr_str().trim().to_string(),
            });
        }
        let answers = parse_batch(&out.stdout_str(), &mark, scripts.len())?;
        for ((script, reads), answer) in scripts.into_iter().zip(answers) {
            state
                .probes
                .insert((script, node.become_root), CachedProbe { answer, reads });
        }
        Ok(())
    }

    /// Runs an action on a new SSH connection to `host`, opened as the
    /// run's own was, then closes it. A refused connection is tried again
    /// for up to [`SSHD_RESTART_GRACE`]: sshd re-executes itself on reload
    /// and listens again a moment later.
    async fn exec_on_new_connection(
        &self,
        host: &str,
        action: &Action,
        become_root: bool,
        limit: Option<Duration>,
    ) -> Result<ExecOutput, TaskError> {
        let deadline = Instant::now() + SSHD_RESTART_GRACE;
        let fresh = loop {
            match self.try_connect(host).await {
                Err(TransportError::Refused { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => break other,
            }
        }
        .map_err(|source| TaskError::FreshConnection {
            host: host.to_string(),
            source: Box::new(source),
        })?;
        let out = fresh
            .exec_limited(
                &action.script,
                become_root,
                action.stdin.as_deref(),
                &|_| {},
                limit,
            )
            .await
            .map_err(|source| TaskError::OnFreshConnection {
                host: host.to_string(),
                source: Box::new(source),
            });
        let _ = fresh.close().await;
        out
    }

    /// Runs the plan's actions in order. After each, the cached probe
    /// answers that `writes` may have changed are dropped; an action that
    /// may change anything drops them all (and counts in
    /// [`HostState::unbounded_actions`]).
    async fn apply(
        &self,
        plan: &Plan,
        writes: &Footprint,
        node: &TaskNode,
        session: &Session,
        state: &mut HostState,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ItemOutcome, TaskError> {
        let mut outcome = ItemOutcome {
            rc: 0,
            stdout: String::new(),
            stderr: String::new(),
            ran: false,
        };
        let limit = node
            .task
            .timeout
            .map(Duration::from_secs)
            .or(self.options.command_timeout);
        for action in &plan.actions {
            // What ran may have changed what later probes would see.
            state
                .probes
                .retain(|_, cached| !writes.affects(&cached.reads));
            if *writes == Footprint::Everything {
                state.unbounded_actions += 1;
            }
            let out = if action.fresh_connection {
                self.exec_on_new_connection(&node.host, action, node.become_root, limit)
                    .await?
            } else {
                let on_line = |line: &str| {
                    if let Some(message) = line.strip_prefix(PROGRESS_PREFIX) {
                        progress(message);
                    }
                };
                session
                    .exec_limited(
                        &action.script,
                        node.become_root,
                        action.stdin.as_deref(),
                        &on_line,
                        limit,
                    )
                    .await?
            };
            if out.timed_out {
                let what = plan.changes.first().map(|c| c.subject.clone());
                return Err(TaskError::TimedOut {
                    what: what.unwrap_or_else(|| node.task.name.clone()),
                    limit: limit.unwrap_or_default(),
                });
            }
            outcome = ItemOutcome {
                rc: out.status,
                stdout: out.stdout_str().into_owned(),
                stderr: without_progress(&out.stderr_str()),
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
                return Err(TaskError::Action {
                    status: out.status,
                    output: tail.join("\n"),
                });
            }
        }
        Ok(outcome)
    }
}

/// Why a task failed on its host. The report keeps its text.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task could not be prepared (`when`, `loop`, parameters, module).
    #[error("{0}")]
    Prepare(#[from] PrepareError),
    /// The module could not plan from the probe's answer.
    #[error("{0}")]
    Plan(ModuleError),
    /// The SSH connection failed while probing or applying.
    #[error("{0}")]
    Transport(Box<TransportError>),
    /// The probe batch's script failed before printing any answer.
    #[error("probing failed (exit {status}): {stderr}")]
    Probing {
        /// Its exit status.
        status: i32,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The batch's output lacks the answer of a probe.
    #[error("probe {index} gave no answer")]
    MissingAnswer {
        /// The probe's place in its batch.
        index: usize,
    },
    /// A new SSH connection for an action that needs one failed.
    #[error(
        "a new SSH connection to {host} failed (the run's own connection still works): {source}"
    )]
    FreshConnection {
        /// The host.
        host: String,
        /// Why.
        source: Box<TransportError>,
    },
    /// An action run on a new SSH connection failed to run.
    #[error("on a new SSH connection to {host}: {source}")]
    OnFreshConnection {
        /// The host.
        host: String,
        /// Why.
        source: Box<TransportError>,
    },
    /// A remote command ran past its time limit and was stopped on the
    /// host (with every process it started).
    #[error(
        "`{what}` did not finish within {}s and was stopped on the host (raise the task's `timeout:` or --command-timeout)",
        limit.as_secs()
    )]
    TimedOut {
        /// The command (the change it makes), or what the run was doing.
        what: String,
        /// The limit.
        limit: Duration,
    },
    /// An action exited with a failure status.
    #[error("exit {status}: {output}")]
    Action {
        /// Its exit status.
        status: i32,
        /// The last lines of its stderr (or stdout when stderr is empty).
        output: String,
    },
}

impl From<TransportError> for TaskError {
    fn from(e: TransportError) -> Self {
        TaskError::Transport(Box::new(e))
    }
}

/// A probe's answer and what the probe read.
struct CachedProbe {
    answer: ProbeOutput,
    reads: Footprint,
}

/// `role / task` of a node, as the report names it.
fn node_label(node: &TaskNode) -> String {
    crate::report::role_task(node.role.as_deref(), &node.task.name)
}

/// How an item ended without failing.
enum ItemDone {
    /// Probed and planned (and applied unless checking): its registered
    /// result and changes.
    Planned(Json, Vec<Change>),
    /// Check mode: its probe's answer cannot be planned from until an
    /// earlier pending change is made.
    KnownAfterApply {
        /// Why it cannot be planned now (the module's error).
        reason: String,
        /// The earlier task whose pending change explains it.
        depends_on: String,
    },
}

/// A change planned earlier on the host in check mode: what its actions
/// would write.
struct PendingChange {
    label: String,
    writes: Footprint,
}

/// The results registered by tasks known only after apply, as
/// placeholders: (variable, task that registers it, raised when read).
struct UnknownReads(Vec<(String, String, Json, Arc<AtomicBool>)>);

impl UnknownReads {
    fn of(state: &HostState) -> Self {
        Self(
            state
                .unknown_registered
                .iter()
                .map(|(name, (by, known))| {
                    (name.clone(), by.clone(), known.clone(), Arc::default())
                })
                .collect(),
        )
    }

    /// The first placeholder read: its variable and the task registering it.
    fn read(&self) -> Option<(String, String)> {
        self.0
            .iter()
            .find(|(_, _, _, used)| used.load(Ordering::Relaxed))
            .map(|(name, by, _, _)| (name.clone(), by.clone()))
    }
}

struct ItemOutcome {
    rc: i32,
    stdout: String,
    stderr: String,
    ran: bool,
}

/// How long a new connection may be refused before `ssh_check` gives up.
const SSHD_RESTART_GRACE: Duration = Duration::from_secs(10);

/// `stderr` without the progress lines an action printed.
fn without_progress(stderr: &str) -> String {
    stderr
        .split_inclusive('\n')
        .filter(|line| !line.starts_with(PROGRESS_PREFIX))
        .collect()
}

/// What every task of one host's walk through its chain shares.
struct HostWalk<'a> {
    name: &'a str,
    chain: &'a [usize],
    session: &'a Session,
    observer: &'a dyn Observer,
    run_started: Instant,
}

/// Most probes sent in one round trip.
const MAX_BATCH: usize = 256;

struct HostState {
    facts: Json,
    registered: Map<String, Json>,
    notified: HashSet<usize>,
    /// Probe answers by (script, become), valid until an action writes
    /// something they read.
    probes: HashMap<(String, bool), CachedProbe>,
    /// Actions run on the host so far that may have changed anything.
    unbounded_actions: usize,
    /// Probe batches sent so far.
    probe_round_trips: usize,
    /// How many probes besides the current task's own a batch may add. An
    /// action that may change anything throws every cached answer away, so
    /// while tasks keep doing that (a fresh deploy) probing ahead is wasted:
    /// the reach drops to none after such an action and doubles after each
    /// task that ran none, back up to a whole batch (a converged run keeps
    /// it whole throughout; file edits keep it too).
    reach: usize,
    /// Check mode: the changes planned so far, in order.
    pending: Vec<PendingChange>,
    /// Check mode: registered variables whose value only apply will know,
    /// with the task that registers them and what is known of it already
    /// (an object, or null).
    unknown_registered: std::collections::BTreeMap<String, (String, Json)>,
}

impl HostState {
    /// The latest pending change that can alter what `resource`'s probe
    /// reads, by its task's label.
    fn explains(&self, resource: &dyn Resource) -> Option<String> {
        let reads = resource.reads();
        self.pending
            .iter()
            .rev()
            .find(|p| p.writes.affects(&reads))
            .map(|p| p.label.clone())
    }
}

impl Default for HostState {
    fn default() -> Self {
        HostState {
            facts: Json::Null,
            registered: Map::new(),
            notified: HashSet::new(),
            probes: HashMap::new(),
            unbounded_actions: 0,
            probe_round_trips: 0,
            reach: MAX_BATCH,
            pending: Vec::new(),
            unknown_registered: Default::default(),
        }
    }
}

/// Module contexts of one task: templates and files from its role,
/// rendered with an item's variables.
struct TaskContexts<'a> {
    templater: &'a Templater,
    node: &'a TaskNode,
    run_id: &'a str,
}

impl Contexts for TaskContexts<'_> {
    fn with_vars<'v>(&'v self, vars: &'v Value) -> Box<dyn pgdeploy_modules::Context + 'v> {
        Box::new(ModuleContext {
            templater: self.templater,
            vars,
            node: self.node,
            run_id: self.run_id,
        })
    }
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

/// A line start that no probe prints: a fixed word and a random nonce, new
/// for every batch.
fn batch_mark() -> String {
    format!("@@pgdeploy-probe-{:032x}", rand::random::<u128>())
}

/// One script that runs every probe (each in its own subshell, stdin
/// closed) and prints, per probe, its stdout, a line `MARK INDEX err`, its
/// stderr and a line `MARK INDEX end STATUS`, each mark line after a newline
/// of its own. It starts no process per probe beyond the probe's own.
pub fn batch_script<S: AsRef<str>>(probes: &[S], mark: &str) -> String {
    let mut script = String::from("t=$(mktemp) || exit 1\ntrap 'rm -f \"$t\"' EXIT\n");
    for (i, probe) in probes.iter().enumerate() {
        let probe = probe.as_ref();
        let probe = if probe.trim().is_empty() { ":" } else { probe };
        script.push_str(&format!(
            "(\n{probe}\n) </dev/null 2>\"$t\"; s=$?\necho; echo '{mark} {i} err'\nif [ -s \"$t\" ]; then cat \"$t\"; fi\necho; echo '{mark} {i} end' $s\n"
        ));
    }
    script
}

/// Splits a batch's output back into one answer per probe.
pub fn parse_batch(
    output: &str,
    mark: &str,
    expected: usize,
) -> Result<Vec<ProbeOutput>, TaskError> {
    let mut answers = Vec::with_capacity(expected);
    let mut rest = output;
    for i in 0..expected {
        let missing = || TaskError::MissingAnswer { index: i };
        let err = format!("\n{mark} {i} err\n");
        let (stdout, after) = rest.split_once(&err).ok_or_else(missing)?;
        let end = format!("\n{mark} {i} end ");
        let (stderr, after) = after.split_once(&end).ok_or_else(missing)?;
        let (status, after) = after.split_once('\n').unwrap_or((after, ""));
        answers.push(ProbeOutput {
            status: status.trim().parse().unwrap_or(-1),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
        });
        rest = after;
    }
    Ok(answers)
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
            depends_on: None,
            duration: Duration::ZERO,
            started: Duration::ZERO,
            waited: Duration::ZERO,
        }
    }
    fn skipped(node: &TaskNode, reason: String) -> TaskResult {
        TaskResult {
            message: Some(reason),
            ..Self::base(node, TaskStatus::Skipped)
        }
    }
    fn failed(node: &TaskNode, error: TaskError) -> TaskResult {
        TaskResult {
            message: Some(error.to_string()),
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
    fn progress_lines_stay_out_of_stderr() {
        let stderr =
            format!("{PROGRESS_PREFIX}waiting 0s\nreal error\n{PROGRESS_PREFIX}waiting 5s\nlast");
        assert_eq!(without_progress(&stderr), "real error\nlast");
    }

    #[test]
    fn a_batch_runs_locally_and_splits_back() {
        let probes = vec![
            "echo one".to_string(),
            "printf 'two\\nlines'; echo err >&2; exit 3".to_string(),
            "true".to_string(),
            "printf '\\n\\n@@pgdeploy-probe 0 err\\n'".to_string(),
        ];
        let mark = batch_mark();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(batch_script(&probes, &mark))
            .output()
            .expect("sh");
        let answers = parse_batch(&String::from_utf8_lossy(&out.stdout), &mark, 4).expect("parse");
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
        assert_eq!(answers[3].stdout, "\n\n@@pgdeploy-probe 0 err\n");
    }

    /// A resource whose probe reads `0`.
    struct Reads(Footprint);

    impl Resource for Reads {
        fn probe(&self) -> String {
            String::new()
        }
        fn plan(&self, _: &ProbeOutput) -> Result<Plan, ModuleError> {
            Ok(Plan::none())
        }
        fn reads(&self) -> Footprint {
            self.0.clone()
        }
    }

    fn pending(label: &str, writes: Footprint) -> PendingChange {
        PendingChange {
            label: label.into(),
            writes,
        }
    }

    #[test]
    fn only_a_pending_change_to_what_a_probe_reads_explains_its_failure() {
        let mut state = HostState::default();
        let probe = Reads(Footprint::path("/etc/ufw/sysctl.conf"));
        assert_eq!(state.explains(&probe), None, "nothing pending: a failure");
        state
            .pending
            .push(pending("r / motd", Footprint::path("/etc/motd")));
        assert_eq!(state.explains(&probe), None, "an unrelated file");
        state
            .pending
            .push(pending("r / ufw package", Footprint::Everything));
        state
            .pending
            .push(pending("r / issue", Footprint::path("/etc/issue")));
        assert_eq!(
            state.explains(&probe).as_deref(),
            Some("r / ufw package"),
            "the latest change that may write the file"
        );
    }

    #[test]
    fn reading_a_result_known_after_apply_is_noticed() {
        let mut state = HostState::default();
        state
            .unknown_registered
            .insert("join".into(), ("r / join".into(), Json::Null));
        let t = Templater::new();
        let unknown = UnknownReads::of(&state);
        let vars = Value::from_pairs([("join", Unknown::value(&unknown.0[0].3))]);
        assert!(t.condition("1 == 1", &vars).expect("true"));
        assert_eq!(unknown.read(), None, "not read");
        let _ = t.condition("join.changed", &vars);
        assert_eq!(
            unknown.read(),
            Some(("join".to_string(), "r / join".to_string()))
        );
    }

    /// A command apply will run: `changed` is known in check mode, its
    /// output is not.
    #[test]
    fn a_partly_known_result_raises_only_for_what_is_unknown() {
        let used = Arc::new(AtomicBool::new(false));
        let known = json!({"changed": true, "failed": false, "skipped": false});
        let vars = Value::from_pairs([("echoed", Unknown::partly(&used, &known))]);
        let t = Templater::new();
        assert!(t.condition("echoed.changed", &vars).expect("known"));
        assert!(!t.condition("echoed.failed", &vars).expect("known"));
        assert!(!used.load(Ordering::Relaxed), "known attributes");
        let _ = t.render("{{ echoed.stdout }}", &vars);
        assert!(used.load(Ordering::Relaxed), "stdout is known after apply");
    }

    #[test]
    fn a_missing_answer_is_an_error() {
        assert!(parse_batch("", &batch_mark(), 1).is_err());
    }

    #[test]
    fn every_batch_has_its_own_mark() {
        assert_ne!(batch_mark(), batch_mark());
    }
}
