//! Playbooks and roles as written by users, parsed and checked for shape.
//!
//! A playbook is a list of plays; a play names its hosts (a pattern), its
//! vars, roles and tasks. A role is a folder `roles/NAME/` holding
//! `tasks.yaml`, `handlers.yaml`, `defaults.yaml`, `meta.yaml` (role
//! dependencies and required vars), `templates/` and `files/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{suggestion, InputError, InputErrors};
use crate::inventory::Vars;
use crate::yaml::{self, Key, Node, Pos, Value};

/// A parsed playbook with every role it uses.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The playbook file.
    pub path: PathBuf,
    /// The plays in order.
    pub plays: Vec<Play>,
    /// Every role used, by name (dependencies included).
    pub roles: BTreeMap<String, Arc<Role>>,
}

/// One play.
#[derive(Debug, Clone)]
pub struct Play {
    /// Its name (for output).
    pub name: String,
    /// Where it starts.
    pub pos: Pos,
    /// The host pattern and where it was written.
    pub hosts: (String, Pos),
    /// Play vars.
    pub vars: Vars,
    /// Roles applied, in order.
    pub roles: Vec<RoleRef>,
    /// Tasks after the roles.
    pub tasks: Vec<Arc<TaskDef>>,
    /// Handlers for the play's own tasks.
    pub handlers: Vec<Arc<TaskDef>>,
    /// `become` for the whole play.
    pub become_root: Option<bool>,
    /// Tags given to everything in the play.
    pub tags: Vec<String>,
}

/// A use of a role in a play or as a dependency.
#[derive(Debug, Clone)]
pub struct RoleRef {
    /// The role's name.
    pub name: String,
    /// Where it is referenced.
    pub pos: Pos,
    /// Cross-host waits before the role starts on a host.
    pub after: Vec<After>,
    /// Tags given to all the role's tasks.
    pub tags: Vec<String>,
    /// Vars given with the reference.
    pub vars: Vars,
    /// Conditions added to every task of the role (and of its handlers),
    /// before the task's own `when`.
    pub when: Vec<(String, Pos)>,
}

/// A cross-host wait: start only after `role` has finished on every host
/// (matching `hosts`, when given) that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// The role to wait for.
    pub role: String,
    /// Only these hosts (a pattern); all hosts running the role when `None`.
    pub hosts: Option<String>,
    /// Where the wait is written.
    pub pos: Pos,
}

/// A role loaded from its folder.
#[derive(Debug, Clone)]
pub struct Role {
    /// The role's name.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its tasks in order.
    pub tasks: Vec<Arc<TaskDef>>,
    /// Its handlers.
    pub handlers: Vec<Arc<TaskDef>>,
    /// Its default vars (lowest precedence).
    pub defaults: Vars,
    /// Roles that run before it on the same host.
    pub dependencies: Vec<RoleRef>,
    /// Vars the role cannot work without.
    pub required_vars: Vec<(String, Pos)>,
}

/// One task as written.
#[derive(Debug, Clone)]
pub struct TaskDef {
    /// Its name (defaults to the module and a parameter).
    pub name: String,
    /// Where it starts.
    pub pos: Pos,
    /// The module's name and where it is written.
    pub module: (String, Pos),
    /// The module's parameters: a mapping (a free-form string is read as
    /// `{cmd: STRING}`).
    pub params: Node,
    /// The parameters were written as one string (`command: echo hi`).
    pub free_form: bool,
    /// A condition (a minijinja expression).
    pub when: Vec<(String, Pos)>,
    /// Items to run the task for (`item` in templates).
    pub loop_items: Option<Node>,
    /// Handlers to notify when the task changes something.
    pub notify: Vec<(String, Pos)>,
    /// Tags.
    pub tags: Vec<String>,
    /// Whether to run as root via sudo.
    pub become_root: Option<bool>,
    /// Name under which the result is kept for later tasks.
    pub register: Option<String>,
    /// Cross-host waits before this task.
    pub after: Vec<After>,
    /// Task vars.
    pub vars: Vars,
    /// Whether a failure is reported but does not stop the host.
    pub ignore_errors: bool,
    /// `no_log`: the task's diff, states and messages are never shown or
    /// recorded (what changes and whether it failed still are).
    pub no_log: bool,
    /// `timeout`: seconds each of the task's commands may run on the host
    /// (the run's `--command-timeout` when `None`).
    pub timeout: Option<u64>,
}

const TASK_KEYS: [&str; 13] = [
    "name",
    "when",
    "loop",
    "notify",
    "tags",
    "become",
    "register",
    "after",
    "vars",
    "ignore_errors",
    "no_log",
    "timeout",
    "listen",
];
const PLAY_KEYS: [&str; 8] = [
    "name", "hosts", "vars", "roles", "tasks", "handlers", "become", "tags",
];
const ROLE_REF_KEYS: [&str; 5] = ["role", "after", "tags", "vars", "when"];

impl Playbook {
    /// Loads a playbook and every role it names. Roles are looked up in
    /// `roles/` beside the playbook, then in `../roles`.
    pub fn load(path: &Path) -> Result<Playbook, InputErrors> {
        Self::load_with_roles(path, &Self::roles_beside(path))
    }

    /// Loads a playbook whose roles are looked up in `search`, in order:
    /// the first folder holding a role of the name wins, role by role.
    pub fn load_with_roles(path: &Path, search: &[PathBuf]) -> Result<Playbook, InputErrors> {
        let text = yaml::read(path)?;
        Self::parse_with_roles(&text, path, search)
    }

    /// The folders where a playbook's roles are found by default: `roles/`
    /// beside it, then `../roles`.
    pub fn roles_beside(playbook: &Path) -> Vec<PathBuf> {
        let dir = playbook.parent().unwrap_or(Path::new("."));
        vec![dir.join("roles"), dir.join("..").join("roles")]
    }

    /// Parses playbook `text` read from `path`; its roles are loaded from
    /// the folders beside `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Playbook, InputErrors> {
        Self::parse_with_roles(text, path, &Self::roles_beside(path))
    }

    /// Parses playbook `text` read from `path`; its roles are loaded from
    /// the first folder of `search` that has them.
    pub fn parse_with_roles(
        text: &str,
        path: &Path,
        search: &[PathBuf],
    ) -> Result<Playbook, InputErrors> {
        let root = yaml::parse(text, path)?;
        let mut errors = Vec::new();
        let mut plays = Vec::new();
        for node in root.as_seq("a playbook")? {
            match parse_play(node) {
                Ok(play) => plays.push(play),
                Err(e) => errors.extend(e.0),
            }
        }
        if plays.is_empty() && errors.is_empty() {
            errors.push(root.error("the playbook has no plays"));
        }
        let mut roles = BTreeMap::new();
        let mut pending: Vec<RoleRef> = plays.iter().flat_map(|p| p.roles.clone()).collect();
        while let Some(reference) = pending.pop() {
            if roles.contains_key(&reference.name) {
                continue;
            }
            match load_role(&reference, search) {
                Ok(role) => {
                    pending.extend(role.dependencies.clone());
                    roles.insert(reference.name.clone(), Arc::new(role));
                }
                Err(e) => {
                    errors.extend(e.0);
                    roles.insert(
                        reference.name.clone(),
                        Arc::new(Role {
                            name: reference.name.clone(),
                            dir: PathBuf::new(),
                            tasks: Vec::new(),
                            handlers: Vec::new(),
                            defaults: Vars::new(),
                            dependencies: Vec::new(),
                            required_vars: Vec::new(),
                        }),
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(Playbook {
                path: path.to_path_buf(),
                plays,
                roles,
            })
        } else {
            Err(InputErrors(errors))
        }
    }
}

fn parse_play(node: &Node) -> Result<Play, InputErrors> {
    let mut errors = Vec::new();
    let entries = node.as_map("a play")?;
    let mut play = Play {
        name: String::new(),
        pos: node.pos.clone(),
        hosts: (String::new(), node.pos.clone()),
        vars: Vars::new(),
        roles: Vec::new(),
        tasks: Vec::new(),
        handlers: Vec::new(),
        become_root: None,
        tags: Vec::new(),
    };
    let mut has_hosts = false;
    for (key, value) in entries {
        let result: Result<(), InputError> = (|| {
            match key.name.as_str() {
                "name" => play.name = value.as_str("a play's name")?,
                "hosts" => {
                    play.hosts = (value.as_str_list("`hosts`")?.join(":"), value.pos.clone());
                    has_hosts = true;
                }
                "vars" => play.vars = vars_of(value, "play vars")?,
                "roles" => {
                    for r in value.as_seq("`roles`")? {
                        play.roles.push(parse_role_ref(r)?);
                    }
                }
                "tasks" => play.tasks = parse_tasks(value, &mut errors),
                "handlers" => play.handlers = parse_tasks(value, &mut errors),
                "become" => play.become_root = Some(value.as_bool("`become`")?),
                "tags" => play.tags = value.as_str_list("`tags`")?,
                other => {
                    return Err(InputError::at(
                        &key.pos,
                        format!(
                            "unknown key `{other}` in a play{}",
                            suggestion(other, PLAY_KEYS)
                        ),
                    ))
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if !has_hosts {
        errors.push(node.error("a play needs `hosts:` (a group, a host or a pattern)"));
    }
    if play.name.is_empty() {
        play.name = play.hosts.0.clone();
    }
    if errors.is_empty() {
        Ok(play)
    } else {
        Err(InputErrors(errors))
    }
}

/// Reads a mapping of vars.
pub fn vars_of(node: &Node, what: &str) -> Result<Vars, InputError> {
    Ok(node
        .as_map(what)?
        .iter()
        .map(|(k, v)| (k.name.clone(), v.to_json()))
        .collect())
}

fn parse_role_ref(node: &Node) -> Result<RoleRef, InputError> {
    let mut reference = RoleRef {
        name: String::new(),
        pos: node.pos.clone(),
        after: Vec::new(),
        tags: Vec::new(),
        vars: Vars::new(),
        when: Vec::new(),
    };
    if let Value::Str(name) = &node.value {
        reference.name = name.clone();
        return Ok(reference);
    }
    for (key, value) in node.as_map("a role reference")? {
        match key.name.as_str() {
            "role" => {
                reference.name = value.as_str("`role`")?;
                reference.pos = value.pos.clone();
            }
            "after" => reference.after = parse_after(value)?,
            "tags" => reference.tags = value.as_str_list("`tags`")?,
            "vars" => reference.vars = vars_of(value, "role vars")?,
            "when" => reference.when = parse_conditions(value)?,
            other => {
                return Err(InputError::at(
                    &key.pos,
                    format!(
                        "unknown key `{other}` in a role reference{}",
                        suggestion(other, ROLE_REF_KEYS)
                    ),
                ))
            }
        }
    }
    if reference.name.is_empty() {
        return Err(node.error("a role reference needs `role: NAME`"));
    }
    Ok(reference)
}

/// A `when:` value: one expression or a list of them (all must hold).
fn parse_conditions(node: &Node) -> Result<Vec<(String, Pos)>, InputError> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .map(|i| Ok((i.as_str("`when`")?, i.pos.clone())))
            .collect(),
        _ => Ok(vec![(node.as_str("`when`")?, node.pos.clone())]),
    }
}

fn parse_after(node: &Node) -> Result<Vec<After>, InputError> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    items
        .into_iter()
        .map(|item| match &item.value {
            Value::Str(role) => Ok(After {
                role: role.clone(),
                hosts: None,
                pos: item.pos.clone(),
            }),
            Value::Map(_) => {
                let role = item
                    .get("role")
                    .ok_or_else(|| item.error("`after` needs `role: NAME`"))?
                    .as_str("`role`")?;
                let hosts = item
                    .get("hosts")
                    .map(|h| h.as_str_list("`hosts`").map(|l| l.join(":")))
                    .transpose()?;
                for (key, _) in item.as_map("`after`")? {
                    if key.name != "role" && key.name != "hosts" {
                        return Err(InputError::at(
                            &key.pos,
                            format!(
                                "unknown key `{}` in `after` (use `role` and `hosts`)",
                                key.name
                            ),
                        ));
                    }
                }
                Ok(After {
                    role,
                    hosts,
                    pos: item.pos.clone(),
                })
            }
            _ => Err(item.error("`after` takes a role name or `{role: NAME, hosts: PATTERN}`")),
        })
        .collect()
}

fn parse_tasks(node: &Node, errors: &mut Vec<InputError>) -> Vec<Arc<TaskDef>> {
    match node.as_seq("a task list") {
        Ok(items) => items
            .iter()
            .filter_map(|item| parse_task(item).map_err(|e| errors.push(e)).ok())
            .map(Arc::new)
            .collect(),
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    }
}

/// Parses one task. The module is the one key that is not a task keyword;
/// whether that module exists is checked by [`crate::validate`].
pub fn parse_task(node: &Node) -> Result<TaskDef, InputError> {
    let entries = node.as_map("a task")?;
    let mut module: Option<(&Key, &Node)> = None;
    let mut task = empty_task(node);
    for (key, value) in entries {
        if set_keyword(&mut task, key, value)? {
            continue;
        }
        if let Some((first, _)) = module {
            return Err(InputError::at(
                &key.pos,
                format!(
                    "a task runs one module, but this one names `{}` and `{}` (a misspelled task keyword?){}",
                    first.name,
                    key.name,
                    suggestion(&key.name, TASK_KEYS)
                ),
            ));
        }
        module = Some((key, value));
    }
    let Some((module_key, params)) = module else {
        return Err(node.error("a task needs a module, for example `package: {name: haproxy}`"));
    };
    task.module = (module_key.name.clone(), module_key.pos.clone());
    if task.name.is_empty() {
        task.name = default_task_name(&module_key.name, params);
    }
    task.free_form = matches!(params.value, Value::Str(_));
    task.params = if task.free_form {
        free_form_params(params)
    } else {
        params.clone()
    };
    Ok(task)
}

/// A task at `node` with nothing set yet.
fn empty_task(node: &Node) -> TaskDef {
    TaskDef {
        name: String::new(),
        pos: node.pos.clone(),
        module: (String::new(), node.pos.clone()),
        params: Node {
            value: Value::Null,
            pos: node.pos.clone(),
        },
        free_form: false,
        when: Vec::new(),
        loop_items: None,
        notify: Vec::new(),
        tags: Vec::new(),
        become_root: None,
        register: None,
        after: Vec::new(),
        vars: Vars::new(),
        ignore_errors: false,
        no_log: false,
        timeout: None,
    }
}

/// Sets the task keyword `key` on `task`; false if `key` is no task
/// keyword (so names the module).
fn set_keyword(task: &mut TaskDef, key: &Key, value: &Node) -> Result<bool, InputError> {
    match key.name.as_str() {
        "name" => task.name = value.as_str("a task's name")?,
        "when" => task.when = parse_conditions(value)?,
        "loop" => task.loop_items = Some(value.clone()),
        "notify" => task.notify = parse_notify(value)?,
        "tags" => task.tags = value.as_str_list("`tags`")?,
        "become" => task.become_root = Some(value.as_bool("`become`")?),
        "register" => task.register = Some(value.as_str("`register`")?),
        "after" => task.after = parse_after(value)?,
        "vars" => task.vars = vars_of(value, "task vars")?,
        "ignore_errors" => task.ignore_errors = value.as_bool("`ignore_errors`")?,
        "no_log" => task.no_log = value.as_bool("`no_log`")?,
        "timeout" => task.timeout = Some(parse_timeout(value)?),
        "listen" => {}
        _ => return Ok(false),
    }
    Ok(true)
}

/// `timeout`: a whole number of seconds, 1 or more.
fn parse_timeout(value: &Node) -> Result<u64, InputError> {
    match &value.value {
        Value::Int(i) if *i >= 1 => Ok(*i as u64),
        _ => Err(value.error(format!(
            "`timeout` must be a whole number of seconds (1 or more), found {}",
            match &value.value {
                Value::Int(i) => i.to_string(),
                _ => value.type_name().to_string(),
            }
        ))),
    }
}

/// `notify`: one handler name or a list.
fn parse_notify(value: &Node) -> Result<Vec<(String, Pos)>, InputError> {
    match &value.value {
        Value::Seq(items) => items
            .iter()
            .map(|i| Ok((i.as_str("`notify`")?, i.pos.clone())))
            .collect::<Result<_, InputError>>(),
        _ => Ok(vec![(value.as_str("`notify`")?, value.pos.clone())]),
    }
}

/// `command: echo hi` is `command: {cmd: echo hi}`, for every path that
/// reads parameters (validate, probing, apply).
fn free_form_params(params: &Node) -> Node {
    Node {
        value: Value::Map(vec![(
            Key {
                name: "cmd".into(),
                pos: params.pos.clone(),
            },
            params.clone(),
        )]),
        pos: params.pos.clone(),
    }
}

fn default_task_name(module: &str, params: &Node) -> String {
    let main = ["name", "path", "dest", "cmd", "port", "rule"]
        .iter()
        .find_map(|k| params.get(k))
        .or(match params.value {
            Value::Str(_) => Some(params),
            _ => None,
        });
    match main.and_then(|n| n.as_str("").ok()) {
        Some(v) => format!("{module} {v}"),
        None => module.to_string(),
    }
}

fn load_role(reference: &RoleRef, search: &[PathBuf]) -> Result<Role, InputErrors> {
    let dir = find_role(reference, search)?;
    let mut errors = Vec::new();
    let tasks_node = read_role_file(&dir, "tasks.yaml", &mut errors);
    let handlers_node = read_role_file(&dir, "handlers.yaml", &mut errors);
    let defaults_node = read_role_file(&dir, "defaults.yaml", &mut errors);
    let meta_node = read_role_file(&dir, "meta.yaml", &mut errors);
    let tasks = tasks_node
        .map(|n| parse_tasks(&n, &mut errors))
        .unwrap_or_default();
    let handlers = handlers_node
        .map(|n| parse_tasks(&n, &mut errors))
        .unwrap_or_default();
    let defaults = defaults_node
        .map(|n| {
            vars_of(&n, "role defaults")
                .map_err(|e| errors.push(e))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let (dependencies, required_vars) = meta_node
        .map(|meta| parse_meta(&meta, &mut errors))
        .unwrap_or_default();
    if !dir.join("tasks.yaml").is_file()
        && !dir.join("handlers.yaml").is_file()
        && dependencies.is_empty()
    {
        errors.push(InputError::at(
            &reference.pos,
            format!(
                "role `{}` at {} has no tasks.yaml",
                reference.name,
                dir.display()
            ),
        ));
    }
    if errors.is_empty() {
        Ok(Role {
            name: reference.name.clone(),
            dir,
            tasks,
            handlers,
            defaults,
            dependencies,
            required_vars,
        })
    } else {
        Err(InputErrors(errors))
    }
}

/// The first folder named after the role in the search path; an error
/// naming the folders looked in (and a role of a similar name) if none.
fn find_role(reference: &RoleRef, search: &[PathBuf]) -> Result<PathBuf, InputError> {
    if let Some(dir) = search
        .iter()
        .map(|d| d.join(&reference.name))
        .find(|d| d.is_dir())
    {
        return Ok(dir);
    }
    let known: Vec<String> = search
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    Err(InputError::at(
        &reference.pos,
        format!(
            "role `{}` not found (looked in {}){}",
            reference.name,
            search
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            suggestion(&reference.name, known.iter().map(String::as_str))
        ),
    ))
}

/// A role's file `file`, if it exists (an error if it is not YAML).
fn read_role_file(dir: &Path, file: &str, errors: &mut Vec<InputError>) -> Option<Node> {
    let path = dir.join(file);
    if !path.is_file() {
        return None;
    }
    yaml::load(&path).map_err(|e| errors.push(e)).ok()
}

/// meta.yaml: the role's dependencies and required vars.
fn parse_meta(meta: &Node, errors: &mut Vec<InputError>) -> (Vec<RoleRef>, Vec<(String, Pos)>) {
    let mut dependencies = Vec::new();
    let mut required_vars = Vec::new();
    for (key, value) in meta.as_map("meta.yaml").unwrap_or_default() {
        match key.name.as_str() {
            "dependencies" => match value.as_seq("`dependencies`") {
                Ok(items) => dependencies.extend(items.iter().filter_map(|i| parse_role_ref(i).map_err(|e| errors.push(e)).ok())),
                Err(e) => errors.push(e),
            },
            "required_vars" => match value.as_seq("`required_vars`") {
                Ok(items) => required_vars.extend(items.iter().filter_map(|i| i.as_str("a var name").map(|s| (s, i.pos.clone())).map_err(|e| errors.push(e)).ok())),
                Err(e) => errors.push(e),
            },
            "description" => {}
            other => errors.push(InputError::at(&key.pos, format!("unknown key `{other}` in meta.yaml (use `dependencies`, `required_vars`, `description`)"))),
        }
    }
    (dependencies, required_vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(text: &str) -> Result<TaskDef, InputError> {
        let node = yaml::parse(text, Path::new("t.yaml")).expect("yaml");
        parse_task(&node)
    }

    #[test]
    fn task_keywords_and_module_are_separated() {
        let t = task("name: install\npackage: {name: haproxy}\nnotify: reload haproxy\ntags: [lb]\nregister: out\nwhen: x > 1\n").expect("task");
        assert_eq!(t.module.0, "package");
        assert_eq!(t.notify[0].0, "reload haproxy");
        assert_eq!(t.tags, vec!["lb"]);
        assert_eq!(t.register.as_deref(), Some("out"));
        assert_eq!(t.when[0].0, "x > 1");
    }

    #[test]
    fn two_modules_point_at_the_misspelled_keyword() {
        let err = task("name: x\npackage: {name: a}\nnotfy: y\n").expect_err("two modules");
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("notify"), "{err}");
    }

    #[test]
    fn a_task_without_module_is_an_error() {
        let err = task("name: nothing\n").expect_err("no module");
        assert!(err.message.contains("needs a module"), "{err}");
    }

    #[test]
    fn no_log_and_timeout_are_task_keywords() {
        let t = task("command: {cmd: x}\nno_log: true\ntimeout: 600\n").expect("task");
        assert!(t.no_log);
        assert_eq!(t.timeout, Some(600));
        for bad in ["0", "-5", "ten", "1.5"] {
            let err = task(&format!("command: {{cmd: x}}\ntimeout: {bad}\n")).expect_err(bad);
            assert_eq!(err.pos.line, 2, "{err}");
            assert!(err.message.contains("whole number of seconds"), "{err}");
        }
    }

    #[test]
    fn after_takes_names_and_mappings() {
        let t = task("command: {cmd: x}\nafter: [etcd, {role: patroni, hosts: postgres}]\n")
            .expect("task");
        assert_eq!(t.after[0].role, "etcd");
        assert_eq!(t.after[1].hosts.as_deref(), Some("postgres"));
    }
}
