//! The `pgdeploy` command line: parses the arguments and hands each
//! subcommand to its module in [`cli`]. The engine (`pgdeploy-engine`) runs
//! playbooks; the stack (`pgdeploy-stack`) is the PostgreSQL product.
//!
//! Exit codes: 0 success; 1 a task failed or a host was unreachable; 2 bad
//! input (nothing applied), or, with `plan --detailed-exitcode`, changes
//! pending; 130 stopped by Ctrl-C (tasks in progress finished, no new one
//! started).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::args::{ApplyArgs, ClusterArgs, GraphFormat, InputArgs, OutputFormat, WatchArgs};
use cli::{apply, day2, inspect};

/// Idempotent, parallel provisioning of highly available PostgreSQL
/// clusters over SSH.
#[derive(Parser, Debug)]
#[command(name = "pgdeploy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply a playbook to the inventory's hosts.
    Apply(ApplyArgs),
    /// Show what apply would change (`apply --check --diff`), as a plan.
    Plan {
        #[command(flatten)]
        args: ApplyArgs,
        /// Exit 0 when nothing would change, 2 when changes are pending.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Print the task DAG as text or Graphviz dot.
    Graph {
        #[command(flatten)]
        inputs: InputArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Check inventory, playbook, roles and templates without contacting any host.
    Validate {
        #[command(flatten)]
        inputs: InputArgs,
    },
    /// Print a host's facts.
    Facts {
        /// Inventory file.
        #[arg(short, long)]
        inventory: PathBuf,
        /// The host.
        host: String,
        /// Record unknown host keys in known_hosts.
        #[arg(long)]
        accept_new_host_keys: bool,
    },
    /// Encrypted secrets (see `secrets init --help`).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The cluster's health: Patroni members, etcd, HAProxy, VIP, backups.
    /// Exit 0 when healthy, 1 and a one-line reason when degraded.
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Largest acceptable age of the newest backup, in hours.
        #[arg(long, default_value_t = 26.0)]
        max_backup_age_hours: f64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// One self-contained HTML page: topology, status, last apply, backups.
    Report {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Largest acceptable age of the newest backup, in hours.
        #[arg(long, default_value_t = 26.0)]
        max_backup_age_hours: f64,
        /// Write the page here instead of to stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// A planned switchover with pre-checks, each step printed.
    Switchover {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The member to lead (default: the streaming replica with the least lag).
        #[arg(long)]
        to: Option<String>,
    },
    /// Restart one member's PostgreSQL through Patroni.
    Restart {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The member.
        member: String,
    },
    /// Rebuild a replica from the leader (Patroni reinitialize).
    Reinit {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The member.
        member: String,
    },
    /// Bring up, inspect and break the built-in lab of container hosts.
    Lab {
        #[command(subcommand)]
        command: pgdeploy_lab::LabCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// Generate the cluster's passwords once into an age-encrypted file
    /// (missing ones only; existing values are kept). The identity is
    /// $PGDEPLOY_AGE_IDENTITY or ~/.config/pgdeploy/age-identity.txt, created
    /// when missing.
    Init {
        /// Inventory file; the secrets file is `secrets.age` beside it.
        #[arg(short, long)]
        inventory: PathBuf,
        /// The secrets file instead of `secrets.age` beside the inventory.
        #[arg(long)]
        secrets: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Apply(args) => apply::apply(
            &args,
            apply::Mode {
                plan: false,
                detailed_exitcode: false,
            },
        ),
        Command::Plan {
            args,
            detailed_exitcode,
        } => apply::apply(
            &args,
            apply::Mode {
                plan: true,
                detailed_exitcode,
            },
        ),
        Command::Graph { inputs, format } => inspect::graph(&inputs, format),
        Command::Validate { inputs } => inspect::validate(&inputs),
        Command::Facts {
            inventory,
            host,
            accept_new_host_keys,
        } => inspect::facts(&inventory, &host, accept_new_host_keys),
        Command::Secrets {
            command: SecretsCommand::Init { inventory, secrets },
        } => cli::secrets::init(&inventory, secrets),
        Command::Status {
            cluster,
            max_backup_age_hours,
            output,
            watch,
        } if watch.watch => day2::watch_status(&cluster, max_backup_age_hours, output, &watch),
        Command::Status {
            cluster,
            max_backup_age_hours,
            output,
            ..
        } => day2::status(&cluster, max_backup_age_hours, output),
        Command::Report {
            cluster,
            max_backup_age_hours,
            output,
        } => day2::report(&cluster, max_backup_age_hours, output.as_deref()),
        Command::Switchover { cluster, to } => day2::switchover(&cluster, to),
        Command::Restart { cluster, member } => day2::restart(&cluster, member),
        Command::Reinit { cluster, member } => day2::reinit(&cluster, member),
        Command::Lab { command } => {
            match pgdeploy_lab::run(&command, &pgdeploy_stack::contract::lab_groups()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => cli::fail(cli::EXIT_FAILED, format!("{e:#}")),
            }
        }
    }
}
