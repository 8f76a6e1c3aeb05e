//! OpenSSH `known_hosts` parsing, matching and recording.
//!
//! Supported: plain host names and addresses, `[host]:port` entries for
//! non-standard ports, comma-separated lists, `*`/`?` wildcards, `!negated`
//! patterns, hashed `|1|salt|hash` entries (`HashKnownHosts yes`), and the
//! `@revoked` marker. `@cert-authority` lines are ignored (host certificates
//! are not used by pgdeploy).

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// The name under which OpenSSH records a host: `host` for port 22,
/// `[host]:port` otherwise.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:...` fingerprint of a public key, as printed by `ssh-keygen -l`.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The `known_hosts` line (without trailing newline) recording `key` for
/// `host`:`port`.
pub fn format_entry(host: &str, port: u16, key: &PublicKey) -> Result<String, String> {
    let mut key = key.clone();
    key.set_comment("");
    let text = key.to_openssh().map_err(|e| e.to_string())?;
    Ok(format!(
        "{} {}",
        host_entry_name(host, port),
        text.trim_end()
    ))
}

/// Appends an entry for `key` to the `known_hosts` file at `path`, creating
/// the file (and its directory) if needed.
pub fn append_entry(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    let line = format_entry(host, port, key).map_err(io::Error::other)?;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    // Make sure we start on a fresh line if the file lacks a final newline.
    let len = file.metadata()?.len();
    let mut buf = String::new();
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            buf.push('\n');
        }
    }
    buf.push_str(&line);
    buf.push('\n');
    // One write with O_APPEND: concurrent appenders don't interleave lines.
    file.write_all(buf.as_bytes())?;
    file.flush()
}

/// Line marker of a `known_hosts` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One parsed `known_hosts` line.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: String,
    key: PublicKey,
}

/// A recorded key that matched the host being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    /// 1-based line number in the file.
    pub line: usize,
    /// `SHA256:...` fingerprint of the recorded key.
    pub fingerprint: String,
    /// Key algorithm name (`ssh-ed25519`, `ssh-rsa`, ...).
    pub algorithm: String,
}

impl fmt::Display for KnownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (line {})",
            self.algorithm, self.fingerprint, self.line
        )
    }
}

/// Result of checking a server key against a `known_hosts` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// The offered key is recorded for this host.
    Known,
    /// The host has no recorded key at all.
    Unknown,
    /// The host has recorded keys, none of which is the offered one.
    /// The first element is the most relevant recorded key (same algorithm
    /// as the offered key if there is one).
    Changed(Vec<KnownKey>),
    /// The offered key is explicitly marked `@revoked` (at this line).
    Revoked(usize),
}

/// An in-memory `known_hosts` file.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

impl KnownHosts {
    /// Parses `known_hosts` text. Comments, blank lines and lines that cannot
    /// be parsed (unknown key types, garbage) are skipped, as OpenSSH does.
    pub fn parse(text: &str) -> KnownHosts {
        let mut entries = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            if let Some(entry) = parse_line(idx + 1, raw) {
                entries.push(entry);
            }
        }
        KnownHosts { entries }
    }

    /// Reads and parses the file at `path`; a missing file is an empty set.
    pub fn load(path: &Path) -> io::Result<KnownHosts> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(KnownHosts::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(KnownHosts::default()),
            Err(e) => Err(e),
        }
    }

    /// Number of usable entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the file holds no usable entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn matching<'a>(&'a self, host: &str, port: u16) -> impl Iterator<Item = &'a Entry> + 'a {
        let name = host_entry_name(host, port);
        self.entries.iter().filter(move |e| {
            e.marker != Marker::CertAuthority && host_list_matches(&e.hosts, &name)
        })
    }

    /// Algorithms of the keys recorded for `host`:`port`, in file order,
    /// without duplicates (used to ask the server for a key we can verify).
    pub fn known_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self
            .matching(host, port)
            .filter(|e| e.marker == Marker::None)
        {
            let alg = e.key.algorithm();
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        out
    }

    /// Checks the key `key` offered by `host`:`port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let mut same_alg = Vec::new();
        let mut other_alg = Vec::new();
        for e in self.matching(host, port) {
            let equal = e.key.key_data() == key.key_data();
            match e.marker {
                Marker::Revoked if equal => return HostKeyStatus::Revoked(e.line),
                Marker::Revoked | Marker::CertAuthority => {}
                Marker::None if equal => return HostKeyStatus::Known,
                Marker::None => {
                    let known = KnownKey {
                        line: e.line,
                        fingerprint: fingerprint(&e.key),
                        algorithm: e.key.algorithm().as_str().to_string(),
                    };
                    if same_family(&e.key.algorithm(), &key.algorithm()) {
                        same_alg.push(known);
                    } else {
                        other_alg.push(known);
                    }
                }
            }
        }
        // Revoked keys may also appear without a host pattern match ("*").
        if same_alg.is_empty() && other_alg.is_empty() {
            HostKeyStatus::Unknown
        } else {
            same_alg.extend(other_alg);
            HostKeyStatus::Changed(same_alg)
        }
    }
}

/// RSA keys are one family whatever the signature hash.
pub(crate) fn same_family(a: &Algorithm, b: &Algorithm) -> bool {
    matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. })) || a == b
}

fn parse_line(line: usize, raw: &str) -> Option<Entry> {
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let mut fields = text.split_whitespace();
    let mut first = fields.next()?;
    let marker = if first.starts_with('@') {
        let m = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            _ => return None,
        };
        first = fields.next()?;
        m
    } else {
        Marker::None
    };
    let key_type = fields.next()?;
    let key_b64 = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}")).ok()?;
    Some(Entry {
        line,
        marker,
        hosts: first.to_string(),
        key,
    })
}

/// Does the comma-separated pattern list `list` match `name` (already in
/// `[host]:port` form when needed)? A matching negated pattern vetoes the
/// whole line, as in OpenSSH.
fn host_list_matches(list: &str, name: &str) -> bool {
    if let Some(hashed) = list.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let name_lc = name.to_ascii_lowercase();
    let mut matched = false;
    for pat in list.split(',') {
        if let Some(neg) = pat.strip_prefix('!') {
            if glob_match(&neg.to_ascii_lowercase(), &name_lc) {
                return false;
            }
        } else if glob_match(&pat.to_ascii_lowercase(), &name_lc) {
            matched = true;
        }
    }
    matched
}

/// `salt|hash` (both base64): HMAC-SHA1(salt, name) == hash.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt_b64, hash_b64)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt_b64), BASE64.decode(hash_b64)) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Hashes `name` with `salt` the way `ssh-keygen -H` does (`|1|salt|hash`).
pub fn hash_host_name(name: &str, salt: &[u8]) -> String {
    let mut mac = match <Hmac<Sha1> as KeyInit>::new_from_slice(salt) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this branch is unreachable.
        Err(_) => return String::new(),
    };
    mac.update(name.as_bytes());
    let hash = mac.finalize().into_bytes();
    format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(hash))
}

/// Shell-style glob with `*` and `?` (OpenSSH `match_pattern`).
fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOH4Y1GYTyi0W1i59zdHOSz+On0eqquuJkpk64u1zewb";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEbOlE52YJ7V6l99bzLF6UWvoMAOrZmkdqzXIKFktqf4";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key")
    }

    #[test]
    fn entry_names() {
        assert_eq!(host_entry_name("node1", 22), "node1");
        assert_eq!(host_entry_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }

    #[test]
    fn plain_entry_matches_and_changed() {
        let kh = KnownHosts::parse(&format!("# comment\n\nnode1 {ED1}\n"));
        assert_eq!(kh.len(), 1);
        assert_eq!(kh.check("node1", 22, &key(ED1)), HostKeyStatus::Known);
        assert_eq!(kh.check("NODE1", 22, &key(ED1)), HostKeyStatus::Known);
        // Same host, another port: not the same entry.
        assert_eq!(kh.check("node1", 2222, &key(ED1)), HostKeyStatus::Unknown);
        assert_eq!(kh.check("node2", 22, &key(ED1)), HostKeyStatus::Unknown);
        match kh.check("node1", 22, &key(ED2)) {
            HostKeyStatus::Changed(known) => {
                assert_eq!(known[0].line, 3);
                assert_eq!(known[0].fingerprint, fingerprint(&key(ED1)));
                assert!(known[0].fingerprint.starts_with("SHA256:"));
            }
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    #[test]
    fn bracketed_port_and_comma_lists() {
        let kh = KnownHosts::parse(&format!(
            "node1,10.1.1.1,[10.1.1.2]:2222 {ED1} root@x\n[127.0.0.1]:40022   {ED2}\n"
        ));
        assert_eq!(kh.check("10.1.1.1", 22, &key(ED1)), HostKeyStatus::Known);
        assert_eq!(kh.check("10.1.1.2", 2222, &key(ED1)), HostKeyStatus::Known);
        assert_eq!(kh.check("10.1.1.2", 22, &key(ED1)), HostKeyStatus::Unknown);
        assert_eq!(
            kh.check("127.0.0.1", 40022, &key(ED2)),
            HostKeyStatus::Known
        );
        assert!(matches!(
            kh.check("127.0.0.1", 40022, &key(ED1)),
            HostKeyStatus::Changed(_)
        ));
    }

    #[test]
    fn hashed_entries() {
        let salt = b"0123456789abcdefghij";
        let h = hash_host_name("[10.1.1.3]:2200", salt);
        assert!(h.starts_with("|1|"));
        let kh = KnownHosts::parse(&format!("{h} {ED1}\n"));
        assert_eq!(kh.check("10.1.1.3", 2200, &key(ED1)), HostKeyStatus::Known);
        assert_eq!(kh.check("10.1.1.3", 22, &key(ED1)), HostKeyStatus::Unknown);
        assert!(matches!(
            kh.check("10.1.1.3", 2200, &key(ED2)),
            HostKeyStatus::Changed(_)
        ));
        // Known vector produced by `ssh-keygen -H` for host "localhost".
        let kh = KnownHosts::parse(&format!(
            "|1|ndRZ84o5ptlXrqCqPUu/W2cHqe4=|YTigpX4j4mmNCtoYl12OY5D0BCo= {ED1}\n"
        ));
        assert_eq!(kh.check("localhost", 22, &key(ED1)), HostKeyStatus::Known);
    }

    #[test]
    fn wildcards_negation_markers_and_garbage() {
        let kh = KnownHosts::parse(&format!(
            "*.db.example,!bad.db.example {ED1}\n@revoked * {ED2}\n@cert-authority * {ED1}\ngarbage line\nnode9 ssh-ed25519 notbase64\n"
        ));
        assert_eq!(kh.len(), 3);
        assert_eq!(
            kh.check("pg1.db.example", 22, &key(ED1)),
            HostKeyStatus::Known
        );
        assert_eq!(
            kh.check("bad.db.example", 22, &key(ED1)),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            kh.check("anything", 22, &key(ED2)),
            HostKeyStatus::Revoked(2)
        );
        assert_eq!(kh.check("node9", 22, &key(ED1)), HostKeyStatus::Unknown);
        assert!(glob_match("n?de*", "node12"));
        assert!(!glob_match("n?de", "node12"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn known_algorithms_and_append_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("known_hosts");
        append_entry(&path, "10.2.2.2", 2222, &key(ED1)).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"# no newline at end"))
            .expect("write");
        append_entry(&path, "node3", 22, &key(ED2)).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 3, "{text}");
        let kh = KnownHosts::load(&path).expect("load");
        assert_eq!(kh.check("10.2.2.2", 2222, &key(ED1)), HostKeyStatus::Known);
        assert_eq!(kh.check("node3", 22, &key(ED2)), HostKeyStatus::Known);
        assert_eq!(kh.known_algorithms("node3", 22), vec![Algorithm::Ed25519]);
        assert!(KnownHosts::load(&dir.path().join("missing"))
            .expect("load")
            .is_empty());
    }
}
