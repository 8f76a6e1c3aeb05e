//! Building shell snippets safely: every value that reaches a remote command
//! goes through [`quote`].

/// Quotes `value` as one POSIX shell word. Nothing inside it is expanded:
/// `$(...)`, backticks, `;` and globs stay literal.
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

/// The script behind [`crate::Action::upload`]: stdin goes to a temporary file
/// beside `path`, which gets owner, group and mode before it is renamed over
/// `path`. On any failure the temporary file is removed.
pub fn atomic_write_script(
    path: &str,
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<&str>,
) -> String {
    write_script(path, owner, group, mode, None)
}

/// Like [`atomic_write_script`], but the temporary file is first checked by
/// `validate`, a command in which `%s` stands for the temporary file's path
/// (for example `haproxy -c -f %s` or `sshd -t -f %s`). The command is split
/// into words by shell rules and every word is quoted, so it runs without
/// shell features. If it fails, the script fails and `path` is left as it
/// was. Errors if `validate` has no `%s` or cannot be split.
pub fn atomic_write_validated_script(
    path: &str,
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<&str>,
    validate: &str,
) -> Result<String, String> {
    let words = shell_words::split(validate)
        .map_err(|e| format!("cannot split validate command {validate:?}: {e}"))?;
    if words.is_empty() || !words.iter().any(|w| w.contains("%s")) {
        return Err(format!(
            "validate command {validate:?} must contain %s (the file to check)"
        ));
    }
    let command: Vec<String> = words
        .iter()
        .map(|w| {
            w.split("%s")
                .map(quote)
                .collect::<Vec<_>>()
                .join("\"$tmp\"")
        })
        .collect();
    Ok(write_script(
        path,
        owner,
        group,
        mode,
        Some(&command.join(" ")),
    ))
}

/// Quotes every word of `argv` and joins them into one command line.
pub fn quote_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_script(
    path: &str,
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<&str>,
    validate: Option<&str>,
) -> String {
    let dest = quote(path);
    let mut script = format!(
        "set -e\ndest={dest}\ntmp=$(mktemp \"$(dirname \"$dest\")/.pgdeploy.XXXXXXXX\")\n\
         trap 'rm -f \"$tmp\"' EXIT\ncat > \"$tmp\"\n"
    );
    if let Some(owner) = owner {
        let spec = match group {
            Some(group) => format!("{owner}:{group}"),
            None => owner.to_string(),
        };
        script.push_str(&format!("chown {} \"$tmp\"\n", quote(&spec)));
    } else if let Some(group) = group {
        script.push_str(&format!("chgrp {} \"$tmp\"\n", quote(group)));
    }
    match mode {
        Some(mode) => script.push_str(&format!("chmod {} \"$tmp\"\n", quote(mode))),
        // Keep the mode of the file being replaced; new files get 0644.
        None => script.push_str(
            "if [ -e \"$dest\" ]; then chmod \"$(stat -c %a \"$dest\")\" \"$tmp\"; else chmod 0644 \"$tmp\"; fi\n",
        ),
    }
    if let Some(command) = validate {
        script.push_str(&format!(
            "if ! {command} >&2; then echo \"validation failed: $dest was not changed\" >&2; exit 1; fi\n"
        ));
    }
    script.push_str("sync \"$tmp\" 2>/dev/null || true\nmv -f \"$tmp\" \"$dest\"\ntrap - EXIT\n");
    script
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
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn quoted_words_stay_literal() {
        for hostile in [
            "$(touch /tmp/pwned)",
            "; touch /tmp/pwned",
            "a'b",
            "`id`",
            "*",
            "",
            "x y",
        ] {
            assert_eq!(sh(&format!("printf %s {}", quote(hostile))), hostile);
        }
    }

    #[test]
    fn plain_words_are_left_bare() {
        assert_eq!(
            quote("/etc/haproxy/haproxy.cfg"),
            "/etc/haproxy/haproxy.cfg"
        );
    }

    #[test]
    fn atomic_write_replaces_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.conf");
        let script = atomic_write_script(path.to_str().expect("utf8"), None, None, Some("0640"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"hello\n")
            .expect("write");
        assert!(child.wait().expect("wait").success());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "hello\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
