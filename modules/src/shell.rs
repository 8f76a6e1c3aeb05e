//! Building shell scripts safely: the scripts are shell files (`src/sh/`,
//! checked by shellcheck), and every value reaches them as an argument of a
//! `set --` line ([`with_args`]), quoted by [`pgdeploy_text::quote`].

use pgdeploy_text::quote_argv;

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
    write_script(path, content, owner, group, mode, &[])
}

/// Like [`atomic_write_script`], but the temporary file is first checked by
/// `validate`, a command in which `%s` stands for the temporary file's path
/// (for example `haproxy -c -f %s` or `sshd -t -f %s`). The command is split
/// into words by shell rules, which the script receives as arguments, so it
/// runs without shell features. If it fails, the script fails and `path` is left as it
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
    Ok(write_script(path, content, owner, group, mode, &words))
}

/// The prefix of the temporary files of uploads to `path`, inside `path`'s
/// folder: `.pgdeploy-` and 16 hex digits of the path's sha256 (no
/// character a shell pattern would interpret).
pub fn upload_temp_prefix(path: &str) -> String {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(path.as_bytes()));
    format!(".pgdeploy-{}", &digest[..16])
}

/// [`with_args`]'s scripts: the shell files under `src/sh/`, each checked
/// by shellcheck, each told its arguments by a `set --` line.
pub(crate) mod scripts {
    /// `apt_lock_holder`, `wait_for_apt_locks` and `apt_get` for the package
    /// module's actions.
    pub(crate) const APT_LOCKS: &str = include_str!("sh/apt_locks.sh");
    /// Installs packages (after [`APT_LOCKS`]).
    pub(crate) const APT_INSTALL: &str = include_str!("sh/apt_install.sh");
    /// Removes or purges packages (after [`APT_LOCKS`]).
    pub(crate) const APT_REMOVE: &str = include_str!("sh/apt_remove.sh");
    /// Holds or releases packages (`hold`/`unhold`, then the names).
    pub(crate) const APT_MARK: &str = include_str!("sh/apt_mark.sh");
    /// The package module's probe.
    pub(crate) const PACKAGE_PROBE: &str = include_str!("sh/package_probe.sh");
    /// An atomic, checked upload ([`super::atomic_write_script`]).
    pub(crate) const UPLOAD: &str = include_str!("sh/upload.sh");
    /// The probe of one path ([`crate::probe::path_snippet`]).
    pub(crate) const PATH_STATE: &str = include_str!("sh/path_state.sh");
    /// Whether a certificate and a key belong together.
    pub(crate) const KEY_MATCH: &str = include_str!("sh/key_match.sh");
    /// The user module's probe.
    pub(crate) const USER_PROBE: &str = include_str!("sh/user_probe.sh");
    /// The ufw module's probe (no arguments).
    pub(crate) const UFW_PROBE: &str = include_str!("sh/ufw_probe.sh");
    /// Stops ufw's enabling when sshd's ports would be cut off.
    pub(crate) const UFW_SSH_GUARD: &str = include_str!("sh/ufw_ssh_guard.sh");
    /// Waits for a check to succeed, up to a timeout.
    pub(crate) const WAIT: &str = include_str!("sh/wait.sh");
}

/// `script` given `args` as its positional parameters: a `set --` line with
/// every argument quoted, then the script. This is how values reach the
/// scripts of [`scripts`]: never formatted into their text.
pub(crate) fn with_args<S: AsRef<str>>(script: &str, args: &[S]) -> String {
    format!("set -- {}\n{script}", quote_argv(args))
}

fn write_script(
    path: &str,
    content: &[u8],
    owner: Option<&str>,
    group: Option<&str>,
    mode: Option<&str>,
    validate: &[String],
) -> String {
    use sha2::Digest as _;
    let mut args = vec![
        path.to_string(),
        upload_temp_prefix(path),
        content.len().to_string(),
        hex::encode(sha2::Sha256::digest(content)),
        owner.unwrap_or_default().to_string(),
        group.unwrap_or_default().to_string(),
        mode.unwrap_or_default().to_string(),
    ];
    args.extend(validate.iter().cloned());
    with_args(scripts::UPLOAD, &args)
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

    #[test]
    fn validate_words_get_the_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("conf");
        std::fs::write(&path, "old\n").expect("write");
        let path = path.to_str().expect("utf8");
        // `%s` alone and inside a word; a glob stays literal.
        let check = "sh -c 'grep -q hello \"$1\" && test \"$2\" = \"$1.x\" && test \"$3\" = \"*\"' _ %s %s.x '*'";
        let run = |content: &[u8]| {
            let script =
                atomic_write_validated_script(path, content, None, None, None, check).expect("ok");
            crate::testing::sh(&script, Some(content))
        };
        let out = run(b"bye\n");
        assert_ne!(out.status, 0);
        assert!(out.stderr.contains("validation failed"), "{out:?}");
        assert_eq!(std::fs::read(path).expect("read"), b"old\n");
        let out = run(b"hello\n");
        assert_eq!(out.status, 0, "{out:?}");
        assert_eq!(std::fs::read(path).expect("read"), b"hello\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    /// Every shell file is `sh` for shellcheck and passes it (skipped, with
    /// a note, where shellcheck is not installed).
    #[test]
    fn shell_files_pass_shellcheck() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sh");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("src/sh")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "sh"))
            .collect();
        files.sort();
        assert!(files.len() >= 10, "{files:?}");
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read");
            assert!(
                text.starts_with("# shellcheck shell=sh\n"),
                "{}",
                file.display()
            );
        }
        match Command::new("shellcheck").args(&files).output() {
            Err(e) => eprintln!("shellcheck not run ({e}): install it to check src/sh"),
            Ok(out) => assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            ),
        }
    }
}
