//! The command line's conventions, on the built binary and without any
//! host: shell completions, the man page, the version with its git commit,
//! and `NO_COLOR`.

use std::path::Path;
use std::process::{Command, Output};

fn pgdeploy(args: &[&str], env: &[(&str, &str)]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgdeploy"));
    cmd.args(args).current_dir(root);
    for name in ["NO_COLOR", "CLICOLOR_FORCE", "CLICOLOR"] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("pgdeploy runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

#[test]
fn bash_completions_name_the_subcommands() {
    let script = stdout(&pgdeploy(&["completions", "bash"], &[]));
    assert!(script.contains("complete -F _pgdeploy"), "{script}");
    for sub in [
        "apply",
        "plan",
        "validate",
        "status",
        "switchover",
        "completions",
        "man",
    ] {
        assert!(script.contains(sub), "no {sub} in the bash script");
    }
    assert!(script.contains("--detailed-exitcode"), "plan's options too");
    for shell in ["zsh", "fish"] {
        let script = stdout(&pgdeploy(&["completions", shell], &[]));
        assert!(script.contains("switchover"), "{shell}: {script}");
    }
}

#[test]
fn the_man_page_is_roff_with_a_title_and_the_subcommands() {
    let page = stdout(&pgdeploy(&["man"], &[]));
    let th = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("a .TH line");
    assert!(th.starts_with(".TH pgdeploy 1 "), "{th}");
    assert!(page.contains(".SH NAME"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    assert!(page.contains("pgdeploy\\-switchover"), "{page}");
    // Every line is text or a roff request/macro: no stray escape bytes.
    assert!(!page.contains('\x1b'), "{page}");
}

/// The commit `git` sees here, `-dirty` or not, when this is a checkout.
fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn the_version_names_the_git_commit() {
    let version = stdout(&pgdeploy(&["--version"], &[]));
    let version = version.trim_end();
    let prefix = format!("pgdeploy {} (", env!("CARGO_PKG_VERSION"));
    let commit = version
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version:?}"));
    match git_commit() {
        // The build script ran at this HEAD (it reruns when HEAD moves).
        Some(head) => assert!(
            commit == head || commit == format!("{head}-dirty"),
            "{version:?} is not of HEAD {head}"
        ),
        None => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn no_color_leaves_no_escape_byte_in_help_or_validate() {
    // CLICOLOR_FORCE colours a pipe; NO_COLOR (any non-empty value) wins.
    let forced = pgdeploy(&["--help"], &[("CLICOLOR_FORCE", "1")]);
    assert!(
        stdout(&forced).contains('\x1b'),
        "CLICOLOR_FORCE should colour the help, else this test proves nothing"
    );
    for no_color in ["1", "0", "true"] {
        let env = [("CLICOLOR_FORCE", "1"), ("NO_COLOR", no_color)];
        let help = stdout(&pgdeploy(&["--help"], &env));
        assert!(!help.contains('\x1b'), "NO_COLOR={no_color}: {help:?}");
        let validate = pgdeploy(
            &[
                "validate",
                "-i",
                "inventories/example.yaml",
                "-e",
                "postgres_superuser_password=x",
                "-e",
                "postgres_replication_password=y",
            ],
            &env,
        );
        let text = stdout(&validate);
        assert!(text.starts_with("ok: "), "{text}");
        assert!(!validate.stdout.contains(&0x1b), "{text:?}");
        assert!(!validate.stderr.contains(&0x1b), "{validate:?}");
    }
    let error = pgdeploy(
        &["plan", "--bogus"],
        &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")],
    );
    assert_eq!(error.status.code(), Some(2));
    assert!(!error.stderr.contains(&0x1b), "{error:?}");
}

#[test]
fn markdown_output_is_for_plans_only() {
    let output = pgdeploy(
        &[
            "apply",
            "-i",
            "inventories/example.yaml",
            "--output",
            "markdown",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("use it with `plan` or `apply --check`"),
        "{stderr}"
    );
}
