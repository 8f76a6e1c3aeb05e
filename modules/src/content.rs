//! A file whose whole content is known in advance: shared by `copy`,
//! `template`, and (through [`plan_content`]) the text-editing modules.

use crate::probe::{self, Attrs, Kv, PathState};
use crate::shell;
use crate::{Action, Change, ChangeKind, Footprint, ModuleError, Plan, ProbeOutput, Resource};
use pgdeploy_text::quote;

/// A file that must exist with exactly `content` (and the given attributes).
pub(crate) struct ContentFile {
    pub path: String,
    pub content: Vec<u8>,
    pub attrs: Attrs,
    /// A command checking the new file before it replaces the old one.
    pub validate: Option<String>,
}

impl ContentFile {
    /// Builds it, checking that `validate` (if any) is usable.
    pub(crate) fn new(
        path: String,
        content: Vec<u8>,
        attrs: Attrs,
        validate: Option<String>,
    ) -> Result<Self, ModuleError> {
        crate::params::no_leading_dash("dest", &path)?;
        if !path.starts_with('/') {
            return Err(ModuleError::rejected(
                ["dest"],
                format!("dest {path:?} must be an absolute path"),
            ));
        }
        if let Some(v) = &validate {
            shell::atomic_write_validated_script(&path, &[], None, None, None, v)
                .map_err(|m| ModuleError::rejected(["validate"], m))?;
        }
        Ok(Self {
            path,
            content,
            attrs,
            validate,
        })
    }
}

impl Resource for ContentFile {
    fn probe(&self) -> String {
        probe::wrap(&probe::path_snippet(&self.path, "", probe::DIFF_LIMIT))
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let state = PathState::from_kv(&Kv::parse(out), "")?;
        plan_content(
            &self.path,
            &state,
            &self.content,
            &self.attrs,
            self.validate.as_deref(),
            false,
        )
    }

    fn reads(&self) -> Footprint {
        Footprint::file_probe(&self.path)
    }

    fn writes(&self) -> Footprint {
        Footprint::path(&self.path)
    }
}

/// Plans making `path` (found as `state`) a regular file holding `wanted`
/// with `attrs`. Attributes not asked for are kept as they are on the host.
/// With `guard`, the upload first checks that the file is still what the
/// probe saw (for edits computed from the probed content: a stale plan fails
/// instead of losing someone else's change).
pub(crate) fn plan_content(
    path: &str,
    state: &PathState,
    wanted: &[u8],
    attrs: &Attrs,
    validate: Option<&str>,
    guard: bool,
) -> Result<Plan, ModuleError> {
    let subject = format!("file {path}");
    match state.kind.as_str() {
        "absent" | "file" => {}
        "link" => {
            return Err(ModuleError::Probe(format!(
                "{path} is a symbolic link (to {}); refusing to replace it with a file",
                state.target.as_deref().unwrap_or("?")
            )))
        }
        other => {
            return Err(ModuleError::Probe(format!(
                "{path} is a {other}, not a regular file"
            )))
        }
    }
    let wanted_sha = sha256_hex(wanted);
    if !state.exists() {
        let mut after = vec![format!("file, {} bytes", wanted.len())];
        after.extend(attrs.describe());
        let mut change =
            Change::new(ChangeKind::Create, &subject).states("absent", after.join(", "));
        if let Some(diff) = text_diff(path, Some(&b""[..]), wanted) {
            change = change.diff(diff);
        }
        let upload = upload(path, wanted, attrs, validate, guard.then_some(None))?;
        return Ok(Plan::none().with(change, [upload]));
    }
    let sha = state
        .sha256
        .as_deref()
        .ok_or_else(|| ModuleError::Probe(format!("no sha256 for {path}")))?;
    let (mut before, mut after) = attrs.drift(state);
    let content_differs = sha != wanted_sha;
    if !content_differs && before.is_empty() {
        return Ok(Plan::none());
    }
    if content_differs {
        before.insert(0, format!("content sha256 {}", &sha[..sha.len().min(12)]));
        after.insert(0, format!("content sha256 {}", &wanted_sha[..12]));
    }
    let mut change =
        Change::new(ChangeKind::Update, &subject).states(before.join(", "), after.join(", "));
    if !content_differs {
        let script = format!("set -e\n{}", attrs.apply_script(path, false, false));
        return Ok(Plan::none().with(change, [Action::run(script)]));
    }
    match text_diff(path, state.content.as_deref(), wanted) {
        Some(diff) => change = change.diff(diff),
        None => {
            change = change.diff(format!(
                "(binary or large file: {} bytes → {} bytes)\n",
                state.size,
                wanted.len()
            ))
        }
    }
    // Keep what the task does not set as it is on the host.
    let keep = Attrs {
        owner: attrs
            .owner
            .clone()
            .or_else(|| Some(state.owner.clone()).filter(|o| o != "UNKNOWN")),
        group: attrs
            .group
            .clone()
            .or_else(|| Some(state.group.clone()).filter(|g| g != "UNKNOWN")),
        mode: attrs.mode.clone().or_else(|| Some(state.mode.clone())),
    };
    let upload = upload(path, wanted, &keep, validate, guard.then_some(Some(sha)))?;
    Ok(Plan::none().with(change, [upload]))
}

/// An upload action; `guard` is `Some(expected)` to check the file's current
/// sha256 first (`Some(None)`: the file must still be absent).
fn upload(
    path: &str,
    content: &[u8],
    attrs: &Attrs,
    validate: Option<&str>,
    guard: Option<Option<&str>>,
) -> Result<Action, ModuleError> {
    let (owner, group, mode) = (
        attrs.owner.as_deref(),
        attrs.group.as_deref(),
        attrs.mode.as_deref(),
    );
    let mut action = match validate {
        None => Action::upload(path, content.to_vec(), owner, group, mode),
        Some(v) => Action {
            script: shell::atomic_write_validated_script(path, content, owner, group, mode, v)
                .map_err(|m| ModuleError::rejected(["validate"], m))?,
            stdin: Some(content.to_vec()),
            fresh_connection: false,
        },
    };
    if let Some(expected) = guard {
        let p = quote(path);
        let check = match expected {
            None => format!(
                "if [ -e {p} ]; then echo {} >&2; exit 1; fi\n",
                quote(&format!("{path} appeared since it was probed; run again"))
            ),
            Some(sha) => format!(
                "if [ \"$(sha256sum < {p} 2>/dev/null | cut -c1-64)\" != {} ]; then echo {} >&2; exit 1; fi\n",
                quote(sha),
                quote(&format!("{path} changed since it was probed; run again"))
            ),
        };
        action.script = check + &action.script;
    }
    Ok(action)
}

/// A unified diff when both sides are text and the old content is known.
pub(crate) fn text_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> Option<String> {
    let old = std::str::from_utf8(old?).ok()?;
    let new = std::str::from_utf8(new).ok()?;
    Some(probe::unified_diff(path, old, new))
}

/// Lowercase hex sha256, as `sha256sum` prints it.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{converge, probe_out};

    fn resource(path: &str, content: &str, mode: Option<&str>) -> ContentFile {
        let attrs = Attrs {
            mode: mode.map(str::to_string),
            ..Attrs::default()
        };
        ContentFile::new(path.into(), content.as_bytes().to_vec(), attrs, None).expect("valid")
    }

    #[test]
    fn absent_file_is_created_with_a_diff() {
        let plan = resource("/etc/x.conf", "a\n", Some("0640"))
            .plan(&probe_out("type=absent\n"))
            .expect("plan");
        assert_eq!(plan.changes.len(), 1);
        let c = &plan.changes[0];
        assert_eq!(
            (c.kind, c.subject.as_str()),
            (ChangeKind::Create, "file /etc/x.conf")
        );
        assert_eq!(c.after.as_deref(), Some("file, 2 bytes, mode 0640"));
        assert!(c.diff.as_deref().expect("diff").contains("+a"));
        assert_eq!(plan.actions.len(), 1);
        assert_eq!(plan.actions[0].stdin.as_deref(), Some(&b"a\n"[..]));
    }

    fn existing(content: &str, mode: &str) -> ProbeOutput {
        use base64::Engine as _;
        probe_out(&format!(
            "type=file\nowner=root\nuid=0\ngroup=root\ngid=0\nmode={mode}\nsize={}\nsha256={}\ncontent={}\n",
            content.len(),
            sha256_hex(content.as_bytes()),
            base64::engine::general_purpose::STANDARD.encode(content)
        ))
    }

    #[test]
    fn equal_file_needs_nothing_and_different_file_gets_a_diff() {
        let r = resource("/etc/x.conf", "a\nb\n", Some("0644"));
        assert!(r.plan(&existing("a\nb\n", "644")).expect("plan").is_empty());
        let plan = r.plan(&existing("a\nc\n", "600")).expect("plan");
        let c = &plan.changes[0];
        assert_eq!(c.kind, ChangeKind::Update);
        let diff = c.diff.as_deref().expect("diff");
        assert!(
            diff.contains("-c\n")
                && diff.contains("+b\n")
                && diff.contains("/etc/x.conf (on host)"),
            "{diff}"
        );
        assert!(c.before.as_deref().expect("before").contains("mode 0600"));
        // The file's owner is kept when the task does not set one (the
        // upload script's owner and group arguments).
        let script = &plan.actions[0].script;
        let set = script
            .lines()
            .find(|l| l.starts_with("set -- "))
            .expect("args");
        let args = shell_words::split(set).expect("words");
        assert_eq!(args[..3], ["set", "--", "/etc/x.conf"], "{set}");
        assert_eq!(args[6..8], ["root", "root"], "{set}");
    }

    #[test]
    fn only_mode_differs_means_chmod_only() {
        let plan = resource("/etc/x.conf", "a\n", Some("0600"))
            .plan(&existing("a\n", "644"))
            .expect("plan");
        assert_eq!(plan.actions.len(), 1);
        assert!(plan.actions[0].stdin.is_none());
        assert!(plan.actions[0].script.contains("chmod 0600 -- /etc/x.conf"));
    }

    #[test]
    fn directories_and_links_are_refused() {
        let r = resource("/etc/x", "a\n", None);
        let dir = probe_out(
            "type=directory\nowner=root\nuid=0\ngroup=root\ngid=0\nmode=755\nsize=4096\n",
        );
        assert!(r.plan(&dir).is_err());
    }

    #[test]
    fn converges_locally() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.conf");
        let path = path.to_str().expect("utf8");
        let plan = converge(&resource(path, "one\n", Some("0600")));
        assert_eq!(plan.changes[0].kind, ChangeKind::Create);
        assert_eq!(std::fs::read_to_string(path).expect("read"), "one\n");
        let plan = converge(&resource(path, "two\n", None));
        assert_eq!(plan.changes[0].kind, ChangeKind::Update);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(path).expect("meta").permissions().mode() & 0o7777,
            0o600
        );
        converge(&resource(path, "two\n", Some("0644")));
    }

    #[test]
    fn failed_validation_leaves_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.conf");
        std::fs::write(&path, "old\n").expect("write");
        let path = path.to_str().expect("utf8");
        let bad = ContentFile::new(
            path.into(),
            b"new\n".to_vec(),
            Attrs::default(),
            Some("grep -q good %s".into()),
        )
        .expect("valid");
        let plan = bad.plan(&crate::testing::probe_local(&bad)).expect("plan");
        assert!(!crate::testing::apply_local(&plan));
        assert_eq!(std::fs::read_to_string(path).expect("read"), "old\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temporary file left"
        );
        let good = ContentFile::new(
            path.into(),
            b"good\n".to_vec(),
            Attrs::default(),
            Some("grep -q good %s".into()),
        )
        .expect("valid");
        converge(&good);
        assert!(
            ContentFile::new(path.into(), vec![], Attrs::default(), Some("true".into())).is_err(),
            "validate needs %s"
        );
    }
}
