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
    minijinja::value::merge_maps([
        crate::template::value(extra),
        Value::from_pairs(special),
        values.registered,
        crate::template::value(&node.task.vars),
        crate::template::value(&*node.scope_vars),
        host.map(|h| crate::template::value(&h.vars))
            .unwrap_or_default(),
        crate::template::value(&*resolved.defaults),
        globals.clone(),
    ])
}
