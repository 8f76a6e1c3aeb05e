//! The pgdeploy engine: inventory + role-based playbooks → resolved tasks →
//! DAG → scheduler → SSH transport → report. It knows nothing of what the
//! playbooks build; a product adds its work on the live system through
//! [`live::LiveSystem`].
//!
//! Data flows one way through these modules: [`inventory`] and
//! [`playbook`] parse the user's files (positions kept by [`yaml`]);
//! [`resolve`] turns them into (host, task) nodes and the DAG;
//! [`validate`] checks everything that needs no host; [`run`] schedules
//! the nodes over [`pgdeploy_transport`] and the modules of
//! [`pgdeploy_modules`]; [`report`] and [`output`] show what happened.

pub mod apply_state;
pub mod color;
pub mod error;
pub mod facts;
pub mod files;
pub mod graph;
pub mod inventory;
pub mod live;
pub mod markdown;
pub mod output;
pub mod playbook;
pub mod prepare;
pub mod report;
pub mod resolve;
pub mod run;
pub mod scope;
pub mod secrets;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::Path;

use error::{InputError, InputErrors};
use inventory::{Inventory, Vars};
use playbook::Playbook;
use resolve::{Resolved, Selection};

/// Parsed, resolved and checked inputs, ready to run.
pub struct Inputs {
    /// The inventory.
    pub inventory: Inventory,
    /// The playbook and its roles.
    pub playbook: Playbook,
    /// The DAG.
    pub resolved: Resolved,
}

/// Loads inventory and playbook, resolves the DAG and runs every static
/// check. Any problem is an [`InputErrors`]: exit code 2, no host touched.
pub fn load_inputs(
    inventory: &Path,
    playbook: &Path,
    selection: &Selection,
    extra: &Vars,
) -> Result<Inputs, InputErrors> {
    let roles = Playbook::roles_beside(playbook);
    load_inputs_with_roles(inventory, playbook, &roles, selection, extra)
}

/// [`load_inputs`] with the playbook's roles looked up in `roles`, in
/// order (the first folder holding a role of the name wins).
pub fn load_inputs_with_roles(
    inventory: &Path,
    playbook: &Path,
    roles: &[std::path::PathBuf],
    selection: &Selection,
    extra: &Vars,
) -> Result<Inputs, InputErrors> {
    let inventory_result = Inventory::load(inventory);
    let playbook_result = Playbook::load_with_roles(playbook, roles);
    let (inventory, playbook) = match (inventory_result, playbook_result) {
        (Ok(i), Ok(p)) => (i, p),
        (i, p) => {
            let mut errors = Vec::new();
            if let Err(e) = i {
                errors.extend(e.0);
            }
            if let Err(e) = p {
                errors.extend(e.0);
            }
            return Err(InputErrors(errors));
        }
    };
    let resolved =
        Resolved::build(&inventory, &playbook, selection).map_err(InputErrors::deduped)?;
    validate::check(&inventory, &playbook, &resolved, extra)?;
    Ok(Inputs {
        inventory,
        playbook,
        resolved,
    })
}

/// Parses `-e` arguments: `key=value` (the value read as YAML, so numbers
/// and booleans keep their type) or `@file.yaml`.
pub fn parse_extra_vars(args: &[String]) -> Result<Vars, InputErrors> {
    let mut vars = Vars::new();
    for arg in args {
        if let Some(file) = arg.strip_prefix('@') {
            let node = yaml::load(Path::new(file))?;
            vars.extend(playbook::vars_of(&node, "an extra-vars file")?);
        } else if let Some((key, value)) = arg.split_once('=') {
            let parsed = yaml::parse(value, Path::new("-e"))
                .map(|n| n.to_json())
                .unwrap_or_else(|_| value.into());
            let parsed = match parsed {
                serde_json::Value::Null if !value.is_empty() => serde_json::Value::from(value),
                other => other,
            };
            vars.insert(key.trim().to_string(), parsed);
        } else {
            return Err(InputError::at(
                &yaml::Pos::synthetic("-e"),
                format!("`{arg}` is neither key=value nor @file.yaml"),
            )
            .into());
        }
    }
    Ok(vars)
}
