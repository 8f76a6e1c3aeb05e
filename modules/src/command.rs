//! The `command` and `shell` modules: run something.
//!
//! `command` splits `cmd` into words by shell rules and quotes every word,
//! so no shell feature (pipes, `$VAR`, globs) applies; `shell` runs `cmd` as
//! an `sh` script. `unless` follows the same rule as `cmd`.
//!
//! Without a condition the task always runs (a `!` change). The conditions:
//! `creates` (nothing to do if that path exists), `removes` (nothing to do
//! unless it exists), `unless` (a command run by the probe: if it exits 0,
//! nothing to do; it must only read). `readonly: true` makes the command
//! itself the probe: it runs even in check mode, never counts as a change,
//! and its output is what `register` gets; a non-zero exit fails the task.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::params::{self, opt_bool};
use crate::probe::{self, Kv};
use crate::{
    Action, Change, ChangeKind, Context, Module, ModuleError, ParamSpec, Plan, ProbeOutput,
    Resource,
};
use pgdeploy_text::{quote, quote_argv};

/// The `command` module (no shell features).
pub struct Command;
/// The `shell` module (`cmd` is an `sh` script).
pub struct Shell;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    cmd: String,
    chdir: Option<String>,
    creates: Option<String>,
    removes: Option<String>,
    unless: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    readonly: Option<bool>,
    #[serde(default)]
    env: BTreeMap<String, serde_json::Value>,
}

impl Module for Command {
    fn name(&self) -> &'static str {
        "command"
    }
    fn params(&self) -> &'static [ParamSpec] {
        declared_params!(Params)
    }
    fn resource(
        &self,
        params: &serde_json::Value,
        _ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError> {
        build(self.name(), self.params(), params, false)
    }
}

impl Module for Shell {
    fn name(&self) -> &'static str {
        "shell"
    }
    fn params(&self) -> &'static [ParamSpec] {
        declared_params!(Params)
    }
    fn resource(
        &self,
        params: &serde_json::Value,
        _ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError> {
        build(self.name(), self.params(), params, true)
    }
}

/// `text` as a command line: an argv quoted word by word, or (for `shell`)
/// the script itself in a subshell.
fn command_line(what: &str, text: &str, shell: bool) -> Result<String, ModuleError> {
    if shell {
        if text.trim().is_empty() {
            return Err(ModuleError::rejected([what], format!("`{what}` is empty")));
        }
        return Ok(format!("(\n{text}\n)"));
    }
    let words = shell_words::split(text).map_err(|e| {
        ModuleError::rejected([what], format!("cannot split `{what}` into words: {e}"))
    })?;
    if words.is_empty() {
        return Err(ModuleError::rejected([what], format!("`{what}` is empty")));
    }
    Ok(quote_argv(&words))
}

fn build(
    module: &str,
    specs: &[ParamSpec],
    params: &serde_json::Value,
    shell: bool,
) -> Result<Box<dyn Resource>, ModuleError> {
    let p: Params = params::parse(module, specs, params)?;
    let readonly = p.readonly.unwrap_or(false);
    if readonly && (p.creates.is_some() || p.removes.is_some() || p.unless.is_some()) {
        return Err(ModuleError::rejected(
            ["readonly", "creates", "removes", "unless"],
            "`readonly` cannot be combined with `creates`, `removes` or `unless`".into(),
        ));
    }
    let mut prelude = String::new();
    for (key, value) in &p.env {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ModuleError::rejected(
                ["env"],
                format!("`env` key {key:?} is not a valid variable name"),
            ));
        }
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => value.to_string(),
            _ => {
                return Err(ModuleError::rejected(
                    ["env"],
                    format!("`env` value of {key} must be a string"),
                ))
            }
        };
        prelude.push_str(&format!("export {key}={}\n", quote(&value)));
    }
    if let Some(dir) = &p.chdir {
        prelude.push_str(&format!("cd -- {} || exit 1\n", quote(dir)));
    }
    let unless = p
        .unless
        .as_deref()
        .map(|u| command_line("unless", u, shell))
        .transpose()?;
    Ok(Box::new(CommandResource {
        module: if shell { "shell" } else { "command" },
        display: p.cmd.clone(),
        command: command_line("cmd", &p.cmd, shell)?,
        prelude,
        creates: p.creates,
        removes: p.removes,
        unless,
        readonly,
    }))
}

struct CommandResource {
    module: &'static str,
    display: String,
    command: String,
    /// `export`s and `cd`.
    prelude: String,
    creates: Option<String>,
    removes: Option<String>,
    unless: Option<String>,
    readonly: bool,
}

impl Resource for CommandResource {
    fn probe(&self) -> String {
        if self.readonly {
            // The command is the probe; its status is the probe's status.
            return format!("(\n{}{}\n) </dev/null\n", self.prelude, self.command);
        }
        let mut body = String::new();
        if let Some(c) = &self.creates {
            body.push_str(&format!(
                "if [ -e {} ]; then echo creates=yes; fi\n",
                quote(c)
            ));
        }
        if let Some(r) = &self.removes {
            body.push_str(&format!(
                "if [ -e {} ]; then echo removes=yes; fi\n",
                quote(r)
            ));
        }
        if let Some(u) = &self.unless {
            body.push_str(&format!(
                "if ( {}{u} ) >/dev/null 2>&1; then echo unless=yes; fi\n",
                self.prelude
            ));
        }
        probe::wrap(&body)
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        if self.readonly {
            if out.status != 0 {
                return Err(ModuleError::Probe(format!(
                    "`{}` exited with status {}: {}",
                    self.display,
                    out.status,
                    out.stderr.trim()
                )));
            }
            return Ok(Plan::none());
        }
        let kv = Kv::parse(out);
        if self.creates.is_some() && kv.get("creates") == Some("yes") {
            return Ok(Plan::none());
        }
        if self.removes.is_some() && kv.get("removes") != Some("yes") {
            return Ok(Plan::none());
        }
        if self.unless.is_some() && kv.get("unless") == Some("yes") {
            return Ok(Plan::none());
        }
        let first = self.display.lines().next().unwrap_or_default();
        let mut shown: String = first.chars().take(80).collect();
        if shown.len() < self.display.trim_end().len() {
            shown.push_str(" …");
        }
        let change = Change::new(ChangeKind::Run, format!("{} {shown}", self.module));
        Ok(Plan::none().with(
            change,
            [Action::run(format!("{}{}\n", self.prelude, self.command))],
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{apply_local, build, converge, probe_local, probe_out};
    use crate::ChangeKind;
    use serde_json::json;

    #[test]
    fn without_conditions_it_always_runs() {
        let r = build("command", json!({"cmd": "systemctl restart patroni"})).expect("valid");
        let plan = r.plan(&probe_out("")).expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Run);
        assert_eq!(plan.changes[0].subject, "command systemctl restart patroni");
    }

    #[test]
    fn creates_removes_unless_converge_locally() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("done");
        let m = marker.to_str().expect("utf8");
        let r = build(
            "command",
            json!({"cmd": format!("touch {m}"), "creates": m}),
        )
        .expect("valid");
        assert_eq!(converge(r.as_ref()).changes.len(), 1);
        let r = build("shell", json!({"cmd": format!("rm {m}"), "removes": m})).expect("valid");
        converge(r.as_ref());
        assert!(!marker.exists());
        let r = build("shell", json!({"cmd": "echo x >> log", "unless": "grep -q x log", "chdir": dir.path().to_str().expect("utf8")})).expect("valid");
        converge(r.as_ref());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("log")).expect("read"),
            "x\n"
        );
        let r = build("shell", json!({"cmd": "printf %s \"$GREETING\" > g", "env": {"GREETING": "hi $(id)"}, "chdir": dir.path().to_str().expect("utf8"), "creates": dir.path().join("g").to_str().expect("utf8")})).expect("valid");
        converge(r.as_ref());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("g")).expect("read"),
            "hi $(id)"
        );
    }

    #[test]
    fn command_has_no_shell_features() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pwned = dir.path().join("pwned");
        let out = dir.path().join("out");
        let cmd = format!(
            "sh -c 'printf %s \"$1\" > {}' x '$(touch {})'",
            out.display(),
            pwned.display()
        );
        let r = build("command", json!({"cmd": cmd})).expect("valid");
        assert!(apply_local(&r.plan(&probe_out("")).expect("plan")));
        assert!(!pwned.exists());
        assert_eq!(
            std::fs::read_to_string(&out).expect("read"),
            format!("$(touch {})", pwned.display())
        );
        let r = build(
            "command",
            json!({"cmd": format!("echo $(touch {})", pwned.display())}),
        )
        .expect("valid");
        assert!(apply_local(&r.plan(&probe_out("")).expect("plan")));
        assert!(!pwned.exists());
    }

    #[test]
    fn readonly_runs_as_the_probe() {
        let r = build(
            "shell",
            json!({"cmd": "echo hello; echo world", "readonly": true}),
        )
        .expect("valid");
        let out = probe_local(r.as_ref());
        assert_eq!(out.stdout, "hello\nworld\n");
        assert!(r.plan(&out).expect("plan").is_empty());
        let r = build("command", json!({"cmd": "false", "readonly": true})).expect("valid");
        let out = crate::testing::sh(&r.probe(), None);
        assert!(r.plan(&out).is_err());
        assert!(build(
            "command",
            json!({"cmd": "true", "readonly": true, "creates": "/x"})
        )
        .is_err());
    }

    #[test]
    fn bad_params() {
        let err = build("command", json!({"cmd": "true", "chdri": "/"}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `chdir`?"), "{err}");
        assert!(build("command", json!({"cmd": "echo 'unterminated"})).is_err());
        assert!(build("command", json!({"cmd": "true", "env": {"A B": "x"}})).is_err());
        assert!(build("shell", json!({}))
            .err()
            .expect("error")
            .to_string()
            .contains("missing required parameter `cmd`"));
    }
}
