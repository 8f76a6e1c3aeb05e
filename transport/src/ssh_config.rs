//! OpenSSH client configuration (`~/.ssh/config`), the part pgdeploy uses:
//! `Host` blocks (patterns with `*`, `?` and `!`), `HostName`, `User`,
//! `Port`, `IdentityFile` and `ProxyJump` (a list of jump hosts; each jump
//! host's own settings, its own `ProxyJump` too, come from the same file).
//!
//! As in OpenSSH, the first value found for an option wins (so specific
//! `Host` blocks go before general ones), `IdentityFile`s add up, and a
//! block applies when one of its patterns matches the name and none of its
//! `!` patterns does. Options before the first `Host` apply to every host.
//! `Include` reads other files (globs, sorted; a relative path is under
//! `~/.ssh`) in the context of the block it sits in, as OpenSSH does.
//! `Match` blocks apply on `all`, `host` (the name after `HostName`) and
//! `originalhost` (the name asked for), each maybe negated with `!`; a
//! block with any other criterion (`exec`, `user`, `localuser`,
//! `canonical`, `final`, `localnetwork`, `tagged`) is never applied:
//! pgdeploy does not evaluate them, and guessing would connect elsewhere.
//!
//! [`SshConfig::apply`] gives a [`Target`] those settings where the
//! inventory set none: inventory values always win.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Target;

/// Jump hosts in one chain at most (a `ProxyJump` loop stops there).
const MAX_HOPS: usize = 8;

/// A parsed client configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshConfig {
    /// The file it was read from (for messages), if any.
    pub path: Option<PathBuf>,
    blocks: Vec<Block>,
}

/// One `Host` or `Match` block (the options before the first one form a
/// block that matches every host). A block read from an `Include`d file
/// also carries the conditions of the block the `Include` sat in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// Every one must hold; none: every host.
    conditions: Vec<Condition>,
    /// `(lower-case keyword, value)` in file order.
    options: Vec<(String, String)>,
}

/// When a block applies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// `Host`: one of the patterns matches the name and no `!` pattern does.
    Host(Patterns),
    /// `Match`: every criterion holds; `None` when one is a criterion
    /// pgdeploy does not evaluate (the block never applies).
    Match(Option<Vec<Criterion>>),
}

/// `(negated, lower-case pattern)` pairs.
type Patterns = Vec<(bool, String)>;

/// One `Match` criterion pgdeploy evaluates, maybe negated (`!host x`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Criterion {
    negated: bool,
    test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    /// `all`.
    All,
    /// `host LIST`: the name after any `HostName` so far.
    Host(Patterns),
    /// `originalhost LIST`: the name asked for.
    OriginalHost(Patterns),
}

/// `Include`s nested deeper than this are an error (OpenSSH's limit).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The settings of one host name, each from the first block that sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// `HostName` (`%h` replaced by the name).
    pub host_name: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `IdentityFile`s, in order (`~` and `%d`, `%h`, `%r`, `%u` expanded).
    pub identity_files: Vec<PathBuf>,
    /// `ProxyJump`: the jump hosts, outermost first; `Some(empty)` for
    /// `ProxyJump none`.
    pub proxy_jump: Option<Vec<Hop>>,
}

/// One jump host as written: `[user@]host[:port]` (or `ssh://...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// User, when given.
    pub user: Option<String>,
    /// Host name or address (or a `Host` alias of the configuration).
    pub host: String,
    /// Port, when given.
    pub port: Option<u16>,
}

/// A malformed line of the configuration or a jump host list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{line}: {message}", path.as_ref().map(|p| format!("{}:", p.display())).unwrap_or_default())]
pub struct ConfigError {
    /// The file, if any.
    pub path: Option<PathBuf>,
    /// The line (1-based; 0 for a value outside a file).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// What the inventory set itself for a host: those win over the
/// configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    /// The address (`ansible_host`).
    pub address: bool,
    /// The port.
    pub port: bool,
    /// The user.
    pub user: bool,
    /// The key file.
    pub key_file: bool,
}

impl SshConfig {
    /// Parses configuration text read from `path`.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<SshConfig, ConfigError> {
        let mut blocks = Vec::new();
        parse_into(text, path, &[], &mut blocks, 0)?;
        Ok(SshConfig {
            path: path.map(Path::to_path_buf),
            blocks,
        })
    }

    /// Reads `path`; a file that does not exist is an empty configuration.
    pub fn load(path: &Path) -> Result<SshConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SshConfig::default()),
            Err(e) => Err(ConfigError {
                path: Some(path.to_path_buf()),
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Reads the user's own configuration (`~/.ssh/config`) as OpenSSH
    /// does: a file that cannot be opened, missing or not readable (a home
    /// this user may not enter), is an empty configuration; one that reads
    /// but is malformed is an error.
    pub fn load_default(path: &Path) -> Result<SshConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, Some(path)),
            Err(_) => Ok(SshConfig::default()),
        }
    }

    /// The settings for host `name`.
    pub fn lookup(&self, name: &str) -> HostConfig {
        let original = name.to_ascii_lowercase();
        let mut found = HostConfig::default();
        for block in &self.blocks {
            let now = found
                .host_name
                .as_deref()
                .map_or_else(|| original.clone(), str::to_ascii_lowercase);
            if !block.conditions.iter().all(|c| c.holds(&original, &now)) {
                continue;
            }
            for (keyword, value) in &block.options {
                match keyword.as_str() {
                    "hostname" if found.host_name.is_none() => {
                        found.host_name = Some(value.replace("%h", name).replace("%%", "%"));
                    }
                    "user" if found.user.is_none() => found.user = Some(value.clone()),
                    "port" if found.port.is_none() => found.port = value.parse().ok(),
                    "identityfile" => found.identity_files.push(PathBuf::from(value)),
                    "proxyjump" if found.proxy_jump.is_none() => {
                        found.proxy_jump = parse_jumps(value).ok();
                    }
                    _ => {}
                }
            }
        }
        found
    }

    /// `target` (as the inventory gives it) with this configuration's
    /// settings for its address where the inventory set none (`given`),
    /// and its jump hosts: `jump` (the inventory's, which wins; empty means
    /// none) or the configuration's `ProxyJump`. A jump host takes its own
    /// settings from this configuration, else the target's user and key.
    pub fn apply(&self, target: &Target, given: Given, jump: Option<&[Hop]>) -> Target {
        let config = self.lookup(&target.address);
        let mut out = target.clone();
        if !given.address {
            if let Some(host_name) = &config.host_name {
                out.address = host_name.clone();
            }
        }
        if !given.port {
            out.port = config.port.unwrap_or(out.port);
        }
        if !given.user {
            out.user = config.user.clone().unwrap_or(out.user);
        }
        if !given.key_file {
            if let Some(key) = first_identity(&config, &out.user) {
                out.key_file = Some(key);
            }
        }
        let hops = jump
            .map(<[Hop]>::to_vec)
            .or(config.proxy_jump)
            .unwrap_or_default();
        out.jump = self.chain(&hops, target, 0);
        out
    }

    /// The jump host nearest the target of `hops` (outermost first), each
    /// reached through the ones before it.
    fn chain(&self, hops: &[Hop], base: &Target, depth: usize) -> Option<Box<Target>> {
        let (last, before) = hops.split_last()?;
        if depth + hops.len() > MAX_HOPS {
            return None;
        }
        let config = self.lookup(&last.host);
        let user = last
            .user
            .clone()
            .or_else(|| config.user.clone())
            .unwrap_or_else(|| base.user.clone());
        let key_file = first_identity(&config, &user).or_else(|| base.key_file.clone());
        let jump = if before.is_empty() {
            // The first hop's own ProxyJump (OpenSSH reaches it that way too).
            let own = config.proxy_jump.clone().unwrap_or_default();
            self.chain(&own, base, depth + 1)
        } else {
            self.chain(before, base, depth + 1)
        };
        Some(Box::new(Target {
            name: last.host.clone(),
            address: config
                .host_name
                .clone()
                .unwrap_or_else(|| last.host.clone()),
            port: last.port.or(config.port).unwrap_or(22),
            user,
            key_file,
            jump,
        }))
    }
}

/// Parses `text` (read from `path`) into `blocks`, every block under
/// `within` (the conditions of the block an `Include` of it sat in).
fn parse_into(
    text: &str,
    path: Option<&Path>,
    within: &[Condition],
    blocks: &mut Vec<Block>,
    depth: usize,
) -> Result<(), ConfigError> {
    let error = |line: usize, message: String| ConfigError {
        path: path.map(Path::to_path_buf),
        line,
        message,
    };
    let under = |condition: Condition| Block {
        conditions: within.iter().cloned().chain([condition]).collect(),
        options: Vec::new(),
    };
    // Options before the file's first block continue the including one.
    blocks.push(Block {
        conditions: within.to_vec(),
        options: Vec::new(),
    });
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, value) = split_keyword(line);
        let keyword = keyword.to_ascii_lowercase();
        if value.is_empty() {
            return Err(error(number, format!("`{keyword}` has no value")));
        }
        match keyword.as_str() {
            "host" => blocks.push(under(Condition::Host(
                value.split_whitespace().map(pattern).collect(),
            ))),
            "match" => blocks.push(under(Condition::Match(
                parse_match(value).map_err(|m| error(number, m))?,
            ))),
            "include" => {
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(error(
                        number,
                        format!("`Include` nested more than {MAX_INCLUDE_DEPTH} deep"),
                    ));
                }
                let current = blocks.last().map(|b| b.conditions.clone());
                let current = current.unwrap_or_default();
                for word in value.split_whitespace() {
                    for file in include_files(&unquote(word)) {
                        let text = std::fs::read_to_string(&file).map_err(|e| {
                            error(number, format!("cannot read {}: {e}", file.display()))
                        })?;
                        parse_into(&text, Some(&file), &current, blocks, depth + 1)?;
                    }
                }
                // The lines after the Include belong to its block again.
                blocks.push(Block {
                    conditions: current,
                    options: Vec::new(),
                });
            }
            _ => {
                let value = unquote(value);
                match keyword.as_str() {
                    "port" if value.parse::<u16>().map_or(true, |p| p == 0) => {
                        return Err(error(
                            number,
                            format!("`Port {value}` is not a port number"),
                        ))
                    }
                    "proxyjump" => {
                        parse_jumps(&value).map_err(|m| error(number, m))?;
                    }
                    _ => {}
                }
                if let Some(block) = blocks.last_mut() {
                    block.options.push((keyword, value));
                }
            }
        }
    }
    Ok(())
}

/// `pattern` or `!pattern`, lower-cased.
fn pattern(word: &str) -> (bool, String) {
    match word.strip_prefix('!') {
        Some(p) => (true, p.to_ascii_lowercase()),
        None => (false, word.to_ascii_lowercase()),
    }
}

/// A `Match` line's criteria; `None` when one is a criterion pgdeploy
/// does not evaluate; an error for an unknown one or a missing argument.
fn parse_match(value: &str) -> Result<Option<Vec<Criterion>>, String> {
    let mut words = value.split_whitespace();
    let mut criteria = Vec::new();
    let mut evaluated = true;
    while let Some(word) = words.next() {
        let (negated, name) = match word.strip_prefix('!') {
            Some(name) => (true, name.to_ascii_lowercase()),
            None => (false, word.to_ascii_lowercase()),
        };
        let mut argument = || {
            words
                .next()
                .map(|list| list.split(',').map(pattern).collect::<Patterns>())
                .ok_or_else(|| format!("`Match {name}` needs an argument"))
        };
        let test = match name.as_str() {
            "all" => Test::All,
            "host" => Test::Host(argument()?),
            "originalhost" => Test::OriginalHost(argument()?),
            "canonical" | "final" => {
                evaluated = false;
                continue;
            }
            "exec" | "user" | "localuser" | "localnetwork" | "tagged" => {
                argument()?;
                evaluated = false;
                continue;
            }
            other => return Err(format!("`Match {other}` is not a Match criterion")),
        };
        criteria.push(Criterion { negated, test });
    }
    Ok(evaluated.then_some(criteria))
}

/// The files an `Include` word names: `~` expanded, a relative path under
/// `~/.ssh`, `*` and `?` in any component matched against the folder's
/// entries (sorted); nothing when nothing matches.
fn include_files(word: &str) -> Vec<PathBuf> {
    let home = crate::home_dir();
    let path = match word.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if Path::new(word).is_absolute() => PathBuf::from(word),
        None => home.join(".ssh").join(word),
    };
    let mut found = vec![PathBuf::from("/")];
    for part in path.components().skip(1) {
        let part = part.as_os_str().to_string_lossy();
        found = if part.contains(['*', '?']) {
            let mut next: Vec<PathBuf> = found
                .iter()
                .filter_map(|dir| std::fs::read_dir(dir).ok())
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !name.starts_with('.') && glob(part.as_bytes(), name.as_bytes())
                })
                .map(|e| e.path())
                .collect();
            next.sort();
            next
        } else {
            found.into_iter().map(|d| d.join(part.as_ref())).collect()
        };
    }
    found.into_iter().filter(|p| p.is_file()).collect()
}

impl Condition {
    /// Whether it holds for `original` (the name asked for) whose
    /// `HostName` so far is `now`; both lower case.
    fn holds(&self, original: &str, now: &str) -> bool {
        match self {
            Condition::Host(patterns) => matches(patterns, original),
            Condition::Match(None) => false,
            Condition::Match(Some(criteria)) => criteria.iter().all(|c| {
                let hit = match &c.test {
                    Test::All => true,
                    Test::Host(patterns) => matches(patterns, now),
                    Test::OriginalHost(patterns) => matches(patterns, original),
                };
                hit != c.negated
            }),
        }
    }
}

/// One pattern matches `name` and no negated one does.
fn matches(patterns: &Patterns, name: &str) -> bool {
    let mut positive = false;
    for (negated, pattern) in patterns {
        if glob(pattern.as_bytes(), name.as_bytes()) {
            if *negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// The first `IdentityFile` of `config` that exists, with `~`, `%d`, `%u`,
/// `%r` expanded.
fn first_identity(config: &HostConfig, remote_user: &str) -> Option<PathBuf> {
    let home = crate::home_dir();
    let local = std::env::var("USER").unwrap_or_default();
    config
        .identity_files
        .iter()
        .map(|p| {
            let text = p.to_string_lossy();
            let text = match text.strip_prefix("~/") {
                Some(rest) => format!("{}/{rest}", home.display()),
                None => text.into_owned(),
            };
            PathBuf::from(
                text.replace("%d", &home.to_string_lossy())
                    .replace("%u", &local)
                    .replace("%r", remote_user)
                    .replace("%%", "%"),
            )
        })
        .find(|p| p.is_file())
}

/// `Keyword value` or `Keyword=value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    (keyword, rest.trim())
}

fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

/// `*` any run of characters, `?` one character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob(rest, text) || text.split_first().is_some_and(|(_, t)| glob(pattern, t))
        }
        (Some((b'?', rest)), Some((_, t))) => glob(rest, t),
        (Some((p, rest)), Some((c, t))) if p == c => glob(rest, t),
        _ => false,
    }
}

/// A jump host list, `ProxyJump`'s syntax: `[user@]host[:port]` or
/// `ssh://[user@]host[:port]`, separated by commas; `none` is the empty
/// list.
pub fn parse_jumps(text: &str) -> Result<Vec<Hop>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',').map(|item| parse_hop(item.trim())).collect()
}

fn parse_hop(item: &str) -> Result<Hop, String> {
    let bare = item.strip_prefix("ssh://").unwrap_or(item);
    let (user, rest) = match bare.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
        Some(_) => return Err(format!("jump host `{item}` has an empty user")),
        None => (None, bare),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        // [2001:db8::1]:2222
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("jump host `{item}`: `[` without `]`"))?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("jump host `{item}` is not `[user@]host[:port]`"));
    }
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("jump host `{item}`: `{p}` is not a port number")),
        })
        .transpose()?;
    Ok(Hop {
        user,
        host: host.to_string(),
        port,
    })
}

/// The jump hosts in an `ansible_ssh_common_args` / `ansible_ssh_extra_args`
/// string: `-o ProxyJump=X`, `-o ProxyJump X`, `-oProxyJump=X` or `-J X`.
/// `None` when it names none; an error for `ProxyCommand`, which pgdeploy
/// cannot run.
pub fn jumps_in_ssh_args(args: &str) -> Result<Option<Vec<Hop>>, String> {
    let words = split_words(args).ok_or_else(|| format!("`{args}` has an unclosed quote"))?;
    let mut found = None;
    let mut words = words.iter().map(String::as_str);
    while let Some(word) = words.next() {
        let option = if word == "-o" {
            words.next().unwrap_or("").to_string()
        } else if let Some(rest) = word.strip_prefix("-o") {
            rest.to_string()
        } else if word == "-J" {
            format!("ProxyJump={}", words.next().unwrap_or(""))
        } else {
            continue;
        };
        let (keyword, value) = split_keyword(&option);
        match keyword.to_ascii_lowercase().as_str() {
            "proxyjump" => found = Some(parse_jumps(value)?),
            "proxycommand" => {
                return Err(
                    "`-o ProxyCommand` is not supported (pgdeploy runs no local command): use `-o ProxyJump=[user@]host[:port]`"
                        .to_string(),
                )
            }
            _ => {}
        }
    }
    Ok(found)
}

/// Shell-like words: spaces separate, `'...'` and `"..."` quote, `\`
/// escapes one character; `None` for an unclosed quote.
fn split_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        q if q == c => break,
                        '\\' if c == '"' => w.push(chars.next()?),
                        other => w.push(other),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(word);
    Some(words)
}

static GLOBAL: OnceLock<SshConfig> = OnceLock::new();

/// Makes `config` the one [`global`] gives (the command line's `-F`);
/// false if it was set or read already.
pub fn set_global(config: SshConfig) -> bool {
    GLOBAL.set(config).is_ok()
}

/// The configuration of this process: the one set by [`set_global`], else
/// `~/.ssh/config` (empty when it is missing or malformed; the command
/// line reads it first to report errors).
pub fn global() -> &'static SshConfig {
    GLOBAL.get_or_init(|| SshConfig::load(&default_path()).unwrap_or_default())
}

/// `~/.ssh/config`.
pub fn default_path() -> PathBuf {
    crate::home_dir().join(".ssh").join("config")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SshConfig {
        SshConfig::parse(text, None).expect("parses")
    }

    /// `~/.ssh/config` that cannot be read (here: a folder; as another
    /// user, a home it may not enter) is no configuration, as for OpenSSH;
    /// a file named with -F must be read.
    #[test]
    fn the_default_file_unreadable_is_empty_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SshConfig::load_default(dir.path()).expect("empty");
        assert_eq!(config, SshConfig::default());
        assert!(SshConfig::load(dir.path()).is_err());
        let file = dir.path().join("config");
        std::fs::write(&file, "Host a\n  Port x\n").expect("write");
        assert!(
            SshConfig::load_default(&file).is_err(),
            "malformed is an error"
        );
    }

    #[test]
    fn the_first_value_wins_and_patterns_match_with_wildcards() {
        let c = config(
            "User everyone\n\
             Host db-?.prod *.internal\n  HostName %h.example.com\n  Port 2222\n\
             Host db-*\n  User dba\n  Port 22\n\
             Host *\n  User fallback\n",
        );
        let db = c.lookup("db-1.prod");
        assert_eq!(db.host_name.as_deref(), Some("db-1.prod.example.com"));
        assert_eq!(db.port, Some(2222), "the first Port wins");
        assert_eq!(
            db.user.as_deref(),
            Some("everyone"),
            "options before any Host apply first"
        );
        assert_eq!(c.lookup("x.internal").port, Some(2222));
        assert_eq!(c.lookup("db-10.prod").port, Some(22), "? is one character");
        assert_eq!(
            c.lookup("other"),
            HostConfig {
                user: Some("everyone".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_negated_pattern_excludes_a_host_from_its_block() {
        let c = config(
            "Host *.prod !bastion.prod\n  ProxyJump admin@bastion.prod:2200\n\
             Host *\n  ProxyJump none\n",
        );
        let hop = Hop {
            user: Some("admin".into()),
            host: "bastion.prod".into(),
            port: Some(2200),
        };
        assert_eq!(
            c.lookup("db1.PROD").proxy_jump,
            Some(vec![hop]),
            "case-insensitive"
        );
        assert_eq!(
            c.lookup("bastion.prod").proxy_jump,
            Some(vec![]),
            "excluded, then `none`"
        );
        assert_eq!(
            config("Host !a\n  Port 5\n").lookup("b").port,
            None,
            "only negated patterns match nothing"
        );
    }

    #[test]
    fn keyword_equals_quotes_comments_and_match_blocks() {
        let c = config(
            "# comment\nHost=web\n  port=2022\n  HostName \"10.0.0.5\"\n\
             Match host web\n  User not-after-hostname\n\
             Match host 10.0.0.* originalhost web,db\n  User matched\n\
             Match exec \"true\"\n  IdentityFile /never\n\
             Match !originalhost web\n  Port 1\n\
             Match all\n  User last\n",
        );
        let web = c.lookup("web");
        assert_eq!(web.port, Some(2022));
        assert_eq!(web.host_name.as_deref(), Some("10.0.0.5"));
        assert_eq!(
            web.user.as_deref(),
            Some("matched"),
            "`host` is the name after HostName, `originalhost` the one asked"
        );
        assert!(web.identity_files.is_empty(), "exec is never evaluated");
        let other = c.lookup("other");
        assert_eq!((other.port, other.user.as_deref()), (Some(1), Some("last")));
        let e = SshConfig::parse("Match hots web\n", None).expect_err("unknown");
        assert!(e.message.contains("`Match hots`"), "{e}");
        assert!(SshConfig::parse("Match host\n", None).is_err());
    }

    /// `Include` as OpenSSH reads it: globs sorted, in the context of the
    /// block it sits in (an included `Host` applies only within it), and
    /// the lines after it back in that block; errors name the included
    /// file; a loop stops with an error.
    #[test]
    fn include_reads_files_in_the_block_it_sits_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).expect("mkdir");
        std::fs::write(
            d.join("conf.d/10-a.conf"),
            "Port 2201\nHost db1\n  User alice\n",
        )
        .expect("write");
        std::fs::write(d.join("conf.d/20-b.conf"), "Port 9999\nUser bob\n").expect("write");
        let text = format!(
            "Host db*\n  Include {0}/conf.d/*.conf\n  HostName 10.0.0.%h\n\
             Host web\n  Include {0}/conf.d/10-a.conf {0}/missing-*.conf\n",
            d.display()
        );
        let c = config(&text);
        let db1 = c.lookup("db1");
        assert_eq!(db1.port, Some(2201), "files in sorted order, first wins");
        assert_eq!(db1.user.as_deref(), Some("alice"));
        assert_eq!(
            db1.host_name.as_deref(),
            Some("10.0.0.db1"),
            "back in Host db*"
        );
        let db2 = c.lookup("db2");
        assert_eq!(db2.user.as_deref(), Some("bob"));
        let web = c.lookup("web");
        assert_eq!(web.port, Some(2201));
        assert_eq!(web.user, None, "db1's block needs both web and db1");
        assert_eq!(c.lookup("other"), HostConfig::default());
        std::fs::write(d.join("bad.conf"), "\n  Port x\n").expect("write");
        let e = SshConfig::parse(&format!("Include {}/bad.conf\n", d.display()), None)
            .expect_err("bad port");
        assert_eq!((e.path, e.line), (Some(d.join("bad.conf")), 2));
        std::fs::write(
            d.join("loop.conf"),
            format!("Include {}/loop.conf\n", d.display()),
        )
        .expect("write");
        let e = SshConfig::load(&d.join("loop.conf")).expect_err("loop");
        assert!(e.message.contains("nested more than 16"), "{e}");
    }

    #[test]
    fn bad_lines_are_errors_with_their_line() {
        let e =
            SshConfig::parse("Host a\n  Port http\n", Some(Path::new("cfg"))).expect_err("port");
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("cfg:2: "), "{e}");
        let e = SshConfig::parse("Host a\n  ProxyJump u@:22\n", None).expect_err("jump");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn jump_lists_parse_users_ports_uris_and_ipv6() {
        let hops = parse_jumps("a, u@b:2222,ssh://v@[2001:db8::1]:23").expect("hops");
        assert_eq!(
            hops[0],
            Hop {
                user: None,
                host: "a".into(),
                port: None
            }
        );
        assert_eq!(
            hops[1],
            Hop {
                user: Some("u".into()),
                host: "b".into(),
                port: Some(2222)
            }
        );
        assert_eq!(hops[2].host, "2001:db8::1");
        assert_eq!(hops[2].port, Some(23));
        assert!(parse_jumps("a:0").is_err());
        assert_eq!(parse_jumps("none"), Ok(vec![]));
    }

    #[test]
    fn ansible_ssh_args_name_the_jump_host() {
        let hop = |h: &str| {
            vec![Hop {
                user: Some("u".into()),
                host: h.into(),
                port: None,
            }]
        };
        assert_eq!(jumps_in_ssh_args("-o ProxyJump=u@b1"), Ok(Some(hop("b1"))));
        assert_eq!(
            jumps_in_ssh_args("-o StrictHostKeyChecking=no -o 'ProxyJump u@b2'"),
            Ok(Some(hop("b2")))
        );
        assert_eq!(jumps_in_ssh_args("-oProxyJump=u@b3"), Ok(Some(hop("b3"))));
        assert_eq!(jumps_in_ssh_args("-J u@b4"), Ok(Some(hop("b4"))));
        assert_eq!(jumps_in_ssh_args("-o ForwardAgent=yes"), Ok(None));
        assert!(jumps_in_ssh_args("-o ProxyCommand='ssh -W %h:%p b'").is_err());
    }

    #[test]
    fn inventory_values_win_and_jump_hosts_chain_through_the_config() {
        let c = config(
            "Host db*\n  HostName 10.1.0.%h\n  User cfguser\n  Port 2022\n  ProxyJump edge\n\
             Host edge\n  HostName 192.0.2.1\n  User jumper\n  ProxyJump outer:2200\n",
        );
        let target = Target::new("db1", "db1", "admin");
        let given = Given {
            user: true,
            ..Default::default()
        };
        let out = c.apply(&target, given, None);
        assert_eq!(out.address, "10.1.0.db1");
        assert_eq!(out.port, 2022);
        assert_eq!(out.user, "admin", "the inventory's user wins");
        let edge = out.jump.as_deref().expect("a jump host");
        assert_eq!(
            (edge.address.as_str(), edge.user.as_str(), edge.port),
            ("192.0.2.1", "jumper", 22)
        );
        let outer = edge.jump.as_deref().expect("edge's own ProxyJump");
        assert_eq!(
            (outer.address.as_str(), outer.port, outer.user.as_str()),
            ("outer", 2200, "admin")
        );
        assert!(outer.jump.is_none());
        // The inventory's jump list wins (none: direct).
        let direct = c.apply(
            &target,
            Given {
                address: true,
                ..given
            },
            Some(&[]),
        );
        assert_eq!(direct.address, "db1");
        assert!(direct.jump.is_none());
        // a,b: b is reached through a.
        let two = parse_jumps("a,u@b").expect("hops");
        let out = config("").apply(&target, given, Some(&two));
        let b = out.jump.as_deref().expect("b");
        assert_eq!((b.address.as_str(), b.user.as_str()), ("b", "u"));
        assert_eq!(b.jump.as_deref().map(|a| a.address.as_str()), Some("a"));
    }

    #[test]
    fn a_proxyjump_loop_stops() {
        let c = config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n");
        let out = c.apply(&Target::new("a", "a", "u"), Given::default(), None);
        let mut depth = 0;
        let mut hop = out.jump.as_deref();
        while let Some(h) = hop {
            depth += 1;
            hop = h.jump.as_deref();
        }
        assert!(depth <= MAX_HOPS, "{depth}");
    }
}
