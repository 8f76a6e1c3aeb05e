//! The `blockinfile` module: a block of lines between two marker lines.
//!
//! The markers are `marker` with `{mark}` replaced by `marker_begin`
//! (default `BEGIN`) and `marker_end` (default `END`). An existing block is
//! replaced in place; a new one goes after the last line matching
//! `insertafter` (default `EOF`) or before the last line matching
//! `insertbefore` (`BOF` for the top). `state: absent` or an empty `block`
//! removes the block and its markers.

use serde::Deserialize;

use crate::params::{self, opt_bool, opt_mode};
use crate::probe::Attrs;
use crate::textedit::{insert_position, join_lines, split_lines, Anchor, Editor, TextEdit};
use crate::{Context, Module, ModuleError, ParamSpec, Resource};

/// The `blockinfile` module.
pub struct BlockInFile;

/// The default marker.
pub const DEFAULT_MARKER: &str = "# {mark} PGDEPLOY MANAGED BLOCK";

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    path: String,
    #[serde(default)]
    block: String,
    marker: Option<String>,
    marker_begin: Option<String>,
    marker_end: Option<String>,
    #[serde(default)]
    state: State,
    insertafter: Option<String>,
    insertbefore: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    create: Option<bool>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_mode")]
    mode: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum State {
    #[default]
    Present,
    Absent,
}

impl Module for BlockInFile {
    fn name(&self) -> &'static str {
        "blockinfile"
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
        if p.insertafter.is_some() && p.insertbefore.is_some() {
            return Err(ModuleError::rejected(
                ["insertafter", "insertbefore"],
                "give `insertafter` or `insertbefore`, not both".into(),
            ));
        }
        let marker = p.marker.unwrap_or_else(|| DEFAULT_MARKER.to_string());
        if !marker.contains("{mark}") || marker.contains('\n') {
            return Err(ModuleError::rejected(
                ["marker"],
                "`marker` must be one line containing {mark}".into(),
            ));
        }
        let begin = marker.replace("{mark}", p.marker_begin.as_deref().unwrap_or("BEGIN"));
        let end = marker.replace("{mark}", p.marker_end.as_deref().unwrap_or("END"));
        if begin == end {
            return Err(ModuleError::rejected(
                ["marker_begin", "marker_end"],
                "`marker_begin` and `marker_end` must differ".into(),
            ));
        }
        let block = if p.state == State::Absent {
            Vec::new()
        } else {
            split_lines(&p.block)
        };
        let editor = BlockEditor {
            begin,
            end,
            block,
            after: p
                .insertafter
                .as_deref()
                .map(|a| Anchor::parse("insertafter", a))
                .transpose()?,
            before: p
                .insertbefore
                .as_deref()
                .map(|b| Anchor::parse("insertbefore", b))
                .transpose()?,
        };
        let attrs = Attrs {
            owner: p.owner,
            group: p.group,
            mode: p.mode,
        };
        Ok(Box::new(TextEdit::new(
            p.path,
            attrs,
            p.create.unwrap_or(false),
            editor,
        )?))
    }
}

struct BlockEditor {
    begin: String,
    end: String,
    /// Empty: remove the block.
    block: Vec<String>,
    after: Option<Anchor>,
    before: Option<Anchor>,
}

impl Editor for BlockEditor {
    fn edit(&self, old: &str) -> String {
        let mut lines = split_lines(old);
        let begin = lines.iter().position(|l| l.trim_end() == self.begin);
        let end = begin.and_then(|b| {
            lines
                .iter()
                .skip(b + 1)
                .position(|l| l.trim_end() == self.end)
                .map(|e| b + 1 + e)
        });
        let at = match (begin, end) {
            (Some(b), Some(e)) => {
                lines.drain(b..=e);
                Some(b)
            }
            _ => None,
        };
        if !self.block.is_empty() {
            let at = at.unwrap_or_else(|| {
                insert_position(&lines, self.after.as_ref(), self.before.as_ref())
            });
            let mut new = Vec::with_capacity(self.block.len() + 2);
            new.push(self.begin.clone());
            new.extend(self.block.iter().cloned());
            new.push(self.end.clone());
            lines.splice(at..at, new);
        }
        join_lines(old, &lines)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, converge};
    use crate::ChangeKind;
    use serde_json::json;

    fn editor(params: serde_json::Value) -> Box<dyn crate::Resource> {
        build("blockinfile", params).expect("valid")
    }

    #[test]
    fn params_are_checked() {
        let err = build("blockinfile", json!({"path": "/f", "blokc": "a"}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `block`?"), "{err}");
        assert!(build("blockinfile", json!({"path": "/f", "marker": "# no mark"})).is_err());
        let _ = editor(json!({"path": "/f", "block": "a", "insertbefore": "BOF"}));
    }

    #[test]
    fn inserts_replaces_and_removes_locally() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n").expect("write");
        let p = path.to_str().expect("utf8");
        let plan =
            converge(editor(json!({"path": p, "block": "10.0.0.1 pg1\n10.0.0.2 pg2\n"})).as_ref());
        assert_eq!(plan.changes[0].kind, ChangeKind::Update);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1 localhost\n# BEGIN PGDEPLOY MANAGED BLOCK\n10.0.0.1 pg1\n10.0.0.2 pg2\n# END PGDEPLOY MANAGED BLOCK\n"
        );
        std::fs::write(
            &path,
            format!("{}tail\n", std::fs::read_to_string(&path).expect("read")),
        )
        .expect("write");
        let plan = converge(editor(json!({"path": p, "block": "10.0.0.3 pg3"})).as_ref());
        assert!(plan.changes[0]
            .diff
            .as_deref()
            .expect("diff")
            .contains("+10.0.0.3 pg3"));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1 localhost\n# BEGIN PGDEPLOY MANAGED BLOCK\n10.0.0.3 pg3\n# END PGDEPLOY MANAGED BLOCK\ntail\n"
        );
        converge(editor(json!({"path": p, "state": "absent"})).as_ref());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1 localhost\ntail\n"
        );
        converge(
            editor(
                json!({"path": p, "block": "top", "insertbefore": "BOF", "marker": "; {mark} x"}),
            )
            .as_ref(),
        );
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .starts_with("; BEGIN x\ntop\n; END x\n127.0.0.1"));
    }
}
