//! The subcommands, one module each; [`vars`] is the one way every command
//! reads its variables (the cluster CA, `secrets.age`, `-e`).

pub mod apply;
pub mod args;
pub mod builtin;
pub mod commands;
pub mod day2;
pub mod init;
pub mod inspect;
pub mod roles;
pub mod secrets;
pub mod shell;
pub mod ssh;

use std::path::Path;
use std::process::ExitCode;

use pgdeploy_engine::error::InputErrors;
use pgdeploy_engine::inventory::Vars;
use pgdeploy_engine::parse_extra_vars;
use pgdeploy_engine::resolve::Selection;
use pgdeploy_engine::Inputs;
use pgdeploy_stack::contract::Stack;
use pgdeploy_stack::tls;

/// A task failed, a host was unreachable, or a day-2 operation failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad input (nothing applied); with `plan --detailed-exitcode`, changes
/// pending.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Prints an error and gives the exit code.
pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// Prints bad input (every error with its position) and gives exit 2.
pub fn bad_input(errors: InputErrors) -> ExitCode {
    eprintln!("{errors}");
    let n = errors.0.len();
    eprintln!(
        "{n} error{} found; nothing was applied.",
        if n == 1 { "" } else { "s" }
    );
    ExitCode::from(EXIT_BAD_INPUT)
}

/// What a command does when the cluster CA does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingCa {
    /// A throw-away CA stands in (validate, graph, and a plan or apply
    /// whose inputs are still being checked).
    Ephemeral,
    /// Made and kept beside the inventory (a plan or apply whose inputs are
    /// valid: the CA is made once, by the first of them).
    Create,
    /// Without a CA, TLS is off (day-2 commands on a cluster deployed
    /// before TLS).
    Absent,
}

/// The cluster CA's variables.
pub fn ca_vars(inventory: &Path, missing: MissingCa) -> Result<Vars, ExitCode> {
    let dir = tls::ca_dir(inventory);
    let vars = match missing {
        MissingCa::Ephemeral => tls::vars_or_ephemeral(inventory),
        MissingCa::Absent => tls::load(&dir).map(|ca| ca.map(|c| c.vars()).unwrap_or_default()),
        MissingCa::Create => tls::load_or_create(&dir).map(|(ca, created)| {
            if created {
                eprintln!(
                    "created the cluster CA in {} (keep ca.key secret and backed up)",
                    dir.display()
                );
            }
            ca.vars()
        }),
    };
    vars.map_err(|e| fail(EXIT_BAD_INPUT, e))
}

/// The variables the user gives above the inventory, lowest first: the
/// secrets file's (`secrets`, or `secrets.age` beside the inventory when it
/// exists), then `-e`. Every command reads them this way.
pub fn user_vars(
    inventory: &Path,
    secrets: Option<&Path>,
    extra: &[String],
) -> Result<Vars, ExitCode> {
    let mut vars = pgdeploy_engine::secrets::load(inventory, secrets).map_err(bad_input)?;
    vars.extend(parse_extra_vars(extra).map_err(bad_input)?);
    Ok(vars)
}

/// The cluster CA's variables below the user's.
pub fn with_ca(ca: Vars, user: &Vars) -> Vars {
    let mut vars = ca;
    vars.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

/// A tokio runtime, or exit 1.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new()
        .map_err(|e| fail(EXIT_FAILED, format!("cannot start the async runtime: {e}")))
}

/// Prints one step of a day-2 operation, with the time of day.
pub fn say(line: &str) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let of_day = secs % 86_400.0;
    println!(
        "[{:02}:{:02}:{:06.3}] {line}",
        (of_day / 3600.0) as u32,
        (of_day % 3600.0 / 60.0) as u32,
        of_day % 60.0
    );
}

/// The playbook and role folders of a run (see [`roles`]).
pub fn stack_paths(args: &args::InputArgs) -> Result<roles::StackPaths, ExitCode> {
    roles::StackPaths::resolve(
        Some(&args.inventory),
        args.playbook.as_deref(),
        &args.roles_path,
    )
}

/// Loads, resolves and checks a run's inputs with these variables; bad
/// input is printed (exit 2) before any host is contacted.
pub fn load_inputs(
    args: &args::InputArgs,
    paths: &roles::StackPaths,
    vars: &Vars,
) -> Result<Inputs, ExitCode> {
    let selection = Selection {
        limit: args.limit.clone(),
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
    };
    pgdeploy_engine::load_inputs_with_roles(
        &args.inventory,
        &paths.playbook,
        &paths.role_dirs,
        &selection,
        vars,
    )
    .map_err(bad_input)
}

/// The stack contract's view of loaded inputs.
pub fn stack_of(inputs: &Inputs, vars: &Vars) -> Stack {
    Stack::new(inputs.inventory.clone(), &inputs.playbook, vars.clone())
}

/// Prints the stack's topology warnings on stderr; refuses (exit 2) a
/// dynamic configuration Patroni would reject, before any host changes.
pub fn warn_topology(stack: &Stack) -> Result<(), ExitCode> {
    for warning in stack.topology_warnings() {
        eprintln!("warning: {warning}");
    }
    pgdeploy_stack::cluster::dynamic::check(stack)
        .map_err(|e| fail(EXIT_BAD_INPUT, format!("{e}; nothing was applied")))
}
