//! The `pgdeploy` command line: parses the arguments and hands each
//! subcommand to its module in [`cli`]. The engine (`pgdeploy-engine`) runs
//! playbooks; the stack (`pgdeploy-stack`) is the PostgreSQL product.
//!
//! Exit codes: 0 success; 1 a task failed or a host was unreachable; 2 bad
//! input (nothing applied), or, with `plan --detailed-exitcode`, changes
//! pending; 130 stopped by Ctrl-C (tasks in progress finished, no new one
//! started).

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use cli::commands::{Command, RolesCommand, SecretsCommand};
use cli::{apply, day2, inspect};

/// `0.1.0 (abc1234)`: the version and the git commit it was built from
/// (`unknown` outside a git checkout; see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PGDEPLOY_GIT_COMMIT"),
    ")"
);

/// Idempotent, parallel provisioning of highly available PostgreSQL
/// clusters over SSH.
#[derive(Parser, Debug)]
#[command(name = "pgdeploy", version = VERSION, about)]
struct Cli {
    /// SSH client configuration read for Host, HostName, User, Port,
    /// IdentityFile and ProxyJump (default: $PGDEPLOY_SSH_CONFIG, else
    /// ~/.ssh/config); inventory values win over it.
    #[arg(short = 'F', long, global = true, value_name = "FILE")]
    ssh_config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    pgdeploy_engine::color::init();
    let cli = Cli::parse();
    if let Err(code) = cli::ssh::read_config(cli.ssh_config.as_deref()) {
        return code;
    }
    match cli.command {
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
        Command::Backup { cluster, kind } => day2::backup(&cluster, kind),
        Command::Restore {
            cluster,
            to,
            into,
            yes,
        } => day2::restore(&cluster, &to, into.as_deref(), yes),
        Command::Update {
            cluster,
            packages,
            check,
            yes,
        } => day2::update(&cluster, &packages, check, yes),
        Command::UpgradeOs {
            cluster,
            to,
            check,
            yes,
        } => day2::upgrade_os(&cluster, &to, check, yes),
        Command::Upgrade {
            cluster,
            to,
            check,
            yes,
            no_backup_check,
            rollback,
            finish,
        } => day2::upgrade(
            &cluster,
            &to,
            day2::UpgradeFlags {
                check,
                yes,
                backup_check: !no_backup_check,
                step: if rollback {
                    day2::UpgradeStep::Rollback
                } else if finish {
                    day2::UpgradeStep::Finish
                } else {
                    day2::UpgradeStep::Upgrade
                },
            },
        ),
        Command::Init { dir, hosts } => cli::init::init(&dir, &hosts),
        Command::Roles {
            command:
                RolesCommand::List {
                    inventory,
                    roles_path,
                },
        } => cli::roles::list(inventory.as_deref(), &roles_path),
        Command::Roles {
            command: RolesCommand::Export { dir, force },
        } => cli::roles::export(&dir, force),
        Command::Completions { shell } => cli::shell::completions(shell, Cli::command()),
        Command::Man => cli::shell::man(Cli::command()),
        Command::Lab { command } => {
            match pgdeploy_lab::run(&command, &pgdeploy_stack::contract::lab_groups()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => cli::fail(cli::EXIT_FAILED, format!("{e:#}")),
            }
        }
    }
}
