//! Task preparation, written once: evaluate `when`, expand `loop`, render
//! the parameters and build the module's resource. `apply` and probe
//! batching use [`Prep::prepare`]; `validate` runs the same four steps
//! ([`Prep::skipped_by`], [`Prep::items`], [`Prep::params`],
//! [`Prep::resource`]) with placeholders for what only a host knows, so the
//! three cannot drift apart.

use minijinja::Value;
use pgdeploy_modules::{Context, ModuleError, Resource};
use serde_json::{json, Value as Json};

use crate::resolve::TaskNode;
use crate::template::{TemplateError, Templater};
use crate::yaml::Pos;

/// Why a task could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A `when` expression failed.
    #[error("`when: {condition}`: {error}")]
    When {
        /// The expression.
        condition: String,
        /// Where it is written.
        pos: Pos,
        /// Why.
        error: TemplateError,
    },
    /// The `loop` expression failed.
    #[error("`loop`: {0}")]
    Loop(TemplateError),
    /// The `loop` gave something other than a list.
    #[error("`loop` must give a list, found {found}")]
    LoopNotList {
        /// The type it gave ("a number", "a string", ...).
        found: &'static str,
    },
    /// A parameter's template failed.
    #[error("{0}")]
    Params(TemplateError),
    /// No module has the task's module name.
    #[error("unknown module `{0}`")]
    UnknownModule(String),
    /// The module refused the rendered parameters.
    #[error("{0}")]
    Module(ModuleError),
}

impl PrepareError {
    /// Whether the cause is an undefined variable or a variable whose own
    /// template fails (validate reports only these from templates: other
    /// failures may come from placeholders).
    pub fn undefined(&self) -> bool {
        match self {
            PrepareError::When { error, .. } => error.undefined || error.var.is_some(),
            PrepareError::Loop(e) | PrepareError::Params(e) => e.undefined || e.var.is_some(),
            _ => false,
        }
    }
}

/// A task prepared for one host.
pub enum Prepared {
    /// A `when` is false: the task is skipped.
    Skipped {
        /// The condition that was false.
        condition: String,
    },
    /// The task's items, in order (one, `item` unset, without a loop).
    Items(Vec<Item>),
}

/// One item of a prepared task.
pub struct Item {
    /// The loop item.
    pub item: Option<Json>,
    /// The variables the item sees.
    pub vars: Value,
    /// Its resource, or why it could not be built (an item fails on its
    /// own turn, after the items before it ran).
    pub resource: Result<Box<dyn Resource>, PrepareError>,
}

/// Gives the module context that renders templates and reads files with an
/// item's variables.
pub trait Contexts {
    /// The context for `vars`.
    fn with_vars<'v>(&'v self, vars: &'v Value) -> Box<dyn Context + 'v>;
}

/// One task of one host, ready to be prepared.
pub struct Prep<'a> {
    /// The engine's templates.
    pub templater: &'a Templater,
    /// The task on its host.
    pub node: &'a TaskNode,
    /// A `when` that cannot be decided yet (it reads a result an earlier
    /// task registers) counts as true instead of failing: probing ahead is
    /// read-only, so such a task is probed as if it will run.
    pub undecided_when_runs: bool,
}

impl Prep<'_> {
    /// The first `when` condition that is false, if any.
    pub fn skipped_by(&self, vars: &Value) -> Result<Option<String>, PrepareError> {
        for (condition, pos) in &self.node.task.when {
            match self.templater.condition(condition, vars) {
                Ok(true) => {}
                Ok(false) => return Ok(Some(condition.clone())),
                Err(_) if self.undecided_when_runs => {}
                Err(error) => {
                    return Err(PrepareError::When {
                        condition: condition.clone(),
                        pos: pos.clone(),
                        error,
                    })
                }
            }
        }
        Ok(None)
    }

    /// The loop's items (`[None]` without a loop).
    pub fn items(&self, vars: &Value) -> Result<Vec<Option<Json>>, PrepareError> {
        let Some(items) = &self.node.task.loop_items else {
            return Ok(vec![None]);
        };
        match self
            .templater
            .render_json(&items.to_json(), vars)
            .map_err(PrepareError::Loop)?
        {
            Json::Array(list) => Ok(list.into_iter().map(Some).collect()),
            other => Err(PrepareError::LoopNotList {
                found: pgdeploy_modules::json_type_name(&other),
            }),
        }
    }

    /// The parameters, rendered. A task written without parameters has an
    /// empty mapping (a free-form string was made `cmd` by the playbook's
    /// parser).
    pub fn params(&self, vars: &Value) -> Result<Json, PrepareError> {
        let raw = match self.node.task.params.to_json() {
            Json::Null => json!({}),
            other => other,
        };
        self.templater
            .render_json(&raw, vars)
            .map_err(PrepareError::Params)
    }

    /// The module's resource for rendered parameters.
    pub fn resource(
        &self,
        params: &Json,
        context: &dyn Context,
    ) -> Result<Box<dyn Resource>, PrepareError> {
        let name = &self.node.task.module.0;
        let module = pgdeploy_modules::find(name)
            .ok_or_else(|| PrepareError::UnknownModule(name.clone()))?;
        module
            .resource(params, context)
            .map_err(PrepareError::Module)
    }

    /// The whole preparation: `when`, then the loop, then each item's
    /// parameters and resource. `vars_for` gives the variables with a loop
    /// item (or none).
    pub fn prepare(
        &self,
        vars_for: impl Fn(Option<&Json>) -> Value,
        contexts: &dyn Contexts,
    ) -> Result<Prepared, PrepareError> {
        let vars = vars_for(None);
        if let Some(condition) = self.skipped_by(&vars)? {
            return Ok(Prepared::Skipped { condition });
        }
        let items = self.items(&vars)?;
        let prepared = items
            .into_iter()
            .map(|item| {
                let vars = match &item {
                    Some(_) => vars_for(item.as_ref()),
                    None => vars.clone(),
                };
                let resource = self
                    .params(&vars)
                    .and_then(|params| self.resource(&params, &*contexts.with_vars(&vars)));
                Item {
                    item,
                    vars,
                    resource,
                }
            })
            .collect();
        Ok(Prepared::Items(prepared))
    }
}
