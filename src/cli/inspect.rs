//! `validate`, `graph` and `facts`: looking without changing anything.

use std::path::Path;
use std::process::ExitCode;

use pgdeploy_engine::graph;

use super::args::{GraphFormat, InputArgs};
use super::{ca_vars, fail, load_inputs, runtime, stack_of, stack_paths, user_vars};
use super::{warn_topology, with_ca};
use super::{MissingCa, EXIT_BAD_INPUT, EXIT_FAILED};

/// `validate`: every check that needs no host, then the stack's topology
/// warnings.
pub fn validate(args: &InputArgs) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let user = user_vars(&args.inventory, args.secrets.as_deref(), &args.extra_vars)?;
        let vars = with_ca(ca_vars(&args.inventory, MissingCa::Ephemeral)?, &user);
        let paths = stack_paths(args)?;
        let loaded = load_inputs(args, &paths, &vars)?;
        warn_topology(&stack_of(&loaded, &vars))?;
        println!(
            "ok: {} hosts, {} plays, {} roles, {} tasks",
            loaded.inventory.hosts.len(),
            loaded.playbook.plays.len(),
            loaded.playbook.roles.len(),
            loaded.resolved.nodes.len()
        );
        println!("{}", paths.describe(&loaded.playbook));
        Ok(ExitCode::SUCCESS)
    };
    run().unwrap_or_else(|code| code)
}

/// `graph`: the task DAG as text or Graphviz dot.
pub fn graph(args: &InputArgs, format: GraphFormat) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let user = user_vars(&args.inventory, args.secrets.as_deref(), &args.extra_vars)?;
        let vars = with_ca(ca_vars(&args.inventory, MissingCa::Ephemeral)?, &user);
        let loaded = load_inputs(args, &stack_paths(args)?, &vars)?;
        print!(
            "{}",
            match format {
                GraphFormat::Text => graph::text(&loaded.resolved),
                GraphFormat::Dot => graph::dot(&loaded.resolved),
            }
        );
        Ok(ExitCode::SUCCESS)
    };
    run().unwrap_or_else(|code| code)
}

/// `facts HOST`: what pgdeploy knows about a host, as JSON.
pub fn facts(inventory: &Path, host: &str, accept_new_host_keys: bool) -> ExitCode {
    let inventory = match pgdeploy_engine::inventory::Inventory::load(inventory) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let Some(h) = inventory.host(host) else {
        return fail(
            EXIT_BAD_INPUT,
            format!("no host `{host}` in {}", inventory.path.display()),
        );
    };
    let target = h.connection.target(host);
    let options = h.connection.options(&pgdeploy_transport::ConnectOptions {
        accept_new_host_keys,
        ..Default::default()
    });
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let session = pgdeploy_transport::Session::connect(&target, &options).await?;
        let out = session
            .exec(pgdeploy_engine::facts::SCRIPT, false, None)
            .await;
        let _ = session.close().await;
        Ok::<_, pgdeploy_transport::TransportError>(pgdeploy_engine::facts::parse(
            &out?.stdout_str(),
        ))
    });
    match result {
        Ok(facts) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&facts).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, format!("{host}: {e}")),
    }
}
