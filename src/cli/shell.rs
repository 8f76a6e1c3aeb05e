//! `completions SHELL` and `man`: the shell completion script and the man
//! page, both made from the command line's own definition (clap_complete,
//! clap_mangen), so they cannot drift from it.

use std::io::Write;
use std::process::ExitCode;

use super::{fail, EXIT_FAILED};

/// `completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell, mut command: clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "pgdeploy", &mut script);
    print_bytes(&script)
}

/// `man`: the man page (section 1, roff) on stdout.
pub fn man(command: clap::Command) -> ExitCode {
    let mut page = Vec::new();
    if let Err(e) = clap_mangen::Man::new(command).render(&mut page) {
        return fail(EXIT_FAILED, format!("cannot render the man page: {e}"));
    }
    print_bytes(&page)
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILED, format!("cannot write to stdout: {e}")),
    }
}
