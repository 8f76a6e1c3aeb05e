//! Building shell snippets safely: every value that reaches a remote command
//! goes through [`pgdeploy_text::quote`].

use pgdeploy_text::quote;

/// The script behind [`crate::Action::upload`]: stdin goes to a temporary file
/// beside `path`, which must then hold exactly `content` (size and sha256
/// checked, so an upload cut short by a lost connection is never installed)
/// and gets owner, group and mode before it is renamed over `path`. On any
/// failure the temporary file is removed and `path` is left as it was; a
/// full disk is named (ENOSPC). Temporary files of the same destination left
/// by an upload killed outright are removed first.
pub fn atomic_write_script(
    path: &str,
    content: &[u8],
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<&str>,
) -> String {
    write_script(path, content, owner, group, mode, None)
}

/// Like [`atomic_write_script`], but the temporary file is first checked by
/// `validate`, a command in which `%s` stands for the temporary file's path
/// (for example `haproxy -c -f %s` or `sshd -t -f %s`). The command is split
/// into words by shell rules and every word is quoted, so it runs without
/// shell features. If it fails, the script fails and `path` is left as it
/// was. Errors if `validate` has no `%s` or cannot be split.
pub fn atomic_write_validated_script(
    path: &str,
    content: &[u8],
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
        content,
        owner,
        group,
        mode,
        Some(&command.join(" ")),
    ))
}

/// The prefix of the temporary files of uploads to `path`, inside `path`'s
/// folder: `.pgdeploy-` and 16 hex digits of the path's sha256 (no
/// character a shell pattern would interpret).
pub fn upload_temp_prefix(path: &str) -> String {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(path.as_bytes()));
    format!(".pgdeploy-{}", &digest[..16])
}

fn write_script(
    path: &str,
    content: &[u8],
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<&str>,
    validate: Option<&str>,
) -> String {
    use sha2::Digest as _;
    let dest = quote(path);
    let prefix = upload_temp_prefix(path);
    let size = content.len();
    let sha = hex::encode(sha2::Sha256::digest(content));
    let mut script = format!(
        "set -e\ndest={dest}\ndir=$(dirname \"$dest\")\n\
         rm -f \"$dir\"/{prefix}.*\n\
         tmp=$(mktemp \"$dir/{prefix}.XXXXXXXX\")\n\
         trap 'rm -f \"$tmp\"' EXIT\n\
         trap 'rm -f \"$tmp\"; exit 129' HUP\ntrap 'rm -f \"$tmp\"; exit 130' INT\n\
         trap 'rm -f \"$tmp\"; exit 141' PIPE\ntrap 'rm -f \"$tmp\"; exit 143' TERM\n\
         if ! err=$(cat 2>&1 > \"$tmp\"); then\n\
         \x20 rm -f \"$tmp\"\n\
         \x20 case $err in *'No space left'*) err=\"no space left on device (ENOSPC)\";; esac\n\
         \x20 echo \"cannot write $dest: $err ($(df -Pk \"$dir\" | awk 'NR == 2 {{ print $4 }}') KiB free in $dir, {size} bytes needed); $dest was not changed\" >&2\n\
         \x20 exit 1\nfi\n\
         got=$(wc -c < \"$tmp\")\n\
         if [ \"$got\" -ne {size} ] || [ \"$(sha256sum < \"$tmp\" | cut -c1-64)\" != {sha} ]; then\n\
         \x20 rm -f \"$tmp\"\n\
         \x20 echo \"upload of $dest incomplete: $got of {size} bytes arrived intact (connection lost?); $dest was not changed\" >&2\n\
         \x20 exit 1\nfi\n"
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

    /// Runs the upload script of `content` to `path`, feeding it `sent`.
    fn upload(path: &std::path::Path, content: &[u8], sent: &[u8]) -> std::process::Output {
        let script = atomic_write_script(
            path.to_str().expect("utf8"),
            content,
            None,
            None,
            Some("0640"),
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sent)
            .expect("write");
        child.wait_with_output().expect("wait")
    }

    #[test]
    fn atomic_write_replaces_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.conf");
        assert!(upload(&path, b"hello\n", b"hello\n").status.success());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "hello\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_cut_off_upload_leaves_the_old_file_and_stale_temporaries_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.bin");
        std::fs::write(&path, b"old\n").expect("write");
        // A temporary file of this destination left by an upload killed
        // outright, and one of another file that must stay.
        let stale = dir.path().join(format!(
            "{}.AbCdEfGh",
            upload_temp_prefix(path.to_str().expect("utf8"))
        ));
        std::fs::write(&stale, b"half").expect("write");
        let other = dir
            .path()
            .join(format!("{}.AbCdEfGh", upload_temp_prefix("/elsewhere")));
        std::fs::write(&other, b"half").expect("write");
        let content = vec![b'x'; 100_000];
        // The connection ends early: stdin reaches EOF after half the bytes.
        let out = upload(&path, &content, &content[..50_000]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("incomplete: 50000 of 100000 bytes") && err.contains("was not changed"),
            "{err}"
        );
        // Same size, different bytes: refused too.
        let mut garbled = content.clone();
        garbled[7] = b'y';
        assert!(!upload(&path, &content, &garbled).status.success());
        assert_eq!(std::fs::read(&path).expect("read"), b"old\n");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                other.file_name().expect("name"),
                path.file_name().expect("name")
            ]
        );
        assert!(upload(&path, &content, &content).status.success());
        assert_eq!(std::fs::read(&path).expect("read"), content);
    }
}
