//! Errors in what the user gave us: they name the file, line and column, and
//! mean exit code 2 with nothing applied.

use std::fmt;

use crate::yaml::Pos;

/// A problem in an input file (inventory, playbook, role, template) or on
/// the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error at `pos`.
    pub fn at(pos: &Pos, message: impl Into<String>) -> Self {
        Self {
            pos: pos.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

impl std::error::Error for InputError {}

/// Several input errors, reported together so a user fixes them in one go.
#[derive(Debug, Clone, Default)]
pub struct InputErrors(pub Vec<InputError>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputErrors {}

impl InputErrors {
    /// The same errors with repeats (one per host of the same task) dropped,
    /// first occurrence kept.
    pub fn deduped(self) -> Self {
        let mut unique: Vec<InputError> = Vec::new();
        for e in self.0 {
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        Self(unique)
    }
}

impl From<InputError> for InputErrors {
    fn from(e: InputError) -> Self {
        Self(vec![e])
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a
/// likely misspelling ("did you mean").
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A " (did you mean `x`?)" suffix, or nothing.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("pakage", ["package", "service"]),
            Some("package")
        );
        assert_eq!(did_you_mean("zzzzzz", ["package", "service"]), None);
    }
}
