//! From inventory + playbook to the task DAG: every (host, task) pair as a
//! node, chained in order on each host, with cross-host edges only where a
//! role or task says `after:`. Hosts never wait for each other otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{suggestion, InputError, InputErrors};
use crate::inventory::{Inventory, Vars};
use crate::playbook::{After, Play, Playbook, Role, RoleRef, TaskDef};
use crate::yaml::Pos;

/// What the user asked to run, besides inventory and playbook.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--limit`: a host pattern.
    pub limit: Option<String>,
    /// `--tags`: run only tasks with one of these tags (and `always`).
    pub tags: Vec<String>,
    /// `--skip-tags`: skip tasks with one of these tags.
    pub skip_tags: Vec<String>,
}

/// One (host, task) pair.
#[derive(Debug, Clone)]
pub struct TaskNode {
    /// Index in [`Resolved::nodes`] and in the graph.
    pub id: usize,
    /// The host it runs on.
    pub host: String,
    /// The role it belongs to, if any.
    pub role: Option<String>,
    /// The role's folder (for templates and files).
    pub role_dir: Option<PathBuf>,
    /// The task as written.
    pub task: Arc<TaskDef>,
    /// Whether it is a handler (runs only when notified).
    pub is_handler: bool,
    /// Whether tags select it.
    pub selected: bool,
    /// Run as root via sudo.
    pub become_root: bool,
    /// Vars between role defaults and task vars, in precedence order:
    /// play vars then role-reference vars.
    pub scope_vars: Arc<Vars>,
    /// Nodes on other hosts it waits for.
    pub waits_on: Vec<usize>,
    /// Handler nodes on the same host it notifies when it changes something.
    pub notifies: Vec<usize>,
}

/// The resolved run: nodes, per-host order, and the DAG.
#[derive(Debug)]
pub struct Resolved {
    /// All nodes.
    pub nodes: Vec<TaskNode>,
    /// Hosts in the run and their nodes in order.
    pub chains: Vec<(String, Vec<usize>)>,
    /// The DAG (node weights are indices into `nodes`).
    pub graph: DiGraph<usize, ()>,
    /// Role defaults of every role used, merged in play order (lowest
    /// precedence of all vars).
    pub defaults: Arc<Vars>,
}

struct RoleInstance {
    first: Option<usize>,
    last: Option<usize>,
}

impl Resolved {
    /// Resolves plays to nodes and builds the DAG; reports every problem.
    pub fn build(
        inventory: &Inventory,
        playbook: &Playbook,
        selection: &Selection,
    ) -> Result<Resolved, InputErrors> {
        let limit = limit_hosts(inventory, selection)?;
        let mut dag = Dag::default();
        for play in &playbook.plays {
            dag.place_play(inventory, playbook, selection, play, limit.as_ref());
        }
        dag.resolve_after(inventory, playbook);
        let graph = dag.graph();
        let Dag {
            nodes,
            chains,
            errors,
            ..
        } = dag;
        if !errors.is_empty() {
            return Err(InputErrors(errors));
        }
        let order: Vec<&String> = inventory.hosts.iter().map(|h| &h.name).collect();
        let mut chains: Vec<(String, Vec<usize>)> = chains.into_iter().collect();
        chains.sort_by_key(|(h, _)| order.iter().position(|o| *o == h));
        Ok(Resolved {
            nodes,
            chains,
            graph,
            defaults: Arc::new(role_defaults(playbook)),
        })
    }

    /// A node's label: `host: role / task`.
    pub fn label(&self, id: usize) -> String {
        label(&self.nodes[id])
    }
}

/// The hosts `--limit` allows, if given.
fn limit_hosts(
    inventory: &Inventory,
    selection: &Selection,
) -> Result<Option<BTreeSet<String>>, InputError> {
    match &selection.limit {
        Some(pattern) => {
            let hosts = inventory.select(pattern, &Pos::synthetic("--limit"))?;
            Ok(Some(hosts.into_iter().collect()))
        }
        None => Ok(None),
    }
}

/// The DAG being built: nodes, each host's chain, where each role instance
/// starts and ends, the `after:` waits still to resolve and the problems
/// found so far.
#[derive(Default)]
struct Dag {
    nodes: Vec<TaskNode>,
    chains: BTreeMap<String, Vec<usize>>,
    /// (role name) -> host -> last instance
    instances: BTreeMap<String, BTreeMap<String, RoleInstance>>,
    pending_after: Vec<(usize, After)>,
    errors: Vec<InputError>,
}

/// What placing one play on one host leaves to link: the tasks that
/// notify handlers, and the handlers by role (none: the play's) and name.
#[derive(Default)]
struct HostPlay {
    notifiers: Vec<(usize, Vec<(String, Pos)>)>,
    handler_nodes: Vec<(Option<String>, String, usize)>,
}

impl Dag {
    /// Places one play's roles, tasks and handlers on each of its hosts
    /// (within `--limit`) and links their notifications.
    fn place_play(
        &mut self,
        inventory: &Inventory,
        playbook: &Playbook,
        selection: &Selection,
        play: &Play,
        limit: Option<&BTreeSet<String>>,
    ) {
        let hosts = match inventory.select(&play.hosts.0, &play.hosts.1) {
            Ok(h) => h,
            Err(e) => return self.errors.push(e),
        };
        let order = match role_order(&play.roles, playbook) {
            Ok(order) => order,
            Err(e) => return self.errors.push(e),
        };
        for host_name in hosts
            .iter()
            .filter(|h| limit.is_none_or(|l| l.contains(*h)))
        {
            let Some(host) = inventory.host(host_name) else {
                continue;
            };
            let placer = Placer {
                host: host_name,
                play_become: play.become_root.unwrap_or(host.connection.become_root),
                selection,
            };
            let mut chain = std::mem::take(self.chains.entry(host_name.clone()).or_default());
            let mut placed = HostPlay::default();
            for (role, reference) in &order {
                self.place_role(&placer, &mut chain, play, role, reference, &mut placed);
            }
            self.place_play_tasks(&placer, &mut chain, play, &mut placed);
            self.chains.insert(host_name.clone(), chain);
            self.link_notifications(placed);
        }
    }

    /// One role's tasks then handlers on one host, under its reference's
    /// conditions, vars and tags.
    fn place_role(
        &mut self,
        placer: &Placer,
        chain: &mut Vec<usize>,
        play: &Play,
        role: &Role,
        reference: &RoleRef,
        placed: &mut HostPlay,
    ) {
        let mut scope = play.vars.clone();
        scope.extend(reference.vars.clone());
        let scope = Arc::new(scope);
        let tags: Vec<String> = play.tags.iter().chain(&reference.tags).cloned().collect();
        let mut instance = RoleInstance {
            first: None,
            last: None,
        };
        for task in &role.tasks {
            let task = &with_conditions(task, &reference.when);
            let id = placer.place(
                &mut self.nodes,
                chain,
                Some(role),
                task,
                false,
                &tags,
                &scope,
            );
            instance.first.get_or_insert(id);
            instance.last = Some(id);
            placed.notifiers.push((id, task.notify.clone()));
            self.pending_after
                .extend(task.after.iter().map(|a| (id, a.clone())));
        }
        for handler in &role.handlers {
            let handler = &with_conditions(handler, &reference.when);
            let id = placer.place(
                &mut self.nodes,
                chain,
                Some(role),
                handler,
                true,
                &tags,
                &scope,
            );
            instance.first.get_or_insert(id);
            instance.last = Some(id);
            placed
                .handler_nodes
                .push((Some(role.name.clone()), handler.name.clone(), id));
        }
        if let Some(first) = instance.first {
            self.pending_after
                .extend(reference.after.iter().map(|a| (first, a.clone())));
        }
        self.instances
            .entry(role.name.clone())
            .or_default()
            .insert(placer.host.to_string(), instance);
    }

    /// The play's own tasks then handlers on one host.
    fn place_play_tasks(
        &mut self,
        placer: &Placer,
        chain: &mut Vec<usize>,
        play: &Play,
        placed: &mut HostPlay,
    ) {
        let scope = Arc::new(play.vars.clone());
        for task in &play.tasks {
            let id = placer.place(
                &mut self.nodes,
                chain,
                None,
                task,
                false,
                &play.tags,
                &scope,
            );
            placed.notifiers.push((id, task.notify.clone()));
            self.pending_after
                .extend(task.after.iter().map(|a| (id, a.clone())));
        }
        for handler in &play.handlers {
            let id = placer.place(
                &mut self.nodes,
                chain,
                None,
                handler,
                true,
                &play.tags,
                &scope,
            );
            placed.handler_nodes.push((None, handler.name.clone(), id));
        }
    }

    /// Notifications: the notifier's own role first, then the play's
    /// handlers, then any handler in the play. A handler must come after
    /// the task that notifies it.
    fn link_notifications(&mut self, placed: HostPlay) {
        let handler_nodes = placed.handler_nodes;
        for (id, names) in placed.notifiers {
            let role = self.nodes[id].role.clone();
            for (name, pos) in names {
                let found = handler_nodes
                    .iter()
                    .find(|(r, n, _)| *r == role && *n == name)
                    .or_else(|| {
                        handler_nodes
                            .iter()
                            .find(|(r, n, _)| r.is_none() && *n == name)
                    })
                    .or_else(|| handler_nodes.iter().find(|(_, n, _)| *n == name));
                match found {
                    Some((_, _, handler)) if *handler > id => self.nodes[id].notifies.push(*handler),
                    Some((r, _, _)) => self.errors.push(InputError::at(
                        &pos,
                        format!(
                            "handler `{name}` (of {}) runs before the task that notifies it; move the role earlier",
                            r.as_deref().map(|r| format!("role `{r}`")).unwrap_or_else(|| "the play".into())
                        ),
                    )),
                    None => self.errors.push(InputError::at(
                        &pos,
                        format!(
                            "no handler named `{name}`{}",
                            suggestion(&name, handler_nodes.iter().map(|(_, n, _)| n.as_str()))
                        ),
                    )),
                }
            }
        }
    }

    /// Cross-host waits: each `after:` waits for the last node of the
    /// role's instance on every host (its `hosts` pattern allows).
    fn resolve_after(&mut self, inventory: &Inventory, playbook: &Playbook) {
        let used_roles: BTreeSet<&String> = playbook.roles.keys().collect();
        for (id, after) in std::mem::take(&mut self.pending_after) {
            if !used_roles.contains(&after.role) {
                self.errors.push(InputError::at(
                    &after.pos,
                    format!(
                        "`after` names role `{}`, which this playbook does not use{}",
                        after.role,
                        suggestion(&after.role, used_roles.iter().map(|s| s.as_str()))
                    ),
                ));
                continue;
            }
            let allowed: Option<BTreeSet<String>> = match &after.hosts {
                Some(pattern) => match inventory.select(pattern, &after.pos) {
                    Ok(h) => Some(h.into_iter().collect()),
                    Err(e) => {
                        self.errors.push(e);
                        continue;
                    }
                },
                None => None,
            };
            for (host, instance) in self.instances.get(&after.role).into_iter().flatten() {
                if allowed.as_ref().is_some_and(|a| !a.contains(host)) {
                    continue;
                }
                if let Some(last) = instance.last {
                    if last != id && !self.nodes[id].waits_on.contains(&last) {
                        self.nodes[id].waits_on.push(last);
                    }
                }
            }
        }
    }

    /// The graph: each host's chain in order plus the cross-host waits;
    /// a cycle is reported.
    fn graph(&mut self) -> DiGraph<usize, ()> {
        let mut graph = DiGraph::new();
        let indices: Vec<NodeIndex> = self.nodes.iter().map(|n| graph.add_node(n.id)).collect();
        for chain in self.chains.values() {
            for pair in chain.windows(2) {
                graph.add_edge(indices[pair[0]], indices[pair[1]], ());
            }
        }
        for node in &self.nodes {
            for pred in &node.waits_on {
                graph.add_edge(indices[*pred], indices[node.id], ());
            }
        }
        if let Some(cycle) = find_cycle(&graph, &self.nodes) {
            self.errors.push(cycle);
        }
        graph
    }
}

/// Places (host, task) nodes on one host's chain within one play.
struct Placer<'a> {
    host: &'a str,
    play_become: bool,
    selection: &'a Selection,
}

impl Placer<'_> {
    /// Appends a node for `task` (of `role`, if any) to `chain`; `tags` are
    /// those it inherits from its play and role reference. Handlers are
    /// always selectable: they run when notified.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &self,
        nodes: &mut Vec<TaskNode>,
        chain: &mut Vec<usize>,
        role: Option<&Role>,
        task: &Arc<TaskDef>,
        is_handler: bool,
        tags: &[String],
        scope: &Arc<Vars>,
    ) -> usize {
        let all_tags: Vec<&String> = tags.iter().chain(&task.tags).collect();
        let id = nodes.len();
        nodes.push(TaskNode {
            id,
            host: self.host.to_string(),
            role: role.map(|r| r.name.clone()),
            role_dir: role.map(|r| r.dir.clone()),
            task: task.clone(),
            is_handler,
            selected: is_handler || tags_select(&all_tags, self.selection),
            become_root: task.become_root.unwrap_or(self.play_become),
            scope_vars: scope.clone(),
            waits_on: Vec::new(),
            notifies: Vec::new(),
        });
        chain.push(id);
        id
    }
}

/// `task` with a role reference's conditions before its own `when`.
fn with_conditions(task: &Arc<TaskDef>, conditions: &[(String, Pos)]) -> Arc<TaskDef> {
    if conditions.is_empty() {
        return task.clone();
    }
    let mut conditioned = TaskDef::clone(task);
    conditioned.when = conditions.iter().chain(&task.when).cloned().collect();
    Arc::new(conditioned)
}

fn label(node: &TaskNode) -> String {
    match &node.role {
        Some(role) => format!("{}: {role} / {}", node.host, node.task.name),
        None => format!("{}: {}", node.host, node.task.name),
    }
}

fn tags_select(tags: &[&String], selection: &Selection) -> bool {
    let has = |wanted: &[String]| tags.iter().any(|t| wanted.contains(t));
    if has(&selection.skip_tags) {
        return false;
    }
    selection.tags.is_empty() || has(&selection.tags) || tags.iter().any(|t| t.as_str() == "always")
}

/// The role defaults of every role the playbook's plays use, merged in play
/// order: the first role (dependencies before their dependents) to define a
/// variable gives its default. A play whose roles cannot be ordered (a
/// dependency cycle, an unknown role) adds nothing; [`Resolved::build`]
/// reports it.
pub fn role_defaults(playbook: &Playbook) -> Vars {
    let mut defaults = Vars::new();
    for play in &playbook.plays {
        for (role, _) in role_order(&play.roles, playbook).unwrap_or_default() {
            for (k, v) in &role.defaults {
                defaults.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    defaults
}

/// Roles of a play with their dependencies first, each once.
fn role_order<'a>(
    refs: &'a [RoleRef],
    playbook: &'a Playbook,
) -> Result<Vec<(Arc<Role>, RoleRef)>, InputError> {
    /// `inherited`: the `when` of the references that pulled this one in as
    /// a dependency (a dependency runs under its dependent's conditions).
    fn visit(
        reference: &RoleRef,
        inherited: &[(String, Pos)],
        playbook: &Playbook,
        stack: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<(Arc<Role>, RoleRef)>,
    ) -> Result<(), InputError> {
        if stack.contains(&reference.name) {
            stack.push(reference.name.clone());
            return Err(InputError::at(
                &reference.pos,
                format!("role dependency cycle: {}", stack.join(" → ")),
            ));
        }
        if seen.contains(&reference.name) {
            return Ok(());
        }
        let Some(role) = playbook.roles.get(&reference.name) else {
            return Err(InputError::at(
                &reference.pos,
                format!("role `{}` is not loaded", reference.name),
            ));
        };
        let mut reference = reference.clone();
        reference.when = inherited.iter().chain(&reference.when).cloned().collect();
        stack.push(reference.name.clone());
        for dep in &role.dependencies {
            visit(dep, &reference.when, playbook, stack, seen, out)?;
        }
        stack.pop();
        seen.insert(reference.name.clone());
        out.push((role.clone(), reference));
        Ok(())
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for reference in refs {
        visit(
            reference,
            &[],
            playbook,
            &mut Vec::new(),
            &mut seen,
            &mut out,
        )?;
    }
    Ok(out)
}

fn find_cycle(graph: &DiGraph<usize, ()>, nodes: &[TaskNode]) -> Option<InputError> {
    let scc = petgraph::algo::kosaraju_scc(graph)
        .into_iter()
        .find(|c| c.len() > 1)?;
    let mut ids: Vec<usize> = scc.iter().map(|i| graph[*i]).collect();
    ids.sort();
    let first = &nodes[ids[0]];
    let names: Vec<String> = ids.iter().take(8).map(|i| label(&nodes[*i])).collect();
    let more = if ids.len() > 8 {
        format!(" and {} more", ids.len() - 8)
    } else {
        String::new()
    };
    Some(InputError::at(
        &first.task.pos,
        format!(
            "the tasks wait for each other in a cycle (check `after:`): {}{more}",
            names.join(" ⇄ ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    const INVENTORY: &str = "all:\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n    b: {ansible_host: 10.0.0.2}\n    c: {ansible_host: 10.0.0.3}\n  children:\n    db: {hosts: {a: , b: }}\n    dcs: {hosts: {c: }}\n";

    fn setup(
        playbook: &str,
        roles: &[(&str, &str, &str)],
    ) -> (tempfile::TempDir, Inventory, Playbook) {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("inv.yaml"), INVENTORY).expect("inv");
        fs::write(dir.path().join("site.yaml"), playbook).expect("playbook");
        for (name, tasks, handlers) in roles {
            let role = dir.path().join("roles").join(name);
            fs::create_dir_all(&role).expect("mkdir");
            fs::write(role.join("tasks.yaml"), tasks).expect("tasks");
            if !handlers.is_empty() {
                fs::write(role.join("handlers.yaml"), handlers).expect("handlers");
            }
        }
        let inventory = Inventory::load(&dir.path().join("inv.yaml")).expect("inventory");
        let playbook = Playbook::load(&dir.path().join("site.yaml")).expect("playbook");
        (dir, inventory, playbook)
    }

    fn names(resolved: &Resolved, host: &str) -> Vec<String> {
        let chain = &resolved
            .chains
            .iter()
            .find(|(h, _)| h == host)
            .expect("host")
            .1;
        chain
            .iter()
            .map(|id| resolved.nodes[*id].task.name.clone())
            .collect()
    }

    const ONE: &str = "- name: one\n  command: {cmd: 'true'}\n";
    const TWO: &str = "- name: two\n  command: {cmd: 'true'}\n  notify: restart\n";
    const HANDLER: &str = "- name: restart\n  command: {cmd: 'true'}\n";

    #[test]
    fn hosts_get_their_own_chains_and_waits_only_where_asked() {
        let (_dir, inv, pb) = setup(
            "- hosts: dcs\n  roles: [dcs]\n- hosts: db\n  roles:\n    - common\n    - {role: app, after: [dcs]}\n",
            &[("dcs", ONE, ""), ("common", ONE, ""), ("app", TWO, HANDLER)],
        );
        let resolved = Resolved::build(&inv, &pb, &Selection::default()).expect("builds");
        assert_eq!(names(&resolved, "a"), vec!["one", "two", "restart"]);
        assert_eq!(names(&resolved, "c"), vec!["one"]);
        let app_on_a = resolved
            .nodes
            .iter()
            .find(|n| n.host == "a" && n.task.name == "two")
            .expect("node");
        let dcs_on_c = resolved.nodes.iter().find(|n| n.host == "c").expect("node");
        assert_eq!(app_on_a.waits_on, vec![dcs_on_c.id]);
        let common_on_a = resolved
            .nodes
            .iter()
            .find(|n| n.host == "a" && n.role.as_deref() == Some("common"))
            .expect("node");
        assert!(
            common_on_a.waits_on.is_empty(),
            "common does not wait for anything"
        );
        let handler = resolved
            .nodes
            .iter()
            .find(|n| n.host == "a" && n.is_handler)
            .expect("handler");
        assert_eq!(app_on_a.notifies, vec![handler.id]);
        // Edges: 2 within a, 2 within b, and a and b each wait for c.
        assert_eq!(resolved.graph.edge_count(), 2 + 2 + 2);
    }

    #[test]
    fn a_cycle_names_its_tasks() {
        let (_dir, inv, pb) = setup(
            "- hosts: a\n  roles:\n    - {role: rx, after: [ry]}\n- hosts: b\n  roles:\n    - {role: ry, after: [rx]}\n",
            &[("rx", ONE, ""), ("ry", ONE, "")],
        );
        let err = Resolved::build(&inv, &pb, &Selection::default()).expect_err("cycle");
        let text = err.to_string();
        assert!(
            text.contains("cycle") && text.contains("a: rx / one") && text.contains("b: ry / one"),
            "{text}"
        );
    }

    #[test]
    fn limit_and_tags_select_nodes() {
        let (_dir, inv, pb) = setup(
            "- hosts: all\n  roles:\n    - {role: common, tags: [base]}\n    - app\n",
            &[("common", ONE, ""), ("app", TWO, HANDLER)],
        );
        let selection = Selection {
            limit: Some("db:!b".into()),
            tags: vec!["base".into()],
            skip_tags: vec![],
        };
        let resolved = Resolved::build(&inv, &pb, &selection).expect("builds");
        assert_eq!(resolved.chains.len(), 1);
        let selected: Vec<&str> = resolved
            .nodes
            .iter()
            .filter(|n| n.selected)
            .map(|n| n.task.name.as_str())
            .collect();
        assert_eq!(
            selected,
            vec!["one", "restart"],
            "handlers stay selectable; untagged tasks are not"
        );
    }

    #[test]
    fn unknown_handler_and_after_are_errors_with_positions() {
        let (_dir, inv, pb) = setup(
            "- hosts: a\n  roles:\n    - {role: app, after: [dsc]}\n",
            &[(
                "app",
                "- name: two\n  command: {cmd: 'true'}\n  notify: restrat\n",
                HANDLER,
            )],
        );
        let err = Resolved::build(&inv, &pb, &Selection::default())
            .expect_err("errors")
            .to_string();
        assert!(
            err.contains("no handler named `restrat` (did you mean `restart`?)"),
            "{err}"
        );
        assert!(err.contains("`after` names role `dsc`"), "{err}");
        assert!(
            err.contains(&format!("{}:3:", Path::new("site.yaml").display()))
                || err.contains("site.yaml:3:"),
            "{err}"
        );
    }

    #[test]
    fn a_role_reference_when_guards_its_tasks_handlers_and_dependencies() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("inv.yaml"), INVENTORY).expect("inv");
        fs::write(
            dir.path().join("site.yaml"),
            "- hosts: db\n  roles:\n    - {role: app, when: \"'dcs' in group_names\"}\n    - base\n",
        )
        .expect("playbook");
        for (name, tasks) in [("base", ONE), ("app", TWO)] {
            let role = dir.path().join("roles").join(name);
            fs::create_dir_all(&role).expect("mkdir");
            fs::write(role.join("tasks.yaml"), tasks).expect("tasks");
        }
        let app = dir.path().join("roles/app");
        fs::write(app.join("handlers.yaml"), HANDLER).expect("handlers");
        fs::write(app.join("meta.yaml"), "dependencies: [base]\n").expect("meta");
        let inv = Inventory::load(&dir.path().join("inv.yaml")).expect("inventory");
        let pb = Playbook::load(&dir.path().join("site.yaml")).expect("playbook");
        let resolved = Resolved::build(&inv, &pb, &Selection::default()).expect("builds");
        let conditions: Vec<(String, Vec<String>)> = resolved
            .nodes
            .iter()
            .filter(|n| n.host == "a")
            .map(|n| {
                let when = n.task.when.iter().map(|(c, _)| c.clone()).collect();
                (n.task.name.clone(), when)
            })
            .collect();
        let guard = "'dcs' in group_names".to_string();
        assert_eq!(
            conditions,
            vec![
                ("one".to_string(), vec![guard.clone()]),
                ("two".to_string(), vec![guard.clone()]),
                ("restart".to_string(), vec![guard]),
            ],
            "the dependency, the task and the handler carry the condition; `base` runs once"
        );
    }
}
