//! Development front end: `cargo run -p pgdeploy-lab --example lab -- up`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "lab")]
struct Cli {
    #[command(subcommand)]
    cmd: pgdeploy_lab::LabCommand,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = pgdeploy_lab::run(&cli.cmd) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
