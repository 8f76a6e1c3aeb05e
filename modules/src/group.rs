//! The `group` module: a local group (`groupadd`/`groupmod`/`groupdel`).

use serde::Deserialize;

use crate::params::{self, opt_bool, opt_u64};
use crate::probe::{self, Kv};
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, ParamSpec, Plan,
    ProbeOutput, Resource,
};
use pgdeploy_text::quote;

/// The `group` module.
pub struct Group;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    name: String,
    #[serde(default, deserialize_with = "opt_u64")]
    gid: Option<u64>,
    #[serde(default, deserialize_with = "opt_bool")]
    system: Option<bool>,
    #[serde(default)]
    state: Presence,
}

/// `present` or `absent`.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Presence {
    #[default]
    Present,
    Absent,
}

/// Checks a user or group name (as `useradd` would accept it); `param` is
/// the parameter that gives it, `what` says "user" or "group".
pub(crate) fn check_name(param: &str, what: &str, name: &str) -> Result<(), ModuleError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .trim_end_matches('$')
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ModuleError::rejected(
            [param],
            format!("{name:?} is not a valid {what} name"),
        ))
    }
}

impl Module for Group {
    fn name(&self) -> &'static str {
        "group"
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
        check_name("name", "group", &p.name)?;
        Ok(Box::new(GroupResource {
            name: p.name,
            gid: p.gid,
            system: p.system.unwrap_or(false),
            state: p.state,
        }))
    }
}

struct GroupResource {
    name: String,
    gid: Option<u64>,
    system: bool,
    state: Presence,
}

impl Resource for GroupResource {
    fn probe(&self) -> String {
        probe::wrap(&format!(
            "if g=$(getent group {}); then echo \"group=$g\"; fi",
            quote(&self.name)
        ))
    }

    fn reads(&self) -> Footprint {
        Footprint::path("/etc/group")
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let n = quote(&self.name);
        let subject = format!("group {}", self.name);
        let current = kv.get("group").map(|g| {
            let fields: Vec<&str> = g.split(':').collect();
            fields.get(2).copied().unwrap_or_default().to_string()
        });
        match (self.state, current) {
            (Presence::Absent, None) => Ok(Plan::none()),
            (Presence::Absent, Some(gid)) => Ok(Plan::none().with(
                Change::new(ChangeKind::Remove, subject).states(format!("gid {gid}"), "absent"),
                [Action::run(format!("groupdel {n}"))],
            )),
            (Presence::Present, None) => {
                let mut flags = String::new();
                if let Some(gid) = self.gid {
                    flags.push_str(&format!(" -g {gid}"));
                }
                if self.system {
                    flags.push_str(" -r");
                }
                let after = self
                    .gid
                    .map_or("present".to_string(), |g| format!("gid {g}"));
                Ok(Plan::none().with(
                    Change::new(ChangeKind::Create, subject).states("absent", after),
                    [Action::run(format!("groupadd{flags} {n}"))],
                ))
            }
            (Presence::Present, Some(gid)) => match self.gid {
                Some(want) if want.to_string() != gid => Ok(Plan::none().with(
                    Change::new(ChangeKind::Update, subject)
                        .states(format!("gid {gid}"), format!("gid {want}")),
                    [Action::run(format!("groupmod -g {want} {n}"))],
                )),
                _ => Ok(Plan::none()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, converge, probe_out};
    use crate::ChangeKind;
    use serde_json::json;

    #[test]
    fn synthetic_plans() {
        let r = build("group", json!({"name": "postgres", "gid": 5432})).expect("valid");
        assert_eq!(
            r.plan(&probe_out("")).expect("plan").changes[0].kind,
            ChangeKind::Create
        );
        assert!(r
            .plan(&probe_out("group=postgres:x:5432:\n"))
            .expect("plan")
            .is_empty());
        let plan = r.plan(&probe_out("group=postgres:x:110:\n")).expect("plan");
        assert_eq!(plan.actions[0].script, "groupmod -g 5432 postgres");
        assert!(build("group", json!({"name": "$(touch /tmp/pwned)"})).is_err());
        assert!(build("group", json!({"name": "x", "gid": "abc"})).is_err());
    }

    #[test]
    fn converges_locally() {
        if !crate::testing::root_or_skip("group::converges_locally") {
            return;
        }
        let name = format!("pgdt{}", std::process::id() % 100000);
        let r = build("group", json!({"name": name, "system": true})).expect("valid");
        converge(r.as_ref());
        let r = build("group", json!({"name": name, "state": "absent"})).expect("valid");
        assert_eq!(converge(r.as_ref()).changes[0].kind, ChangeKind::Remove);
    }
}
