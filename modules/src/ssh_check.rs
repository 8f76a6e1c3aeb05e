//! The `ssh_check` module: proves that a new SSH connection to the host,
//! opened the way this run opened its own (same user, key and host key
//! check), still logs in and can run `command` (default `true`, as root
//! with `become`).
//!
//! Meant as a handler after an sshd change (`notify` it after `reload ssh`):
//! the run's own connection survives a reload, so only a new one proves that
//! the next run (or the operator) can still get in. It always runs when it
//! is reached; a failure fails the task while the run's connection is still
//! open to repair things.

use serde::Deserialize;

use crate::params;
use crate::{Action, Change, ChangeKind, Context, Module, ModuleError, ParamSpec, Plan};
use crate::{Footprint, ProbeOutput, Resource};

/// The `ssh_check` module.
pub struct SshCheck;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    command: Option<String>,
}

struct NewConnection {
    command: String,
}

impl Module for SshCheck {
    fn name(&self) -> &'static str {
        "ssh_check"
    }
    fn params(&self) -> &'static [ParamSpec] {
        declared_params!(Params)
    }
    fn resource(
        &self,
        params: &serde_json::Value,
        _ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError> {
        let p: Params = params::parse(self.name(), self.params(), params)?;
        Ok(Box::new(NewConnection {
            command: p.command.unwrap_or_else(|| "true".into()),
        }))
    }
}

impl Resource for NewConnection {
    fn probe(&self) -> String {
        "true".into()
    }
    /// Reads nothing and changes nothing: it only logs in.
    fn reads(&self) -> Footprint {
        Footprint::only([])
    }

    fn writes(&self) -> Footprint {
        Footprint::only([])
    }

    fn plan(&self, _probe: &ProbeOutput) -> Result<Plan, ModuleError> {
        Ok(Plan::none().with(
            Change::new(ChangeKind::Run, "ssh login on a new connection"),
            [Action::run_on_new_connection(self.command.clone())],
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, probe_local};
    use serde_json::json;

    #[test]
    fn always_plans_one_action_on_a_new_connection() {
        let r = build("ssh_check", json!({})).expect("no params needed");
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.actions.len(), 1);
        assert!(plan.actions[0].fresh_connection);
        assert_eq!(plan.actions[0].script, "true");
        let r = build("ssh_check", json!({"command": "id -un"})).expect("command");
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        assert_eq!(plan.actions[0].script, "id -un");
        assert!(build("ssh_check", json!({"comand": "x"})).is_err());
    }
}
