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

/// The one "did you mean" of pgdeploy (see [`pgdeploy_text::did_you_mean`]).
pub use pgdeploy_text::{did_you_mean, suggestion};

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
