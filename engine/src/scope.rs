//! The variables a task sees, composed in precedence order (see
//! [`crate::inventory`] for the full order).

use minijinja::Value;
use serde_json::{json, Map, Value as Json};

use crate::inventory::{Inventory, Vars};
use crate::resolve::{Resolved, TaskNode};

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
pub fn globals(inventory: &Inventory) -> Value {
    let mut hostvars = Map::new();
    for host in &inventory.hosts {
        let mut vars = host.vars.clone();
        vars.insert(
            "address".into(),
            Json::from(host.connection.address.clone()),
        );
        vars.insert("inventory_hostname".into(), Json::from(host.name.clone()));
        hostvars.insert(host.name.clone(), Json::Object(vars));
    }
    crate::template::value(&json!({"groups": inventory.groups_json(), "hostvars": hostvars}))
}

/// A variable as the host `host` sees it outside any task (the day-2
/// commands' view): extra vars (`-e`, secrets), then the host's inventory
/// vars (host, then its groups, as [`Inventory`] merged them), then role
/// defaults ([`crate::resolve::role_defaults`], play order). The same order
/// as [`node_vars`] without play, task and registered vars. Null is unset.
pub fn host_var(
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

/// The merged variables for `node`: extra vars, then host values and
/// specials, registered results, task vars, play and role-reference vars,
/// host (inventory) vars, role defaults, and `groups`/`hostvars`.
pub fn node_vars(
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
    // minijinja 3's merge_maps looks keys up from the last map to the first:
    // lowest precedence first.
    minijinja::value::merge_maps([
        globals.clone(),
        crate::template::value(&*resolved.defaults),
        host.map(|h| crate::template::value(&h.vars))
            .unwrap_or_default(),
        crate::template::value(&*node.scope_vars),
        crate::template::value(&node.task.vars),
        values.registered,
        Value::from_pairs(special),
        crate::template::value(extra),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::Playbook;
    use crate::resolve::Selection;

    #[test]
    fn extra_vars_beat_host_vars_which_beat_role_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("inv.yaml"),
            "all:\n  hosts:\n    a: {ansible_host: 10.0.0.1, from_host: host, both: host}\n",
        )
        .expect("inventory");
        std::fs::write(dir.path().join("site.yaml"), "- hosts: a\n  roles: [r]\n")
            .expect("playbook");
        let role = dir.path().join("roles/r");
        std::fs::create_dir_all(&role).expect("mkdir");
        std::fs::write(
            role.join("tasks.yaml"),
            "- name: t\n  command: {cmd: 'true'}\n",
        )
        .expect("tasks");
        std::fs::write(
            role.join("defaults.yaml"),
            "from_default: default\nfrom_host: default\nboth: default\nfrom_extra: default\n",
        )
        .expect("defaults");
        let inventory = Inventory::load(&dir.path().join("inv.yaml")).expect("inventory");
        let playbook = Playbook::load(&dir.path().join("site.yaml")).expect("playbook");
        let resolved =
            Resolved::build(&inventory, &playbook, &Selection::default()).expect("resolves");
        let mut extra = Vars::new();
        extra.insert("from_extra".into(), Json::from("extra"));
        extra.insert("both".into(), Json::from("extra"));
        let vars = node_vars(
            &inventory,
            &resolved,
            &globals(&inventory),
            &extra,
            &resolved.nodes[0],
            HostValues {
                facts: Value::UNDEFINED,
                registered: Value::from_pairs(Vec::<(String, Value)>::new()),
                item: None,
            },
        );
        let get = |k: &str| vars.get_attr(k).expect(k).to_string();
        assert_eq!(get("from_default"), "default");
        assert_eq!(get("from_host"), "host");
        assert_eq!(get("from_extra"), "extra");
        assert_eq!(get("both"), "extra");
        assert_eq!(get("inventory_hostname"), "a");
    }
}
