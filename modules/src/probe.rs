//! Shared probe pieces: the `key=value` answer format and the snippet that
//! describes one path (type, owner, group, mode, sha256, content in base64).
//!
//! Every probe is wrapped in a subshell so that, concatenated with other
//! tasks' probes, its variables and any `exit` stay its own.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::shell::{scripts, with_args};
use crate::{ModuleError, ProbeOutput};
use pgdeploy_text::quote;

/// Wraps a probe body in a subshell that always exits 0.
pub(crate) fn wrap(body: &str) -> String {
    // An empty subshell is a syntax error in sh.
    let body = if body.trim().is_empty() { ":" } else { body };
    format!("(\n{body}\n) 2>/dev/null </dev/null\ntrue\n")
}

/// A probe's `key=value` lines. Later lines with the same key are kept in
/// order (see [`Kv::all`]); lines without `=` are ignored.
#[derive(Debug, Default)]
pub(crate) struct Kv {
    values: BTreeMap<String, Vec<String>>,
}

impl Kv {
    /// Parses a probe's standard output.
    pub(crate) fn parse(out: &ProbeOutput) -> Self {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in out.stdout.lines() {
            if let Some((k, v)) = line.split_once('=') {
                values
                    .entry(k.trim().to_string())
                    .or_default()
                    .push(v.to_string());
            }
        }
        Self { values }
    }
    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    /// The first value of `key`, or a probe error naming it.
    pub(crate) fn need(&self, key: &str) -> Result<&str, ModuleError> {
        self.get(key)
            .ok_or_else(|| ModuleError::Probe(format!("no `{key}=` line in the probe's output")))
    }
    /// Every value of `key`, in order.
    pub(crate) fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
    /// `key`'s value decoded from base64 (an empty value is empty bytes).
    pub(crate) fn base64(&self, key: &str) -> Result<Option<Vec<u8>>, ModuleError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .map(Some)
                .map_err(|e| ModuleError::Probe(format!("`{key}` is not valid base64: {e}"))),
        }
    }
}

/// Contents up to this size are fetched by probes so that plans can show
/// diffs; larger files are compared by sha256 only.
pub(crate) const DIFF_LIMIT: u64 = 256 * 1024;

/// Text editing modules need the whole file; beyond this they refuse.
pub(crate) const EDIT_LIMIT: u64 = 16 * 1024 * 1024;

/// A probe snippet printing `type=`, and for existing paths `owner=`, `uid=`,
/// `group=`, `gid=`, `mode=`, `size=`; for regular files `content=` (base64)
/// when smaller than `content_limit` bytes, else `sha256=` (a limit of 0
/// skips both: [`PathState::from_kv`] derives the sha256 of a fetched
/// content); for symlinks `target=` (base64). Keys get `prefix` in front.
/// It starts as few processes as it can: probes of many files run in one
/// batch. It leaves `$p` (the path) and `$t` (its type) set for what
/// follows it ([`scripts::PATH_STATE`]).
pub(crate) fn path_snippet(path: &str, prefix: &str, content_limit: u64) -> String {
    with_args(
        scripts::PATH_STATE,
        &[path, prefix, &content_limit.to_string()],
    )
}

/// What [`path_snippet`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathState {
    /// `absent`, `file`, `directory`, `link` or `other`.
    pub kind: String,
    pub owner: String,
    pub uid: String,
    pub group: String,
    pub gid: String,
    /// Four octal digits.
    pub mode: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub content: Option<Vec<u8>>,
    pub target: Option<String>,
}

impl PathState {
    /// Reads [`path_snippet`]'s answer.
    pub(crate) fn from_kv(kv: &Kv, prefix: &str) -> Result<Self, ModuleError> {
        let key = |k: &str| format!("{prefix}{k}");
        let kind = kv.need(&key("type"))?.to_string();
        let get = |k: &str| kv.get(&key(k)).unwrap_or("").to_string();
        let mut state = PathState {
            kind,
            owner: get("owner"),
            uid: get("uid"),
            group: get("group"),
            gid: get("gid"),
            mode: String::new(),
            size: 0,
            sha256: kv.get(&key("sha256")).map(|s| s.trim().to_string()),
            content: kv.base64(&key("content"))?,
            target: kv
                .base64(&key("target"))?
                .map(|t| String::from_utf8_lossy(&t).into_owned()),
        };
        if state.sha256.is_none() {
            state.sha256 = state.content.as_deref().map(crate::content::sha256_hex);
        }
        if state.kind != "absent" {
            let mode = kv.need(&key("mode"))?;
            state.mode = crate::params::normalize_mode(mode).map_err(ModuleError::Probe)?;
            state.size = kv
                .need(&key("size"))?
                .trim()
                .parse()
                .map_err(|_| ModuleError::Probe("size is not a number".into()))?;
        }
        Ok(state)
    }

    /// Whether the path exists.
    pub(crate) fn exists(&self) -> bool {
        self.kind != "absent"
    }

    /// Whether `wanted` (a name or a numeric id) names this owner.
    pub(crate) fn owner_is(&self, wanted: &str) -> bool {
        wanted == self.owner || wanted == self.uid
    }

    /// Whether `wanted` (a name or a numeric id) names this group.
    pub(crate) fn group_is(&self, wanted: &str) -> bool {
        wanted == self.group || wanted == self.gid
    }
}

/// Owner, group and mode a task asks for (each optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<String>,
}

impl Attrs {
    /// The attributes that differ from `state`, as (`before`, `after`) texts
    /// like `owner root` → `owner postgres`; empty when all match.
    pub(crate) fn drift(&self, state: &PathState) -> (Vec<String>, Vec<String>) {
        let mut before = Vec::new();
        let mut after = Vec::new();
        if let Some(owner) = &self.owner {
            if !state.owner_is(owner) {
                before.push(format!("owner {}", state.owner));
                after.push(format!("owner {owner}"));
            }
        }
        if let Some(group) = &self.group {
            if !state.group_is(group) {
                before.push(format!("group {}", state.group));
                after.push(format!("group {group}"));
            }
        }
        if let Some(mode) = &self.mode {
            if *mode != state.mode {
                before.push(format!("mode {}", state.mode));
                after.push(format!("mode {mode}"));
            }
        }
        (before, after)
    }

    /// How a new object will look, like `owner postgres, mode 0640`.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(o) = &self.owner {
            out.push(format!("owner {o}"));
        }
        if let Some(g) = &self.group {
            out.push(format!("group {g}"));
        }
        if let Some(m) = &self.mode {
            out.push(format!("mode {m}"));
        }
        out
    }

    /// `chown`/`chgrp`/`chmod` commands for `path` (quoted), only for the
    /// attributes that are set. `flags` go before the path (`-R`, `-h`).
    pub(crate) fn apply_script(&self, path: &str, recurse: bool, nofollow: bool) -> String {
        let mut flags = String::new();
        if recurse {
            flags.push_str(" -R");
        }
        let h = if nofollow { " -h" } else { "" };
        let p = quote(path);
        let mut script = String::new();
        match (&self.owner, &self.group) {
            (Some(o), Some(g)) => script.push_str(&format!(
                "chown{flags}{h} {} -- {p}\n",
                quote(&format!("{o}:{g}"))
            )),
            (Some(o), None) => script.push_str(&format!("chown{flags}{h} {} -- {p}\n", quote(o))),
            (None, Some(g)) => script.push_str(&format!("chgrp{flags}{h} {} -- {p}\n", quote(g))),
            (None, None) => {}
        }
        if let Some(m) = &self.mode {
            if !nofollow {
                script.push_str(&format!("chmod{flags} {} -- {p}\n", quote(m)));
            }
        }
        script
    }
}

/// A unified diff of two texts, as plans show them.
pub(crate) fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (on host)"), &format!("{path} (wanted)"))
        .to_string()
}
