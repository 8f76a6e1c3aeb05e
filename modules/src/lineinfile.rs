//! The `lineinfile` module: one line present in (or absent from) a file.
//!
//! Like Ansible's: with `regexp`, the last matching line is replaced by
//! `line`; if nothing matches and `line` is not already there, it is inserted
//! after the last line matching `insertafter` (default `EOF`) or before the
//! last line matching `insertbefore` (`BOF` for the top). With
//! `state: absent`, every line matching `regexp` (or equal to `line`) is
//! removed. Regular expressions use Rust's `regex` syntax and are matched
//! against each line without its line end.

use regex::Regex;
use serde::Deserialize;

use crate::params::{self, opt_bool, opt_mode, opt_scalar_string};
use crate::probe::Attrs;
use crate::textedit::{
    compile, insert_position, join_lines, split_lines, Anchor, Editor, TextEdit,
};
use crate::{Context, Module, ModuleError, ParamSpec, Resource};

/// The `lineinfile` module.
pub struct LineInFile;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    path: String,
    #[serde(default, deserialize_with = "opt_scalar_string")]
    line: Option<String>,
    regexp: Option<String>,
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

impl Module for LineInFile {
    fn name(&self) -> &'static str {
        "lineinfile"
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
        let regexp = p
            .regexp
            .as_deref()
            .map(|r| compile("regexp", r))
            .transpose()?;
        if let Some(line) = &p.line {
            if line.contains('\n') {
                return Err(ModuleError::rejected(
                    ["line"],
                    "`line` must be a single line (use blockinfile for several)".into(),
                ));
            }
        }
        if p.insertafter.is_some() && p.insertbefore.is_some() {
            return Err(ModuleError::rejected(
                ["insertafter", "insertbefore"],
                "give `insertafter` or `insertbefore`, not both".into(),
            ));
        }
        match p.state {
            State::Present if p.line.is_none() => {
                return Err(ModuleError::rejected(
                    ["line", "state"],
                    "`line` is required with state: present".into(),
                ))
            }
            State::Absent if p.line.is_none() && regexp.is_none() => {
                return Err(ModuleError::rejected(
                    ["state", "regexp", "line"],
                    "state: absent needs `regexp` or `line`".into(),
                ))
            }
            _ => {}
        }
        let editor = LineEditor {
            line: p.line.unwrap_or_default(),
            regexp,
            absent: p.state == State::Absent,
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

struct LineEditor {
    line: String,
    regexp: Option<Regex>,
    absent: bool,
    after: Option<Anchor>,
    before: Option<Anchor>,
}

impl Editor for LineEditor {
    fn edit(&self, old: &str) -> String {
        let mut lines = split_lines(old);
        if self.absent {
            lines.retain(|l| match &self.regexp {
                Some(re) => !re.is_match(l),
                None => *l != self.line,
            });
            return join_lines(old, &lines);
        }
        if let Some(re) = &self.regexp {
            if let Some(i) = lines.iter().rposition(|l| re.is_match(l)) {
                lines[i] = self.line.clone();
                return join_lines(old, &lines);
            }
        }
        if lines.contains(&self.line) {
            return old.to_string();
        }
        let at = insert_position(&lines, self.after.as_ref(), self.before.as_ref());
        lines.insert(at, self.line.clone());
        join_lines(old, &lines)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, converge, probe_out};
    use crate::ChangeKind;
    use serde_json::json;

    fn edit(params: serde_json::Value, old: &str) -> String {
        use base64::Engine as _;
        let r = build("lineinfile", params).expect("valid");
        let probe = format!(
            "type=file\nowner=root\nuid=0\ngroup=root\ngid=0\nmode=644\nsize={}\nsha256={}\ncontent={}\n",
            old.len(),
            crate::content::sha256_hex(old.as_bytes()),
            base64::engine::general_purpose::STANDARD.encode(old)
        );
        let plan = r.plan(&probe_out(&probe)).expect("plan");
        match plan.actions.first() {
            None => old.to_string(),
            Some(a) => String::from_utf8(a.stdin.clone().expect("upload")).expect("utf8"),
        }
    }

    #[test]
    fn replaces_the_last_match_or_appends() {
        let p = json!({"path": "/f", "regexp": "^port\\s*=", "line": "port = 5432"});
        assert_eq!(
            edit(p.clone(), "a\nport = 1\nport = 2\n"),
            "a\nport = 1\nport = 5432\n"
        );
        assert_eq!(edit(p.clone(), "a\n"), "a\nport = 5432\n");
        assert_eq!(edit(p.clone(), "a"), "a\nport = 5432\n");
        assert_eq!(edit(p, "port = 5432\n"), "port = 5432\n");
    }

    #[test]
    fn inserts_after_and_before_anchors() {
        let after = json!({"path": "/f", "line": "x", "insertafter": "^b"});
        assert_eq!(edit(after, "a\nb\nc\n"), "a\nb\nx\nc\n");
        let before = json!({"path": "/f", "line": "x", "insertbefore": "BOF"});
        assert_eq!(edit(before, "a\n"), "x\na\n");
        let existing = json!({"path": "/f", "line": "b", "insertbefore": "BOF"});
        assert_eq!(edit(existing, "a\nb\n"), "a\nb\n");
    }

    #[test]
    fn absent_removes_matches() {
        assert_eq!(
            edit(
                json!({"path": "/f", "regexp": "^#", "state": "absent"}),
                "#a\nb\n#c\n"
            ),
            "b\n"
        );
        assert_eq!(
            edit(
                json!({"path": "/f", "line": "b", "state": "absent"}),
                "a\nb\n"
            ),
            "a\n"
        );
    }

    #[test]
    fn missing_file_needs_create() {
        let r = build("lineinfile", json!({"path": "/nope", "line": "x"})).expect("valid");
        let err = r.plan(&probe_out("type=absent\n")).expect_err("no create");
        assert!(err.to_string().contains("create: true"));
        let r = build(
            "lineinfile",
            json!({"path": "/nope", "line": "x", "state": "absent"}),
        )
        .expect("valid");
        assert!(r
            .plan(&probe_out("type=absent\n"))
            .expect("plan")
            .is_empty());
    }

    #[test]
    fn bad_params() {
        let err = build("lineinfile", json!({"path": "/f", "lines": "x"}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `line`?"), "{err}");
        assert!(build("lineinfile", json!({"path": "/f", "regexp": "("})).is_err());
        assert!(build("lineinfile", json!({"path": "/f"})).is_err());
    }

    #[test]
    fn converges_locally_and_keeps_owner_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pg_hba.conf");
        std::fs::write(&path, "local all all peer\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let p = path.to_str().expect("utf8");
        let r = build("lineinfile", json!({"path": p, "line": "host all all 10.0.0.0/8 scram-sha-256", "insertafter": "^local"})).expect("valid");
        let plan = converge(r.as_ref());
        assert_eq!(plan.changes[0].kind, ChangeKind::Update);
        assert!(plan.changes[0]
            .diff
            .as_deref()
            .expect("diff")
            .contains("+host all all 10.0.0.0/8"));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o7777,
            0o640
        );
        let new = dir.path().join("new.conf");
        let r = build("lineinfile", json!({"path": new.to_str().expect("utf8"), "line": "x=1", "create": true, "mode": "0600"})).expect("valid");
        assert_eq!(converge(r.as_ref()).changes[0].kind, ChangeKind::Create);
        assert_eq!(std::fs::read_to_string(&new).expect("read"), "x=1\n");
    }

    #[test]
    fn stale_plan_fails_instead_of_losing_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "a\n").expect("write");
        let r = build(
            "lineinfile",
            json!({"path": path.to_str().expect("utf8"), "line": "b"}),
        )
        .expect("valid");
        let plan = r
            .plan(&crate::testing::probe_local(r.as_ref()))
            .expect("plan");
        std::fs::write(&path, "a\nsomeone else\n").expect("write");
        assert!(!crate::testing::apply_local(&plan));
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "a\nsomeone else\n"
        );
    }
}
