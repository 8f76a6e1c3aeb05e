//! pgdeploy's task modules.
//!
//! A module turns a task's parameters into a [`Resource`]: something that can
//! *probe* a host (a POSIX shell snippet whose output describes the current
//! state) and *plan* from that answer (a pure function: the changes as data,
//! with diffs, and the [`Action`]s that make exactly those changes).
//!
//! The engine runs the probes (many tasks' probes in one round trip), calls
//! [`Resource::plan`], prints the plan in check mode and executes the plan's
//! actions in apply mode. Because check mode and apply mode share one
//! `plan`, they cannot drift apart (mgmt's `CheckApply` contract).
//!
//! Modules know nothing about SSH, inventories or the scheduler; the engine
//! knows nothing about any one module. The [`registry`] is the only list of
//! modules.

use std::fmt;

pub mod shell;

mod content;
mod footprint;
mod params;
mod probe;
#[cfg(test)]
mod testing;
mod textedit;

mod blockinfile;
mod command;
mod copy;
mod file;
mod group;
mod lineinfile;
mod package;
mod service;
mod ssh_check;
mod sysctl;
mod template;
mod tls_cert;
mod ufw;
mod user;
mod wait_for;

pub use footprint::{Footprint, Object};
pub use params::kind_of as json_type_name;
/// The one shell quoting, re-exported for the engine (see [`pgdeploy_text::quote`]).
pub use pgdeploy_text::quote;

/// Errors a module reports: bad parameters (before any host is touched) or a
/// probe answer it cannot understand.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A parameter is missing, unknown, or has the wrong type or value.
    #[error("{0}")]
    Params(String),
    /// The probe's answer could not be interpreted.
    #[error("unexpected probe answer: {0}")]
    Probe(String),
    /// A template or file named by the task could not be read or rendered.
    #[error("{0}")]
    Source(String),
}

/// One parameter a module accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// The parameter's name in the playbook.
    pub name: &'static str,
    /// Whether a task must give it.
    pub required: bool,
}

impl ParamSpec {
    /// A parameter that must be given.
    pub const fn required(name: &'static str) -> Self {
        Self {
            name,
            required: true,
        }
    }
    /// A parameter that may be left out.
    pub const fn optional(name: &'static str) -> Self {
        Self {
            name,
            required: false,
        }
    }
}

/// What the engine offers a module while it builds a resource.
pub trait Context {
    /// Renders the role's template `src` (relative to the role's `templates/`
    /// folder) with the task's variables.
    fn render_template(&self, src: &str) -> Result<String, ModuleError>;
    /// Reads the role's file `src` (relative to the role's `files/` folder).
    fn read_file(&self, src: &str) -> Result<Vec<u8>, ModuleError>;
    /// An identifier of this run, the same for every task and host of it
    /// (used, for example, to refresh the apt cache at most once per run).
    fn run_id(&self) -> &str;
}

/// A kind of task: `package`, `template`, `service`, ...
pub trait Module: Send + Sync {
    /// The name playbooks use for it.
    fn name(&self) -> &'static str;
    /// The parameters it accepts (checked by `pgdeploy validate` before any
    /// host is contacted, with "did you mean" for misspellings).
    fn params(&self) -> &'static [ParamSpec];
    /// Builds the resource from fully templated parameters (a JSON object).
    fn resource(
        &self,
        params: &serde_json::Value,
        ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError>;
}

/// One managed object on one host, built from a task's parameters.
pub trait Resource: Send + Sync {
    /// A POSIX `sh` snippet that prints the current state on stdout. It must
    /// not change anything on the host and must succeed (exit 0) even when the
    /// object does not exist yet. Run as root when the task has `become`.
    fn probe(&self) -> String;
    /// Compares the probe's answer with the desired state. An empty plan
    /// means the host already matches.
    fn plan(&self, probe: &ProbeOutput) -> Result<Plan, ModuleError>;
    /// What the probe reads: its cached answer stays valid across actions
    /// that write none of it. By default everything (dropped after any
    /// action on the host).
    fn reads(&self) -> Footprint {
        Footprint::Everything
    }
    /// What the plan's actions may change. By default everything.
    fn writes(&self) -> Footprint {
        Footprint::Everything
    }
    /// Whether the probe may be fetched ahead of its turn while the host is
    /// changing. A probe that waits on time or other hosts (`wait_for`)
    /// says no: fetched ahead of the actions before it, its answer would be
    /// thrown away, and a condition that does not hold yet can keep the
    /// whole batch waiting. A host that is not changing (a converged run)
    /// fetches every probe ahead.
    fn probe_ahead_while_changing(&self) -> bool {
        true
    }
}

/// What a probe printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeOutput {
    /// The snippet's exit status.
    pub status: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// The changes one resource needs, as data, and the actions that make them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// What will change, for people (printed by `plan` and `--check`).
    pub changes: Vec<Change>,
    /// What to run, in order, to make exactly these changes. A plan may hold
    /// actions without changes (`wait_for` waiting, a read-only command).
    pub actions: Vec<Action>,
}

impl Plan {
    /// A plan with nothing to do.
    pub fn none() -> Self {
        Self::default()
    }
    /// Whether the host already matches.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.actions.is_empty()
    }
    /// Adds a change and the actions that make it.
    pub fn with(mut self, change: Change, actions: impl IntoIterator<Item = Action>) -> Self {
        self.changes.push(change);
        self.actions.extend(actions);
        self
    }
}

/// The kind of a change, printed as Terraform does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// `+`: the object does not exist and will be created.
    Create,
    /// `~`: the object exists and will be changed.
    Update,
    /// `-`: the object exists and will be removed.
    Remove,
    /// `!`: something will be run (a command, a restart, a handler).
    Run,
}

impl ChangeKind {
    /// The one-character mark used in plans.
    pub fn mark(self) -> char {
        match self {
            ChangeKind::Create => '+',
            ChangeKind::Update => '~',
            ChangeKind::Remove => '-',
            ChangeKind::Run => '!',
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Create, update, remove or run.
    pub kind: ChangeKind,
    /// What changes, for example `file /etc/haproxy/haproxy.cfg` or
    /// `package haproxy`.
    pub subject: String,
    /// The state before, in a word or a line (`absent`, `stopped`, `0644`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The state after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// A unified diff, for file contents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl Change {
    /// A change without before/after or diff.
    pub fn new(kind: ChangeKind, subject: impl Into<String>) -> Self {
        Self {
            kind,
            subject: subject.into(),
            before: None,
            after: None,
            diff: None,
        }
    }
    /// Sets the before → after states.
    pub fn states(mut self, before: impl Into<String>, after: impl Into<String>) -> Self {
        self.before = Some(before.into());
        self.after = Some(after.into());
        self
    }
    /// Sets a unified diff.
    pub fn diff(mut self, diff: impl Into<String>) -> Self {
        self.diff = Some(diff.into());
        self
    }
}

/// A line an action prints on stderr starting with this is progress: the
/// engine shows the rest of the line live, while the action still runs (for
/// example "waiting for the apt lock ..."), and leaves it out of the task's
/// stderr.
pub const PROGRESS_PREFIX: &str = "pgdeploy-progress: ";

/// Something to run on the host: a shell script, optionally fed on stdin.
/// It may report progress with [`PROGRESS_PREFIX`] lines on stderr.
#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    /// A POSIX `sh` script; a non-zero exit fails the task.
    pub script: String,
    /// Bytes for its standard input (file contents for uploads).
    pub stdin: Option<Vec<u8>>,
    /// Run it on a new SSH connection, opened for it the way the run opened
    /// its own, instead of the run's connection: proves that new logins
    /// still work (after an sshd change, say).
    pub fresh_connection: bool,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Action")
            .field("script", &self.script)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("fresh_connection", &self.fresh_connection)
            .finish()
    }
}

impl Action {
    /// Runs `script`.
    pub fn run(script: impl Into<String>) -> Self {
        Self {
            script: script.into(),
            stdin: None,
            fresh_connection: false,
        }
    }
    /// Runs `script` on a new SSH connection (see [`Action::fresh_connection`]).
    pub fn run_on_new_connection(script: impl Into<String>) -> Self {
        Self {
            fresh_connection: true,
            ..Self::run(script)
        }
    }
    /// Writes `content` to `path` atomically: a temporary file in the same
    /// folder gets the content, which is checked (size and sha256), owner,
    /// group and mode, then is renamed over `path`. An interrupted upload
    /// never leaves a half-written file (see [`shell::atomic_write_script`]).
    pub fn upload(
        path: &str,
        content: Vec<u8>,
        owner: Option<&str>,
        group: Option<&str>,
        mode: Option<&str>,
    ) -> Self {
        Self {
            script: shell::atomic_write_script(path, &content, owner, group, mode),
            stdin: Some(content),
            fresh_connection: false,
        }
    }
}

/// Every module pgdeploy knows, by name.
pub fn registry() -> Vec<Box<dyn Module>> {
    vec![
        Box::new(package::Package),
        Box::new(file::File),
        Box::new(copy::Copy),
        Box::new(template::Template),
        Box::new(lineinfile::LineInFile),
        Box::new(blockinfile::BlockInFile),
        Box::new(service::Service),
        Box::new(user::User),
        Box::new(group::Group),
        Box::new(sysctl::Sysctl),
        Box::new(ufw::Ufw),
        Box::new(command::Command),
        Box::new(command::Shell),
        Box::new(wait_for::WaitFor),
        Box::new(ssh_check::SshCheck),
        Box::new(tls_cert::TlsCert),
    ]
}

/// Finds a module by name.
pub fn find(name: &str) -> Option<Box<dyn Module>> {
    registry().into_iter().find(|m| m.name() == name)
}
