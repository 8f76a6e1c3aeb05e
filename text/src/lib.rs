//! Small text rules that every pgdeploy crate shares, so that each exists
//! once: [`quote`] (POSIX shell quoting), [`did_you_mean`] (the nearest
//! known word to a misspelt one) and [`truthy`] (Ansible's boolean words).

/// Quotes `value` as one POSIX shell word. Words made only of characters
/// that no shell treats specially are returned as they are (readable
/// commands in plans and logs); anything else is single-quoted, with `'`
/// written as `'\''`.
pub fn quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Quotes every word of `argv` with [`quote`] and joins them with spaces.
pub fn quote_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The candidate nearest to `word`, when it is near enough to be the word
/// meant: at most one edit per three characters of `word`, at least one and
/// at most three (adjacent transpositions count as one edit). Ties go to
/// the first candidate.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| *d <= limit && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A " (did you mean `x`?)" suffix for an error message, or nothing.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Ansible's boolean words (`ansible.module_utils.parsing.convert_bool`),
/// compared without case and surrounding blanks: `y yes on 1 true t` are
/// true, `n no off 0 false f` and the empty string are false; any other
/// word is not a boolean (`None`).
pub fn truthy(word: &str) -> Option<bool> {
    match word.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
        "n" | "no" | "off" | "0" | "false" | "f" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn quoted_words_stay_literal() {
        for hostile in [
            "$(touch /tmp/pgdeploy-pwned)",
            "; touch /tmp/pgdeploy-pwned",
            "a'b",
            "`id`",
            "*",
            "",
            "x y",
            "a\nb",
            "\\'; echo x #",
            "'\"'\"'",
        ] {
            assert_eq!(sh(&format!("printf %s {}", quote(hostile))), hostile);
        }
        assert_eq!(quote("/etc/x.conf"), "/etc/x.conf");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote_argv(&["echo", "a b"]), "echo 'a b'");
    }

    #[test]
    fn nearest_word_within_the_limit() {
        let known = ["state", "owner", "group", "mode"];
        assert_eq!(did_you_mean("stat", known), Some("state"));
        assert_eq!(did_you_mean("onwer", known), Some("owner"));
        assert_eq!(did_you_mean("zzzzzz", known), None);
        assert_eq!(did_you_mean("state", known), None);
        assert_eq!(suggestion("mod", known), " (did you mean `mode`?)");
        assert_eq!(suggestion("xyzzy", known), "");
    }

    #[test]
    fn ansible_boolean_words() {
        for w in ["y", "Yes", " on ", "1", "TRUE", "t"] {
            assert_eq!(truthy(w), Some(true), "{w}");
        }
        for w in ["n", "NO", "off", "0", "False", "f", ""] {
            assert_eq!(truthy(w), Some(false), "{w}");
        }
        assert_eq!(truthy("maybe"), None);
        assert_eq!(truthy("2"), None);
    }
}
