//! Checks everything that can be checked without contacting a host: modules
//! and their parameters, templates (syntax and undefined variables), files
//! named by tasks, required vars, `when` expressions. Used by
//! `pgdeploy validate` and before every `apply`/`plan`: bad input means exit
//! code 2 and no host touched.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pgdeploy_modules::ModuleError;

use minijinja::Value;
use serde_json::Value as Json;

use crate::error::{suggestion, InputError, InputErrors};
use crate::inventory::{Inventory, Vars};
use crate::playbook::{Playbook, TaskDef};
use crate::prepare::{Prep, PrepareError};
use crate::resolve::{Resolved, TaskNode};
use crate::scope::{self, HostValues};
use crate::template::{TemplateError, Templater, Unknown};
use crate::yaml::Value as YamlValue;

/// Where a task's `src` lives: absolute as given, else in the role's
/// `templates/` or `files/`, else beside the playbook.
pub fn source_path(node: &TaskNode, kind: &str, src: &str) -> PathBuf {
    let path = Path::new(src);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match &node.role_dir {
        Some(dir) => dir.join(kind).join(src),
        None => node
            .task
            .pos
            .file
            .parent()
            .unwrap_or(Path::new("."))
            .join(kind)
            .join(src),
    }
}

/// Runs every check; returns all problems found.
pub fn check(
    inventory: &Inventory,
    playbook: &Playbook,
    resolved: &Resolved,
    extra: &Vars,
) -> Result<(), InputErrors> {
    let templater = Templater::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut misshapen = HashSet::new();
    for task in all_tasks(playbook) {
        if seen.insert(Arc::as_ptr(&task)) {
            let before = errors.len();
            check_task_shape(&task, &templater, &mut errors);
            if errors.len() > before {
                misshapen.insert(Arc::as_ptr(&task));
            }
        }
    }
    for role in playbook.roles.values() {
        check_templates_syntax(&role.dir.join("templates"), &templater, &mut errors);
    }
    check_nodes(
        inventory,
        playbook,
        resolved,
        extra,
        &templater,
        &misshapen,
        &mut errors,
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InputErrors(errors).deduped())
    }
}

fn all_tasks(playbook: &Playbook) -> Vec<Arc<TaskDef>> {
    let mut tasks: Vec<Arc<TaskDef>> = Vec::new();
    for play in &playbook.plays {
        tasks.extend(play.tasks.iter().cloned());
        tasks.extend(play.handlers.iter().cloned());
    }
    for role in playbook.roles.values() {
        tasks.extend(role.tasks.iter().cloned());
        tasks.extend(role.handlers.iter().cloned());
    }
    tasks
}

fn check_task_shape(task: &TaskDef, templater: &Templater, errors: &mut Vec<InputError>) {
    let (name, pos) = &task.module;
    let Some(module) = pgdeploy_modules::find(name) else {
        let names: Vec<&str> = pgdeploy_modules::registry()
            .iter()
            .map(|m| m.name())
            .collect();
        errors.push(InputError::at(
            pos,
            format!(
                "unknown module `{name}`{}",
                suggestion(name, names.iter().copied())
            ),
        ));
        return;
    };
    let specs = module.params();
    if task.free_form && !specs.iter().any(|s| s.name == "cmd") {
        errors.push(InputError::at(
            &task.params.pos,
            format!("the parameters of module `{name}` must be a mapping, found a string"),
        ));
        return;
    }
    match &task.params.value {
        YamlValue::Map(entries) => {
            for (key, _) in entries {
                if !specs.iter().any(|s| s.name == key.name) {
                    errors.push(InputError::at(
                        &key.pos,
                        format!(
                            "module `{name}` has no parameter `{}`{}",
                            key.name,
                            suggestion(&key.name, specs.iter().map(|s| s.name))
                        ),
                    ));
                }
            }
            for spec in specs.iter().filter(|s| s.required) {
                if !entries.iter().any(|(k, _)| k.name == spec.name) {
                    errors.push(InputError::at(
                        &task.params.pos,
                        format!("module `{name}` needs parameter `{}`", spec.name),
                    ));
                }
            }
        }
        _ => errors.push(InputError::at(
            &task.params.pos,
            format!(
                "the parameters of module `{name}` must be a mapping, found {}",
                task.params.type_name()
            ),
        )),
    }
    for (condition, pos) in &task.when {
        let expr = condition
            .trim()
            .trim_start_matches("{{")
            .trim_end_matches("}}");
        if let Err(e) = templater.check_syntax(&format!("{{{{ {expr} }}}}")) {
            errors.push(InputError::at(
                pos,
                format!("`when: {condition}` is not a valid expression: {e}"),
            ));
        }
    }
    check_strings_syntax(&task.params, templater, errors);
}

fn check_strings_syntax(
    node: &crate::yaml::Node,
    templater: &Templater,
    errors: &mut Vec<InputError>,
) {
    match &node.value {
        YamlValue::Str(s) if s.contains("{{") || s.contains("{%") => {
            if let Err(e) = templater.check_syntax(s) {
                errors.push(InputError::at(&node.pos, format!("template syntax: {e}")));
            }
        }
        YamlValue::Seq(items) => items
            .iter()
            .for_each(|n| check_strings_syntax(n, templater, errors)),
        YamlValue::Map(entries) => entries
            .iter()
            .for_each(|(_, n)| check_strings_syntax(n, templater, errors)),
        _ => {}
    }
}

/// Where in template file `path` the error `e` is (line and column when
/// minijinja knows them).
fn template_pos(path: &Path, e: &TemplateError) -> crate::yaml::Pos {
    let (line, column) = e.location.unwrap_or((0, 0));
    crate::yaml::Pos {
        file: Arc::new(path.to_path_buf()),
        line,
        column: column.max(u32::from(line > 0)),
    }
}

/// A message without its "line N: " prefix, for errors whose position
/// already names the line.
fn without_line_prefix(message: &str) -> &str {
    match message
        .strip_prefix("line ")
        .and_then(|r| r.split_once(": "))
    {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => message,
    }
}

fn check_templates_syntax(dir: &Path, templater: &Templater, errors: &mut Vec<InputError>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            check_templates_syntax(&path, templater, errors);
            continue;
        }
        let Ok(source) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Err(e) = templater.check_syntax(&source) {
            errors.push(InputError::at(
                &template_pos(&path, &e),
                format!("template syntax: {}", without_line_prefix(&e.message)),
            ));
        }
    }
}

/// Renders every well-formed node's parameters, conditions and templates with the real
/// vars and placeholders for what only the host knows.
fn check_nodes(
    inventory: &Inventory,
    playbook: &Playbook,
    resolved: &Resolved,
    extra: &Vars,
    templater: &Templater,
    misshapen: &HashSet<*const TaskDef>,
    errors: &mut Vec<InputError>,
) {
    let globals = scope::globals(inventory);
    let registered_names: BTreeSet<String> = all_tasks(playbook)
        .iter()
        .filter_map(|t| t.register.clone())
        .collect();
    let placeholder_used = Arc::new(AtomicBool::new(false));
    let unknown = Unknown::value(&placeholder_used);
    let registered = Value::from_pairs(
        registered_names
            .iter()
            .map(|n| (n.clone(), unknown.clone())),
    );
    let mut required_checked = HashSet::new();
    for node in resolved
        .nodes
        .iter()
        .filter(|n| n.selected && !misshapen.contains(&Arc::as_ptr(&n.task)))
    {
        let item = node.task.loop_items.as_ref().map(|_| unknown.clone());
        let values = HostValues {
            facts: unknown.clone(),
            registered: registered.clone(),
            item: item.as_ref(),
        };
        let vars = scope::node_vars(
            templater, inventory, resolved, &globals, extra, node, values,
        );
        if let Some(role) = node.role.as_ref().and_then(|r| playbook.roles.get(r)) {
            if required_checked.insert((node.host.clone(), role.name.clone())) {
                for (var, pos) in &role.required_vars {
                    if vars.get_attr(var).map(|v| v.is_undefined()).unwrap_or(true) {
                        errors.push(InputError::at(
                            pos,
                            format!("role `{}` needs var `{var}` for host `{}`: set it in the inventory, group_vars or host_vars", role.name, node.host),
                        ));
                    }
                }
            }
        }
        let prep = Prep {
            templater,
            node,
            undecided_when_runs: false,
        };
        let found_before = errors.len();
        match prep.skipped_by(&vars) {
            Ok(Some(_)) => continue,
            Err(PrepareError::When {
                condition,
                pos,
                error,
            }) if error.undefined || error.var.is_some() => errors.push(InputError::at(
                &pos,
                format!(
                    "host `{}`: `when: {condition}`: {error}{}",
                    node.host,
                    var_suggestion(&error, &vars)
                ),
            )),
            _ => {}
        }
        check_loop(node, &prep, &vars, &placeholder_used, errors);
        placeholder_used.store(false, Ordering::Relaxed);
        match prep.params(&vars) {
            Err(PrepareError::Params(e)) if e.undefined || e.var.is_some() => {
                errors.push(InputError::at(
                    &node.task.params.pos,
                    format!(
                        "host `{}`, task `{}`: {e}{}",
                        node.host,
                        node.task.name,
                        var_suggestion(&e, &vars)
                    ),
                ))
            }
            Ok(params) => {
                if !placeholder_used.load(Ordering::Relaxed) {
                    check_resource(node, &prep, &params, errors);
                }
                check_sources(node, &params, &vars, templater, errors);
            }
            Err(_) => {}
        }
        if errors.len() == found_before {
            check_names(node, &vars, templater, errors);
        }
    }
}

/// Every name an expression of the task reads must be defined, unless the
/// expression renders without it (the templater is strict: only
/// `default`, `is defined` and the like let an undefined name through, as
/// in Ansible): rendering reports `{{ nope }}`, but `{{ my-var }}` (read as
/// `my - var`) fails as a type error only on a host.
fn check_names(node: &TaskNode, vars: &Value, templater: &Templater, errors: &mut Vec<InputError>) {
    let mut sources: Vec<(String, &crate::yaml::Pos)> = node
        .task
        .when
        .iter()
        .map(|(condition, pos)| {
            let bare = condition
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}");
            (format!("{{{{ {bare} }}}}"), pos)
        })
        .collect();
    for node_value in node.task.loop_items.iter().chain([&node.task.params]) {
        let mut strings = Vec::new();
        scope::strings(&node_value.to_json(), &mut strings);
        sources.extend(strings.into_iter().map(|s| (s, &node_value.pos)));
    }
    let defined = |name: &str| vars.get_attr(name).is_ok_and(|v| !v.is_undefined());
    let mut reported = HashSet::new();
    for (source, pos) in sources {
        let mut names: Vec<String> = templater
            .names(&source)
            .into_iter()
            .filter(|name| !defined(name) && !templater.is_global(name))
            .collect();
        if names.is_empty() || templater.render(&source, vars).is_ok() {
            continue;
        }
        // It failed: the names read bare are the ones to name.
        names.retain(|name| !guarded(&source, name));
        names.sort();
        for name in names {
            if !reported.insert(name.clone()) {
                continue;
            }
            let hint = hyphen_hint(&source, &name, &defined).unwrap_or_else(|| {
                let known: Vec<String> = vars
                    .try_iter()
                    .map(|keys| keys.filter_map(|k| k.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                suggestion(&name, known.iter().map(String::as_str))
            });
            errors.push(InputError::at(
                pos,
                format!(
                    "host `{}`, task `{}`: `{name}` is undefined{hint}",
                    node.host, node.task.name
                ),
            ));
        }
    }
}

/// Whether every use of `name` in `source` is guarded: followed (after
/// any `.attr` or `[key]`) by a `default` (`d`) filter or an `is defined`,
/// `is not defined`, `is undefined` or `is none` test.
fn guarded(source: &str, name: &str) -> bool {
    let bytes = source.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut uses = 0;
    for (at, _) in source.match_indices(name) {
        let end = at + name.len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| word(b) || b == b'.') || bytes.get(end).copied().is_some_and(word)
        {
            continue; // part of another name, or an attribute
        }
        uses += 1;
        let mut rest = &source[end..];
        // .attr, ['key'], [0]
        loop {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            } else if let Some(r) = rest.strip_prefix('[') {
                rest = r.split_once(']').map_or("", |(_, r)| r);
            } else {
                break;
            }
        }
        let rest = rest.trim_start();
        let filter = rest
            .strip_prefix('|')
            .map(str::trim_start)
            .is_some_and(|r| {
                let name: String = r
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                name == "default" || name == "d"
            });
        let test = rest.strip_prefix("is").is_some_and(|r| {
            let words: Vec<&str> = r.split_whitespace().take(2).collect();
            let test = match words.as_slice() {
                ["not", t, ..] => *t,
                [t, ..] => *t,
                [] => "",
            };
            let test: String = test
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            matches!(test.as_str(), "defined" | "undefined" | "none")
        });
        if !(filter || test) {
            return false;
        }
    }
    uses > 0
}

/// " (`my-var` reads as `my - var`; did you mean `my_var`?)" when `name` is
/// part of a word with hyphens in `source` whose underscored spelling is a
/// defined variable.
fn hyphen_hint(source: &str, name: &str, defined: &dyn Fn(&str) -> bool) -> Option<String> {
    source
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|word| word.contains('-') && word.split('-').any(|part| part == name))
        .map(|word| word.trim_matches('-'))
        .find(|word| defined(&word.replace('-', "_")))
        .map(|word| {
            format!(
                " (`{word}` reads as `{}`; did you mean `{}`?)",
                word.replace('-', " - "),
                word.replace('-', "_")
            )
        })
}

/// " (did you mean `x`?)" when an undefined variable's name is close to a
/// variable that exists.
fn var_suggestion(e: &TemplateError, vars: &Value) -> String {
    if e.var.is_some() {
        return String::new(); // about a variable's own template: it exists
    }
    let Some(name) = e
        .message
        .split('`')
        .nth(1)
        .filter(|n| n.chars().all(|c| c.is_alphanumeric() || c == '_'))
    else {
        return String::new();
    };
    let names: Vec<String> = vars
        .try_iter()
        .map(|keys| keys.filter_map(|k| k.as_str().map(String::from)).collect())
        .unwrap_or_default();
    suggestion(name, names.iter().map(String::as_str))
}

/// A `loop` must give a list; checked when it is fully known without a host.
fn check_loop(
    node: &TaskNode,
    prep: &Prep<'_>,
    vars: &Value,
    placeholder_used: &AtomicBool,
    errors: &mut Vec<InputError>,
) {
    let Some(items) = &node.task.loop_items else {
        return;
    };
    placeholder_used.store(false, Ordering::Relaxed);
    match prep.items(vars) {
        Err(e) if e.undefined() => errors.push(InputError::at(
            &items.pos,
            format!("host `{}`: {e}", node.host),
        )),
        Err(e @ PrepareError::LoopNotList { .. }) if !placeholder_used.load(Ordering::Relaxed) => {
            errors.push(InputError::at(&items.pos, e.to_string()))
        }
        _ => {}
    }
}

/// Builds the module's resource from parameters that are fully known
/// without a host, so wrong types and values (a mode that is a list, a port
/// out of range, a bad CIDR, an unknown state) are found before any host is
/// contacted. The error points at the first parameter it is about that the
/// task gives ([`ModuleError::parameters`]), else at the task's parameters.
fn check_resource(node: &TaskNode, prep: &Prep<'_>, params: &Json, errors: &mut Vec<InputError>) {
    let Err(PrepareError::Module(err)) = prep.resource(params, &CheckContext) else {
        return;
    };
    let Some(names) = err.parameters() else {
        return;
    };
    let pos = names
        .iter()
        .find_map(|name| node.task.params.get(name))
        .map(|n| n.pos.clone())
        .unwrap_or_else(|| node.task.params.pos.clone());
    errors.push(InputError::at(
        &pos,
        format!("task `{}`: {err}", node.task.name),
    ));
}

/// What modules see while their parameters are checked: templates and
/// files are checked on their own (see `check_sources`), so they read as
/// empty here.
struct CheckContext;

impl pgdeploy_modules::Context for CheckContext {
    fn render_template(&self, _src: &str) -> Result<String, ModuleError> {
        Ok(String::new())
    }
    fn read_file(&self, _src: &str) -> Result<Vec<u8>, ModuleError> {
        Ok(Vec::new())
    }
    fn run_id(&self) -> &str {
        "validate"
    }
}

fn check_sources(
    node: &TaskNode,
    params: &Json,
    vars: &Value,
    templater: &Templater,
    errors: &mut Vec<InputError>,
) {
    let Some(src) = params.get("src").and_then(Json::as_str) else {
        return;
    };
    let kind = match node.task.module.0.as_str() {
        "template" => "templates",
        "copy" => "files",
        _ => return,
    };
    let path = source_path(node, kind, src);
    let pos = node
        .task
        .params
        .get("src")
        .map(|n| n.pos.clone())
        .unwrap_or_else(|| node.task.params.pos.clone());
    if !path.is_file() {
        errors.push(InputError::at(
            &pos,
            format!(
                "{} `{src}` not found at {}",
                &kind[..kind.len() - 1],
                path.display()
            ),
        ));
        return;
    }
    if kind == "templates" {
        if let Err(e) = templater.render_file(&path, vars) {
            if e.undefined {
                errors.push(InputError::at(
                    &template_pos(&path, &e),
                    format!(
                        "{}{} (host `{}`, task `{}` at {pos})",
                        without_line_prefix(&e.message),
                        var_suggestion(&e, vars),
                        node.host,
                        node.task.name
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::inventory::Vars;
    use crate::resolve::Selection;

    /// `validate`'s errors for a one-task playbook on host `a`.
    fn errors(task: &str) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tmp");
        let inventory = dir.path().join("inv.yaml");
        let playbook = dir.path().join("site.yaml");
        std::fs::write(
            &inventory,
            "all:\n  vars: {my_var: 1}\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n",
        )
        .expect("inventory");
        std::fs::write(&playbook, format!("- hosts: a\n  tasks:\n{task}")).expect("playbook");
        match crate::load_inputs(&inventory, &playbook, &Selection::default(), &Vars::new()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// A name read only under `default` or an `is defined` test is no
    /// error (Ansible's way to make a variable optional); read bare, or
    /// misspelt as `my-var`, it is.
    #[test]
    fn an_undefined_name_guarded_by_default_or_is_defined_is_no_error() {
        let guarded = "    - name: t\n      copy: {dest: /x, content: \"{{ maybe | default('') }}{% if other is defined %}{{ other }}{% endif %}\"}\n      when: flag is not defined or flag\n";
        assert_eq!(errors(guarded), Vec::<String>::new());
        let bare = "    - name: t\n      copy: {dest: /x, content: \"{{ maybe | default('') }} {{ my-var }}\"}\n";
        let found = errors(bare);
        assert!(
            found
                .iter()
                .any(|e| e.contains("`my` is undefined") && e.contains("did you mean `my_var`")),
            "{found:?}"
        );
        assert!(!found.iter().any(|e| e.contains("`maybe`")), "{found:?}");
        let both = "    - name: t\n      copy: {dest: /x, content: \"{{ maybe | default('') }}{{ maybe.x }}\"}\n";
        assert!(
            errors(both)
                .iter()
                .any(|e| e.contains("`maybe.x` is undefined")),
            "a bare use is named even when another use is guarded: {:?}",
            errors(both)
        );
    }

    #[test]
    fn guards_are_read_after_attributes_and_keys() {
        use super::guarded;
        assert!(guarded("{{ x | default(1) }}", "x"));
        assert!(guarded("{{ x.y['z'] |d('') }}", "x"));
        assert!(guarded("{% if x is not defined %}{% endif %}", "x"));
        assert!(guarded("{{ 1 if x is none else x | default(2) }}", "x"));
        assert!(!guarded("{{ x | upper }}", "x"));
        assert!(!guarded("{{ x is string }}", "x"));
        assert!(!guarded("{{ x | default(1) }} {{ x }}", "x"));
        assert!(
            !guarded("{{ y.x | default(1) }}", "x"),
            "an attribute is no use of x"
        );
    }
}
