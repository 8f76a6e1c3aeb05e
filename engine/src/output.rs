//! Live progress: one indicatif line per host on a terminal, plain lines in
//! logs, nothing for `--output json`. Secrets are masked in all of it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{task_label, HostReport, Masker, TaskResult, TaskStatus};
use crate::run::Observer;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// indicatif bars (a terminal).
    Bars,
    /// One line per event (CI logs).
    Lines,
    /// Nothing (JSON output).
    Silent,
}

/// The observer behind the command line.
pub struct Progress {
    style: Style,
    verbose: bool,
    masker: Masker,
    multi: MultiProgress,
    /// Every host's bar, kept until the display is dropped.
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    /// A progress display on standard error.
    pub fn new(style: Style, verbose: bool, masker: Masker) -> Self {
        Self::with_draw_target(style, verbose, masker, ProgressDrawTarget::stderr())
    }

    fn with_draw_target(
        style: Style,
        verbose: bool,
        masker: Masker,
        target: ProgressDrawTarget,
    ) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        Self {
            style,
            verbose,
            masker,
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: &str) {
        let text = self.masker.mask(text);
        match self.style {
            Style::Bars => {
                let _ = self.multi.println(text);
            }
            Style::Lines => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
            Style::Silent => {}
        }
    }
}

impl Observer for Progress {
    fn host_started(&self, host: &str, total: usize) {
        if self.style != Style::Bars {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(total as u64));
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:24}] {pos:>3}/{len:3} {elapsed:>4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(host.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(host.to_string(), bar);
        }
    }

    fn task_started(&self, host: &str, index: usize, name: &str) {
        if let Some(bar) = self.bars.lock().ok().and_then(|b| b.get(host).cloned()) {
            bar.set_position(index as u64);
            bar.set_message(self.masker.mask(name));
        }
    }

    fn task_progress(&self, host: &str, task: &str, message: &str) {
        let bar = self.bars.lock().ok().and_then(|b| b.get(host).cloned());
        match bar {
            Some(bar) => bar.set_message(self.masker.mask(&format!("{task}: {message}"))),
            None => self.line(&format!("{host} | running | {task}: {message}")),
        }
    }

    fn task_finished(&self, result: &TaskResult) {
        let show = match result.status {
            TaskStatus::Changed | TaskStatus::Failed | TaskStatus::KnownAfterApply => true,
            TaskStatus::Ok | TaskStatus::Skipped => self.verbose,
        };
        if show {
            let status = match result.status {
                TaskStatus::Ok => "ok",
                TaskStatus::Changed => "changed",
                TaskStatus::Failed => "FAILED",
                TaskStatus::Skipped => "skipped",
                TaskStatus::KnownAfterApply => "known after apply",
            };
            let mut text = format!("{} | {status} | {}", result.host, task_label(result));
            if matches!(
                result.status,
                TaskStatus::Failed | TaskStatus::KnownAfterApply
            ) || self.verbose
            {
                if let Some(message) = &result.message {
                    text.push_str(&format!(": {message}"));
                }
            }
            self.line(&text);
        }
    }

    fn host_finished(&self, host: &HostReport) {
        // The bar stays in the map: indicatif wipes the lines of dropped
        // bars at the next `println`, so a finished host would lose its line.
        if let Some(bar) = self
            .bars
            .lock()
            .ok()
            .and_then(|b| b.get(&host.host).cloned())
        {
            let r = host.recap();
            let message = match (&host.unreachable, r.failed) {
                (Some(reason), _) => format!("unreachable: {reason}"),
                (None, 0) => format!("done: {} changed", r.changed),
                (None, n) => format!("{n} failed"),
            };
            bar.finish_with_message(self.masker.mask(&message));
        } else if self.style == Style::Lines {
            if let Some(reason) = &host.unreachable {
                self.line(&format!("{} | UNREACHABLE | {reason}", host.host));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use indicatif::InMemoryTerm;

    use super::*;
    use crate::inventory::Inventory;

    fn result(host: &str, task: &str, status: TaskStatus, message: Option<&str>) -> TaskResult {
        TaskResult {
            host: host.into(),
            task: task.into(),
            role: Some("common".into()),
            handler: false,
            status,
            changes: Vec::new(),
            message: message.map(str::to_string),
            depends_on: None,
            duration: Duration::ZERO,
            started: Duration::ZERO,
            waited: Duration::ZERO,
        }
    }

    /// Bars drawn on an in-memory terminal of 8 rows by 120 columns, with
    /// `Hunter2-secret` as a secret.
    fn bars() -> (Progress, InMemoryTerm) {
        let inventory = Inventory::parse("all:\n  hosts:\n    node1: {}\n", Path::new("inv.yaml"))
            .expect("inventory");
        let mut extra = serde_json::Map::new();
        extra.insert(
            "postgres_superuser_password".into(),
            "Hunter2-secret".into(),
        );
        let term = InMemoryTerm::new(8, 120);
        let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
        let progress =
            Progress::with_draw_target(Style::Bars, false, Masker::new(&inventory, &extra), target);
        (progress, term)
    }

    /// The screen's non-empty lines, trailing blanks trimmed.
    fn screen(term: &InMemoryTerm) -> Vec<String> {
        term.contents()
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    #[test]
    fn a_terminal_shows_one_line_per_host_with_tasks_done_and_the_current_task() {
        let (progress, term) = bars();
        progress.host_started("node1", 10);
        progress.host_started("node2", 4);
        progress.task_started("node1", 3, "common / base packages");
        progress.task_started("node2", 1, "common / hostname");
        let lines = screen(&term);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        let node1 = &lines[0];
        assert!(node1.trim_start().starts_with("node1 ["), "{node1}");
        assert!(node1.contains("  3/10 "), "{node1}");
        assert!(node1.ends_with("common / base packages"), "{node1}");
        let node2 = &lines[1];
        assert!(node2.trim_start().starts_with("node2 ["), "{node2}");
        assert!(node2.contains("  1/4 "), "{node2}");
        assert!(node2.ends_with("common / hostname"), "{node2}");

        // A long-running task reports progress on its host's line.
        progress.task_progress(
            "node1",
            "common / base packages",
            "waiting for the apt lock (12 s)",
        );
        let node1 = &screen(&term)[0];
        assert!(
            node1.ends_with("common / base packages: waiting for the apt lock (12 s)"),
            "{node1}"
        );
    }

    #[test]
    fn changes_print_above_the_bars_and_each_host_ends_with_its_outcome() {
        let (progress, term) = bars();
        progress.host_started("node1", 2);
        progress.host_started("node2", 2);
        progress.task_finished(&result("node1", "motd", TaskStatus::Changed, None));
        progress.task_finished(&result("node2", "motd", TaskStatus::Ok, None));
        let lines = screen(&term);
        assert_eq!(lines[0], "node1 | changed | common / motd", "{lines:#?}");
        assert_eq!(
            lines.len(),
            3,
            "an unchanged task prints no line: {lines:#?}"
        );

        let mut node1 = HostReport::new("node1");
        node1.results = vec![result("node1", "motd", TaskStatus::Changed, None)];
        progress.host_finished(&node1);
        let mut node2 = HostReport::new("node2");
        node2.unreachable = Some("connection refused".into());
        progress.host_finished(&node2);
        let lines = screen(&term);
        assert!(lines[1].trim_start().starts_with("node1 ["), "{lines:#?}");
        assert!(lines[1].ends_with("done: 1 changed"), "{lines:#?}");
        assert!(
            lines[2].ends_with("unreachable: connection refused"),
            "{lines:#?}"
        );
    }

    /// A host that finishes first keeps its final line when another host
    /// later prints a change above the bars (CI once lost node6's line this
    /// way: indicatif wipes the lines of bars that were dropped).
    #[test]
    fn a_finished_host_keeps_its_line_when_another_prints_later() {
        let (progress, term) = bars();
        progress.host_started("node1", 2);
        progress.host_started("node2", 2);
        progress.host_started("node3", 2);
        progress.host_finished(&HostReport::new("node1"));
        progress.host_finished(&HostReport::new("node3"));
        progress.task_finished(&result("node2", "motd", TaskStatus::Changed, None));
        let mut node2 = HostReport::new("node2");
        node2.results = vec![result("node2", "motd", TaskStatus::Changed, None)];
        progress.host_finished(&node2);
        let lines = screen(&term);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert_eq!(lines[0], "node2 | changed | common / motd", "{lines:#?}");
        for (line, (host, outcome)) in lines[1..].iter().zip([
            ("node1", "done: 0 changed"),
            ("node2", "done: 1 changed"),
            ("node3", "done: 0 changed"),
        ]) {
            assert!(
                line.trim_start().starts_with(&format!("{host} [")),
                "{lines:#?}"
            );
            assert!(line.ends_with(outcome), "{lines:#?}");
        }
    }

    #[test]
    fn secrets_never_reach_the_terminal() {
        let (progress, term) = bars();
        progress.host_started("node1", 3);
        progress.task_started("node1", 0, "set password Hunter2-secret");
        assert!(
            screen(&term)[0].ends_with("set password ***"),
            "{:?}",
            screen(&term)
        );
        progress.task_progress(
            "node1",
            "t",
            "psql -c 'alter role x password Hunter2-secret'",
        );
        progress.task_finished(&result(
            "node1",
            "t",
            TaskStatus::Failed,
            Some("exit 1: Hunter2-secret rejected"),
        ));
        let contents = term.contents();
        assert!(!contents.contains("Hunter2"), "{contents}");
        assert!(
            contents.contains("node1 | FAILED | common / t: exit 1: *** rejected"),
            "{contents}"
        );
    }
}
