//! The `service` module: a systemd unit's state, enablement and masking.
//!
//! `started`/`stopped` are idempotent; `restarted`/`reloaded` always run (a
//! `!` change; handlers use them). A unit that does not exist yet (its
//! package comes earlier in the same run) is planned as created (`+`); the
//! action fails at apply time if it still does not exist. When systemd says
//! a unit file changed on disk (`NeedDaemonReload=yes`), the plan reloads
//! systemd first; `daemon_reload: true` does that whenever anything else
//! changes. A start or restart first clears the unit's failed state and
//! start-limit counter (`systemctl reset-failed`): a unit that crash-looped
//! before its configuration arrived (a package that starts its service on
//! install) must not refuse the start that brings it up configured.

use serde::Deserialize;

use crate::params::{self, opt_bool};
use crate::probe::{self, Kv};
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, Object, ParamSpec, Plan,
    ProbeOutput, Resource,
};
use pgdeploy_text::quote;

/// The `service` module.
pub struct Service;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    name: String,
    state: Option<State>,
    #[serde(default, deserialize_with = "opt_bool")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    daemon_reload: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    masked: Option<bool>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum State {
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

impl Module for Service {
    fn name(&self) -> &'static str {
        "service"
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
        params::no_leading_dash("name", &p.name)?;
        if p.name.contains(char::is_whitespace) || p.name.contains('/') {
            return Err(ModuleError::rejected(
                ["name"],
                format!("{:?} is not a unit name", p.name),
            ));
        }
        if p.state.is_none()
            && p.enabled.is_none()
            && p.masked.is_none()
            && p.daemon_reload != Some(true)
        {
            return Err(ModuleError::rejected(
                ["state", "enabled", "masked", "daemon_reload"],
                "give at least one of `state`, `enabled`, `masked`, `daemon_reload`".into(),
            ));
        }
        if p.masked == Some(true)
            && (p.enabled == Some(true)
                || matches!(
                    p.state,
                    Some(State::Started | State::Restarted | State::Reloaded)
                ))
        {
            return Err(ModuleError::rejected(
                ["masked", "enabled", "state"],
                "a masked unit cannot be enabled or started".into(),
            ));
        }
        Ok(Box::new(ServiceResource {
            name: p.name,
            state: p.state,
            enabled: p.enabled,
            daemon_reload: p.daemon_reload.unwrap_or(false),
            masked: p.masked,
        }))
    }
}

struct ServiceResource {
    name: String,
    state: Option<State>,
    enabled: Option<bool>,
    daemon_reload: bool,
    masked: Option<bool>,
}

impl Resource for ServiceResource {
    fn probe(&self) -> String {
        probe::wrap(&format!(
            "systemctl show -p ActiveState,UnitFileState,LoadState,NeedDaemonReload -- {}",
            quote(&self.name)
        ))
    }

    /// The unit's state and systemd's unit folders. Starting a service can
    /// change anything, so its writes stay everything.
    fn reads(&self) -> Footprint {
        let mut objects = vec![Object::State("unit", Some(self.name.clone()))];
        objects.extend(
            [
                "/etc/systemd",
                "/lib/systemd",
                "/usr/lib/systemd",
                "/run/systemd",
            ]
            .map(Object::path),
        );
        Footprint::Only(objects)
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let unit = Unit::from_kv(&kv);
        let n = quote(&self.name);
        let subject = format!("service {}", self.name);

        let mut steps = Steps::default();
        self.plan_masked(&unit, &n, &mut steps)?;
        self.plan_enabled(&unit, &n, &mut steps);
        let run_change = self.plan_state(&unit, &n, &subject, &mut steps);
        let need_reload = kv.get("NeedDaemonReload") == Some("yes");
        let mut plan = Plan::none();
        if need_reload {
            plan.changes.push(
                Change::new(ChangeKind::Run, "systemd daemon-reload")
                    .states("unit files changed on disk", "reloaded"),
            );
        }
        if !steps.before.is_empty() {
            plan.changes.push(steps.change(&unit, subject));
        }
        if let Some(change) = run_change {
            plan.changes.push(change);
        }
        if plan.changes.is_empty() {
            return Ok(plan);
        }
        let reload_first = need_reload || self.daemon_reload || !unit.exists;
        plan.actions
            .push(Action::run(script(&n, reload_first, steps.commands)));
        Ok(plan)
    }
}

/// What the probe says of the unit.
struct Unit<'a> {
    active: &'a str,
    file_state: &'a str,
    exists: bool,
    is_masked: bool,
    running: bool,
}

impl<'a> Unit<'a> {
    fn from_kv(kv: &'a Kv) -> Self {
        let load = kv.get("LoadState").unwrap_or("not-found");
        let active = kv.get("ActiveState").unwrap_or("inactive");
        let file_state = kv.get("UnitFileState").unwrap_or("");
        Unit {
            active,
            file_state,
            exists: load != "not-found",
            is_masked: load == "masked" || file_state.starts_with("masked"),
            running: matches!(active, "active" | "activating" | "reloading" | "refreshing"),
        }
    }
}

/// The idempotent differences found so far (for the change's before and
/// after) and the commands that correct them.
#[derive(Default)]
struct Steps {
    before: Vec<String>,
    after: Vec<String>,
    commands: Vec<String>,
}

impl Steps {
    fn push(&mut self, before: &str, after: &str, command: String) {
        self.before.push(before.to_string());
        self.after.push(after.to_string());
        self.commands.push(command);
    }

    /// The unit's change: an update, or a creation if it does not exist yet.
    fn change(&self, unit: &Unit, subject: String) -> Change {
        let kind = if unit.exists {
            ChangeKind::Update
        } else {
            ChangeKind::Create
        };
        let before = if unit.exists {
            self.before.join(", ")
        } else {
            "absent".to_string()
        };
        Change::new(kind, subject).states(before, self.after.join(", "))
    }
}

impl ServiceResource {
    /// `masked`; without it, a masked unit that is to be enabled or started
    /// is an error.
    fn plan_masked(&self, unit: &Unit, n: &str, steps: &mut Steps) -> Result<(), ModuleError> {
        if let Some(masked) = self.masked {
            if masked != unit.is_masked {
                steps.push(
                    if unit.is_masked { "masked" } else { "unmasked" },
                    if masked { "masked" } else { "unmasked" },
                    format!(
                        "systemctl {} -- {n}",
                        if masked { "mask" } else { "unmask" }
                    ),
                );
            }
        } else if unit.is_masked
            && (self.enabled == Some(true) || matches!(self.state, Some(State::Started)))
        {
            return Err(ModuleError::Probe(format!(
                "unit {} is masked; set `masked: false` to unmask it",
                self.name
            )));
        }
        Ok(())
    }

    /// `enabled`.
    fn plan_enabled(&self, unit: &Unit, n: &str, steps: &mut Steps) {
        let Some(enabled) = self.enabled else {
            return;
        };
        // static, indirect, generated and transient units cannot be
        // enabled or disabled: nothing to do for them.
        let now = match unit.file_state {
            "enabled" | "enabled-runtime" | "alias" => Some(true),
            "disabled" | "" => Some(false),
            _ => None,
        };
        if let Some(now) = now {
            if now != enabled {
                steps.push(
                    if now { "enabled" } else { "disabled" },
                    if enabled { "enabled" } else { "disabled" },
                    format!(
                        "systemctl {} -- {n}",
                        if enabled { "enable" } else { "disable" }
                    ),
                );
            }
        }
    }

    /// `state`: started and stopped join the idempotent differences;
    /// restarted and reloaded always run and are a change of their own,
    /// returned.
    fn plan_state(&self, unit: &Unit, n: &str, subject: &str, steps: &mut Steps) -> Option<Change> {
        match self.state {
            Some(State::Started) if !unit.running => {
                steps.push(
                    unit.active,
                    "started",
                    format!("{}systemctl start -- {n}", reset_failed(n)),
                );
                None
            }
            Some(State::Stopped) if unit.running => {
                steps.push(unit.active, "stopped", format!("systemctl stop -- {n}"));
                None
            }
            Some(State::Restarted) => {
                steps
                    .commands
                    .push(format!("{}systemctl restart -- {n}", reset_failed(n)));
                Some(Change::new(ChangeKind::Run, format!("{subject} restarted")))
            }
            Some(State::Reloaded) => {
                steps.commands.push(format!("if systemctl is-active -q -- {n}; then systemctl reload -- {n}; else systemctl start -- {n}; fi"));
                Some(Change::new(ChangeKind::Run, format!("{subject} reloaded")))
            }
            _ => None,
        }
    }
}

/// The action's script: systemd reloaded first (always when
/// `reload_first`, else only if a unit file changed since the probe), then
/// the commands.
fn script(n: &str, reload_first: bool, commands: Vec<String>) -> String {
    let mut script = String::from("set -e\n");
    if reload_first {
        script.push_str("systemctl daemon-reload\n");
    } else {
        // A unit file written since the probe (same run) needs it too.
        script.push_str(&format!(
            "if [ \"$(systemctl show -p NeedDaemonReload --value -- {n})\" = yes ]; then systemctl daemon-reload; fi\n"
        ));
    }
    for c in commands {
        script.push_str(&c);
        script.push('\n');
    }
    script
}

/// The command (with its newline) that clears a unit's failed state and
/// start-limit counter; harmless for a unit that has neither.
fn reset_failed(quoted_name: &str) -> String {
    format!("systemctl reset-failed -- {quoted_name} 2>/dev/null || true\n")
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, probe_out};
    use crate::ChangeKind;
    use serde_json::json;

    fn show(active: &str, file: &str, load: &str, reload: &str) -> crate::ProbeOutput {
        probe_out(&format!("ActiveState={active}\nUnitFileState={file}\nLoadState={load}\nNeedDaemonReload={reload}\n"))
    }

    #[test]
    fn started_and_enabled() {
        let r = build(
            "service",
            json!({"name": "patroni", "state": "started", "enabled": true}),
        )
        .expect("valid");
        assert!(r
            .plan(&show("active", "enabled", "loaded", "no"))
            .expect("plan")
            .is_empty());
        let plan = r
            .plan(&show("inactive", "disabled", "loaded", "no"))
            .expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].kind, ChangeKind::Update);
        assert_eq!(
            plan.changes[0].before.as_deref(),
            Some("disabled, inactive")
        );
        assert_eq!(plan.changes[0].after.as_deref(), Some("enabled, started"));
        let script = &plan.actions[0].script;
        assert!(
            script.contains("systemctl enable -- patroni\nsystemctl reset-failed -- patroni 2>/dev/null || true\nsystemctl start -- patroni"),
            "{script}"
        );
        // Not installed yet: created.
        let plan = r
            .plan(&show("inactive", "", "not-found", "no"))
            .expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Create);
        assert!(plan.actions[0].script.contains("systemctl daemon-reload\n"));
        // Static units cannot be enabled: only started.
        let plan = r
            .plan(&show("inactive", "static", "loaded", "no"))
            .expect("plan");
        assert_eq!(plan.changes[0].after.as_deref(), Some("started"));
    }

    #[test]
    fn daemon_reload_when_unit_files_changed() {
        let r = build("service", json!({"name": "patroni", "state": "started"})).expect("valid");
        let plan = r
            .plan(&show("active", "enabled", "loaded", "yes"))
            .expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].subject, "systemd daemon-reload");
        assert!(plan.actions[0].script.contains("systemctl daemon-reload\n"));
    }

    #[test]
    fn restarted_always_runs_and_stopped_and_masked() {
        let r = build("service", json!({"name": "haproxy", "state": "restarted"})).expect("valid");
        let plan = r
            .plan(&show("active", "enabled", "loaded", "no"))
            .expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Run);
        assert_eq!(plan.changes[0].subject, "service haproxy restarted");
        // A unit that hit its start limit earlier can still be restarted.
        assert!(plan.actions[0].script.contains(
            "systemctl reset-failed -- haproxy 2>/dev/null || true\nsystemctl restart -- haproxy"
        ));
        let r = build(
            "service",
            json!({"name": "postgresql", "state": "stopped", "enabled": false, "masked": true}),
        )
        .expect("valid");
        let plan = r
            .plan(&show("active", "enabled", "loaded", "no"))
            .expect("plan");
        assert!(plan.actions[0]
            .script
            .contains("systemctl mask -- postgresql"));
        assert!(r
            .plan(&show("inactive", "masked", "masked", "no"))
            .expect("plan")
            .is_empty());
        let r = build("service", json!({"name": "postgresql", "state": "started"})).expect("valid");
        assert!(r.plan(&show("inactive", "masked", "masked", "no")).is_err());
    }

    #[test]
    fn bad_params() {
        let err = build("service", json!({"name": "x", "enable": true}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `enabled`?"), "{err}");
        assert!(build("service", json!({"name": "x"})).is_err());
        assert!(build("service", json!({"name": "x", "state": "running"})).is_err());
        assert!(build("service", json!({"name": "x; reboot", "state": "started"})).is_err());
    }
}
