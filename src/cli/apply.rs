//! `apply` and `plan`: the run of the tasks, then the live system's part
//! ([`LiveSystem`]: the stack's roll-out).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pgdeploy_engine::color;
use pgdeploy_engine::live::LiveSystem;
use pgdeploy_engine::markdown;
use pgdeploy_engine::output::{Progress, Style};
use pgdeploy_engine::report::{Masker, RunReport};
use pgdeploy_engine::run::{Run, RunOptions};
use pgdeploy_stack::rollout::Rollout;

use super::args::{ApplyArgs, InputArgs, RunOutput};
use super::roles::StackPaths;
use super::{ca_vars, load_inputs, runtime, say, stack_of, stack_paths, user_vars};
use super::{warn_topology, with_ca};
use super::{MissingCa, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED};

/// How `apply` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// `plan`: the run as a plan with diffs, changing nothing.
    pub plan: bool,
    /// With `plan`: exit 2 when changes are pending.
    pub detailed_exitcode: bool,
}

/// `apply` or `plan`.
pub fn apply(args: &ApplyArgs, mode: Mode) -> ExitCode {
    run(args, mode).unwrap_or_else(|code| code)
}

fn run(args: &ApplyArgs, mode: Mode) -> Result<ExitCode, ExitCode> {
    let check = mode.plan || args.check;
    if args.output == RunOutput::Markdown && !check {
        return Err(super::fail(
            EXIT_BAD_INPUT,
            "--output markdown shows a plan: use it with `plan` or `apply --check`",
        ));
    }
    let inputs_args = &args.inputs;
    let user = user_vars(
        &inputs_args.inventory,
        inputs_args.secrets.as_deref(),
        &inputs_args.extra_vars,
    )?;
    // Checked with the CA there is or a throw-away one; the CA is made once,
    // by the first apply or plan whose inputs are valid. The CA's values do
    // not change what the checks find, so the inputs are loaded once.
    let checking = with_ca(
        ca_vars(&inputs_args.inventory, MissingCa::Ephemeral)?,
        &user,
    );
    let paths = stack_paths(inputs_args)?;
    let inputs = load_inputs(inputs_args, &paths, &checking)?;
    if args.verbose {
        eprintln!("{}", paths.describe(&inputs.playbook));
    }
    let vars = with_ca(ca_vars(&inputs_args.inventory, MissingCa::Create)?, &user);
    let stack = stack_of(&inputs, &vars);
    warn_topology(&stack)?;
    let masker = Masker::new(&inputs.inventory, &vars).with_playbook(&inputs.playbook);
    // With JSON output, `plan` prints the report only: the live sections are
    // for people (Markdown too: they follow the plan, as text blocks).
    let live = Rollout::of(stack).filter(|_| !check || args.output != RunOutput::Json);
    let options = RunOptions {
        check,
        forks: args.forks,
        extra_vars: vars,
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout: Some(Duration::from_secs(args.connect_timeout)),
        command_timeout: (args.command_timeout > 0)
            .then(|| Duration::from_secs(args.command_timeout)),
    };
    let style = match args.output {
        RunOutput::Json => Style::Silent,
        RunOutput::Human | RunOutput::Markdown if std::io::stderr().is_terminal() => Style::Bars,
        RunOutput::Human | RunOutput::Markdown => Style::Lines,
    };
    let progress = Arc::new(Progress::new(style, args.verbose, masker.clone()));
    let run = Arc::new(Run::new(inputs.inventory, inputs.resolved, options));
    let runtime = runtime()?;
    let report = masker.mask_report(runtime.block_on(execute(run, progress)));
    print_report(args, mode, &report, &masker);
    if !check {
        record_apply(inputs_args, &paths, &report, &masker);
    }
    if report.interrupted {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    if !report.success() {
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let live_pending = match live {
        Some(live) => runtime.block_on(live_step(&live, check, args.output, &masker))?,
        None => false,
    };
    let pending = live_pending || !report.summary().is_empty();
    Ok(if mode.detailed_exitcode && pending {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    })
}

/// The live system's part after the tasks succeeded: with `check`, print
/// its plan sections (gives whether any is pending); else converge it.
async fn live_step(
    live: &dyn LiveSystem,
    check: bool,
    output: RunOutput,
    masker: &Masker,
) -> Result<bool, ExitCode> {
    let mut pending = false;
    let result = if check {
        for section in live.plan().await {
            pending |= section.pending();
            match output {
                RunOutput::Markdown => print!("{}", markdown::live_section(&section, masker)),
                RunOutput::Human | RunOutput::Json => print!("{}", section.text()),
            }
        }
        Ok(())
    } else {
        let tell = move |line: &str| match output {
            RunOutput::Human => say(line),
            // stdout carries the JSON report only: steps go to stderr.
            RunOutput::Json | RunOutput::Markdown => eprintln!("{line}"),
        };
        live.converge(&tell).await
    };
    live.close().await;
    result
        .map(|()| pending)
        .map_err(|e| super::fail(EXIT_FAILED, format!("cluster: {e}")))
}

/// Runs the tasks; the first Ctrl-C lets the tasks in progress finish and
/// starts no new one, the second aborts at once.
async fn execute(run: Arc<Run>, progress: Arc<Progress>) -> RunReport {
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
}

fn print_report(args: &ApplyArgs, mode: Mode, report: &RunReport, masker: &Masker) {
    match args.output {
        RunOutput::Json => {
            let text = serde_json::to_string_pretty(&report.json()).unwrap_or_default();
            println!("{}", masker.mask(&text));
        }
        RunOutput::Markdown => print!("{}", markdown::plan(report, masker)),
        RunOutput::Human => {
            if mode.plan || args.diff || args.check {
                let plan = masker.mask(&report.plan_text(mode.plan || args.diff));
                if color::stdout() {
                    print!("{}", color::paint_plan(&plan));
                } else {
                    print!("{plan}");
                }
            }
            print!("{}", masker.mask(&report.recap_text()));
        }
    }
}

/// Keeps the run's results per host in the apply state file beside the
/// inventory (for `pgdeploy report`); a failure to write it is a warning.
fn record_apply(inputs: &InputArgs, paths: &StackPaths, run: &RunReport, masker: &Masker) {
    let playbook = std::path::PathBuf::from(paths.playbook_label());
    let saved = pgdeploy_engine::apply_state::record_run(&inputs.inventory, &playbook, run, masker);
    if let Err(e) = saved {
        eprintln!("warning: the apply's results were not recorded: {e}");
    }
}
