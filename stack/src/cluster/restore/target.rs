//! What a restore recovers to: `--to` read as a [`Target`] (latest, a
//! time, a backup label, an LSN), and the backup a target restores from,
//! or why the target is outside the recovery window.

use serde::Serialize;
use serde_json::json;

use crate::cluster::backup::{Backup, Repository};

/// What to recover to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Target {
    /// The end of the archived WAL.
    Latest,
    /// A moment: Unix seconds (with microseconds) and the same moment as
    /// PostgreSQL reads it (`2026-11-30 14:30:00.000000+00`).
    Time {
        /// Unix seconds.
        unix: f64,
        /// The moment in UTC, as `recovery_target_time`.
        text: String,
    },
    /// The end of one backup (its label).
    Label(String),
    /// A WAL position (`0/6000050`).
    Lsn(String),
}

impl Target {
    /// Reads `latest`, a backup label (`20261130-142726F`, with `_…D` or
    /// `_…I` for a differential or incremental one), an LSN (`0/6000050`)
    /// or a time (`2026-11-30 14:30:00`, optionally with seconds'
    /// fractions, a `T`, and a zone: `Z`, `+01`, `-05:30`; none is UTC).
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        if text == "latest" {
            return Ok(Target::Latest);
        }
        if is_label(text) {
            return Ok(Target::Label(text.to_string()));
        }
        if lsn(text).is_some() {
            return Ok(Target::Lsn(text.to_uppercase()));
        }
        match parse_time(text) {
            Some(unix) => Ok(Target::Time {
                unix,
                text: time_text(unix),
            }),
            None => Err(format!(
                "--to `{text}`: give `latest`, a time (`2026-11-30 14:30:00`, UTC unless a zone such as `+01` follows), a backup label (`20261130-142726F`) or an LSN (`0/6000050`)"
            )),
        }
    }

    /// The target in words, for the plan.
    pub fn view(&self) -> String {
        match self {
            Target::Latest => "the end of the archived WAL (latest)".into(),
            Target::Time { unix, .. } => crate::cluster::status::format_utc(*unix as i64),
            Target::Label(l) => format!("the end of backup {l}"),
            Target::Lsn(l) => format!("WAL position {l}"),
        }
    }

    /// PostgreSQL's recovery settings for this target.
    pub(super) fn recovery_settings(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        match self {
            Target::Latest => {}
            Target::Time { text, .. } => {
                m.insert("recovery_target_time".into(), json!(text));
            }
            Target::Label(_) => {
                m.insert("recovery_target".into(), json!("immediate"));
            }
            Target::Lsn(l) => {
                m.insert("recovery_target_lsn".into(), json!(l));
            }
        }
        m.insert("recovery_target_action".into(), json!("promote"));
        m.insert("recovery_target_timeline".into(), json!("latest"));
        m
    }
}

fn is_label(text: &str) -> bool {
    let stamp = |s: &str| {
        s.len() == 15
            && s.char_indices()
                .all(|(i, c)| if i == 8 { c == '-' } else { c.is_ascii_digit() })
    };
    let (full, rest) = match text.split_once('_') {
        Some((f, r)) => (f, Some(r)),
        None => (text, None),
    };
    let full_ok = full.strip_suffix('F').is_some_and(stamp);
    let rest_ok = rest.is_none_or(|r| {
        r.strip_suffix('D')
            .or_else(|| r.strip_suffix('I'))
            .is_some_and(stamp)
    });
    full_ok && rest_ok
}

/// An LSN (`0/6000050`) as a number.
pub fn lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let part = |p: &str| {
        (!p.is_empty() && p.len() <= 8)
            .then(|| u32::from_str_radix(p, 16).ok())
            .flatten()
    };
    Some(u64::from(part(hi)?) << 32 | u64::from(part(lo)?))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]][zone]` as Unix seconds.
pub fn parse_time(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 16
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute) = (num(11..13)?, num(14..16)?);
    let mut rest = &text[16..];
    let mut second = 0.0;
    if let Some(r) = rest.strip_prefix(':') {
        let end = r
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(r.len());
        let s = &r[..end];
        if s.len() < 2 || !s[..2].bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        second = s.parse::<f64>().ok()?;
        rest = &r[end..];
    }
    let rest = rest.trim();
    let offset = match rest {
        "" | "Z" | "UTC" | "+00" | "+00:00" | "-00" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let h: i64 = digits[..2].parse().ok()?;
            let m: i64 = if digits.len() == 4 {
                digits[2..].parse().ok()?
            } else {
                0
            };
            if h > 15 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60.0;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A day past the month's end (2026-02-30) would roll over: refused.
    if crate::cluster::status::format_utc(days * 86_400)[..10] != text[..10] {
        return None;
    }
    Some((days * 86_400 + hour * 3600 + minute * 60 - offset) as f64 + second)
}

/// A moment as `recovery_target_time` reads it, in UTC to the microsecond.
fn time_text(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let micros = ((unix - secs as f64) * 1e6).round() as i64;
    let day = crate::cluster::status::format_utc(secs);
    format!("{}.{micros:06}+00", day.trim_end_matches(" UTC"))
}

/// The end of a WAL segment (16 MB segments) as an LSN number.
fn segment_end(name: &str) -> Option<u64> {
    let n = crate::cluster::status::segment_number(name)?;
    Some((n + 1) * 16 * 1024 * 1024)
}

/// The backup a target restores from, or why the target is out of reach
/// (naming the recoverable window).
pub fn choose_backup(repo: &Repository, target: &Target) -> Result<Backup, String> {
    let Some(window) = repo.window() else {
        return Err(format!(
            "the repository on {} holds no usable backup: nothing to restore",
            repo.host
        ));
    };
    let outside = |what: String| {
        Err(format!(
            "{what}: the recoverable window is {} (oldest backup's end to newest archived WAL)",
            window.view()
        ))
    };
    let newest_before = |fits: &dyn Fn(&Backup) -> bool| repo.usable().find(|b| fits(b)).cloned();
    match target {
        Target::Latest => Ok(repo.newest().cloned().expect("a window has a backup")),
        Target::Label(label) => match repo.usable().find(|b| &b.label == label) {
            Some(b) => Ok(b.clone()),
            None => Err(format!(
                "no usable backup `{label}` in the repository on {}; there are: {}",
                repo.host,
                repo.usable()
                    .map(|b| b.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        },
        Target::Time { unix, .. } => {
            let t = *unix;
            if t < window.from as f64 {
                return outside(format!(
                    "{} is before the oldest backup ended",
                    target.view()
                ));
            }
            if t > window.to as f64 {
                return outside(format!(
                    "{} is after the newest archived WAL",
                    target.view()
                ));
            }
            newest_before(&|b| b.stopped_at as f64 <= t)
                .ok_or_else(|| format!("no backup ended before {}", target.view()))
        }
        Target::Lsn(text) => {
            let l = lsn(text).ok_or_else(|| format!("`{text}` is not an LSN"))?;
            if let Some(end) = repo.newest_wal.as_ref().and_then(|w| segment_end(&w.name)) {
                if l > end {
                    return outside(format!("{text} is past the newest archived WAL"));
                }
            }
            match newest_before(&|b| b.lsn_stop.as_deref().and_then(lsn).is_some_and(|s| s <= l)) {
                Some(b) => Ok(b),
                None => outside(format!("{text} is before the oldest backup's end")),
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::parse("latest"), Ok(Target::Latest));
        assert_eq!(
            Target::parse("20261130-142726F"),
            Ok(Target::Label("20261130-142726F".into()))
        );
        assert_eq!(
            Target::parse("20261130-142726F_20261201-010000D"),
            Ok(Target::Label("20261130-142726F_20261201-010000D".into()))
        );
        assert_eq!(
            Target::parse("0/6000050"),
            Ok(Target::Lsn("0/6000050".into()))
        );
        assert_eq!(Target::parse("1a/ff"), Ok(Target::Lsn("1A/FF".into())));
        let Ok(Target::Time { unix, text }) = Target::parse("2026-11-30 14:30:00") else {
            panic!("a time")
        };
        assert_eq!(unix, 1_796_049_000.0);
        assert_eq!(text, "2026-11-30 14:30:00.000000+00");
        for bad in [
            "yesterday",
            "2026-13-01 00:00",
            "2026-02-30 10:00",
            "2026-11-30",
            "0/",
            "20261130-142726X",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_with_zones_and_fractions() {
        let t = |s: &str| parse_time(s).unwrap_or_else(|| panic!("{s}"));
        let base = t("2026-11-30 14:30:00");
        assert_eq!(t("2026-11-30T14:30:00Z"), base);
        assert_eq!(t("2026-11-30 14:30"), base);
        assert_eq!(t("2026-11-30 15:30:00+01"), base);
        assert_eq!(t("2026-11-30 20:00:00+05:30"), base);
        assert_eq!(t("2026-11-30 09:30:00-0500"), base);
        assert_eq!(t("2026-11-30 14:30:00.25"), base + 0.25);
        assert_eq!(time_text(base + 0.25), "2026-11-30 14:30:00.250000+00");
        assert_eq!(t("2000-02-29 00:00:00"), 951_782_400.0);
        assert_eq!(parse_time("2026-11-30 14:30:00 CET"), None);
        assert_eq!(parse_time("2026-11-30 24:00:00"), None);
    }

    /// Two full backups and WAL up to segment 0C (shared with restore.rs).
    pub(in crate::cluster::restore) fn repo() -> Repository {
        let backup = |label: &str, stop: i64, lsn: &str| Backup {
            label: label.into(),
            kind: "full".into(),
            started_at: stop - 10,
            stopped_at: stop,
            lsn_stop: Some(lsn.into()),
            size: None,
            repository_size: None,
            error: false,
            major: None,
        };
        Repository {
            host: "node4".into(),
            backups: vec![
                backup("20261130-120000F", 2_000, "0/9000050"),
                backup("20261129-120000F", 1_000, "0/6000050"),
            ],
            newest_wal: Some(crate::cluster::backup::ArchivedWal {
                name: "00000002000000000000000C".into(),
                archived_at: 3_000,
            }),
            backup_running: false,
            progress: None,
        }
    }

    fn at(unix: f64) -> Target {
        Target::Time {
            unix,
            text: time_text(unix),
        }
    }

    #[test]
    fn the_newest_backup_before_the_target() {
        let r = repo();
        let chosen = |t: &Target| choose_backup(&r, t).map(|b| b.label);
        assert_eq!(chosen(&Target::Latest), Ok("20261130-120000F".into()));
        assert_eq!(chosen(&at(1_500.0)), Ok("20261129-120000F".into()));
        assert_eq!(chosen(&at(2_500.0)), Ok("20261130-120000F".into()));
        assert_eq!(
            chosen(&Target::Lsn("0/7000000".into())),
            Ok("20261129-120000F".into())
        );
        assert_eq!(
            chosen(&Target::Lsn("0/C000000".into())),
            Ok("20261130-120000F".into())
        );
        assert_eq!(
            chosen(&Target::Label("20261129-120000F".into())),
            Ok("20261129-120000F".into())
        );
    }

    #[test]
    fn targets_outside_the_window_are_refused_with_the_window() {
        let r = repo();
        let why = |t: &Target| choose_backup(&r, t).expect_err("refused");
        let early = why(&at(900.0));
        assert!(early.contains("before the oldest backup ended"), "{early}");
        assert!(
            early.contains("1970-01-01 00:16:40 UTC – 1970-01-01 00:50:00 UTC"),
            "{early}"
        );
        assert!(why(&at(3_001.0)).contains("after the newest archived WAL"));
        assert!(why(&Target::Lsn("0/5000000".into())).contains("before the oldest backup's end"));
        // Segment 0C ends at 0/D000000.
        assert!(why(&Target::Lsn("0/D000001".into())).contains("past the newest archived WAL"));
        assert!(choose_backup(&r, &Target::Lsn("0/D000000".into())).is_ok());
        let unknown = why(&Target::Label("20261128-120000F".into()));
        assert!(
            unknown.contains("there are: 20261130-120000F, 20261129-120000F"),
            "{unknown}"
        );
        let empty = Repository {
            backups: vec![],
            ..repo()
        };
        assert!(choose_backup(&empty, &Target::Latest)
            .expect_err("refused")
            .contains("no usable backup"));
    }

    #[test]
    fn recovery_settings_of_each_target() {
        let s = |t: Target| serde_json::Value::Object(t.recovery_settings());
        assert_eq!(
            s(at(1_000.0)),
            json!({"recovery_target_time": "1970-01-01 00:16:40.000000+00", "recovery_target_action": "promote", "recovery_target_timeline": "latest"})
        );
        assert_eq!(s(Target::Label("x".into()))["recovery_target"], "immediate");
        assert_eq!(s(Target::Lsn("0/1".into()))["recovery_target_lsn"], "0/1");
        assert_eq!(
            s(Target::Latest),
            json!({"recovery_target_action": "promote", "recovery_target_timeline": "latest"})
        );
    }
}
