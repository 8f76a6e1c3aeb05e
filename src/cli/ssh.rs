//! The SSH client configuration every command's connections use: `-F
//! FILE`, else `$PGDEPLOY_SSH_CONFIG`, else `~/.ssh/config` (see
//! `pgdeploy_transport::ssh_config`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pgdeploy_transport::ssh_config::{self, SshConfig};

use super::{fail, EXIT_BAD_INPUT};

/// Reads the configuration once, for the whole run; a malformed one (or
/// a named file that cannot be read) is bad input.
pub fn read_config(flag: Option<&Path>) -> Result<(), ExitCode> {
    let named = flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("PGDEPLOY_SSH_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let config = match &named {
        Some(path) if !path.is_file() => {
            return Err(fail(
                EXIT_BAD_INPUT,
                format!("SSH configuration {}: no such file", path.display()),
            ))
        }
        Some(path) => SshConfig::load(path),
        None => SshConfig::load_default(&ssh_config::default_path()),
    }
    .map_err(|e| fail(EXIT_BAD_INPUT, format!("SSH configuration {e}")))?;
    ssh_config::set_global(config);
    Ok(())
}
