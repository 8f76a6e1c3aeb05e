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
    layered(vec![
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

/// Merges variable layers given highest precedence first: a name is looked
/// up in the first layer that defines it. (minijinja's `merge_maps` lets
/// the *last* map win, so the layers are handed to it reversed.)
pub fn layered(mut highest_first: Vec<Value>) -> Value {
    highest_first.reverse();
    minijinja::value::merge_maps(highest_first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_layers_win() {
        let extra = crate::template::value(&json!({"port": 1}));
        let host = crate::template::value(&json!({"port": 2, "name": "h"}));
        let defaults = crate::template::value(&json!({"port": 3, "name": "d", "only": true}));
        let merged = layered(vec![extra, host, defaults]);
        assert_eq!(merged.get_attr("port").ok(), Some(Value::from(1)));
        assert_eq!(merged.get_attr("name").ok(), Some(Value::from("h")));
        assert_eq!(merged.get_attr("only").ok(), Some(Value::from(true)));
    }
}
