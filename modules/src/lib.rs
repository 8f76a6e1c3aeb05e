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

/// A module's [`Module::params`], derived once from its parameter struct
/// (see [`introspect`]) and kept for the life of the process.
macro_rules! declared_params {
    ($params:ty) => {{
        static SPECS: std::sync::OnceLock<Vec<$crate::ParamSpec>> = std::sync::OnceLock::new();
        SPECS
            .get_or_init($crate::introspect::specs::<$params>)
            .as_slice()
    }};
}

pub mod shell;

mod content;
mod footprint;
mod introspect;
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
/// probe answer it cannot understand. Parameter errors carry the names of
/// the parameters they are about ([`ModuleError::parameters`]), so callers
/// can point at them without reading the message.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The task's parameters are not a mapping (`found` is the kind of value
    /// given, as [`json_type_name`] names it).
    #[error("module `{module}` takes a mapping of parameters, not {found}")]
    NotAMapping {
        /// The module's name.
        module: String,
        /// What was given instead ("a list").
        found: &'static str,
    },
    /// A parameter the module does not have.
    #[error("unknown parameter `{name}` for module `{module}`{}", unknown_hint(suggestion.as_deref(), accepted))]
    UnknownParameter {
        /// The module's name.
        module: String,
        /// The parameter as given.
        name: String,
        /// The accepted parameter it is close to, if any (a typo).
        suggestion: Option<String>,
        /// Every parameter the module accepts, in declaration order.
        accepted: Vec<String>,
    },
    /// A required parameter is not given (or is null).
    #[error("missing required parameter `{name}` for module `{module}`")]
    MissingParameter {
        /// The module's name.
        module: String,
        /// The missing parameter.
        name: String,
    },
    /// A parameter's value has the wrong type or shape for the parameter
    /// (found while reading the parameters into the module's struct).
    #[error("parameter `{path}` of module `{module}`: {reason}")]
    InvalidValue {
        /// The module's name.
        module: String,
        /// The parameter (the top-level key).
        name: String,
        /// Where inside it, as serde paths read (`env.PGDATA`, `name[1]`);
        /// the parameter's name when the value itself is wrong.
        path: String,
        /// What is wrong ("expected a boolean").
        reason: String,
    },
    /// The module's own checks refused the parameters: a value it does not
    /// take, or parameters that do not go together. `message` is the whole
    /// sentence people read.
    #[error("{message}")]
    Rejected {
        /// The parameters it is about, the most relevant first (possibly
        /// none).
        names: Vec<String>,
        /// What is wrong.
        message: String,
    },
    /// The probe's answer could not be interpreted.
    #[error("unexpected probe answer: {0}")]
    Probe(String),
    /// A template or file named by the task could not be read or rendered.
    #[error("{0}")]
    Source(String),
}

/// The end of an unknown parameter's message: a "did you mean", else the
/// list of accepted parameters.
fn unknown_hint(suggestion: Option<&str>, accepted: &[String]) -> String {
    match suggestion {
        Some(best) => format!("; did you mean `{best}`?"),
        None => {
            let names: Vec<String> = accepted.iter().map(|n| format!("`{n}`")).collect();
            format!(" (it accepts {})", names.join(", "))
        }
    }
}

impl ModuleError {
    /// A [`ModuleError::Rejected`] about `names`.
    pub(crate) fn rejected<'a>(names: impl IntoIterator<Item = &'a str>, message: String) -> Self {
        ModuleError::Rejected {
            names: names.into_iter().map(String::from).collect(),
            message,
        }
    }

    /// For an error in the task's parameters, the parameters it is about,
    /// the most relevant first (possibly none); `None` for other errors
    /// (a probe answer, a template or file).
    pub fn parameters(&self) -> Option<Vec<&str>> {
        match self {
            ModuleError::NotAMapping { .. } => Some(Vec::new()),
            ModuleError::UnknownParameter { name, .. }
            | ModuleError::MissingParameter { name, .. }
            | ModuleError::InvalidValue { name, .. } => Some(vec![name.as_str()]),
            ModuleError::Rejected { names, .. } => Some(names.iter().map(String::as_str).collect()),
            ModuleError::Probe(_) | ModuleError::Source(_) => None,
        }
    }
}

/// One parameter a module accepts, as read from the module's parameter
/// struct (never listed by hand).
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// The parameter's name in the playbook.
    pub name: &'static str,
    /// Whether a task must give it.
    pub required: bool,
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
    /// host is contacted, with "did you mean" for misspellings). Modules
    /// answer `declared_params!(Params)`: read from their parameter struct,
    /// never listed by hand.
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

#[cfg(test)]
mod tests {
    use super::*;
    use introspect::Found;

    /// Every module's parameters as they were listed by hand before they
    /// were derived from the structs: (module, required, optional).
    const LISTED: &[(&str, &[&str], &[&str])] = &[
        (
            "package",
            &["name"],
            &["state", "update_cache", "purge", "lock_timeout", "hold"],
        ),
        (
            "file",
            &["path"],
            &["state", "owner", "group", "mode", "src", "recurse"],
        ),
        (
            "copy",
            &["dest"],
            &["content", "src", "owner", "group", "mode", "validate"],
        ),
        (
            "template",
            &["src", "dest"],
            &["owner", "group", "mode", "validate"],
        ),
        (
            "lineinfile",
            &["path"],
            &[
                "line",
                "regexp",
                "state",
                "insertafter",
                "insertbefore",
                "create",
                "owner",
                "group",
                "mode",
            ],
        ),
        (
            "blockinfile",
            &["path"],
            &[
                "block",
                "marker",
                "marker_begin",
                "marker_end",
                "state",
                "insertafter",
                "insertbefore",
                "create",
                "owner",
                "group",
                "mode",
            ],
        ),
        (
            "service",
            &["name"],
            &["state", "enabled", "daemon_reload", "masked"],
        ),
        (
            "user",
            &["name"],
            &[
                "uid",
                "group",
                "groups",
                "append",
                "home",
                "shell",
                "comment",
                "system",
                "create_home",
                "remove",
                "state",
            ],
        ),
        ("group", &["name"], &["gid", "system", "state"]),
        (
            "sysctl",
            &["name", "value"],
            &["file", "reload", "ignore_live_errors"],
        ),
        (
            "ufw",
            &[],
            &[
                "rule",
                "port",
                "proto",
                "from",
                "to",
                "direction",
                "comment",
                "delete",
                "default",
                "policy",
                "state",
            ],
        ),
        (
            "command",
            &["cmd"],
            &["chdir", "creates", "removes", "unless", "readonly", "env"],
        ),
        (
            "shell",
            &["cmd"],
            &["chdir", "creates", "removes", "unless", "readonly", "env"],
        ),
        (
            "wait_for",
            &[],
            &[
                "port", "host", "url", "status", "command", "timeout", "state",
            ],
        ),
        ("ssh_check", &[], &["command"]),
        (
            "tls_cert",
            &["cert", "key", "ca_cert", "ca_key", "names"],
            &["owner", "group", "key_mode", "valid_days", "renew_days"],
        ),
    ];

    type FieldNames = fn() -> Option<&'static [&'static str]>;
    type Accepts = fn(&[&'static str]) -> Result<(), Found>;

    /// Every module's parameter struct, as serde sees it.
    const STRUCTS: &[(&str, FieldNames, Accepts)] = &[
        (
            "package",
            introspect::field_names::<package::Params>,
            introspect::accepts::<package::Params>,
        ),
        (
            "file",
            introspect::field_names::<file::Params>,
            introspect::accepts::<file::Params>,
        ),
        (
            "copy",
            introspect::field_names::<copy::Params>,
            introspect::accepts::<copy::Params>,
        ),
        (
            "template",
            introspect::field_names::<template::Params>,
            introspect::accepts::<template::Params>,
        ),
        (
            "lineinfile",
            introspect::field_names::<lineinfile::Params>,
            introspect::accepts::<lineinfile::Params>,
        ),
        (
            "blockinfile",
            introspect::field_names::<blockinfile::Params>,
            introspect::accepts::<blockinfile::Params>,
        ),
        (
            "service",
            introspect::field_names::<service::Params>,
            introspect::accepts::<service::Params>,
        ),
        (
            "user",
            introspect::field_names::<user::Params>,
            introspect::accepts::<user::Params>,
        ),
        (
            "group",
            introspect::field_names::<group::Params>,
            introspect::accepts::<group::Params>,
        ),
        (
            "sysctl",
            introspect::field_names::<sysctl::Params>,
            introspect::accepts::<sysctl::Params>,
        ),
        (
            "ufw",
            introspect::field_names::<ufw::Params>,
            introspect::accepts::<ufw::Params>,
        ),
        (
            "command",
            introspect::field_names::<command::Params>,
            introspect::accepts::<command::Params>,
        ),
        (
            "shell",
            introspect::field_names::<command::Params>,
            introspect::accepts::<command::Params>,
        ),
        (
            "wait_for",
            introspect::field_names::<wait_for::Params>,
            introspect::accepts::<wait_for::Params>,
        ),
        (
            "ssh_check",
            introspect::field_names::<ssh_check::Params>,
            introspect::accepts::<ssh_check::Params>,
        ),
        (
            "tls_cert",
            introspect::field_names::<tls_cert::Params>,
            introspect::accepts::<tls_cert::Params>,
        ),
    ];

    #[test]
    fn derived_parameters_are_the_ones_listed_before() {
        let modules = registry();
        assert_eq!(modules.len(), LISTED.len());
        for m in &modules {
            let (_, required, optional) = LISTED
                .iter()
                .find(|(name, _, _)| *name == m.name())
                .unwrap_or_else(|| panic!("module {} is not in LISTED", m.name()));
            let mut want: Vec<(&str, bool)> = required.iter().map(|n| (*n, true)).collect();
            want.extend(optional.iter().map(|n| (*n, false)));
            want.sort();
            let mut got: Vec<(&str, bool)> =
                m.params().iter().map(|s| (s.name, s.required)).collect();
            got.sort();
            assert_eq!(got, want, "module {}", m.name());
        }
    }

    /// The derived list is exactly what serde accepts: each name alone
    /// (with the required ones) is accepted, without a required one serde
    /// names it missing, and any other name is refused.
    #[test]
    fn derived_parameters_are_what_serde_accepts() {
        assert_eq!(STRUCTS.len(), registry().len());
        for (module, fields, accepts) in STRUCTS {
            let declared = find(module).expect("registered").params();
            let derived: Vec<&str> = declared.iter().map(|s| s.name).collect();
            assert_eq!(fields(), Some(derived.as_slice()), "{module}");
            let required: Vec<&'static str> = declared
                .iter()
                .filter(|s| s.required)
                .map(|s| s.name)
                .collect();
            assert_eq!(accepts(&required), Ok(()), "{module}: required only");
            for spec in declared.iter().filter(|s| !s.required) {
                let mut keys = required.clone();
                keys.push(spec.name);
                assert_eq!(accepts(&keys), Ok(()), "{module}: {}", spec.name);
            }
            for (i, name) in required.iter().enumerate() {
                let mut keys = required.clone();
                keys.remove(i);
                assert_eq!(accepts(&keys), Err(Found::Missing(name)), "{module}");
            }
            let mut keys = required.clone();
            keys.push("pgdeploy_no_such_parameter");
            assert_eq!(
                accepts(&keys),
                Err(Found::Unknown("pgdeploy_no_such_parameter".into())),
                "{module}: serde must deny unknown fields"
            );
        }
    }
}
