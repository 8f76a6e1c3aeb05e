//! Test helpers: a fake [`Context`] and a local runner that executes probes
//! and actions with `sh` on this machine.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::{Action, Context, ModuleError, Plan, ProbeOutput, Resource};

/// A [`Context`] with in-memory templates and files.
#[derive(Default)]
pub(crate) struct FakeContext {
    pub templates: HashMap<String, String>,
    pub files: HashMap<String, Vec<u8>>,
}

impl Context for FakeContext {
    fn render_template(&self, src: &str) -> Result<String, ModuleError> {
        self.templates
            .get(src)
            .cloned()
            .ok_or_else(|| ModuleError::Source(format!("no template {src}")))
    }
    fn read_file(&self, src: &str) -> Result<Vec<u8>, ModuleError> {
        self.files
            .get(src)
            .cloned()
            .ok_or_else(|| ModuleError::Source(format!("no file {src}")))
    }
    fn run_id(&self) -> &str {
        "test-run"
    }
}

/// A probe answer with `stdout` and status 0.
pub(crate) fn probe_out(stdout: &str) -> ProbeOutput {
    ProbeOutput {
        status: 0,
        stdout: stdout.to_string(),
        stderr: String::new(),
    }
}

/// Builds a resource of module `name` from JSON params.
pub(crate) fn build(
    name: &str,
    params: serde_json::Value,
) -> Result<Box<dyn Resource>, ModuleError> {
    let module = crate::find(name)
        .ok_or_else(|| ModuleError::rejected(Vec::<&str>::new(), format!("no module {name}")))?;
    module.resource(&params, &FakeContext::default())
}

/// Runs `script` with `sh`, feeding `stdin`.
pub(crate) fn sh(script: &str, stdin: Option<&[u8]>) -> ProbeOutput {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("sh finishes");
    ProbeOutput {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a resource's probe here.
pub(crate) fn probe_local(resource: &dyn Resource) -> ProbeOutput {
    let out = sh(&resource.probe(), None);
    assert_eq!(out.status, 0, "probe failed: {out:?}");
    out
}

/// Runs an action here; whether it succeeded.
pub(crate) fn run_action(action: &Action) -> bool {
    let out = sh(&action.script, action.stdin.as_deref());
    if out.status != 0 {
        eprintln!(
            "action failed ({}):\n{}\nstderr: {}",
            out.status, action.script, out.stderr
        );
    }
    out.status == 0
}

/// Runs a plan's actions in order, stopping at the first failure.
pub(crate) fn apply_local(plan: &Plan) -> bool {
    plan.actions.iter().all(run_action)
}

/// Probe, plan, apply; then probe and plan again, which must be empty.
/// Returns the first plan.
pub(crate) fn converge(resource: &dyn Resource) -> Plan {
    let plan = resource.plan(&probe_local(resource)).expect("plan");
    assert!(apply_local(&plan), "apply failed for plan {plan:#?}");
    let again = resource.plan(&probe_local(resource)).expect("second plan");
    assert!(again.is_empty(), "not idempotent: second plan {again:#?}");
    plan
}

/// Whether this process runs as root. Tests that create users, groups or
/// root-owned files locally print one line and return without it, so a
/// contributor's `cargo test` passes; CI runs them as root.
pub(crate) fn root_or_skip(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!(
            "skipped: {test} needs root (it changes users, groups or file owners on this machine)"
        );
    }
    root
}
