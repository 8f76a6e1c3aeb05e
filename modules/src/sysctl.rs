//! The `sysctl` module: a kernel parameter, persisted as one `name = value`
//! line in `file` (default `/etc/sysctl.d/90-pgdeploy-<name>.conf`, one file
//! per key so that tasks never edit the same file) and set live with
//! `sysctl -w` when `reload` (default true) and the live value differs.
//!
//! Inside containers many keys are read-only: with `ignore_live_errors:
//! true`, a key whose `/proc/sys` entry is not writable is only persisted,
//! and a failing `sysctl -w` only warns.

use serde::Deserialize;

use crate::params::{self, opt_bool, scalar_string};
use crate::probe::{self, Attrs, Kv, PathState};
use crate::textedit::{join_lines, split_lines, Editor, TextEdit};
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, Object, ParamSpec, Plan,
    ProbeOutput, Resource,
};
use pgdeploy_text::quote;

/// The `sysctl` module.
pub struct Sysctl;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    name: String,
    #[serde(deserialize_with = "scalar_string")]
    value: String,
    file: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    reload: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    ignore_live_errors: Option<bool>,
}

impl Module for Sysctl {
    fn name(&self) -> &'static str {
        "sysctl"
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
        let valid = !p.name.is_empty()
            && !p.name.starts_with(['.', '/', '-'])
            && !p.name.contains("..")
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !valid {
            return Err(ModuleError::rejected(
                ["name"],
                format!("{:?} is not a sysctl name", p.name),
            ));
        }
        let value = normalize(&p.value);
        if value.is_empty() || p.value.contains('\n') {
            return Err(ModuleError::rejected(
                ["value"],
                "`value` must be one non-empty line".into(),
            ));
        }
        let file = p.file.unwrap_or_else(|| {
            format!(
                "/etc/sysctl.d/90-pgdeploy-{}.conf",
                p.name.replace('/', ".")
            )
        });
        let editor = SysctlLine {
            name: p.name.clone(),
            value: value.clone(),
        };
        Ok(Box::new(SysctlResource {
            file: TextEdit::new(file, Attrs::default(), true, editor)?,
            name: p.name,
            value,
            reload: p.reload.unwrap_or(true),
            ignore_live_errors: p.ignore_live_errors.unwrap_or(false),
        }))
    }
}

/// Values compare with runs of blanks (sysctl prints tabs) as one space.
fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct SysctlLine {
    name: String,
    value: String,
}

impl SysctlLine {
    fn key_of(line: &str) -> Option<String> {
        let t = line.trim_start();
        if t.starts_with('#') || t.starts_with(';') {
            return None;
        }
        let (k, _) = t.trim_start_matches('-').split_once('=')?;
        Some(k.trim().replace('/', "."))
    }
}

impl Editor for SysctlLine {
    fn edit(&self, old: &str) -> String {
        let wanted = format!("{} = {}", self.name, self.value);
        let key = self.name.replace('/', ".");
        let mut lines = split_lines(old);
        let mut seen = false;
        lines.retain_mut(|l| {
            if SysctlLine::key_of(l).as_deref() != Some(key.as_str()) {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *l = wanted.clone();
            true
        });
        if !seen {
            lines.push(wanted);
        }
        join_lines(old, &lines)
    }
}

struct SysctlResource {
    file: TextEdit<SysctlLine>,
    name: String,
    value: String,
    reload: bool,
    ignore_live_errors: bool,
}

impl SysctlResource {
    /// The kernel's live value of this parameter.
    fn live_value(&self) -> Object {
        Object::State("sysctl", Some(self.name.clone()))
    }
}

impl Resource for SysctlResource {
    fn probe(&self) -> String {
        let proc_path = format!("/proc/sys/{}", self.name.replace('.', "/"));
        probe::wrap(&format!(
            "{}\nif v=$(sysctl -n -- {}); then printf 'live='; printf %s \"$v\" | base64 -w0; echo; fi\nif [ -w {} ]; then echo writable=yes; fi",
            probe::path_snippet(&self.file.path, "", probe::EDIT_LIMIT),
            quote(&self.name),
            quote(&proc_path)
        ))
    }

    fn reads(&self) -> Footprint {
        Footprint::file_probe(&self.file.path).and(self.live_value())
    }

    fn writes(&self) -> Footprint {
        Footprint::path(&self.file.path).and(self.live_value())
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let mut plan = self.file.plan_state(&PathState::from_kv(&kv, "")?)?;
        if !self.reload {
            return Ok(plan);
        }
        let live = kv
            .base64("live")?
            .map(|v| normalize(&String::from_utf8_lossy(&v)));
        if live.as_deref() == Some(self.value.as_str()) {
            return Ok(plan);
        }
        let writable = kv.get("writable") == Some("yes");
        if self.ignore_live_errors && !writable {
            return Ok(plan);
        }
        let set = format!(
            "sysctl -w {}",
            quote(&format!("{}={}", self.name, self.value))
        );
        let script = if self.ignore_live_errors {
            format!(
                "{set} || echo {} >&2\n",
                quote(&format!("warning: could not set {} live", self.name))
            )
        } else {
            format!("{set}\n")
        };
        let change = Change::new(ChangeKind::Update, format!("sysctl {}", self.name))
            .states(live.unwrap_or_else(|| "unknown".into()), self.value.clone());
        plan = plan.with(change, [Action::run(script)]);
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, converge, probe_out};
    use serde_json::json;

    #[test]
    fn synthetic_plans() {
        let r = build(
            "sysctl",
            json!({"name": "vm.swappiness", "value": 1, "file": "/etc/sysctl.d/pg.conf"}),
        )
        .expect("valid");
        let plan = r
            .plan(&probe_out("type=absent\nlive=NjA=\nwritable=yes\n"))
            .expect("plan");
        assert_eq!(plan.changes.len(), 2);
        assert_eq!(plan.changes[0].subject, "file /etc/sysctl.d/pg.conf");
        assert_eq!(
            plan.actions[0].stdin.as_deref(),
            Some(&b"vm.swappiness = 1\n"[..])
        );
        assert_eq!(
            (
                plan.changes[1].before.as_deref(),
                plan.changes[1].after.as_deref()
            ),
            (Some("60"), Some("1"))
        );
        assert_eq!(plan.actions[1].script, "sysctl -w vm.swappiness=1\n");
        let r = build(
            "sysctl",
            json!({"name": "vm.swappiness", "value": 1, "ignore_live_errors": true}),
        )
        .expect("valid");
        assert_eq!(
            r.plan(&probe_out("type=absent\nlive=NjA=\n"))
                .expect("plan")
                .changes
                .len(),
            1
        );
        assert!(build("sysctl", json!({"name": "$(touch /tmp/pwned)", "value": 1})).is_err());
        assert!(build("sysctl", json!({"name": "vm.swappiness"})).is_err());
    }

    #[test]
    fn edits_the_line_for_its_key_only() {
        use crate::textedit::Editor;
        let e = super::SysctlLine {
            name: "vm.swappiness".into(),
            value: "1".into(),
        };
        assert_eq!(
            e.edit("# vm.swappiness = 5\nvm.swappiness=60\nkernel.x = 2\nvm.swappiness = 7\n"),
            "# vm.swappiness = 5\nvm.swappiness = 1\nkernel.x = 2\n"
        );
        assert_eq!(e.edit("kernel.x = 2"), "kernel.x = 2\nvm.swappiness = 1\n");
    }

    #[test]
    fn converges_locally_on_the_current_value() {
        // Persist the live value of a harmless key under a temporary file:
        // the live value does not change, the file is created.
        let live = crate::testing::sh("sysctl -n kernel.ostype", None)
            .stdout
            .trim()
            .to_string();
        if live.is_empty() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("90-test.conf");
        let r = build(
            "sysctl",
            json!({"name": "kernel.ostype", "value": live, "file": file.to_str().expect("utf8")}),
        )
        .expect("valid");
        let plan = converge(r.as_ref());
        assert_eq!(plan.changes.len(), 1, "{plan:#?}");
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            format!("kernel.ostype = {live}\n")
        );
    }
}
