//! Host patterns as Ansible expands them, in both inventory formats:
//! `www[01:50].example.com` (zero-padded begin: every number has its
//! width), `db-[a:f]` (letters, `a`-`z` then `A`-`Z`), `node[1:10:2]` (a
//! step), several ranges in one name (every combination, the first range
//! varying slowest), an empty begin meaning 0, and `host:port`.

use std::fmt;

/// The most hosts one pattern may expand to (a typo such as `[1:9999999]`
/// is refused instead of eating the memory).
pub const MAX_HOSTS: u64 = 100_000;

const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// What is wrong with a host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A `[` without its `]`.
    Unclosed,
    /// The text between the brackets is not `begin:end` or `begin:end:step`.
    NotBounds { range: String },
    /// `[begin:]`.
    MissingEnd { range: String },
    /// A bound that is neither a number nor one letter.
    BadBound { range: String, bound: String },
    /// One bound is a letter, the other a number.
    Mixed { range: String },
    /// The begin comes after the end.
    Reversed { range: String },
    /// A zero-padded begin and an end of another width (`[01:100]`).
    UnequalWidth { range: String },
    /// A step that is not a whole number.
    BadStep { range: String, step: String },
    /// A step of 0.
    ZeroStep { range: String },
    /// More hosts than [`MAX_HOSTS`].
    TooMany { count: u64 },
    /// `host:port` with a port that is not 1-65535.
    BadPort { port: String },
}

/// A problem and where it is in the pattern (a byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// Byte offset of the problem in the pattern.
    pub offset: usize,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unclosed => write!(f, "the host range's `[` has no closing `]`"),
            Problem::NotBounds { range } => write!(
                f,
                "the host range `[{range}]` is not `[begin:end]` or `[begin:end:step]`"
            ),
            Problem::MissingEnd { range } => write!(f, "the host range `[{range}]` has no end"),
            Problem::BadBound { range, bound } => write!(
                f,
                "the host range `[{range}]` has `{bound}` as a bound: bounds are numbers or single letters"
            ),
            Problem::Mixed { range } => write!(
                f,
                "the host range `[{range}]` mixes a letter and a number: both bounds must be numbers or both letters"
            ),
            Problem::Reversed { range } => {
                write!(f, "the host range `[{range}]` begins after its end")
            }
            Problem::UnequalWidth { range } => write!(
                f,
                "the host range `[{range}]` has a zero-padded begin and an end of another width"
            ),
            Problem::BadStep { range, step } => write!(
                f,
                "the host range `[{range}]` has step `{step}`: a step is a whole number"
            ),
            Problem::ZeroStep { range } => {
                write!(f, "the host range `[{range}]` has step 0: a step is at least 1")
            }
            Problem::TooMany { count } => write!(
                f,
                "the host pattern expands to {count} hosts, more than {MAX_HOSTS}"
            ),
            Problem::BadPort { port } => {
                write!(f, "`{port}` after `:` is not a port number (1-65535)")
            }
        }
    }
}

/// A host pattern's host names and its `:port`, if any.
pub fn expand_pattern(pattern: &str) -> Result<(Vec<String>, Option<u16>), PatternError> {
    let (names, port) = split_port(pattern)?;
    Ok((expand(names)?, port))
}

/// `name:port` when the pattern has exactly one `:` outside brackets and
/// digits after it (so IPv6 addresses and ranges keep their colons).
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), PatternError> {
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    let [at] = colons[..] else {
        return Ok((pattern, None));
    };
    let port = &pattern[at + 1..];
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok((&pattern[..at], Some(p))),
        _ => Err(PatternError {
            offset: at + 1,
            problem: Problem::BadPort { port: port.into() },
        }),
    }
}

/// Every host name a pattern stands for, in Ansible's order.
pub fn expand(pattern: &str) -> Result<Vec<String>, PatternError> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let at = |problem| PatternError {
        offset: open,
        problem,
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| at(Problem::Unclosed))?;
    let items = range_items(&pattern[open + 1..close]).map_err(at)?;
    let tails = expand(&pattern[close + 1..]).map_err(|e| PatternError {
        offset: e.offset + close + 1,
        problem: e.problem,
    })?;
    let count = items.len() as u64 * tails.len() as u64;
    if count > MAX_HOSTS {
        return Err(at(Problem::TooMany { count }));
    }
    let head = &pattern[..open];
    Ok(items
        .iter()
        .flat_map(|item| tails.iter().map(move |tail| format!("{head}{item}{tail}")))
        .collect())
}

/// The values of one range (the text between the brackets).
fn range_items(range: &str) -> Result<Vec<String>, Problem> {
    let bounds: Vec<&str> = range.split(':').collect();
    if !(2..=3).contains(&bounds.len()) {
        return Err(Problem::NotBounds {
            range: range.into(),
        });
    }
    let begin = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(Problem::MissingEnd {
            range: range.into(),
        });
    }
    let step = match bounds.get(2) {
        None => 1,
        Some(s) => s.parse::<u64>().map_err(|_| Problem::BadStep {
            range: range.into(),
            step: (*s).into(),
        })?,
    };
    if step == 0 {
        return Err(Problem::ZeroStep {
            range: range.into(),
        });
    }
    match (letter(begin), letter(end)) {
        (Some(b), Some(e)) => letter_items(range, b, e, step),
        (None, None) => number_items(range, begin, end, step),
        _ if is_number(begin) || is_number(end) => Err(Problem::Mixed {
            range: range.into(),
        }),
        (Some(_), None) => Err(bad_bound(range, end)),
        (None, Some(_)) => Err(bad_bound(range, begin)),
    }
}

fn bad_bound(range: &str, bound: &str) -> Problem {
    Problem::BadBound {
        range: range.into(),
        bound: bound.into(),
    }
}

fn letter(bound: &str) -> Option<usize> {
    let mut chars = bound.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => LETTERS.find(c),
        _ => None,
    }
}

fn is_number(bound: &str) -> bool {
    !bound.is_empty() && bound.bytes().all(|b| b.is_ascii_digit())
}

fn letter_items(range: &str, begin: usize, end: usize, step: u64) -> Result<Vec<String>, Problem> {
    if begin > end {
        return Err(Problem::Reversed {
            range: range.into(),
        });
    }
    Ok(LETTERS[begin..=end]
        .chars()
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .map(String::from)
        .collect())
}

fn number_items(range: &str, begin: &str, end: &str, step: u64) -> Result<Vec<String>, Problem> {
    let (Some(b), Some(e)) = (number(begin), number(end)) else {
        let bad = if number(begin).is_none() { begin } else { end };
        return Err(bad_bound(range, bad));
    };
    let width = if begin.len() > 1 && begin.starts_with('0') {
        if begin.len() != end.len() {
            return Err(Problem::UnequalWidth {
                range: range.into(),
            });
        }
        begin.len()
    } else {
        0
    };
    if b > e {
        return Err(Problem::Reversed {
            range: range.into(),
        });
    }
    let count = (e - b) / step + 1;
    if count > MAX_HOSTS {
        return Err(Problem::TooMany { count });
    }
    Ok((0..count)
        .map(|i| format!("{:0width$}", b + i * step))
        .collect())
}

fn number(bound: &str) -> Option<u64> {
    if is_number(bound) {
        bound.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pattern: &str) -> Vec<String> {
        expand(pattern).expect("expands")
    }

    fn problem(pattern: &str) -> (usize, Problem) {
        let e = expand_pattern(pattern).expect_err("refused");
        (e.offset, e.problem)
    }

    #[test]
    fn numbers_keep_their_leading_zeros() {
        let hosts = names("www[01:50].example.com");
        assert_eq!(hosts.len(), 50);
        assert_eq!(hosts[0], "www01.example.com");
        assert_eq!(hosts[8], "www09.example.com");
        assert_eq!(hosts[49], "www50.example.com");
        assert_eq!(names("n[8:10]"), ["n8", "n9", "n10"]);
        assert_eq!(names("n[:2]"), ["n0", "n1", "n2"]);
    }

    #[test]
    fn letters_steps_and_several_ranges() {
        assert_eq!(
            names("db-[a:f].example.com"),
            ["a", "b", "c", "d", "e", "f"].map(|l| format!("db-{l}.example.com"))
        );
        assert_eq!(names("n[1:10:2]"), ["n1", "n3", "n5", "n7", "n9"]);
        assert_eq!(names("x[a:e:2]"), ["xa", "xc", "xe"]);
        assert_eq!(names("r[1:2]-[a:b]"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
        assert_eq!(names("plain.example.com"), ["plain.example.com"]);
    }

    #[test]
    fn ports_are_split_off_but_not_from_ranges_or_ipv6() {
        assert_eq!(
            expand_pattern("badwolf.example.com:5309").expect("ok"),
            (vec!["badwolf.example.com".to_string()], Some(5309))
        );
        assert_eq!(
            expand_pattern("n[1:2]:2222").expect("ok"),
            (vec!["n1".to_string(), "n2".to_string()], Some(2222))
        );
        assert_eq!(
            expand_pattern("fe80::1").expect("ok"),
            (vec!["fe80::1".to_string()], None)
        );
    }

    #[test]
    fn bad_ranges_say_what_and_where() {
        let range = |r: &str| r.to_string();
        assert_eq!(
            problem("w[3:1]"),
            (
                1,
                Problem::Reversed {
                    range: range("3:1")
                }
            )
        );
        assert_eq!(
            problem("w[a:3]"),
            (
                1,
                Problem::Mixed {
                    range: range("a:3")
                }
            )
        );
        assert_eq!(problem("ab.c[1:3"), (4, Problem::Unclosed));
        assert_eq!(
            problem("w[1:2]x[1:9:0]"),
            (
                7,
                Problem::ZeroStep {
                    range: range("1:9:0")
                }
            )
        );
        assert_eq!(
            problem("w[1]"),
            (1, Problem::NotBounds { range: range("1") })
        );
        assert_eq!(
            problem("w[1:]"),
            (1, Problem::MissingEnd { range: range("1:") })
        );
        assert_eq!(
            problem("w[01:100]"),
            (
                1,
                Problem::UnequalWidth {
                    range: range("01:100")
                }
            )
        );
        assert_eq!(
            problem("w[aa:b]"),
            (
                1,
                Problem::BadBound {
                    range: range("aa:b"),
                    bound: range("aa")
                }
            )
        );
        assert!(matches!(
            problem("w[0:99999999]").1,
            Problem::TooMany { .. }
        ));
        assert!(matches!(
            problem("w[1:999]x[1:999]").1,
            Problem::TooMany { .. }
        ));
        assert_eq!(problem("h:0"), (2, Problem::BadPort { port: range("0") }));
        assert_eq!(
            Problem::Reversed {
                range: range("3:1")
            }
            .to_string(),
            "the host range `[3:1]` begins after its end"
        );
    }
}
