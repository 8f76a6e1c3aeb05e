//! Secrets at rest: an [age](https://age-encryption.org)-encrypted YAML
//! mapping of variables (`secrets.age` beside the inventory), decrypted
//! with an x25519 identity kept outside the repository.
//!
//! `pgdeploy secrets init` generates the passwords the product names once
//! (strong, random) and adds only missing ones on later runs, so the
//! passwords every host gets come from one place and never drift. Every
//! command that reads variables (`apply`, `plan`, `validate`, `graph` and
//! the day-2 commands) reads the file as extra vars (below `-e`).
//!
//! Key handling: the identity file is `$PGDEPLOY_AGE_IDENTITY`, else
//! `~/.config/pgdeploy/age-identity.txt`; `init` creates it (mode 0600, in a
//! 0700 folder) when missing. Keep it out of the repository and back it up:
//! without it the secrets file cannot be read.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;

use crate::error::{InputError, InputErrors};
use crate::inventory::Vars;
use crate::yaml::Pos;

/// Length of a generated password (alphanumeric: about 190 bits).
const PASSWORD_LENGTH: usize = 32;

/// A problem with the secrets file or the identity.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The identity file holds no usable age identity.
    #[error("{0}: no age identity (a line starting with AGE-SECRET-KEY-)")]
    BadIdentity(PathBuf),
    /// Decryption failed (wrong identity, damaged file).
    #[error("{path}: cannot decrypt with the identity {identity}: {reason}")]
    Decrypt {
        /// The secrets file.
        path: PathBuf,
        /// The identity used.
        identity: PathBuf,
        /// Why.
        reason: String,
    },
    /// The decrypted text is not a YAML mapping of variables.
    #[error("{path}: the decrypted secrets are not a mapping of variables: {reason}")]
    Content {
        /// The secrets file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Encryption or random generation failed.
    #[error("{0}")]
    Crypto(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The identity file: `$PGDEPLOY_AGE_IDENTITY`, else
/// `~/.config/pgdeploy/age-identity.txt`.
pub fn identity_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PGDEPLOY_AGE_IDENTITY") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".config/pgdeploy/age-identity.txt")
}

/// The secrets file of an inventory: `secrets.age` beside it.
pub fn default_file(inventory: &Path) -> PathBuf {
    inventory
        .parent()
        .unwrap_or(Path::new("."))
        .join("secrets.age")
}

fn read_identity(path: &Path) -> Result<age::x25519::Identity, SecretsError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
        .ok_or_else(|| SecretsError::BadIdentity(path.to_path_buf()))
}

/// Writes `bytes` to `path` with mode 0600, atomically (see
/// [`crate::files::write_atomically`]).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    crate::files::write_atomically(path, bytes, 0o600).map_err(io(path))
}

/// The identity at `path`, created (0600, folder 0700) when missing.
fn identity_or_new(path: &Path) -> Result<(age::x25519::Identity, bool), SecretsError> {
    if path.exists() {
        return Ok((read_identity(path)?, false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let identity = age::x25519::Identity::generate();
    let text = format!(
        "# pgdeploy secrets identity; keep it secret, keep it safe\n# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    );
    write_private(path, text.as_bytes())?;
    Ok((identity, true))
}

/// Decrypts the secrets file with `identity`.
fn decrypt(file: &Path, identity_file: &Path) -> Result<Vars, SecretsError> {
    let identity = read_identity(identity_file)?;
    let cipher = fs::read(file).map_err(io(file))?;
    let plain = age::decrypt(&identity, &cipher).map_err(|e| SecretsError::Decrypt {
        path: file.to_path_buf(),
        identity: identity_file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(plain).map_err(|e| SecretsError::Content {
        path: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let node = crate::yaml::parse(&text, file).map_err(|e| SecretsError::Content {
        path: file.to_path_buf(),
        reason: e.message,
    })?;
    crate::playbook::vars_of(&node, "the secrets").map_err(|e| SecretsError::Content {
        path: file.to_path_buf(),
        reason: e.message,
    })
}

/// A random alphanumeric password from the operating system's generator.
pub fn generate_password() -> Result<String, SecretsError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(PASSWORD_LENGTH);
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LENGTH {
        getrandom::fill(&mut buf).map_err(|e| SecretsError::Crypto(e.to_string()))?;
        // Rejection sampling keeps every character equally likely.
        for b in buf.iter().filter(|b| usize::from(**b) < 248) {
            if out.len() < PASSWORD_LENGTH {
                out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// What `init` did.
#[derive(Debug)]
pub struct InitReport {
    /// Variables generated now.
    pub generated: Vec<String>,
    /// Variables already there, kept.
    pub kept: Vec<String>,
    /// Whether the identity file was created.
    pub new_identity: bool,
    /// The identity's public key.
    pub recipient: String,
}

/// Generates the missing passwords `names` (the product's list) into `file`
/// (encrypted to the identity at `identity_file`, created when missing).
/// Existing values are never changed.
pub fn init(file: &Path, identity_file: &Path, names: &[&str]) -> Result<InitReport, SecretsError> {
    let (identity, new_identity) = identity_or_new(identity_file)?;
    let mut vars = if file.exists() {
        decrypt(file, identity_file)?
    } else {
        Vars::new()
    };
    let mut generated = Vec::new();
    let mut kept = Vec::new();
    for &name in names {
        if vars.contains_key(name) {
            kept.push(name.to_string());
        } else {
            vars.insert(name.to_string(), generate_password()?.into());
            generated.push(name.to_string());
        }
    }
    let recipient = identity.to_public();
    if !generated.is_empty() {
        let text =
            serde_json::to_string_pretty(&vars).map_err(|e| SecretsError::Crypto(e.to_string()))?;
        let cipher = age::encrypt(&recipient, text.as_bytes())
            .map_err(|e| SecretsError::Crypto(e.to_string()))?;
        write_private(file, &cipher)?;
    }
    Ok(InitReport {
        generated,
        kept,
        new_identity,
        recipient: recipient.to_string(),
    })
}

/// The secrets for a run: `file` when given (it must exist), else the
/// inventory's `secrets.age` when it exists, else none. Problems are input
/// errors (exit 2, nothing applied).
pub fn load(inventory: &Path, file: Option<&Path>) -> Result<Vars, InputErrors> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let d = default_file(inventory);
            if !d.exists() {
                return Ok(Vars::new());
            }
            d
        }
    };
    decrypt(&path, &identity_path()).map_err(|e| {
        let shown = path.display().to_string();
        let message = e.to_string();
        let message = message
            .strip_prefix(&format!("{shown}: "))
            .unwrap_or(&message)
            .to_string();
        InputError::at(&Pos::synthetic(&shown), message).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "postgres_superuser_password",
        "postgres_replication_password",
    ];

    #[test]
    fn passwords_are_long_alphanumeric_and_distinct() {
        let a = generate_password().expect("a");
        let b = generate_password().expect("b");
        assert_eq!(a.len(), PASSWORD_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn init_generates_once_and_keeps_values() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("secrets.age");
        let identity = dir.path().join("keys/identity.txt");
        let first = init(&file, &identity, NAMES).expect("init");
        assert!(first.new_identity);
        assert_eq!(first.generated.len(), 2);
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&identity), 0o600);
        let vars = decrypt(&file, &identity).expect("decrypt");
        let password = vars["postgres_superuser_password"]
            .as_str()
            .expect("str")
            .to_string();
        let raw = fs::read(&file).expect("read");
        assert!(
            !raw.windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the file holds no plaintext"
        );
        let second = init(&file, &identity, NAMES).expect("again");
        assert!(second.generated.is_empty() && !second.new_identity);
        assert_eq!(
            decrypt(&file, &identity).expect("decrypt")["postgres_superuser_password"],
            password.as_str()
        );
        let other = dir.path().join("other.txt");
        identity_or_new(&other).expect("other identity");
        let err = decrypt(&file, &other).expect_err("wrong identity");
        assert!(err.to_string().contains("cannot decrypt"), "{err}");
    }
}
