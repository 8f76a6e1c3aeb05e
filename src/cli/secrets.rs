//! `secrets init`: the stack's passwords, generated once into `secrets.age`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pgdeploy_engine::secrets;
use pgdeploy_stack::contract::GENERATED_SECRETS;

use super::{fail, EXIT_FAILED};

/// Generates the missing passwords of the stack contract.
pub fn init(inventory: &Path, file: Option<PathBuf>) -> ExitCode {
    let file = file.unwrap_or_else(|| secrets::default_file(inventory));
    let identity = secrets::identity_path();
    match secrets::init(&file, &identity, &GENERATED_SECRETS) {
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
        Err(e) => fail(EXIT_FAILED, e),
    }
}
