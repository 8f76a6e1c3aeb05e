//! The cluster's certificate authority, kept on the operator's workstation
//! beside the inventory: `pki/ca.crt` and `pki/ca.key` (both written mode
//! 0600 in a 0700 folder; the key is never printed; the certificate is
//! public: hand it to clients). `apply` and `plan` create it once, on
//! the first run whose inputs are valid; later runs reuse it, so host
//! certificates (module `tls_cert`) never drift.
//!
//! `validate` and `graph` never write it: without one they use a throw-away
//! CA made in memory.
//!
//! The CA reaches the roles as two variables: [`CA_CERT_VAR`] (the PEM
//! certificate) and [`CA_KEY_VAR`] (the PEM key; its name ends in `_secret`,
//! so its value is masked in every output). The day-2 commands use the
//! certificate to verify Patroni, etcd and PostgreSQL ([`client_config`]).
//!
//! Rotation: move `pki/` away and apply; every host certificate is then
//! re-issued by the new CA (see docs/roles.md, "TLS").

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgdeploy_engine::inventory::Vars;

/// The variable holding the CA certificate (PEM).
pub const CA_CERT_VAR: &str = "tls_ca_cert";
/// The variable holding the CA's private key (PEM; masked as a secret).
pub const CA_KEY_VAR: &str = "tls_ca_key_secret";

/// How long the CA is valid.
const CA_VALID_DAYS: i64 = 3650;

/// A problem with the CA files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A CA file holds something else than expected.
    #[error("{path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Generating the CA failed.
    #[error("cannot create the cluster CA: {0}")]
    Generate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The CA's folder: `pki/` beside the inventory.
pub fn ca_dir(inventory: &Path) -> PathBuf {
    inventory.parent().unwrap_or(Path::new(".")).join("pki")
}

/// The CA of an inventory: its certificate and key, as PEM.
pub struct Ca {
    /// The certificate.
    pub cert_pem: String,
    key_pem: String,
}

impl Ca {
    /// The two variables the roles use.
    pub fn vars(&self) -> Vars {
        let mut vars = Vars::new();
        vars.insert(CA_CERT_VAR.into(), self.cert_pem.clone().into());
        vars.insert(CA_KEY_VAR.into(), self.key_pem.clone().into());
        vars
    }
}

/// The CA in `dir`, when both files are there.
pub fn load(dir: &Path) -> Result<Option<Ca>, TlsError> {
    let cert = dir.join("ca.crt");
    let key = dir.join("ca.key");
    if !cert.exists() && !key.exists() {
        return Ok(None);
    }
    let cert_pem = fs::read_to_string(&cert).map_err(io(&cert))?;
    let key_pem = fs::read_to_string(&key).map_err(io(&key))?;
    let mode = fs::metadata(&key).map_err(io(&key))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(TlsError::Bad {
            path: key,
            reason: format!(
                "the CA key is readable by others (mode {:04o}); chmod 600 it",
                mode & 0o7777
            ),
        });
    }
    let pair = rcgen::KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Bad {
        path: key.clone(),
        reason: format!("not a PEM private key: {e}"),
    })?;
    // The certificate must parse, and the key must be able to sign with it.
    rcgen::Issuer::from_ca_cert_pem(&cert_pem, &pair).map_err(|e| TlsError::Bad {
        path: cert.clone(),
        reason: format!("not a CA certificate: {e}"),
    })?;
    Ok(Some(Ca { cert_pem, key_pem }))
}

/// The variables for `validate` and `graph`: the CA's when it exists, else
/// those of a throw-away CA made in memory (nothing is written).
pub fn vars_or_ephemeral(inventory: &Path) -> Result<Vars, TlsError> {
    match load(&ca_dir(inventory))? {
        Some(ca) => Ok(ca.vars()),
        None => Ok(generate()?.vars()),
    }
}

/// A new CA, in memory.
fn generate() -> Result<Ca, TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgdeploy cluster CA");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "pgdeploy");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_VALID_DAYS);
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The CA in `dir`, created when missing; the flag says whether it was.
pub fn load_or_create(dir: &Path) -> Result<(Ca, bool), TlsError> {
    if let Some(ca) = load(dir)? {
        return Ok((ca, false));
    }
    let ca = generate()?;
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    // The key first: a crash in between leaves a lone key, which `load`
    // reports (no second CA is made silently).
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        pgdeploy_engine::files::write_atomically(&path, pem.as_bytes(), 0o600).map_err(io(&path))
    };
    write("ca.key", &ca.key_pem)?;
    write("ca.crt", &ca.cert_pem)?;
    Ok((ca, true))
}

/// A TLS client configuration that trusts only the CA `cert_pem`.
pub fn client_config(cert_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the cluster CA certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the cluster CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the cluster CA certificate holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let (first, created) = load_or_create(&pki).expect("create");
        assert!(created);
        let key_mode = fs::metadata(pki.join("ca.key")).expect("key").permissions();
        assert_eq!(key_mode.mode() & 0o777, 0o600);
        let dir_mode = fs::metadata(&pki).expect("dir").permissions();
        assert_eq!(dir_mode.mode() & 0o777, 0o700);
        let (again, created) = load_or_create(&pki).expect("load");
        assert!(!created);
        assert_eq!(first.cert_pem, again.cert_pem);
        assert_eq!(first.vars(), again.vars());
        assert!(client_config(&first.cert_pem).is_ok());
    }

    #[test]
    fn validate_writes_nothing_and_loose_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inventory = dir.path().join("inventory.yaml");
        let vars = vars_or_ephemeral(&inventory).expect("ephemeral");
        assert!(vars[CA_CERT_VAR]
            .as_str()
            .is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")));
        assert!(!ca_dir(&inventory).exists());
        let (ca, _) = load_or_create(&ca_dir(&inventory)).expect("create");
        let vars = vars_or_ephemeral(&inventory).expect("vars");
        assert_eq!(vars[CA_CERT_VAR], ca.cert_pem.as_str());
        let key = ca_dir(&inventory).join("ca.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load(&ca_dir(&inventory))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("readable by others"), "{err}");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::remove_file(ca_dir(&inventory).join("ca.crt")).expect("rm");
        let err = load(&ca_dir(&inventory))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("ca.crt"), "{err}");
    }
}
