//! Editing part of a file's text (`lineinfile`, `blockinfile`, `sysctl`): the
//! probe fetches the whole file, the edit is computed in Rust, and the new
//! content is uploaded atomically, keeping the file's owner, group and mode
//! unless the task sets them. The upload checks that the file is still the
//! one that was probed, so a stale plan fails instead of losing a change.

use regex::Regex;

use crate::content::plan_content;
use crate::probe::{self, Attrs, Kv, PathState};
use crate::{Footprint, ModuleError, Plan, ProbeOutput, Resource};

/// Computes a file's new text from its current text (`""` when it does not
/// exist yet).
pub(crate) trait Editor: Send + Sync {
    /// The wanted text.
    fn edit(&self, old: &str) -> String;
}

/// A file edited by an [`Editor`].
pub(crate) struct TextEdit<E> {
    pub path: String,
    pub attrs: Attrs,
    /// Whether a missing file may be created.
    pub create: bool,
    pub editor: E,
}

impl<E: Editor> TextEdit<E> {
    /// Checks `path` and builds the resource.
    pub(crate) fn new(
        path: String,
        attrs: Attrs,
        create: bool,
        editor: E,
    ) -> Result<Self, ModuleError> {
        if !path.starts_with('/') {
            return Err(ModuleError::rejected(
                ["path"],
                format!("path {path:?} must be an absolute path"),
            ));
        }
        Ok(Self {
            path,
            attrs,
            create,
            editor,
        })
    }

    /// The plan for the file found as `state` (shared with modules that
    /// probe more than the file).
    pub(crate) fn plan_state(&self, state: &PathState) -> Result<Plan, ModuleError> {
        if !state.exists() {
            let wanted = self.editor.edit("");
            if wanted.is_empty() {
                return Ok(Plan::none());
            }
            if !self.create {
                return Err(ModuleError::rejected(
                    ["path", "create"],
                    format!(
                        "{} does not exist (set `create: true` to create it)",
                        self.path
                    ),
                ));
            }
            return plan_content(
                &self.path,
                state,
                wanted.as_bytes(),
                &self.attrs,
                None,
                true,
            );
        }
        if state.kind != "file" {
            // plan_content explains what is wrong.
            return plan_content(&self.path, state, b"", &self.attrs, None, true);
        }
        let old = state.content.as_deref().ok_or_else(|| {
            ModuleError::Probe(format!(
                "{} is too large to edit ({} bytes)",
                self.path, state.size
            ))
        })?;
        let old = std::str::from_utf8(old)
            .map_err(|_| ModuleError::Probe(format!("{} is not UTF-8 text", self.path)))?;
        let wanted = self.editor.edit(old);
        plan_content(
            &self.path,
            state,
            wanted.as_bytes(),
            &self.attrs,
            None,
            true,
        )
    }
}

impl<E: Editor> Resource for TextEdit<E> {
    fn probe(&self) -> String {
        probe::wrap(&probe::path_snippet(&self.path, "", probe::EDIT_LIMIT))
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        self.plan_state(&PathState::from_kv(&Kv::parse(out), "")?)
    }

    fn reads(&self) -> Footprint {
        Footprint::file_probe(&self.path)
    }

    fn writes(&self) -> Footprint {
        Footprint::path(&self.path)
    }
}

/// Splits text into lines without their `\n` (a `\r` stays, so CRLF files
/// keep their line ends).
pub(crate) fn split_lines(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n').map(str::to_string).collect()
}

/// The new text for `lines`: `old` itself when the lines did not change,
/// otherwise every line ended by `\n`.
pub(crate) fn join_lines(old: &str, lines: &[String]) -> String {
    if split_lines(old) == lines {
        return old.to_string();
    }
    let mut out = String::new();
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Where to insert: `EOF`, `BOF` or after/before the last line matching a
/// regular expression.
#[derive(Debug, Clone)]
pub(crate) enum Anchor {
    Eof,
    Bof,
    Regex(Regex),
}

impl Anchor {
    /// Parses `EOF`, `BOF` or a regular expression (param `what`).
    pub(crate) fn parse(what: &str, text: &str) -> Result<Self, ModuleError> {
        Ok(match text {
            "EOF" => Anchor::Eof,
            "BOF" => Anchor::Bof,
            re => Anchor::Regex(compile(what, re)?),
        })
    }
}

/// Compiles a parameter's regular expression with a useful error.
pub(crate) fn compile(what: &str, re: &str) -> Result<Regex, ModuleError> {
    Regex::new(re).map_err(|e| {
        ModuleError::rejected(
            [what],
            format!("parameter `{what}` is not a valid regular expression: {e}"),
        )
    })
}

/// The index at which new lines go: after the last line matching
/// `insertafter`, before the last line matching `insertbefore`, or at the end
/// (also when the expression matches nothing).
pub(crate) fn insert_position(
    lines: &[String],
    after: Option<&Anchor>,
    before: Option<&Anchor>,
) -> usize {
    let last = |re: &Regex| lines.iter().rposition(|l| re.is_match(l));
    match (after, before) {
        (_, Some(Anchor::Bof)) => 0,
        (_, Some(Anchor::Regex(re))) => last(re).unwrap_or(lines.len()),
        (Some(Anchor::Regex(re)), _) => last(re).map_or(lines.len(), |i| i + 1),
        (Some(Anchor::Bof), _) => 0,
        _ => lines.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_keep_unchanged_text() {
        assert_eq!(split_lines("a\nb\n"), vec!["a", "b"]);
        assert_eq!(split_lines("a\nb"), vec!["a", "b"]);
        assert!(split_lines("").is_empty());
        assert_eq!(join_lines("a\nb", &split_lines("a\nb")), "a\nb");
        assert_eq!(
            join_lines("a\nb", &["a".into(), "b".into(), "c".into()]),
            "a\nb\nc\n"
        );
    }

    #[test]
    fn insert_positions() {
        let lines: Vec<String> = ["a", "x1", "b", "x2", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let x = Anchor::Regex(Regex::new("^x").expect("re"));
        assert_eq!(insert_position(&lines, None, None), 5);
        assert_eq!(insert_position(&lines, Some(&x), None), 4);
        assert_eq!(insert_position(&lines, None, Some(&x)), 3);
        assert_eq!(insert_position(&lines, None, Some(&Anchor::Bof)), 0);
        let none = Anchor::Regex(Regex::new("^zzz").expect("re"));
        assert_eq!(insert_position(&lines, Some(&none), None), 5);
    }
}
