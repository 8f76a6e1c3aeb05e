//! The day-2 commands on a running cluster: `status` (and `--watch`),
//! `report`, `switchover`, `restart`, `reinit`, `backup`, `restore`,
//! `update`, `upgrade-os`, `upgrade`.

use std::future::Future;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pgdeploy_stack::cluster::{
    backup, major, ops, page, restore, status, update, upgrade_os, watch, Cluster, ClusterError,
};
use pgdeploy_stack::contract::Stack;

use super::args::{ClusterArgs, OutputFormat, WatchArgs};
use super::{ca_vars, fail, runtime, say, user_vars, with_ca};
use super::{MissingCa, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED};

/// Loads the inventory and playbook of a day-2 command, with the variables
/// every command reads (the CA, `secrets.age`, `-e`); bad input is reported
/// (exit 2) before any host is contacted.
fn open(args: &ClusterArgs) -> Result<Cluster, ExitCode> {
    let bad = |e: pgdeploy_engine::error::InputErrors| {
        eprintln!("{e}");
        ExitCode::from(EXIT_BAD_INPUT)
    };
    // The cluster CA verifies Patroni, etcd and PostgreSQL (none: plain, as before TLS).
    let user = user_vars(&args.inventory, args.secrets.as_deref(), &args.extra_vars)?;
    let vars = with_ca(ca_vars(&args.inventory, MissingCa::Absent)?, &user);
    let inventory = pgdeploy_engine::inventory::Inventory::load(&args.inventory).map_err(bad)?;
    let paths = super::roles::StackPaths::resolve(
        Some(&args.inventory),
        args.playbook.as_deref(),
        &args.roles_path,
    )?;
    let playbook =
        pgdeploy_engine::playbook::Playbook::load_with_roles(&paths.playbook, &paths.role_dirs)
            .map_err(bad)?;
    let mut cluster = Cluster::new(Stack::new(inventory, &playbook, vars));
    cluster.accept_new_host_keys(args.accept_new_host_keys);
    status::check_inventory(&cluster).map_err(|e| fail(EXIT_BAD_INPUT, e))?;
    Ok(cluster)
}

/// Runs `op` on the inventory's cluster, then closes the connections;
/// bad input or an error are reported and become the exit code.
fn on_cluster<T, F, Fut>(args: &ClusterArgs, op: F) -> Result<T, ExitCode>
where
    F: FnOnce(Arc<Cluster>) -> Fut,
    Fut: Future<Output = Result<T, ClusterError>>,
{
    let cluster = Arc::new(open(args)?);
    runtime()?
        .block_on(async {
            let result = op(cluster.clone()).await;
            cluster.close().await;
            result
        })
        .map_err(|e| fail(EXIT_FAILED, e))
}

/// `switchover [--to MEMBER]`.
pub fn switchover(args: &ClusterArgs, to: Option<String>) -> ExitCode {
    let max_lag_mb = args.max_lag_mb;
    operation(args, |c| async move {
        let plan = ops::switchover(&c, to.as_deref(), max_lag_mb, &say).await?;
        Ok(format!("switchover done: {} leads", plan.candidate))
    })
}

/// `restart MEMBER`.
pub fn restart(args: &ClusterArgs, member: String) -> ExitCode {
    operation(args, |c| async move {
        ops::restart(&c, &member, &say).await?;
        Ok(format!("{member} restarted"))
    })
}

/// `reinit MEMBER`.
pub fn reinit(args: &ClusterArgs, member: String) -> ExitCode {
    operation(args, |c| async move {
        ops::reinit(&c, &member, &say).await?;
        Ok(format!("{member} reinitialized"))
    })
}

/// `backup --type KIND`.
pub fn backup(args: &ClusterArgs, kind: String) -> ExitCode {
    operation(args, |c| async move {
        let b = backup::backup(&c, &kind, &say).await?;
        Ok(format!(
            "backup {} ({}) done in {}s: {} MB, {} MB in the repository",
            b.label,
            b.kind,
            b.stopped_at - b.started_at,
            b.size.unwrap_or(0) / 1_048_576,
            b.repository_size.unwrap_or(0) / 1_048_576
        ))
    })
}

/// `restore --to TARGET [--into INVENTORY] [--yes]`: the plan, a question
/// (unless `--yes`), then the restore. `--into`'s inventory is read as the
/// first one is (the same `-e`, playbook and roles; its own `secrets.age`
/// unless `--secrets` names one).
pub fn restore(args: &ClusterArgs, to: &str, into: Option<&Path>, yes: bool) -> ExitCode {
    let target = match restore::Target::parse(to) {
        Ok(t) => t,
        Err(e) => return fail(EXIT_BAD_INPUT, e),
    };
    let dest = match into {
        Some(inventory) => match open(&ClusterArgs {
            inventory: inventory.to_path_buf(),
            ..args.clone()
        }) {
            Ok(c) => Some(Arc::new(c)),
            Err(code) => return code,
        },
        None => None,
    };
    operation(args, |c| async move {
        let done = restore_on(&c, dest.as_deref(), target, yes).await;
        if let Some(dest) = &dest {
            dest.close().await;
        }
        let done = done?;
        Ok(format!(
            "restore done in {:.0}s: {} leads on timeline {}{}; {}",
            done.seconds,
            done.leader,
            done.timeline.map_or("?".into(), |t| t.to_string()),
            done.stopped
                .map(|s| format!(" (recovery stopped: {s})"))
                .unwrap_or_default(),
            done.new_backup
                .map_or("no new backup (no backup host)".into(), |b| format!(
                    "new backup {b}"
                ))
        ))
    })
}

/// The plan, the question, the restore.
async fn restore_on(
    c: &Cluster,
    dest: Option<&Cluster>,
    target: restore::Target,
    yes: bool,
) -> Result<restore::RestoreOutcome, ClusterError> {
    let name = dest.unwrap_or(c).name();
    let plan = restore::plan(c, dest, target, &say).await?;
    for line in plan.lines(&name) {
        println!("{line}");
    }
    if !yes && !confirmed(&name, "restore", "This stops every member")? {
        return Err(ClusterError::Refused(
            "restore not confirmed; nothing was changed".into(),
        ));
    }
    restore::restore(c, dest, &plan, &say).await
}

/// `update [--packages LIST] [--check] [--yes]`: the plan, a question
/// (unless `--yes`), then the rolling update.
pub fn update(args: &ClusterArgs, packages: &[String], check: bool, yes: bool) -> ExitCode {
    let max_lag_mb = args.max_lag_mb;
    let packages = packages.to_vec();
    operation(args, |c| async move {
        let components = update::components(&packages)?;
        let plan = update::plan(&c, &components).await?;
        let gate = Gate {
            name: "update",
            asked: "update",
            warning: "This restarts every member in turn",
            untouched: "changed",
        };
        let nothing = plan
            .is_empty()
            .then(|| "No changes: nothing to update.".into());
        if let Some(verdict) = gate.pass(&c, plan.lines(), 0, nothing, check, yes)? {
            return Ok(verdict);
        }
        let done = update::update(&c, &plan, max_lag_mb, &say).await?;
        Ok(format!(
            "update done in {:.0}s: {} host(s){}",
            done.seconds,
            done.hosts.len(),
            done.switchover
                .map(|(from, to)| format!(", switchover {from} -> {to}"))
                .unwrap_or_default()
        ))
    })
}

/// `upgrade-os --to RELEASE [--check] [--yes]`: the plan, a question
/// (unless `--yes`), then the move, one host at a time.
pub fn upgrade_os(args: &ClusterArgs, to: &str, check: bool, yes: bool) -> ExitCode {
    let max_lag_mb = args.max_lag_mb;
    let to = to.to_string();
    operation(args, |c| async move {
        let plan = upgrade_os::plan(&c, &to).await?;
        let gate = Gate {
            name: "upgrade-os",
            asked: "upgrade-os",
            warning: "This drains, upgrades and reboots every host in turn",
            untouched: "changed",
        };
        let nothing = plan
            .is_empty()
            .then(|| format!("No changes: every host runs {to}."));
        let problems = plan.problems.len();
        if let Some(verdict) = gate.pass(&c, plan.lines(), problems, nothing, check, yes)? {
            return Ok(verdict);
        }
        let done = upgrade_os::upgrade(&c, &plan, max_lag_mb, &say).await?;
        let each: Vec<String> = done
            .hosts
            .iter()
            .map(|(h, s)| format!("{h} {s:.0}s"))
            .collect();
        Ok(format!(
            "upgrade-os done in {:.0}s: {}{}",
            done.seconds,
            if each.is_empty() {
                "every host already on the new release, collation versions refreshed".into()
            } else {
                each.join(", ")
            },
            done.switchover
                .map(|(from, to)| format!("; switchover {from} -> {to}"))
                .unwrap_or_default()
        ))
    })
}

/// What `upgrade` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeStep {
    /// Move the cluster to the new major.
    Upgrade,
    /// Put the old major back on members an upgrade failed on.
    Rollback,
    /// Remove what the old major left.
    Finish,
}

/// `upgrade`'s options.
#[derive(Debug, Clone, Copy)]
pub struct UpgradeFlags {
    /// The plan only.
    pub check: bool,
    /// Go on without asking.
    pub yes: bool,
    /// Require a recent backup.
    pub backup_check: bool,
    /// Which step.
    pub step: UpgradeStep,
}

/// `upgrade --to MAJOR [--check] [--yes] [--no-backup-check] [--rollback | --finish]`.
pub fn upgrade(args: &ClusterArgs, to: &str, flags: UpgradeFlags) -> ExitCode {
    let UpgradeFlags {
        check,
        yes,
        backup_check,
        step,
    } = flags;
    let to = to.to_string();
    operation(args, |c| async move {
        match step {
            UpgradeStep::Upgrade => {}
            UpgradeStep::Rollback => {
                let done = major::rollback(&c, &to, &say).await?;
                return Ok(if done.is_empty() {
                    "No changes: no member carries an unfinished upgrade.".into()
                } else {
                    format!("rollback done: {} back on the old major", done.join(", "))
                });
            }
            UpgradeStep::Finish => return finish_upgrade(&c, &to, check, yes).await,
        }
        let plan = major::plan(&c, &to, backup_check).await?;
        let gate = Gate {
            name: "upgrade",
            asked: "upgrade",
            warning: "This stops writes until the leader runs the new major",
            untouched: "stopped",
        };
        let nothing = plan
            .is_empty()
            .then(|| format!("No changes: the cluster runs PostgreSQL {to}."));
        let problems = plan.problems.len();
        if let Some(verdict) = gate.pass(&c, plan.lines(), problems, nothing, check, yes)? {
            return Ok(verdict);
        }
        let done = major::upgrade(&c, &plan, &say).await?;
        let each: Vec<String> = done
            .replicas
            .iter()
            .map(|(h, s)| format!("{h} {s:.0}s"))
            .collect();
        Ok(format!(
            "upgrade done in {:.0}s: {} leads on PostgreSQL {to}; writes stopped {:.1}s \
             (pg_upgrade {:.1}s){}{}",
            done.seconds,
            done.leader,
            done.write_downtime,
            done.pg_upgrade_seconds,
            done.backup
                .map(|b| format!("; backup {b}"))
                .unwrap_or_default(),
            if each.is_empty() {
                String::new()
            } else {
                format!("; replicas rebuilt: {}", each.join(", "))
            }
        ))
    })
}

/// `upgrade --to MAJOR --finish`: the plan, a question, the removal.
async fn finish_upgrade(
    c: &Cluster,
    to: &str,
    check: bool,
    yes: bool,
) -> Result<String, ClusterError> {
    let plan = major::finish_plan(c, to).await?;
    let gate = Gate {
        name: "finish",
        asked: "upgrade --finish",
        warning:
            "This removes the old major's data directories and packages: no rollback afterwards",
        untouched: "removed",
    };
    let nothing = plan
        .is_empty()
        .then(|| format!("No changes: nothing of an older major is left (PostgreSQL {to})."));
    let problems = plan.problems.len();
    if let Some(verdict) = gate.pass(c, plan.lines(), problems, nothing, check, yes)? {
        return Ok(verdict);
    }
    let done = major::finish(c, &plan, &say).await?;
    Ok(format!(
        "finish done: the old major removed from {}",
        done.join(", ")
    ))
}

/// How a day-2 command that shows a plan goes on (update, upgrade-os,
/// upgrade, upgrade --finish): its name in refusals, the question's, what
/// the question warns of, and what nothing was (`changed`, `stopped`).
struct Gate<'a> {
    name: &'a str,
    asked: &'a str,
    warning: &'a str,
    untouched: &'a str,
}

impl Gate<'_> {
    /// Prints the plan's `lines`; refuses when it found `problems`; stops
    /// with `nothing` (its "No changes" verdict) when there is nothing to
    /// do, or after the plan with `check`; else asks unless `yes`.
    /// `Ok(Some(verdict))`: stop there; `Ok(None)`: go on.
    fn pass(
        &self,
        c: &Cluster,
        lines: Vec<String>,
        problems: usize,
        nothing: Option<String>,
        check: bool,
        yes: bool,
    ) -> Result<Option<String>, ClusterError> {
        for line in lines {
            println!("{line}");
        }
        let untouched = self.untouched;
        if problems > 0 {
            return Err(ClusterError::Refused(format!(
                "{} refused ({problems} problem(s) above); nothing was {untouched}",
                self.name
            )));
        }
        if nothing.is_some() {
            return Ok(nothing);
        }
        if check {
            return Ok(Some(format!("checked: nothing was {untouched}")));
        }
        if !yes && !confirmed(&c.name(), self.asked, self.warning)? {
            return Err(ClusterError::Refused(format!(
                "{} not confirmed; nothing was {untouched}",
                self.name
            )));
        }
        Ok(None)
    }
}

/// Asks on the terminal for the cluster's name before `what` (which does
/// what `warning` says); without a terminal the answer is no (`--yes` is
/// how scripts go on).
fn confirmed(cluster: &str, what: &str, warning: &str) -> Result<bool, ClusterError> {
    if !std::io::stdin().is_terminal() {
        return Err(ClusterError::Refused(format!(
            "{what}: {}: confirm on a terminal, or give --yes",
            warning.to_lowercase()
        )));
    }
    eprint!("{warning}. Type the cluster's name ({cluster}) to go on: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| ClusterError::Input(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim() == cluster)
}

/// Runs a day-2 operation that prints its steps; its result is its last line.
fn operation<F, Fut>(args: &ClusterArgs, op: F) -> ExitCode
where
    F: FnOnce(Arc<Cluster>) -> Fut,
    Fut: Future<Output = Result<String, ClusterError>>,
{
    match on_cluster(args, op) {
        Ok(done) => {
            say(&done);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn limits(args: &ClusterArgs, max_backup_age_hours: f64) -> status::Limits {
    status::Limits {
        max_lag_mb: args.max_lag_mb,
        max_backup_age_hours,
    }
}

/// `status`: exit 0 when healthy, 1 and a one-line reason when degraded.
pub fn status(args: &ClusterArgs, max_backup_age_hours: f64, output: OutputFormat) -> ExitCode {
    let limits = limits(args, max_backup_age_hours);
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

/// `status --watch`: refreshes until `--count` or Ctrl-C (exit 130).
pub fn watch_status(
    args: &ClusterArgs,
    max_backup_age_hours: f64,
    output: OutputFormat,
    watch_args: &WatchArgs,
) -> ExitCode {
    let interval = match Duration::try_from_secs_f64(watch_args.interval) {
        Ok(d) if d >= Duration::from_millis(100) => d,
        _ => {
            return fail(
                EXIT_BAD_INPUT,
                format!(
                    "--interval {}: give at least 0.1 seconds",
                    watch_args.interval
                ),
            )
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
    let limits = limits(args, max_backup_age_hours);
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
pub fn report(args: &ClusterArgs, max_backup_age_hours: f64, output: Option<&Path>) -> ExitCode {
    let limits = limits(args, max_backup_age_hours);
    let state = pgdeploy_engine::apply_state::state_path(&args.inventory);
    let page = match on_cluster(args, |c| async move {
        Ok(page::collect(&c, limits, &state).await)
    }) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let html = match page::try_render(&page) {
        Ok(html) => html,
        Err(e) => return fail(EXIT_FAILED, format!("cannot render the report: {e}")),
    };
    let Some(path) = output else {
        print!("{html}");
        return ExitCode::SUCCESS;
    };
    match pgdeploy_engine::files::write_atomically(path, html.as_bytes(), 0o644) {
        Ok(()) => {
            eprintln!(
                "wrote {} ({}; leader {})",
                path.display(),
                status::verdict(&page.status),
                page.status.leader.as_deref().unwrap_or("none")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, format!("cannot write {}: {e}", path.display())),
    }
}
