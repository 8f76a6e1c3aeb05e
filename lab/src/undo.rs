//! An undo stack: each step that makes something pushes how to take it
//! away; a failure part way runs them in reverse.

use anyhow::Result;

type Step = Box<dyn FnOnce() -> Result<()> + Send>;

/// Undo actions, run last-in first-out by [`Undo::rollback`].
#[derive(Default)]
pub struct Undo {
    steps: Vec<(String, Step)>,
}

impl Undo {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records how to undo something just made.
    pub fn push(
        &mut self,
        what: impl Into<String>,
        f: impl FnOnce() -> Result<()> + Send + 'static,
    ) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// How many steps are recorded.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no step is recorded.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Forgets every step (what was made stays).
    pub fn commit(&mut self) {
        self.steps.clear();
    }

    /// Runs every step, newest first, going on past failures; returns the
    /// failures as messages.
    pub fn rollback(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some((what, f)) = self.steps.pop() {
            eprintln!("lab: undo: {what}");
            if let Err(e) = f() {
                failures.push(format!("{what}: {e:#}"));
            }
        }
        failures
    }
}

/// Fails with an injected error when `PGDEPLOY_LAB_FAIL_AFTER` names `step`
/// (used by tests to prove that a failure part way cleans up).
pub fn fail_point(step: &str) -> Result<()> {
    if std::env::var("PGDEPLOY_LAB_FAIL_AFTER").is_ok_and(|v| v == step) {
        anyhow::bail!("injected failure after step `{step}` (PGDEPLOY_LAB_FAIL_AFTER)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn rollback_runs_in_reverse_past_failures() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut u = Undo::new();
        for i in 0..3 {
            let l = log.clone();
            u.push(format!("step {i}"), move || {
                l.lock().unwrap().push(i);
                if i == 1 {
                    anyhow::bail!("boom");
                }
                Ok(())
            });
        }
        assert_eq!(u.len(), 3);
        let f = u.rollback();
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
        assert_eq!(f, vec!["step 1: boom".to_string()]);
        assert!(u.is_empty());
    }

    #[test]
    fn commit_forgets() {
        let mut u = Undo::new();
        u.push("x", || anyhow::bail!("must not run"));
        u.commit();
        assert!(u.rollback().is_empty());
    }

    #[test]
    fn fail_point_off_by_default() {
        assert!(fail_point("no-such-step-xyz").is_ok());
    }
}
