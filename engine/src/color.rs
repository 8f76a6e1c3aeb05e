//! Whether output is coloured, by the common conventions: `NO_COLOR` set to
//! any non-empty value turns colour off (<https://no-color.org>) and beats
//! everything else; `CLICOLOR_FORCE` set (not `0`) turns it on where no
//! terminal is; otherwise colour is for terminals only. clap's help and
//! errors follow the same rule (anstream); [`init`] makes console, through
//! which indicatif draws, follow it too (console alone would let
//! `CLICOLOR_FORCE` beat `NO_COLOR` and take an empty `NO_COLOR` as set).

use std::ffi::OsStr;
use std::io::IsTerminal;

/// The environment variables the colour decision reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct ColorEnv<'a> {
    /// `NO_COLOR`.
    pub no_color: Option<&'a OsStr>,
    /// `CLICOLOR_FORCE`.
    pub clicolor_force: Option<&'a OsStr>,
}

/// Whether to colour a stream that is (or is not) a terminal.
pub fn wanted(env: ColorEnv<'_>, terminal: bool) -> bool {
    let set = |v: Option<&OsStr>| v.is_some_and(|v| !v.is_empty());
    if set(env.no_color) {
        return false;
    }
    if set(env.clicolor_force) && env.clicolor_force != Some(OsStr::new("0")) {
        return true;
    }
    terminal
}

/// [`wanted`] with this process's environment.
fn wanted_here(terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR");
    let clicolor_force = std::env::var_os("CLICOLOR_FORCE");
    let env = ColorEnv {
        no_color: no_color.as_deref(),
        clicolor_force: clicolor_force.as_deref(),
    };
    wanted(env, terminal)
}

/// Whether standard output is coloured.
pub fn stdout() -> bool {
    wanted_here(std::io::stdout().is_terminal())
}

/// Sets console's (and so indicatif's) colour switches by [`wanted`]; call
/// once at start.
pub fn init() {
    console::set_colors_enabled(stdout());
    console::set_colors_enabled_stderr(wanted_here(std::io::stderr().is_terminal()));
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// A plan's text (`RunReport::plan_text`, already masked) with its marks
/// coloured as Terraform colours them: `+` green, `~` yellow, `-` red, `!`
/// cyan, a failure red; diff lines `+` green and `-` red. Each coloured
/// line is wrapped whole, so a masked secret is never split.
pub fn paint_plan(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        match paint_of(body) {
            Some(color) if !body.is_empty() => {
                out.push_str(color);
                out.push_str(body);
                out.push_str(RESET);
                out.push_str(&line[body.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// The colour of one plan line, by its mark.
fn paint_of(line: &str) -> Option<&'static str> {
    if let Some(diff) = line.strip_prefix("      ") {
        return match diff.chars().next() {
            Some('+') if !diff.starts_with("+++") => Some(GREEN),
            Some('-') if !diff.starts_with("---") => Some(RED),
            Some('@') => Some(CYAN),
            _ => None,
        };
    }
    let mark = line.strip_prefix("  ")?.chars().next()?;
    match mark {
        '+' => Some(GREEN),
        '~' => Some(YELLOW),
        '-' => Some(RED),
        '!' => Some(CYAN),
        '✗' => Some(RED),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(no_color: Option<&'a str>, force: Option<&'a str>) -> ColorEnv<'a> {
        ColorEnv {
            no_color: no_color.map(OsStr::new),
            clicolor_force: force.map(OsStr::new),
        }
    }

    #[test]
    fn no_color_with_any_non_empty_value_turns_colour_off() {
        for value in ["1", "0", "true", "false", "yes", " "] {
            assert!(!wanted(env(Some(value), None), true), "NO_COLOR={value:?}");
            assert!(
                !wanted(env(Some(value), Some("1")), true),
                "NO_COLOR={value:?} beats CLICOLOR_FORCE"
            );
        }
    }

    #[test]
    fn an_empty_or_unset_no_color_leaves_colour_to_the_terminal() {
        assert!(wanted(env(Some(""), None), true));
        assert!(wanted(env(None, None), true));
        assert!(!wanted(env(None, None), false));
        assert!(!wanted(env(Some(""), None), false));
    }

    #[test]
    fn clicolor_force_colours_a_pipe_unless_zero_or_empty() {
        assert!(wanted(env(None, Some("1")), false));
        assert!(!wanted(env(None, Some("0")), false));
        assert!(!wanted(env(None, Some("")), false));
    }

    #[test]
    fn plan_marks_and_diff_lines_are_coloured_whole() {
        let plan = "node1:\n  + package haproxy    [r / t]\n  ~ file /etc/x    [r / t]\n      --- before\n      -a ***\n      +b\n  - file /tmp/y    [r / t]\n  ! service x restarted    [r / t]\n1 host: 1 to create\n";
        let painted = paint_plan(plan);
        assert!(painted.starts_with("node1:\n\x1b[32m  + package haproxy    [r / t]\x1b[0m\n"));
        assert!(painted.contains("\x1b[33m  ~ file /etc/x"), "{painted:?}");
        assert!(painted.contains("\n      --- before\n"), "{painted:?}");
        assert!(
            painted.contains("\x1b[31m      -a ***\x1b[0m\n"),
            "{painted:?}"
        );
        assert!(painted.contains("\x1b[32m      +b\x1b[0m\n"), "{painted:?}");
        assert!(painted.contains("\x1b[31m  - file /tmp/y"), "{painted:?}");
        assert!(painted.contains("\x1b[36m  ! service x"), "{painted:?}");
        assert!(painted.ends_with("\n1 host: 1 to create\n"), "{painted:?}");
        let stripped = painted.replace(GREEN, "").replace(YELLOW, "");
        let stripped = stripped
            .replace(RED, "")
            .replace(CYAN, "")
            .replace(RESET, "");
        assert_eq!(stripped, plan);
    }
}
