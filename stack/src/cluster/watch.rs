//! `pgdeploy status --watch`: the status table refreshed in place every few
//! seconds over the same SSH connections (each request opens a tunnel
//! channel on the kept connection; nothing reconnects unless a host was
//! lost). A host that stops answering is shown as unreachable and probed
//! again on every refresh until it answers.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::status::{self, format_utc, Limits, Status};
use super::Cluster;

/// Where the frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// A terminal: each frame moves the cursor home and clears the screen
    /// first, so it replaces the previous one (like watch(1)).
    Terminal,
    /// A pipe or file: frames follow each other, separated by a blank line.
    Plain,
    /// One JSON document (the `--output json` status) per line.
    JsonLines,
}

/// When and how often to refresh.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Time from the start of one refresh to the start of the next (longer
    /// when a refresh itself takes longer).
    pub interval: Duration,
    /// Stop after this many refreshes (none: until Ctrl-C).
    pub count: Option<u64>,
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// Ctrl-C.
    Interrupted,
    /// `count` refreshes were shown; whether the last was healthy.
    Done {
        /// The last refresh found the cluster healthy.
        healthy: bool,
    },
}

/// Terminal control: cursor to the top left, clear the screen.
const HOME_AND_CLEAR: &str = "\x1b[H\x1b[2J";

/// One refresh as text: a header line with the refresh's time (UTC), its
/// number and duration, then the status table of `status render`.
pub fn frame(
    status: &Status,
    refreshed_at: SystemTime,
    took: Duration,
    number: u64,
    schedule: Schedule,
    screen: Screen,
) -> String {
    if screen == Screen::JsonLines {
        return format!("{}\n", serde_json::to_string(status).unwrap_or_default());
    }
    let unix = refreshed_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let of = schedule
        .count
        .map(|c| format!(" of {c}"))
        .unwrap_or_default();
    let header = format!(
        "refreshed {} (#{number}{of}, took {:.1}s, every {}s; Ctrl-C to stop)",
        format_utc(unix),
        took.as_secs_f64(),
        schedule.interval.as_secs_f64()
    );
    let body = status::render(status);
    match screen {
        Screen::Terminal => format!("{HOME_AND_CLEAR}{header}\n{body}"),
        _ if number > 1 => format!("\n{header}\n{body}"),
        _ => format!("{header}\n{body}"),
    }
}

/// Refreshes the status into `out` until `schedule.count` refreshes were
/// shown or Ctrl-C; a Ctrl-C in the middle of a refresh abandons it.
pub async fn run(
    cluster: &Cluster,
    limits: Limits,
    schedule: Schedule,
    screen: Screen,
    out: &mut dyn Write,
) -> std::io::Result<WatchEnd> {
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut number = 0;
    loop {
        number += 1;
        let started = Instant::now();
        let status = tokio::select! {
            s = status::collect(cluster, limits) => s,
            _ = &mut interrupt => return Ok(WatchEnd::Interrupted),
        };
        let text = frame(
            &status,
            SystemTime::now(),
            started.elapsed(),
            number,
            schedule,
            screen,
        );
        out.write_all(text.as_bytes())?;
        out.flush()?;
        if schedule.count.is_some_and(|c| number >= c) {
            return Ok(WatchEnd::Done {
                healthy: status.healthy,
            });
        }
        let pause = schedule.interval.saturating_sub(started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut interrupt => return Ok(WatchEnd::Interrupted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::status::MemberStatus;

    fn sample(leader: &str, down: Option<&str>) -> Status {
        let member = |name: &str| MemberStatus {
            name: name.into(),
            host: format!("10.0.0.{}", &name[4..]),
            role: if name == leader { "leader" } else { "replica" }.into(),
            state: "running".into(),
            timeline: Some(2),
            lag_mb: (name != leader).then_some(0.0),
            streaming: name != leader,
            pending_restart: false,
        };
        let mut unreachable = std::collections::BTreeMap::new();
        if let Some(d) = down {
            unreachable.insert(d.to_string(), "connection refused".to_string());
        }
        Status {
            cluster: "lab".into(),
            healthy: down.is_none(),
            problems: down
                .map(|d| vec![format!("{d} is unreachable")])
                .unwrap_or_default(),
            unreachable,
            leader: Some(leader.into()),
            members: ["node1", "node2"].into_iter().map(member).collect(),
            etcd: Vec::new(),
            haproxy: Vec::new(),
            vip: None,
            vip_holders: Vec::new(),
            backup: None,
            archiver: None,
        }
    }

    const SCHEDULE: Schedule = Schedule {
        interval: Duration::from_secs(2),
        count: Some(3),
    };

    #[test]
    fn terminal_frames_replace_each_other() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_500_000);
        let text = frame(
            &sample("node1", None),
            at,
            Duration::from_millis(420),
            2,
            SCHEDULE,
            Screen::Terminal,
        );
        assert!(text.starts_with(HOME_AND_CLEAR), "{text:?}");
        assert_eq!(text.matches('\x1b').count(), 2, "{text:?}");
        let header = text.lines().next().unwrap_or_default();
        assert_eq!(
            header.trim_start_matches(HOME_AND_CLEAR),
            "refreshed 2026-11-24 06:00:00 UTC (#2 of 3, took 0.4s, every 2s; Ctrl-C to stop)"
        );
        assert!(text.contains("| node1  | 10.0.0.1 | Leader "), "{text}");
        assert!(text.ends_with("healthy\n"), "{text}");
    }

    #[test]
    fn plain_frames_follow_each_other_and_show_a_lost_host() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_500_000);
        let first = frame(
            &sample("node1", None),
            at,
            Duration::ZERO,
            1,
            SCHEDULE,
            Screen::Plain,
        );
        let second = frame(
            &sample("node2", Some("node1")),
            at + Duration::from_secs(2),
            Duration::ZERO,
            2,
            SCHEDULE,
            Screen::Plain,
        );
        assert!(!first.contains('\x1b') && !second.contains('\x1b'));
        assert!(first.starts_with("refreshed 2026-11-24 06:00:00 UTC (#1 of 3"));
        assert!(second.starts_with("\nrefreshed 2026-11-24 06:00:02 UTC (#2 of 3"));
        assert!(
            second.contains("down:    node1 unreachable: connection refused\n"),
            "{second}"
        );
        assert!(second.contains("| node2  | 10.0.0.2 | Leader "), "{second}");
        assert!(second.ends_with("degraded: node1 is unreachable\n"));
    }

    #[test]
    fn json_lines_are_one_document_each() {
        let text = frame(
            &sample("node2", None),
            SystemTime::now(),
            Duration::ZERO,
            5,
            SCHEDULE,
            Screen::JsonLines,
        );
        assert_eq!(text.lines().count(), 1);
        let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(doc["leader"], "node2");
    }
}
