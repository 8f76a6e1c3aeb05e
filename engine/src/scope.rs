//! The variables a task sees, composed in precedence order (see
//! [`crate::inventory`] for the full order).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::Value;
use serde_json::Value as Json;

use crate::inventory::{Host, Inventory, Vars};
use crate::resolve::{Resolved, TaskNode};
use crate::template::Templater;
use crate::yaml::Pos;

/// Why a variable whose value is a template cannot be rendered. It is
/// raised where the variable is used, so an unused one never fails.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VarError {
    /// Variables whose values refer to each other in a circle.
    #[error("variables refer to each other in a cycle: {} ({})", chain.join(" -> "), origins(chain, files))]
    Cycle {
        /// The variables, the first one again at the end (`x -> y -> x`).
        chain: Vec<String>,
        /// Where each variable of the cycle is set, by name.
        files: BTreeMap<String, String>,
    },
    /// A variable's template failed (an undefined name, a bad filter...).
    #[error("variable `{name}` (set in {file}): {message}")]
    Render {
        /// The variable.
        name: String,
        /// Where it is set.
        file: String,
        /// Why its template failed.
        message: String,
        /// Whether the cause is an undefined variable.
        undefined: bool,
    },
}

fn origins(chain: &[String], files: &BTreeMap<String, String>) -> String {
    let mut seen = HashSet::new();
    chain
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .map(|n| format!("`{n}` in {}", files.get(n).map_or("?", String::as_str)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One layer of variables and where they are set (a file, `-e`).
pub struct Layer<'a> {
    /// The values.
    pub vars: &'a Vars,
    /// Where they are set, for errors.
    pub origin: String,
    /// Where each one is set, when known (file:line:column), for errors.
    pub at: Option<&'a BTreeMap<String, Pos>>,
}

/// The values among `layers` (lowest precedence first) that hold a
/// template, as a map that renders each when it is read (as Ansible does),
/// against `scope` (the whole scope the variables are used in, this map
/// merged over it), so a value may read another, recursively; `None` when
/// no value holds a template. Reading a value that cannot be rendered (a
/// cycle, an undefined name) fails with its [`VarError`]; an unused one
/// never fails. Names in `shadowed` (registered results, specials) are left
/// alone.
pub fn render_templated(
    templater: &Templater,
    layers: &[Layer<'_>],
    scope: &Value,
    shadowed: &dyn Fn(&str) -> bool,
) -> Option<Value> {
    let mut templated = BTreeMap::new();
    for layer in layers {
        for (name, value) in layer.vars {
            let origin = match layer.at.and_then(|at| at.get(name)) {
                Some(pos) => pos.to_string(),
                None => layer.origin.clone(),
            };
            templated.insert(name.clone(), (value.clone(), origin));
        }
    }
    templated.retain(|name, (value, _)| has_template(value) && !shadowed(name));
    if templated.is_empty() {
        return None;
    }
    Some(Value::from_object(Lazy {
        templater: templater.clone(),
        scope: scope.clone(),
        templated,
        state: Mutex::default(),
    }))
}

/// Whether a value holds a template anywhere.
fn has_template(value: &Json) -> bool {
    match value {
        Json::String(s) => s.contains("{{") || s.contains("{%"),
        Json::Array(items) => items.iter().any(has_template),
        Json::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

/// Every string inside a value.
pub fn strings(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::String(s) => out.push(s.clone()),
        Json::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Json::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The templated variables of one scope, rendered when read.
#[derive(Debug)]
struct Lazy {
    templater: Templater,
    scope: Value,
    /// Value as written and where it is set, by name.
    templated: BTreeMap<String, (Json, String)>,
    state: Mutex<LazyState>,
}

#[derive(Debug, Default)]
struct LazyState {
    /// What each variable rendered to, once read.
    done: BTreeMap<String, Result<Json, VarError>>,
    /// The variables being rendered, outermost first.
    stack: Vec<String>,
}

impl Lazy {
    fn state(&self) -> std::sync::MutexGuard<'_, LazyState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn render(self: &Arc<Self>, name: &str) -> Result<Json, VarError> {
        let (value, origin) = &self.templated[name];
        {
            let mut state = self.state();
            if let Some(done) = state.done.get(name) {
                return done.clone();
            }
            if state.stack.iter().any(|n| n == name) {
                return Err(RENDERING.with_borrow(|all| {
                    // The whole chain, through other hosts' values too.
                    let at = all.iter().rposition(|(n, _)| n == name).unwrap_or(0);
                    let mut chain: Vec<String> = all[at..].iter().map(|(n, _)| n.clone()).collect();
                    chain.push(name.to_string());
                    let files = all[at..].iter().cloned().collect();
                    VarError::Cycle { chain, files }
                }));
            }
            state.stack.push(name.to_string());
        }
        RENDERING.with_borrow_mut(|all| all.push((name.to_string(), origin.clone())));
        let vars = minijinja::value::merge_maps([
            self.scope.clone(),
            Value::from_dyn_object(self.clone()),
        ]);
        let rendered = self
            .templater
            .render_json(value, &vars)
            .map_err(|e| match e.var {
                Some(inner) => *inner,
                None => VarError::Render {
                    name: name.to_string(),
                    file: origin.clone(),
                    message: e.message,
                    undefined: e.undefined,
                },
            });
        RENDERING.with_borrow_mut(|all| all.pop());
        let mut state = self.state();
        state.stack.pop();
        state.done.insert(name.to_string(), rendered.clone());
        rendered
    }
}

thread_local! {
    /// The templated values being rendered on this thread, outermost
    /// first, with where each is set, across every scope (a host's value
    /// may read another host's through `hostvars`): a cycle is reported
    /// whole from here. Rendering is synchronous, so it stays on one thread.
    static RENDERING: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Object for Lazy {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        if !self.templated.contains_key(name) {
            return None;
        }
        Some(match self.render(name) {
            Ok(json) => crate::template::value(&json),
            Err(error) => crate::template::invalid(error),
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.templated
                .keys()
                .map(|k| Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// The templater used where no run provides one (the day-2 commands'
/// [`host_var`]).
fn shared_templater() -> &'static Templater {
    static TEMPLATER: OnceLock<Templater> = OnceLock::new();
    TEMPLATER.get_or_init(Templater::new)
}

/// Values only known on the host: facts, registered results, loop item.
pub struct HostValues<'a> {
    /// `facts`.
    pub facts: Value,
    /// Registered results by name.
    pub registered: Value,
    /// The current loop item.
    pub item: Option<&'a Value>,
}

/// `groups` and `hostvars` (inventory vars of every host, with `address`).
///
/// A host's values that hold templates are rendered when read, against
/// that host's inventory vars ([`render_templated`]), as Ansible renders
/// `hostvars[host]`; they may read `hostvars` too (another host's value,
/// itself rendered in that host's scope).
pub fn globals(inventory: &Inventory) -> Value {
    let groups = crate::template::value(&inventory.groups_json());
    let all = Arc::new(HostVars {
        inventory: inventory.clone(),
        groups: groups.clone(),
        seen: OnceLock::new(),
    });
    Value::from_pairs([
        ("groups", groups),
        ("hostvars", Value::from_dyn_object(all)),
    ])
}

/// `hostvars`: every host's inventory vars, made on first read (the
/// templated values among them refer to this map again, for other hosts).
#[derive(Debug)]
struct HostVars {
    inventory: Inventory,
    groups: Value,
    seen: OnceLock<BTreeMap<String, Value>>,
}

impl HostVars {
    fn seen(self: &Arc<Self>) -> &BTreeMap<String, Value> {
        self.seen.get_or_init(|| self.build())
    }

    fn build(self: &Arc<Self>) -> BTreeMap<String, Value> {
        let inventory = &self.inventory;
        let origin = inventory_origin(inventory);
        // Weak: the values below are kept in this map; a strong reference
        // back would keep both alive for good.
        let me = Value::from_object(HostVarsRef(Arc::downgrade(self)));
        let mut hostvars = BTreeMap::new();
        for host in &inventory.hosts {
            let mut vars = host.vars.clone();
            vars.insert(
                "address".into(),
                Json::from(host.connection.address.clone()),
            );
            vars.insert("inventory_hostname".into(), Json::from(host.name.clone()));
            let own = crate::template::value(&vars);
            let layers = [Layer {
                vars: &host.vars,
                origin: origin.clone(),
                at: Some(&host.var_pos),
            }];
            let scope = minijinja::value::merge_maps([
                Value::from_pairs([("groups", self.groups.clone()), ("hostvars", me.clone())]),
                Value::from_pairs([("group_names", crate::template::value(&host.groups))]),
                own.clone(),
            ]);
            let seen = match render_templated(shared_templater(), &layers, &scope, &|_| false) {
                Some(overlay) => minijinja::value::merge_maps([own, overlay]),
                None => own,
            };
            hostvars.insert(host.name.clone(), seen);
        }
        hostvars
    }
}

/// `hostvars` as the templated values inside it see it.
#[derive(Debug)]
struct HostVarsRef(std::sync::Weak<HostVars>);

impl Object for HostVarsRef {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.upgrade()?.get_value(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.0.upgrade() {
            Some(all) => all.enumerate(),
            None => Enumerator::Empty,
        }
    }
}

impl Object for HostVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.seen().get(key.as_str()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.inventory
                .hosts
                .iter()
                .map(|h| Value::from(h.name.as_str()))
                .collect(),
        )
    }
}

/// Where inventory vars are set, for errors.
fn inventory_origin(inventory: &Inventory) -> String {
    format!(
        "the inventory {} (or its group_vars/host_vars)",
        inventory.path.display()
    )
}

/// A variable as the host `host` sees it outside any task (the day-2
/// commands' view): extra vars (`-e`, secrets), then the host's inventory
/// vars (host, then its groups, as [`Inventory`] merged them), then role
/// defaults ([`crate::resolve::role_defaults`], play order). The same order
/// as [`node_vars`] without play, task and registered vars. Null is unset.
///
/// A value that holds a template is rendered against the same host's
/// scope ([`render_templated`]), with the host's `facts` when the caller
/// read them (a default that reads facts cannot be rendered without); one
/// that cannot be rendered is given as written (see [`host_var_rendered`]
/// for the error).
pub fn host_var(
    inventory: &Inventory,
    defaults: &Vars,
    extra: &Vars,
    host: &str,
    name: &str,
) -> Option<Json> {
    match host_var_rendered(inventory, defaults, extra, (host, None), name) {
        Ok(value) => value,
        Err(_) => raw_host_var(inventory, defaults, extra, host, name),
    }
}

/// [`host_var`], or why its template cannot be rendered. `host` is the
/// host's name and, when read, its facts.
pub fn host_var_rendered(
    inventory: &Inventory,
    defaults: &Vars,
    extra: &Vars,
    (host, facts): (&str, Option<&Json>),
    name: &str,
) -> Result<Option<Json>, VarError> {
    let Some(raw) = raw_host_var(inventory, defaults, extra, host, name) else {
        return Ok(None);
    };
    if !has_template(&raw) {
        return Ok(Some(raw));
    }
    let no_vars = Vars::new();
    let layers = host_layers(inventory, defaults, inventory.host(host), &no_vars, extra);
    let groups = inventory
        .host(host)
        .map(|h| h.groups.clone())
        .unwrap_or_default();
    let mut specials = vec![
        ("inventory_hostname", Value::from(host)),
        ("group_names", crate::template::value(&groups)),
    ];
    if let Some(facts) = facts {
        specials.push(("facts", crate::template::value(facts)));
    }
    let scope = minijinja::value::merge_maps([
        globals(inventory),
        Value::from_pairs(specials),
        merged(&layers),
    ]);
    let rendered = render_templated(shared_templater(), &layers, &scope, &|_| false)
        .and_then(|overlay| overlay.get_attr(name).ok())
        .unwrap_or(Value::UNDEFINED);
    crate::template::to_json(&rendered).map(Some)
}

/// A variable as written: the first layer that sets it to something else
/// than null.
fn raw_host_var(
    inventory: &Inventory,
    defaults: &Vars,
    extra: &Vars,
    host: &str,
    name: &str,
) -> Option<Json> {
    extra
        .get(name)
        .or_else(|| inventory.host(host).and_then(|h| h.vars.get(name)))
        .or_else(|| defaults.get(name))
        .filter(|v| !v.is_null())
        .cloned()
}

/// The layers a host sees outside any task, lowest first: role defaults,
/// its inventory vars, extra vars.
fn host_layers<'a>(
    inventory: &Inventory,
    defaults: &'a Vars,
    host: Option<&'a Host>,
    none: &'a Vars,
    extra: &'a Vars,
) -> Vec<Layer<'a>> {
    vec![
        Layer {
            vars: defaults,
            origin: "a role's defaults.yaml".into(),
            at: None,
        },
        Layer {
            vars: host.map_or(none, |h| &h.vars),
            origin: inventory_origin(inventory),
            at: host.map(|h| &h.var_pos),
        },
        Layer {
            vars: extra,
            origin: "-e (or secrets.age)".into(),
            at: None,
        },
    ]
}

/// The layers merged into one map, the last winning.
fn merged(layers: &[Layer<'_>]) -> Value {
    minijinja::value::merge_maps(layers.iter().map(|l| crate::template::value(l.vars)))
}

/// The merged variables for `node`: extra vars, then host values and
/// specials, registered results, task vars, play and role-reference vars,
/// host (inventory) vars, role defaults, and `groups`/`hostvars`.
pub fn node_vars(
    templater: &Templater,
    inventory: &Inventory,
    resolved: &Resolved,
    globals: &Value,
    extra: &Vars,
    node: &TaskNode,
    values: HostValues<'_>,
) -> Value {
    let host = inventory.host(&node.host);
    let mut special = vec![
        ("facts", values.facts),
        ("inventory_hostname", Value::from(node.host.clone())),
        (
            "group_names",
            crate::template::value(&host.map(|h| h.groups.clone()).unwrap_or_default()),
        ),
    ];
    if let Some(item) = values.item {
        special.push(("item", item.clone()));
    }
    let specials: Vec<&str> = special.iter().map(|(k, _)| *k).collect();
    let registered = values.registered.clone();
    // minijinja 3's merge_maps looks keys up from the last map to the first:
    // lowest precedence first.
    let all = minijinja::value::merge_maps([
        globals.clone(),
        crate::template::value(&*resolved.defaults),
        host.map(|h| crate::template::value(&h.vars))
            .unwrap_or_default(),
        crate::template::value(&*node.scope_vars),
        crate::template::value(&node.task.vars),
        values.registered,
        Value::from_pairs(special),
        crate::template::value(extra),
    ]);
    let no_vars = Vars::new();
    let mut layers = host_layers(inventory, &resolved.defaults, host, &no_vars, extra);
    let playbook = "the playbook (play, role or task vars)".to_string();
    layers.insert(
        2,
        Layer {
            vars: &node.task.vars,
            origin: playbook.clone(),
            at: None,
        },
    );
    layers.insert(
        2,
        Layer {
            vars: &node.scope_vars,
            origin: playbook,
            at: None,
        },
    );
    let shadowed = |name: &str| {
        specials.contains(&name) || registered.get_attr(name).is_ok_and(|v| !v.is_undefined())
    };
    match render_templated(templater, &layers, &all, &shadowed) {
        Some(overlay) => minijinja::value::merge_maps([all, overlay]),
        None => all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Playbook;
    use crate::resolve::Selection;
    use serde_json::json;

    /// An inventory, a one-task playbook and role `r` with `defaults` in a
    /// temporary folder, resolved.
    fn fixture(
        inventory: &str,
        defaults: &str,
        task_vars: &str,
    ) -> (tempfile::TempDir, Inventory, Resolved) {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("inv.yaml"), inventory).expect("inventory");
        std::fs::write(dir.path().join("site.yaml"), "- hosts: a\n  roles: [r]\n")
            .expect("playbook");
        let role = dir.path().join("roles/r");
        std::fs::create_dir_all(&role).expect("mkdir");
        std::fs::write(
            role.join("tasks.yaml"),
            format!("- name: t\n  command: {{cmd: 'true'}}\n  vars: {task_vars}\n"),
        )
        .expect("tasks");
        std::fs::write(role.join("defaults.yaml"), defaults).expect("defaults");
        let inventory = Inventory::load(&dir.path().join("inv.yaml")).expect("inventory");
        let playbook = Playbook::load(&dir.path().join("site.yaml")).expect("playbook");
        let resolved =
            Resolved::build(&inventory, &playbook, &Selection::default()).expect("resolves");
        (dir, inventory, resolved)
    }

    fn vars_of(inventory: &Inventory, resolved: &Resolved, extra: &Vars) -> Value {
        node_vars(
            &Templater::new(),
            inventory,
            resolved,
            &globals(inventory),
            extra,
            &resolved.nodes[0],
            HostValues {
                facts: crate::template::value(&json!({"cpus": 2})),
                registered: Value::from_pairs(Vec::<(String, Value)>::new()),
                item: None,
            },
        )
    }

    #[test]
    fn templated_values_render_when_used_at_every_level() {
        let (_dir, inventory, resolved) = fixture(
            "all:\n  vars: {y: 5, x: '{{ y }}-suffix'}\n  hosts:\n    a: {ansible_host: 10.0.0.1, data_dir: '/var/lib/postgresql/{{ pg_version }}/main'}\n",
            "pg_version: 15\nfrom_default: '{{ x }}/{{ inventory_hostname }}/{{ facts.cpus }}'\nbroken_but_unused: '{{ nope }}'\n",
            "{from_task: '{{ from_default | upper }}', port: '{{ y + 1 }}'}",
        );
        let vars = vars_of(&inventory, &resolved, &Vars::new());
        let t = Templater::new();
        let render = |s: &str| t.render(s, &vars).expect(s);
        assert_eq!(render("{{ x }}"), "5-suffix", "inventory var");
        assert_eq!(
            render("{{ hostvars['a'].x }}"),
            "5-suffix",
            "hostvars, in that host's scope"
        );
        assert_eq!(
            render("{{ data_dir }}"),
            "/var/lib/postgresql/15/main",
            "host var from a default"
        );
        assert_eq!(
            render("{{ from_default }}"),
            "5-suffix/a/2",
            "role default, recursively, with specials and facts"
        );
        assert_eq!(render("{{ from_task }}"), "5-SUFFIX/A/2", "task var");
        assert_eq!(
            t.render_json(&json!("{{ port }}"), &vars).expect("port"),
            json!(6),
            "one expression keeps its type"
        );

        let mut extra = Vars::new();
        extra.insert("y".into(), json!(7));
        let vars = vars_of(&inventory, &resolved, &extra);
        assert_eq!(
            t.render("{{ x }}", &vars).expect("x"),
            "7-suffix",
            "-e is seen by the templates that read it"
        );
    }

    #[test]
    fn day2_values_read_the_facts_they_are_given() {
        let (_dir, inventory, resolved) = fixture(
            "all:\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n",
            "v: \"{{ facts.local.pg.major if facts.local.pg is defined else 17 }}\"\nd: /x/{{ v }}/y\n",
            "{}",
        );
        let d = |facts: Option<&Json>| {
            host_var_rendered(
                &inventory,
                &resolved.defaults,
                &Vars::new(),
                ("a", facts),
                "d",
            )
        };
        let known = json!({"local": {"pg": {"major": "15"}}});
        assert_eq!(
            d(Some(&known)).ok(),
            Some(Some(json!("/x/15/y"))),
            "a local fact"
        );
        let new_host = json!({"local": {}});
        assert_eq!(
            d(Some(&new_host)).ok(),
            Some(Some(json!("/x/17/y"))),
            "no local fact yet"
        );
        assert!(d(None).is_err(), "facts not read: {:?}", d(None));
    }

    #[test]
    fn a_cycle_is_a_typed_error_naming_its_variables_and_files() {
        let t = Templater::new();
        let (_dir, inventory, resolved) = fixture(
            "all:\n  vars: {a: '{{ b }}', b: 'x{{ a }}', c: '{{ c }}'}\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n",
            "d: 1\n",
            "{}",
        );
        let vars = vars_of(&inventory, &resolved, &Vars::new());
        let err = t.render("see {{ b }}", &vars).expect_err("a cycle");
        match err.var.as_deref() {
            Some(VarError::Cycle { chain, files }) => {
                assert_eq!(chain, &["b", "a", "b"], "from the variable read first");
                assert!(files["b"].ends_with("inv.yaml:2:24"), "{files:?}");
            }
            other => panic!("not a cycle: {other:?}"),
        }
        assert!(err.message.contains("b -> a -> b"), "{}", err.message);
        assert!(err.message.contains("inv.yaml"), "{}", err.message);
        let err = t.render_json(&json!("{{ c }}"), &vars).expect_err("itself");
        assert!(err.message.contains("c -> c"), "{}", err.message);
        assert_eq!(t.render("{{ d }}", &vars).expect("unrelated"), "1");
    }

    /// A templated host var may read another host's (Ansible's
    /// `hostvars[h].x`), which renders in that host's scope; two hosts'
    /// values reading each other are a cycle, not a hang.
    #[test]
    fn templated_host_vars_read_other_hosts_through_hostvars() {
        let t = Templater::new();
        let (_dir, inventory, resolved) = fixture(
            "all:\n  hosts:\n    a: {ansible_host: 10.0.0.1, peer: \"{{ hostvars['b'].mine }}-seen-by-{{ inventory_hostname }}\", loop_a: \"{{ hostvars['b'].loop_b }}\"}\n    b: {ansible_host: 10.0.0.2, mine: '{{ inventory_hostname }}:{{ port }}', port: 5433, loop_b: \"{{ hostvars['a'].loop_a }}\"}\n",
            "d: 1\n",
            "{}",
        );
        let vars = vars_of(&inventory, &resolved, &Vars::new());
        assert_eq!(
            t.render("{{ peer }}", &vars).expect("peer"),
            "b:5433-seen-by-a"
        );
        assert_eq!(
            t.render("{{ hostvars['a'].peer }}", &vars)
                .expect("via hostvars"),
            "b:5433-seen-by-a"
        );
        assert_eq!(
            t.render("{{ hostvars | list | join(',') }}", &vars)
                .expect("keys"),
            "a,b"
        );
        let err = t.render("{{ loop_a }}", &vars).expect_err("a cycle");
        assert!(err.message.contains("cycle"), "{}", err.message);
        assert!(
            err.message.contains("loop_b -> loop_a -> loop_b"),
            "{}",
            err.message
        );
        let day2 = host_var_rendered(&inventory, &Vars::new(), &Vars::new(), ("a", None), "peer");
        assert_eq!(day2.expect("day-2 view"), Some(json!("b:5433-seen-by-a")));
    }

    #[test]
    fn the_day2_resolver_renders_templated_values_too() {
        let (_dir, inventory, resolved) = fixture(
            "all:\n  vars: {base_port: 5433, postgres_port: '{{ base_port }}', where: '{{ inventory_hostname }}:{{ postgres_port }}', loop_a: '{{ loop_b }}', loop_b: '{{ loop_a }}'}\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n",
            "d: 1\n",
            "{}",
        );
        let get = |name: &str| host_var(&inventory, &resolved.defaults, &Vars::new(), "a", name);
        assert_eq!(get("postgres_port"), Some(json!(5433)));
        assert_eq!(get("where"), Some(json!("a:5433")));
        let err = host_var_rendered(
            &inventory,
            &resolved.defaults,
            &Vars::new(),
            ("a", None),
            "loop_a",
        )
        .expect_err("a cycle");
        assert!(matches!(err, VarError::Cycle { .. }), "{err}");
    }

    #[test]
    fn extra_vars_beat_host_vars_which_beat_role_defaults() {
        let (_dir, inventory, resolved) = fixture(
            "all:\n  hosts:\n    a: {ansible_host: 10.0.0.1, from_host: host, both: host}\n",
            "from_default: default\nfrom_host: default\nboth: default\nfrom_extra: default\n",
            "{}",
        );
        let mut extra = Vars::new();
        extra.insert("from_extra".into(), Json::from("extra"));
        extra.insert("both".into(), Json::from("extra"));
        let vars = vars_of(&inventory, &resolved, &extra);
        let get = |k: &str| vars.get_attr(k).expect(k).to_string();
        assert_eq!(get("from_default"), "default");
        assert_eq!(get("from_host"), "host");
        assert_eq!(get("from_extra"), "extra");
        assert_eq!(get("both"), "extra");
        assert_eq!(get("inventory_hostname"), "a");
    }
}
