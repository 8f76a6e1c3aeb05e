//! The `tls_cert` module: a host's TLS key and certificate, signed by the
//! cluster's CA (given as PEM parameters; pgdeploy keeps the CA on the
//! operator's workstation).
//!
//! The probe reads the certificate (public) and the key file's attributes,
//! and whether the key belongs to the certificate (compared on the host with
//! `openssl`); the key itself never leaves the host. The plan re-issues (a
//! new key and certificate, uploaded atomically) only when the certificate
//! or key is missing, the key does not match, the certificate is not signed
//! by the CA, it lacks an Authority Key Identifier (strict verifiers need
//! it), its names differ from `names`, or it expires within
//! `renew_days`. Otherwise it only fixes owner, group and mode. Plans never
//! show key material.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::params::{self, opt_mode, opt_u64, string_list};
use crate::probe::{self, Attrs, Kv, PathState};
use crate::shell::{scripts, with_args};
use crate::{Action, Change, ChangeKind, Context, Module, ModuleError, ParamSpec, Plan};
use crate::{ProbeOutput, Resource};

/// The `tls_cert` module.
pub struct TlsCert;

/// Validity of a new certificate unless `valid_days` says otherwise.
const DEFAULT_VALID_DAYS: u64 = 825;
/// A certificate expiring within this many days is re-issued.
const DEFAULT_RENEW_DAYS: u64 = 30;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    cert: String,
    key: String,
    ca_cert: String,
    ca_key: String,
    #[serde(deserialize_with = "string_list")]
    names: Vec<String>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_mode")]
    key_mode: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    valid_days: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    renew_days: Option<u64>,
}

impl Module for TlsCert {
    fn name(&self) -> &'static str {
        "tls_cert"
    }
    fn params(&self) -> &'static [ParamSpec] {
        declared_params!(Params)
    }
    fn resource(
        &self,
        params: &serde_json::Value,
        _ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError> {
        let p: Params = params::parse(self.name(), self.params(), params)?;
        for (name, path) in [("cert", &p.cert), ("key", &p.key)] {
            if !path.starts_with('/') {
                return Err(ModuleError::rejected(
                    [name],
                    format!("`{path}` must be an absolute path"),
                ));
            }
        }
        if p.cert == p.key {
            return Err(ModuleError::rejected(
                ["cert", "key"],
                "`cert` and `key` must be different files".into(),
            ));
        }
        let names = wanted_names(&p.names)?;
        let valid_days = p.valid_days.unwrap_or(DEFAULT_VALID_DAYS);
        let renew_days = p.renew_days.unwrap_or(DEFAULT_RENEW_DAYS);
        if renew_days >= valid_days {
            return Err(ModuleError::rejected(
                ["renew_days", "valid_days"],
                format!(
                    "`renew_days` ({renew_days}) must be less than `valid_days` ({valid_days})"
                ),
            ));
        }
        let ca = Ca::parse(&p.ca_cert, &p.ca_key)?;
        Ok(Box::new(CertResource {
            cert: p.cert,
            key: p.key,
            names,
            key_attrs: Attrs {
                owner: p.owner.clone(),
                group: p.group.clone(),
                mode: Some(p.key_mode.unwrap_or_else(|| "0600".into())),
            },
            cert_attrs: Attrs {
                owner: p.owner,
                group: p.group,
                mode: Some("0644".into()),
            },
            ca,
            valid_days,
            renew_days,
        }))
    }
}

/// The names a certificate must carry: IP addresses and DNS names, in the
/// order given (the first is the subject's common name), without repeats.
fn wanted_names(names: &[String]) -> Result<Vec<San>, ModuleError> {
    let mut out: Vec<San> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            return Err(ModuleError::rejected(
                ["names"],
                "`names` holds an empty name".into(),
            ));
        }
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) if valid_dns_name(name) => San::Dns(name.to_ascii_lowercase()),
            Err(_) => {
                return Err(ModuleError::rejected(
                    ["names"],
                    format!("`{name}` in `names` is neither an IP address nor a DNS name"),
                ))
            }
        };
        if !out.contains(&san) {
            out.push(san);
        }
    }
    if out.is_empty() {
        return Err(ModuleError::rejected(
            ["names"],
            "`names` must name at least one host name or address".into(),
        ));
    }
    Ok(out)
}

fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The CA: its certificate (DER) and signing key.
struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: rcgen::KeyPair,
}

impl Ca {
    fn parse(cert_pem: &str, key_pem: &str) -> Result<Self, ModuleError> {
        let bad = |param: &str, what: &str| {
            ModuleError::rejected([param], format!("`ca_cert`/`ca_key`: {what}"))
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|_| bad("ca_cert", "`ca_cert` is not a PEM certificate"))?;
        let cert_der = pem.contents;
        let (_, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|_| bad("ca_cert", "`ca_cert` is not an X.509 certificate"))?;
        if !cert.is_ca() {
            return Err(bad("ca_cert", "`ca_cert` is not a CA certificate"));
        }
        let key = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|_| bad("ca_key", "`ca_key` is not a PEM private key"))?;
        if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(bad("ca_key", "`ca_key` does not belong to `ca_cert`"));
        }
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key,
        })
    }

    fn certificate(&self) -> Result<X509Certificate<'_>, ModuleError> {
        X509Certificate::from_der(&self.cert_der)
            .map(|(_, c)| c)
            .map_err(|e| ModuleError::rejected(["ca_cert"], format!("`ca_cert`: {e}")))
    }
}

struct CertResource {
    cert: String,
    key: String,
    names: Vec<San>,
    key_attrs: Attrs,
    cert_attrs: Attrs,
    ca: Ca,
    valid_days: u64,
    renew_days: u64,
}

/// What is wrong with the certificate on the host, if anything.
fn reissue_reason(
    found: &[u8],
    ca: &X509Certificate<'_>,
    wanted: &[San],
    renew_before: i64,
) -> Option<String> {
    let pem = match x509_parser::pem::parse_x509_pem(found) {
        Ok((_, pem)) => pem,
        Err(_) => return Some("not a PEM certificate".into()),
    };
    let cert = match X509Certificate::from_der(&pem.contents) {
        Ok((_, cert)) => cert,
        Err(_) => return Some("not an X.509 certificate".into()),
    };
    if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
        return Some("not signed by the cluster CA".into());
    }
    let has_aki = cert
        .extensions()
        .iter()
        .any(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER);
    if !has_aki {
        return Some(
            "no Authority Key Identifier (strict clients such as Python 3.13 on Debian 13 refuse it)"
                .into(),
        );
    }
    let sans = cert_names(&cert);
    let wanted: BTreeSet<San> = wanted.iter().cloned().collect();
    if sans != wanted {
        let show = |s: &BTreeSet<San>| s.iter().map(San::to_string).collect::<Vec<_>>().join(",");
        return Some(format!("names {} (wanted {})", show(&sans), show(&wanted)));
    }
    if cert.validity().not_after.timestamp() < renew_before {
        return Some(format!("expires {}", cert.validity().not_after));
    }
    None
}

/// The DNS names and IP addresses a certificate carries.
fn cert_names(cert: &X509Certificate<'_>) -> BTreeSet<San> {
    let mut out = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    out.insert(San::Dns(d.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        out.insert(San::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

impl CertResource {
    /// A new key and a certificate for it, signed by the CA: (key PEM, cert PEM).
    fn issue(&self) -> Result<(String, String), ModuleError> {
        let err = |e: rcgen::Error| {
            ModuleError::rejected(
                Vec::<&str>::new(),
                format!("cannot issue a certificate: {e}"),
            )
        };
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, self.names[0].to_string());
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "pgdeploy");
        for name in &self.names {
            params.subject_alt_names.push(match name {
                San::Dns(d) => rcgen::SanType::DnsName(d.clone().try_into().map_err(err)?),
                San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            });
        }
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        // Server and client: etcd peers and Patroni members are both.
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        // Python 3.13's default verification (Debian 13: Patroni, patronictl)
        // is strict and refuses a certificate without it.
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        // An hour back: a host whose clock is a little behind still accepts it.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(self.valid_days as i64);
        let mut serial = [0u8; 16];
        serial.copy_from_slice(&key.public_key_raw()[1..17]);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let issuer =
            rcgen::Issuer::from_ca_cert_pem(&self.ca.cert_pem, &self.ca.key).map_err(err)?;
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        Ok((key.serialize_pem(), cert.pem()))
    }

    fn describe_new(&self) -> String {
        let names: Vec<String> = self.names.iter().map(San::to_string).collect();
        format!(
            "signed by the cluster CA for {}, valid {} days",
            names.join(","),
            self.valid_days
        )
    }
}

impl Resource for CertResource {
    fn probe(&self) -> String {
        probe::wrap(
            &[
                probe::path_snippet(&self.cert, "cert_", probe::DIFF_LIMIT),
                // 0: the key's content is never read.
                probe::path_snippet(&self.key, "key_", 0),
                with_args(scripts::KEY_MATCH, &[&self.cert, &self.key]),
            ]
            .join("\n"),
        )
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let cert = PathState::from_kv(&kv, "cert_")?;
        let key = PathState::from_kv(&kv, "key_")?;
        let ca = self.ca.certificate()?;
        let renew_before =
            time::OffsetDateTime::now_utc().unix_timestamp() + (self.renew_days as i64) * 86_400;
        let reason = if !cert.exists() || !key.exists() {
            Some("absent".to_string())
        } else if kv.get("key_match") != Some("yes") {
            Some("key does not match the certificate".into())
        } else {
            match &cert.content {
                Some(pem) => reissue_reason(pem, &ca, &self.names, renew_before),
                None => Some("certificate too large to read".into()),
            }
        };
        if let Some(reason) = reason {
            let (key_pem, cert_pem) = self.issue()?;
            let kind = if cert.exists() {
                ChangeKind::Update
            } else {
                ChangeKind::Create
            };
            let change = Change::new(kind, format!("certificate {}", self.cert))
                .states(reason, self.describe_new());
            let upload = |path: &str, content: String, attrs: &Attrs| {
                Action::upload(
                    path,
                    content.into_bytes(),
                    attrs.owner.as_deref(),
                    attrs.group.as_deref(),
                    attrs.mode.as_deref(),
                )
            };
            return Ok(Plan::none().with(
                change,
                [
                    upload(&self.key, key_pem, &self.key_attrs),
                    upload(&self.cert, cert_pem, &self.cert_attrs),
                ],
            ));
        }
        let mut plan = Plan::none();
        for (path, state, attrs, what) in [
            (&self.key, &key, &self.key_attrs, "key"),
            (&self.cert, &cert, &self.cert_attrs, "certificate"),
        ] {
            let (before, after) = attrs.drift(state);
            if !before.is_empty() {
                plan = plan.with(
                    Change::new(ChangeKind::Update, format!("{what} {path}"))
                        .states(before.join(", "), after.join(", ")),
                    [Action::run(attrs.apply_script(path, false, false))],
                );
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{apply_local, converge, probe_local, FakeContext};
    use serde_json::json;

    fn ca(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.pem(), key.serialize_pem())
    }

    fn params(dir: &std::path::Path, ca: &(String, String), names: &[&str]) -> serde_json::Value {
        json!({
            "cert": dir.join("server.crt").to_str().expect("utf8"),
            "key": dir.join("server.key").to_str().expect("utf8"),
            "ca_cert": ca.0, "ca_key": ca.1, "names": names,
        })
    }

    fn resource(p: serde_json::Value) -> Box<dyn Resource> {
        TlsCert
            .resource(&p, &FakeContext::default())
            .expect("valid params")
    }

    fn have_openssl() -> bool {
        std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn issues_once_then_keeps_and_reissues_only_when_needed() {
        if !have_openssl() {
            eprintln!("skipped: no openssl on this machine");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ca1 = ca("ca one");
        let names = ["db1", "10.0.0.11", "127.0.0.1"];
        let r = resource(params(dir.path(), &ca1, &names));
        let first = converge(r.as_ref());
        assert_eq!(first.changes[0].kind, ChangeKind::Create);
        let key_mode = std::fs::metadata(dir.path().join("server.key"))
            .expect("key")
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key_mode.mode() & 0o777, 0o600);
        let cert = std::fs::read(dir.path().join("server.crt")).expect("cert");
        // The plan never carries key material in what it shows.
        assert!(!format!("{first:?}").contains("PRIVATE KEY"));

        // Converged: a new resource with the same params plans nothing.
        let again = resource(params(dir.path(), &ca1, &names));
        assert!(again
            .plan(&probe_local(again.as_ref()))
            .expect("plan")
            .is_empty());
        assert_eq!(
            std::fs::read(dir.path().join("server.crt")).expect("cert"),
            cert
        );

        // Names in another order or repeated: still nothing.
        let same = resource(params(
            dir.path(),
            &ca1,
            &["127.0.0.1", "db1", "10.0.0.11", "db1"],
        ));
        assert!(same
            .plan(&probe_local(same.as_ref()))
            .expect("plan")
            .is_empty());

        // A changed name: re-issued.
        let more = resource(params(
            dir.path(),
            &ca1,
            &["db1", "10.0.0.11", "127.0.0.1", "10.0.0.250"],
        ));
        let plan = more.plan(&probe_local(more.as_ref())).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert!(plan.changes[0]
            .before
            .as_deref()
            .unwrap_or("")
            .starts_with("names"));
        assert!(apply_local(&plan));
        assert!(more
            .plan(&probe_local(more.as_ref()))
            .expect("plan")
            .is_empty());

        // Another CA: re-issued.
        let ca2 = ca("ca two");
        let other = resource(params(dir.path(), &ca2, &names));
        let plan = other.plan(&probe_local(other.as_ref())).expect("plan");
        assert_eq!(
            plan.changes[0].before.as_deref(),
            Some("not signed by the cluster CA")
        );
        assert!(apply_local(&plan));

        // A key that does not belong to the certificate: re-issued.
        std::fs::copy(dir.path().join("server.crt"), dir.path().join("keep.crt")).expect("copy");
        converge(resource(params(dir.path(), &ca1, &names)).as_ref());
        std::fs::copy(dir.path().join("keep.crt"), dir.path().join("server.crt")).expect("copy");
        let r = resource(params(dir.path(), &ca1, &names));
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert!(apply_local(&plan));

        // A loose key mode is only fixed, not re-issued.
        let key_path = dir.path().join("server.key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(
            plan.changes[0].subject,
            format!("key {}", key_path.display())
        );
        assert!(apply_local(&plan));
        assert!(r.plan(&probe_local(r.as_ref())).expect("plan").is_empty());
    }

    #[test]
    fn near_expiry_is_reissued() {
        if !have_openssl() {
            eprintln!("skipped: no openssl on this machine");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ca1 = ca("ca");
        let mut p = params(dir.path(), &ca1, &["db1"]);
        p["valid_days"] = json!(10);
        p["renew_days"] = json!(5);
        converge(resource(p.clone()).as_ref());
        // The same certificate seen with a 20-day renewal window is due.
        p["valid_days"] = json!(90);
        p["renew_days"] = json!(20);
        let r = resource(p);
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        assert!(plan.changes[0]
            .before
            .as_deref()
            .unwrap_or("")
            .starts_with("expires"));
    }

    #[test]
    fn issued_certificates_carry_an_authority_key_identifier_and_older_ones_are_reissued() {
        let ca1 = ca("ca");
        let ca_key = rcgen::KeyPair::from_pem(&ca1.1).expect("CA key");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca1.0, &ca_key).expect("issuer");
        let (_, ca_der) = x509_parser::pem::parse_x509_pem(ca1.0.as_bytes()).expect("CA PEM");
        let (_, ca_cert) = X509Certificate::from_der(&ca_der.contents).expect("CA");
        let leaf = |aki: bool| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::new(vec!["db1".to_string()]).expect("params");
            p.use_authority_key_identifier_extension = aki;
            p.signed_by(&key, &issuer).expect("signed").pem()
        };
        let wanted = [San::Dns("db1".into())];
        let reason = reissue_reason(leaf(false).as_bytes(), &ca_cert, &wanted, 0);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.starts_with("no Authority Key Identifier")),
            "{reason:?}"
        );
        assert_eq!(
            reissue_reason(leaf(true).as_bytes(), &ca_cert, &wanted, 0),
            None
        );
        // What the module issues passes.
        if !have_openssl() {
            eprintln!("skipped the issued certificate: no openssl on this machine");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        converge(resource(params(dir.path(), &ca1, &["db1"])).as_ref());
        let pem = std::fs::read(dir.path().join("server.crt")).expect("issued");
        assert_eq!(reissue_reason(&pem, &ca_cert, &wanted, 0), None);
    }

    #[test]
    fn bad_params_are_refused() {
        let ca1 = ca("ca");
        let ca2 = ca("other");
        let dir = std::path::Path::new("/tmp");
        let err = |p: serde_json::Value| {
            TlsCert
                .resource(&p, &FakeContext::default())
                .err()
                .expect("refused")
                .to_string()
        };
        assert!(err(params(dir, &ca1, &[])).contains("at least one"));
        assert!(err(params(dir, &ca1, &["bad name!"])).contains("neither"));
        let mut p = params(dir, &ca1, &["db1"]);
        p["ca_key"] = json!(ca2.1);
        assert!(err(p).contains("does not belong"));
        let mut p = params(dir, &ca1, &["db1"]);
        p["ca_cert"] = json!("garbage");
        assert!(err(p).contains("not a PEM certificate"));
        let mut p = params(dir, &ca1, &["db1"]);
        p["cert"] = json!("relative.crt");
        assert!(err(p).contains("absolute"));
        let mut p = params(dir, &ca1, &["db1"]);
        p["renew_days"] = json!(900);
        assert!(err(p).contains("renew_days"));
    }
}
