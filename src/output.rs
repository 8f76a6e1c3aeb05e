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
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    /// A progress display.
    pub fn new(style: Style, verbose: bool, masker: Masker) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
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
            TaskStatus::Changed | TaskStatus::Failed => true,
            TaskStatus::Ok | TaskStatus::Skipped => self.verbose,
        };
        if show {
            let status = match result.status {
                TaskStatus::Ok => "ok",
                TaskStatus::Changed => "changed",
                TaskStatus::Failed => "FAILED",
                TaskStatus::Skipped => "skipped",
            };
            let mut text = format!("{} | {status} | {}", result.host, task_label(result));
            if result.status == TaskStatus::Failed || self.verbose {
                if let Some(message) = &result.message {
                    text.push_str(&format!(": {message}"));
                }
            }
            self.line(&text);
        }
    }

    fn host_finished(&self, host: &HostReport) {
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(&host.host)) {
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
