//! Arguments shared by several subcommands.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Inventory, playbook, selection and variables of a run.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Inventory file (Ansible YAML format).
    #[arg(short, long)]
    pub inventory: PathBuf,
    /// Playbook (default: `playbooks/site.yaml` in the working folder or
    /// beside the inventory, else the built-in one).
    pub playbook: Option<PathBuf>,
    /// Folders of roles that win over the built-in ones, role by role
    /// (repeat it, or separate folders with `:`).
    #[arg(long, value_delimiter = ':')]
    pub roles_path: Vec<PathBuf>,
    /// Only these hosts or groups (a pattern: `etcd:!node3`).
    #[arg(short, long)]
    pub limit: Option<String>,
    /// Only tasks with these tags (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip tasks with these tags (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    /// Extra vars: `key=value` or `@file.yaml`; they beat every other var.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// Encrypted secrets file (default: `secrets.age` beside the inventory,
    /// when it exists); its vars rank just below `-e`.
    #[arg(long)]
    pub secrets: Option<PathBuf>,
}

/// Options of `apply` and `plan`.
#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Change nothing; report exactly what apply would do.
    #[arg(long)]
    pub check: bool,
    /// Show unified diffs of file changes and before → after states.
    #[arg(long)]
    pub diff: bool,
    /// Hosts worked on at once (default: all).
    #[arg(long)]
    pub forks: Option<usize>,
    /// Output format (`markdown`: the plan for a pull-request comment; with
    /// `plan` or `apply --check` only).
    #[arg(long, value_enum, default_value_t = RunOutput::Human)]
    pub output: RunOutput,
    /// Show every task, not only changes and failures.
    #[arg(short, long)]
    pub verbose: bool,
    /// Record unknown host keys in known_hosts instead of refusing them.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// SSH connect timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds any remote command may run before it is stopped on its host
    /// and its task fails (a task's `timeout:` beats it); 0: no limit.
    #[arg(long, default_value_t = 3600)]
    pub command_timeout: u64,
}

/// Options of the day-2 commands (status, report, switchover, restart, reinit).
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Inventory file (Ansible YAML format).
    #[arg(short, long)]
    pub inventory: PathBuf,
    /// The playbook whose role defaults name ports and settings (default:
    /// as `apply` finds it).
    #[arg(long)]
    pub playbook: Option<PathBuf>,
    /// Folders of roles that win over the built-in ones, as for `apply`.
    #[arg(long, value_delimiter = ':')]
    pub roles_path: Vec<PathBuf>,
    /// Extra vars: `key=value` or `@file.yaml`.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// Encrypted secrets file (default: `secrets.age` beside the inventory,
    /// when it exists), read as `apply` reads it.
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// Largest acceptable replication lag, in MB.
    #[arg(long, default_value_t = 16.0)]
    pub max_lag_mb: f64,
    /// Record unknown host keys in known_hosts.
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

/// `status --watch` and its schedule.
#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Refresh the status in place until Ctrl-C (exit 130).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0, requires = "watch")]
    pub interval: f64,
    /// Stop after this many refreshes; exit 0 or 1 as the last one found the
    /// cluster.
    #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// How results are printed.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people.
    Human,
    /// For programs (stdout holds the JSON only).
    Json,
}

/// How `apply` and `plan` print their results.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutput {
    /// For people.
    Human,
    /// For programs (stdout holds the JSON only; docs/schema/run-report.schema.json).
    Json,
    /// The plan as Markdown, for a pull-request comment (stdout holds it
    /// only); `plan` or `apply --check`.
    Markdown,
}

/// `graph --format`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// An indented list.
    Text,
    /// Graphviz dot.
    Dot,
}
