//! The explicit interface between a run and the system its playbook
//! builds: what a product (the PostgreSQL stack, for one) wants to show in
//! `plan` beyond the tasks, and to do after an `apply` succeeded, on the
//! live system (membership, rolling restarts). The engine calls it and
//! knows nothing of what it does.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, as trait objects need.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failure of the live system's step, as the product describes it.
pub type LiveError = Box<dyn std::error::Error + Send + Sync>;

/// Prints one step of the live work (a line, the caller adds the time).
pub type Tell<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// One section `plan` prints after the tasks.
#[derive(Debug)]
pub struct LiveSection {
    /// Its heading, e.g. "PostgreSQL parameters (live cluster)".
    pub title: String,
    /// What it compares, for the line that says it could not be compared.
    pub subject: String,
    /// One line per pending change; an error when the live system could
    /// not be compared (before the first deploy there is nothing to ask).
    pub lines: Result<Vec<String>, String>,
}

impl LiveSection {
    /// Whether the section holds pending changes.
    pub fn pending(&self) -> bool {
        self.lines.as_ref().is_ok_and(|l| !l.is_empty())
    }

    /// The section as `plan` prints it: the title and indented lines,
    /// nothing when nothing is pending, or why it was not compared.
    pub fn text(&self) -> String {
        match &self.lines {
            Ok(lines) if !lines.is_empty() => {
                let mut out = format!("{}:\n", self.title);
                for line in lines {
                    out.push_str(&format!("  {line}\n"));
                }
                out
            }
            Ok(_) => String::new(),
            Err(e) => format!("{}: not compared ({e})\n", self.subject),
        }
    }
}

/// The live system behind a playbook run.
pub trait LiveSystem: Send + Sync {
    /// The sections `plan` prints after the tasks.
    fn plan(&self) -> BoxFuture<'_, Vec<LiveSection>>;
    /// What `apply` does after every task succeeded.
    fn converge<'a>(&'a self, tell: Tell<'a>) -> BoxFuture<'a, Result<(), LiveError>>;
    /// Closes its connections.
    fn close(&self) -> BoxFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_print_pending_lines_or_why_not_compared() {
        let section = |lines| LiveSection {
            title: "T (live)".into(),
            subject: "T".into(),
            lines,
        };
        assert_eq!(section(Ok(vec![])).text(), "");
        assert!(!section(Ok(vec![])).pending());
        let s = section(Ok(vec!["~ a".into()]));
        assert!(s.pending());
        assert_eq!(s.text(), "T (live):\n  ~ a\n");
        let s = section(Err("no leader".into()));
        assert!(!s.pending());
        assert_eq!(s.text(), "T: not compared (no leader)\n");
    }
}
