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

/// The binary copied outside the checkout (as `cargo install` puts it:
/// the same release build), run from `dir` with a home of its own, so the
/// built-in stack is unpacked afresh and nothing of the checkout is near.
fn installed(dir: &Path, args: &[&str]) -> Output {
    let bin = dir.join("bin/pgdeploy");
    if !bin.exists() {
        std::fs::create_dir_all(dir.join("bin")).expect("bin");
        std::fs::copy(env!("CARGO_BIN_EXE_pgdeploy"), &bin).expect("copy the binary");
    }
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work");
    Command::new(&bin)
        .args(args)
        .current_dir(&work)
        .env("HOME", dir.join("home"))
        .env_remove("XDG_CACHE_HOME")
        .env("PGDEPLOY_AGE_IDENTITY", dir.join("home/age-identity.txt"))
        .env_remove("PGDEPLOY_SSH_CONFIG")
        .output()
        .expect("pgdeploy runs")
}

fn text_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn installed_anywhere_it_has_its_stack_and_init_starts_a_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    // init --hosts: a project that validates as written, with the built-in stack.
    let hosts = "10.0.0.11,10.0.0.12,10.0.0.13,10.0.0.14";
    let init = installed(dir, &["init", "prod", "--hosts", hosts]);
    assert!(init.status.success(), "{}", text_of(&init));
    for file in [
        "inventory.yaml",
        "README.md",
        ".gitignore",
        "secrets.age",
        ".github/workflows/pgdeploy-plan.yml",
    ] {
        assert!(
            dir.join("work/prod").join(file).is_file(),
            "{file}: {}",
            text_of(&init)
        );
    }
    let validate = installed(dir, &["validate", "-i", "prod/inventory.yaml"]);
    let out = text_of(&validate);
    assert!(validate.status.success(), "{out}");
    assert!(
        out.contains("stack: playbook built-in playbooks/site.yaml; roles: 16 built-in"),
        "{out}"
    );
    assert!(out.starts_with("ok: 4 hosts"), "{out}");
    // Three hosts: no backup host, still a project that validates.
    let small = installed(
        dir,
        &["init", "small", "--hosts", "10.0.0.31,10.0.0.32,10.0.0.33"],
    );
    assert!(small.status.success(), "{}", text_of(&small));
    let validate = installed(dir, &["validate", "-i", "small/inventory.yaml"]);
    let out = text_of(&validate);
    assert!(validate.status.success(), "{out}");
    assert!(out.starts_with("ok: 3 hosts"), "{out}");
    // A second init refuses to overwrite anything.
    let before = std::fs::read(dir.join("work/prod/secrets.age")).expect("secrets");
    let again = installed(dir, &["init", "prod", "--hosts", "10.0.0.21"]);
    assert_eq!(again.status.code(), Some(2), "{}", text_of(&again));
    assert_eq!(
        std::fs::read(dir.join("work/prod/secrets.age")).expect("secrets"),
        before
    );
    // A role exported beside the inventory wins over the built-in one.
    let export = installed(dir, &["roles", "export", "prod"]);
    assert!(export.status.success(), "{}", text_of(&export));
    let refused = installed(dir, &["roles", "export", "prod"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "no overwrite without --force"
    );
    std::fs::remove_dir_all(dir.join("work/prod/playbooks")).expect("rm playbooks");
    for entry in std::fs::read_dir(dir.join("work/prod/roles")).expect("roles") {
        let path = entry.expect("entry").path();
        if !path.ends_with("etcd") {
            std::fs::remove_dir_all(path).expect("rm role");
        }
    }
    let list = installed(dir, &["roles", "list", "-i", "prod/inventory.yaml"]);
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    let etcd = listed
        .lines()
        .find(|l| l.starts_with("etcd "))
        .expect("etcd listed");
    assert!(etcd.contains("prod/roles/etcd"), "{listed}");
    let patroni = listed
        .lines()
        .find(|l| l.starts_with("patroni "))
        .expect("patroni listed");
    assert!(patroni.contains("built-in"), "{listed}");
    let validate = installed(dir, &["validate", "-i", "prod/inventory.yaml"]);
    let out = text_of(&validate);
    assert!(
        out.contains("roles: 15 built-in, etcd from prod/roles\n"),
        "{out}"
    );
}

#[test]
fn the_untouched_skeleton_names_what_to_fill_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let init = installed(dir, &["init", "new"]);
    assert!(init.status.success(), "{}", text_of(&init));
    assert!(
        !dir.join("work/new/secrets.age").exists(),
        "no secrets without hosts"
    );
    // First the host addresses (the inventory is read before the roles)...
    let validate = installed(dir, &["validate", "-i", "new/inventory.yaml"]);
    assert_eq!(validate.status.code(), Some(2), "{}", text_of(&validate));
    let out = String::from_utf8_lossy(&validate.stderr).into_owned();
    for n in 1..=4 {
        let line = format!("inventory.yaml:{}:27:", 25 + n);
        let wanted = format!("`<address of node{n}>` is not a valid IP address");
        assert!(
            out.lines()
                .any(|l| l.contains(&line) && l.contains(&wanted)),
            "{line} {wanted}: {out}"
        );
    }
    // ... then the settings the roles need.
    let path = dir.join("work/new/inventory.yaml");
    let filled = std::fs::read_to_string(&path)
        .expect("inventory")
        .replace("'<address of node", "'10.9.9.")
        .replace(">'", "'");
    std::fs::write(&path, filled).expect("write");
    let validate = installed(dir, &["validate", "-i", "new/inventory.yaml"]);
    assert_eq!(validate.status.code(), Some(2), "{}", text_of(&validate));
    let out = String::from_utf8_lossy(&validate.stderr).into_owned();
    for missing in [
        "needs var `vip_address`",
        "needs var `cluster_name`",
        "needs var `admin_networks`",
        "needs var `postgres_superuser_password`",
    ] {
        assert!(out.contains(missing), "{missing}: {out}");
    }
}
