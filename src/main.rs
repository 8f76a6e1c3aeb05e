//! The `pgdeploy` command line.
//!
//! Exit codes: 0 success; 1 a task failed or a host was unreachable; 2 bad
//! input (nothing applied), or, with `plan --detailed-exitcode`, changes
//! pending; 130 stopped by Ctrl-C (tasks in progress finished, no new one
//! started).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pgdeploy::cluster::{ops, page, rolling, status, watch, Cluster, ClusterError};
use pgdeploy::output::{Progress, Style};
use pgdeploy::report::Masker;
use pgdeploy::resolve::Selection;
use pgdeploy::run::{Run, RunOptions};
use pgdeploy::{graph, load_inputs, parse_extra_vars, Inputs};

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

#[derive(Args, Debug, Clone)]
struct InputArgs {
    /// Inventory file (Ansible YAML format).
    #[arg(short, long)]
    inventory: PathBuf,
    /// Playbook.
    #[arg(default_value = "playbooks/site.yaml")]
    playbook: PathBuf,
    /// Only these hosts or groups (a pattern: `etcd:!node3`).
    #[arg(short, long)]
    limit: Option<String>,
    /// Only tasks with these tags (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Skip tasks with these tags (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skip_tags: Vec<String>,
    /// Extra vars: `key=value` or `@file.yaml`; they beat every other var.
    #[arg(short = 'e', long = "extra-vars")]
    extra_vars: Vec<String>,
    /// Encrypted secrets file (default: `secrets.age` beside the inventory,
    /// when it exists); its vars rank just below `-e`.
    #[arg(long)]
    secrets: Option<PathBuf>,
}

/// Options of the day-2 commands (status, switchover, restart, reinit).
#[derive(Args, Debug, Clone)]
struct ClusterArgs {
    /// Inventory file (Ansible YAML format).
    #[arg(short, long)]
    inventory: PathBuf,
    /// The playbook whose role defaults name ports and settings.
    #[arg(long, default_value = "playbooks/site.yaml")]
    playbook: PathBuf,
    /// Extra vars: `key=value` or `@file.yaml` (e.g. postgres_superuser_password).
    #[arg(short = 'e', long = "extra-vars")]
    extra_vars: Vec<String>,
    /// Largest acceptable replication lag, in MB.
    #[arg(long, default_value_t = 16.0)]
    max_lag_mb: f64,
    /// Record unknown host keys in known_hosts.
    #[arg(long)]
    accept_new_host_keys: bool,
}

/// `status --watch` and its schedule.
#[derive(Args, Debug, Clone)]
struct WatchArgs {
    /// Refresh the status in place until Ctrl-C (exit 130).
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0, requires = "watch")]
    interval: f64,
    /// Stop after this many refreshes; exit 0 or 1 as the last one found the
    /// cluster.
    #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

#[derive(Args, Debug, Clone)]
struct ApplyArgs {
    #[command(flatten)]
    inputs: InputArgs,
    /// Change nothing; report exactly what apply would do.
    #[arg(long)]
    check: bool,
    /// Show unified diffs of file changes and before → after states.
    #[arg(long)]
    diff: bool,
    /// Hosts worked on at once (default: all).
    #[arg(long)]
    forks: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,
    /// Show every task, not only changes and failures.
    #[arg(short, long)]
    verbose: bool,
    /// Record unknown host keys in known_hosts instead of refusing them.
    #[arg(long)]
    accept_new_host_keys: bool,
    /// SSH connect timeout in seconds.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Human,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum GraphFormat {
    Text,
    Dot,
}

const EXIT_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
/// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Apply(args) => apply(&args, false, false),
        Command::Plan {
            args,
            detailed_exitcode,
        } => apply(&args, true, detailed_exitcode),
        Command::Graph { inputs, format } => match load(&inputs) {
            Ok((inputs, _)) => {
                let text = match format {
                    GraphFormat::Text => graph::text(&inputs.resolved),
                    GraphFormat::Dot => graph::dot(&inputs.resolved),
                };
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Validate { inputs } => match load(&inputs) {
            Ok((loaded, _)) => {
                println!(
                    "ok: {} hosts, {} plays, {} roles, {} tasks",
                    loaded.inventory.hosts.len(),
                    loaded.playbook.plays.len(),
                    loaded.playbook.roles.len(),
                    loaded.resolved.nodes.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Facts {
            inventory,
            host,
            accept_new_host_keys,
        } => facts(&inventory, &host, accept_new_host_keys),
        Command::Secrets {
            command: SecretsCommand::Init { inventory, secrets },
        } => secrets_init(&inventory, secrets),
        Command::Status {
            cluster,
            max_backup_age_hours,
            output,
            watch,
        } if watch.watch => watch_status(&cluster, max_backup_age_hours, output, &watch),
        Command::Status {
            cluster,
            max_backup_age_hours,
            output,
            ..
        } => status(&cluster, max_backup_age_hours, output),
        Command::Report {
            cluster,
            max_backup_age_hours,
            output,
        } => report(&cluster, max_backup_age_hours, output.as_deref()),
        Command::Switchover { cluster, to } => operation(&cluster, |c| async move {
            let plan = ops::switchover(&c, to.as_deref(), cluster.max_lag_mb, &say).await?;
            Ok(format!("switchover done: {} leads", plan.candidate))
        }),
        Command::Restart { cluster, member } => operation(&cluster, |c| async move {
            ops::restart(&c, &member, &say).await?;
            Ok(format!("{member} restarted"))
        }),
        Command::Reinit { cluster, member } => operation(&cluster, |c| async move {
            ops::reinit(&c, &member, &say).await?;
            Ok(format!("{member} reinitialized"))
        }),
        Command::Lab { command } => match pgdeploy_lab::run(&command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_FAILED)
            }
        },
    }
}

fn load(args: &InputArgs) -> Result<(Inputs, pgdeploy::inventory::Vars), ExitCode> {
    let bad = |e: pgdeploy::error::InputErrors| {
        eprintln!("{e}");
        let n = e.0.len();
        eprintln!(
            "{n} error{} found; nothing was applied.",
            if n == 1 { "" } else { "s" }
        );
        ExitCode::from(EXIT_BAD_INPUT)
    };
    let mut extra = ca_vars(&args.inventory, false)?;
    extra.extend(pgdeploy::secrets::load(&args.inventory, args.secrets.as_deref()).map_err(bad)?);
    extra.extend(parse_extra_vars(&args.extra_vars).map_err(bad)?);
    let selection = Selection {
        limit: args.limit.clone(),
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
    };
    let inputs = load_inputs(&args.inventory, &args.playbook, &selection, &extra).map_err(bad)?;
    Ok((inputs, extra))
}

/// The cluster CA's variables (see `pgdeploy::tls`): with `create`, the CA
/// is made when missing; without, a throw-away one stands in for a missing one.
fn ca_vars(
    inventory: &std::path::Path,
    create: bool,
) -> Result<pgdeploy::inventory::Vars, ExitCode> {
    let result = if create {
        pgdeploy::tls::load_or_create(&pgdeploy::tls::ca_dir(inventory)).map(|(ca, created)| {
            if created {
                eprintln!(
                    "created the cluster CA in {} (keep ca.key secret and backed up)",
                    pgdeploy::tls::ca_dir(inventory).display()
                );
            }
            ca.vars()
        })
    } else {
        pgdeploy::tls::vars_or_ephemeral(inventory)
    };
    result.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

fn apply(args: &ApplyArgs, plan: bool, detailed_exitcode: bool) -> ExitCode {
    let loaded = load(&args.inputs).and_then(|_| {
        // The CA is made once, by the first apply or plan whose inputs are valid.
        ca_vars(&args.inputs.inventory, true)?;
        load(&args.inputs)
    });
    let (inputs, extra) = match loaded {
        Ok(v) => v,
        Err(code) => return code,
    };
    let masker = Masker::new(&inputs.inventory, &extra);
    let parameters = patroni_cluster(&inputs, &extra);
    let check = plan || args.check;
    let options = RunOptions {
        check,
        forks: args.forks,
        extra_vars: extra,
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout: Some(Duration::from_secs(args.connect_timeout)),
    };
    let style = match args.output {
        OutputFormat::Json => Style::Silent,
        OutputFormat::Human if std::io::stderr().is_terminal() => Style::Bars,
        OutputFormat::Human => Style::Lines,
    };
    let progress = Arc::new(Progress::new(style, args.verbose, masker.clone()));
    let run = Arc::new(Run::new(inputs.inventory, inputs.resolved, options));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let report = runtime.block_on(async {
        let watcher = run.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: letting the tasks in progress finish, starting no new ones (Ctrl-C again to abort at once)");
                watcher.interrupt();
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("aborted: tasks in progress may be half done");
                    std::process::exit(i32::from(EXIT_INTERRUPTED));
                }
            }
        });
        run.execute(progress).await
    });
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&report.json()).unwrap_or_default();
            println!("{}", masker.mask(&text));
        }
        OutputFormat::Human => {
            if plan || args.diff || args.check {
                print!("{}", masker.mask(&report.plan_text(plan || args.diff)));
            }
            print!("{}", masker.mask(&report.recap_text()));
        }
    }
    if !check {
        record_apply(&args.inputs, &report, &masker);
    }
    if report.interrupted {
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    if !report.success() {
        return ExitCode::from(EXIT_FAILED);
    }
    // The cluster itself: plan shows whether each parameter change needs a
    // reload or a restart; apply takes out members that left the `postgres`
    // group and rolls restarts out (see cluster::rolling).
    // With JSON output, stdout carries the report only: steps go to stderr.
    let tell = |line: &str| match args.output {
        OutputFormat::Human => say(line),
        OutputFormat::Json => eprintln!("{line}"),
    };
    let mut cluster_pending = false;
    if let Some(cluster) = parameters.filter(|_| !check || args.output == OutputFormat::Human) {
        let done = runtime.block_on(async {
            let result = if check {
                // Before the first deploy there is no cluster to compare with.
                let parameters = rolling::parameter_changes(&cluster)
                    .await
                    .map(|changes| changes.iter().map(ToString::to_string).collect());
                cluster_pending |= print_live_section(
                    "PostgreSQL parameters (live cluster)",
                    "PostgreSQL parameters",
                    parameters,
                );
                cluster_pending |= print_live_section(
                    "Cluster members to take out (live cluster)",
                    "Cluster members",
                    rolling::stale_members_plan(&cluster).await,
                );
                Ok(())
            } else {
                day2_converge(&cluster, &tell).await
            };
            cluster.close().await;
            result
        });
        if let Err(e) = done {
            eprintln!("error: cluster: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    }
    if detailed_exitcode && (cluster_pending || !report.summary().is_empty()) {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    }
}

fn secrets_init(inventory: &std::path::Path, file: Option<PathBuf>) -> ExitCode {
    let file = file.unwrap_or_else(|| pgdeploy::secrets::default_file(inventory));
    let identity = pgdeploy::secrets::identity_path();
    match pgdeploy::secrets::init(&file, &identity) {
        Ok(report) => {
            if report.new_identity {
                println!(
                    "created the identity {} (public key {}); keep it out of the repository and back it up",
                    identity.display(),
                    report.recipient
                );
            }
            println!(
                "{}: generated [{}], kept [{}]",
                file.display(),
                report.generated.join(", "),
                report.kept.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn facts(inventory: &std::path::Path, host: &str, accept_new_host_keys: bool) -> ExitCode {
    let inventory = match pgdeploy::inventory::Inventory::load(inventory) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let Some(h) = inventory.host(host) else {
        eprintln!("error: no host `{host}` in {}", inventory.path.display());
        return ExitCode::from(EXIT_BAD_INPUT);
    };
    let target = h.connection.target(host);
    let options = h.connection.options(&pgdeploy_transport::ConnectOptions {
        accept_new_host_keys,
        ..Default::default()
    });
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let session = pgdeploy_transport::Session::connect(&target, &options)
                    .await
                    .map_err(|e| e.to_string())?;
                let out = session
                    .exec(pgdeploy::facts::SCRIPT, false, None)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = session.close().await;
                Ok::<_, String>(pgdeploy::facts::parse(&out.stdout_str()))
            })
        });
    match result {
        Ok(facts) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&facts).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {host}: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Prints one step of a day-2 operation, with the time of day.
fn say(line: &str) {
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

/// Loads the inventory and playbook of a day-2 command; bad input is
/// reported (exit 2) before any host is contacted.
fn open_cluster(args: &ClusterArgs) -> Result<Cluster, ExitCode> {
    let bad = |e: pgdeploy::error::InputErrors| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    // The cluster CA verifies Patroni, etcd and PostgreSQL (none: plain, as before TLS).
    let ca = pgdeploy::tls::load(&pgdeploy::tls::ca_dir(&args.inventory)).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    })?;
    let mut extra = ca.map(|ca| ca.vars()).unwrap_or_default();
    extra.extend(parse_extra_vars(&args.extra_vars).map_err(bad)?);
    let inventory = pgdeploy::inventory::Inventory::load(&args.inventory).map_err(bad)?;
    let playbook = pgdeploy::playbook::Playbook::load(&args.playbook).map_err(bad)?;
    let mut cluster = Cluster::new(inventory, &playbook, extra);
    cluster.accept_new_host_keys(args.accept_new_host_keys);
    if let Err(e) = status::check_inventory(&cluster) {
        eprintln!("error: {e}");
        return Err(ExitCode::from(EXIT_BAD_INPUT));
    }
    Ok(cluster)
}

/// Runs `op` on the inventory's cluster, then closes the connections;
/// bad input or an error are reported and become the exit code.
fn on_cluster<T, F, Fut>(args: &ClusterArgs, op: F) -> Result<T, ExitCode>
where
    F: FnOnce(std::sync::Arc<Cluster>) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let cluster = std::sync::Arc::new(open_cluster(args)?);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_FAILED)
    })?;
    runtime
        .block_on(async {
            let result = op(cluster.clone()).await;
            cluster.close().await;
            result
        })
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        })
}

/// Runs a day-2 operation that prints its steps; its result is its last line.
fn operation<F, Fut>(args: &ClusterArgs, op: F) -> ExitCode
where
    F: FnOnce(std::sync::Arc<Cluster>) -> Fut,
    Fut: std::future::Future<Output = Result<String, ClusterError>>,
{
    match on_cluster(args, op) {
        Ok(done) => {
            say(&done);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn status(args: &ClusterArgs, max_backup_age_hours: f64, output: OutputFormat) -> ExitCode {
    let limits = status_limits(args, max_backup_age_hours);
    let report = match on_cluster(
        args,
        |c| async move { Ok(status::collect(&c, limits).await) },
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        OutputFormat::Human => print!("{}", status::render(&report)),
    }
    if report.healthy {
        ExitCode::SUCCESS
    } else {
        if output == OutputFormat::Json {
            eprintln!("{}", status::verdict(&report));
        }
        ExitCode::from(EXIT_FAILED)
    }
}

/// Prints one section of `plan`'s view of the live cluster: its lines under
/// `title`, nothing when there are none, or why `what` was not compared.
/// Returns whether it printed anything pending.
fn print_live_section(title: &str, what: &str, lines: Result<Vec<String>, ClusterError>) -> bool {
    match lines {
        Ok(lines) if !lines.is_empty() => {
            println!("{title}:");
            lines.iter().for_each(|l| println!("  {l}"));
            true
        }
        Ok(_) => false,
        Err(e) => {
            println!("{what}: not compared ({e})");
            false
        }
    }
}

/// The cluster whose parameters `apply` and `plan` handle: when the playbook
/// uses the `patroni` role and the inventory has `postgres` hosts.
fn patroni_cluster(inputs: &Inputs, extra: &pgdeploy::inventory::Vars) -> Option<Cluster> {
    let has_members = inputs
        .inventory
        .groups
        .get("postgres")
        .is_some_and(|g| !g.hosts.is_empty());
    (has_members && inputs.playbook.roles.contains_key("patroni"))
        .then(|| Cluster::new(inputs.inventory.clone(), &inputs.playbook, extra.clone()))
}

/// After an apply: members that left the `postgres` group are taken out,
/// then those that left the `etcd` group, then restart-only parameter
/// changes are rolled out.
async fn day2_converge(cluster: &Cluster, tell: ops::Say<'_>) -> Result<(), ClusterError> {
    let removed = rolling::remove_stale_members(cluster, tell).await?;
    if !removed.is_empty() {
        tell(&format!("members removed: {}", removed.join(", ")));
    }
    let removed = rolling::remove_stale_etcd_members(cluster, tell).await?;
    if !removed.is_empty() {
        tell(&format!("etcd members removed: {}", removed.join(", ")));
    }
    let restarted = rolling::converge(cluster, 16.0, tell).await?;
    if !restarted.is_empty() {
        tell(&format!("rolling restart done: {}", restarted.join(", ")));
    }
    Ok(())
}

/// Keeps the run's results per host in the apply state file beside the
/// inventory (for `pgdeploy report`); a failure to write it is a warning.
fn record_apply(inputs: &InputArgs, run: &pgdeploy::report::RunReport, masker: &Masker) {
    let saved = pgdeploy::apply_state::record_run(&inputs.inventory, &inputs.playbook, run, masker);
    if let Err(e) = saved {
        eprintln!("warning: the apply's results were not recorded: {e}");
    }
}

fn status_limits(args: &ClusterArgs, max_backup_age_hours: f64) -> status::Limits {
    status::Limits {
        max_lag_mb: args.max_lag_mb,
        max_backup_age_hours,
    }
}

/// `status --watch`: refreshes until `--count` or Ctrl-C (exit 130).
fn watch_status(
    args: &ClusterArgs,
    max_backup_age_hours: f64,
    output: OutputFormat,
    watch_args: &WatchArgs,
) -> ExitCode {
    let interval = match Duration::try_from_secs_f64(watch_args.interval) {
        Ok(d) if d >= Duration::from_millis(100) => d,
        _ => {
            eprintln!(
                "error: --interval {}: give at least 0.1 seconds",
                watch_args.interval
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let schedule = watch::Schedule {
        interval,
        count: watch_args.count,
    };
    let screen = match output {
        OutputFormat::Json => watch::Screen::JsonLines,
        OutputFormat::Human if std::io::stdout().is_terminal() => watch::Screen::Terminal,
        OutputFormat::Human => watch::Screen::Plain,
    };
    let limits = status_limits(args, max_backup_age_hours);
    let end = on_cluster(args, |c| async move {
        let mut stdout = std::io::stdout();
        watch::run(&c, limits, schedule, screen, &mut stdout)
            .await
            .map_err(|e| ClusterError::Input(format!("cannot write the status: {e}")))
    });
    match end {
        Ok(watch::WatchEnd::Interrupted) => {
            eprintln!("\ninterrupted");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Ok(watch::WatchEnd::Done { healthy: true }) => ExitCode::SUCCESS,
        Ok(watch::WatchEnd::Done { healthy: false }) => ExitCode::from(EXIT_FAILED),
        Err(code) => code,
    }
}

/// `report`: the HTML page to `output` (atomically) or stdout.
fn report(
    args: &ClusterArgs,
    max_backup_age_hours: f64,
    output: Option<&std::path::Path>,
) -> ExitCode {
    let limits = status_limits(args, max_backup_age_hours);
    let state = pgdeploy::apply_state::state_path(&args.inventory);
    let page = match on_cluster(args, |c| async move {
        Ok(page::collect(&c, limits, &state).await)
    }) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let html = page::render(&page);
    let Some(path) = output else {
        print!("{html}");
        return ExitCode::SUCCESS;
    };
    match pgdeploy::files::write_atomically(path, html.as_bytes(), 0o644) {
        Ok(()) => {
            eprintln!(
                "wrote {} ({}; leader {})",
                path.display(),
                status::verdict(&page.status),
                page.status.leader.as_deref().unwrap_or("none")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}
