//! Puts the git commit in `pgdeploy --version` (`pgdeploy 0.1.0 (abc1234)`,
//! `abc1234-dirty` when tracked files had uncommitted changes when this
//! script last ran). A crate built without its git checkout (a tarball, a
//! vendored copy inside another repository) says `unknown`. Cheap: a few
//! `git` calls, rerun only when HEAD or the branch's ref moves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match own_checkout(&root) {
        Some(()) => {
            watch_head(&root);
            describe(git(&root, &["rev-parse", "--short", "HEAD"]), dirty(&root))
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=PGDEPLOY_GIT_COMMIT={commit}");
}

/// `abc1234`, `abc1234-dirty`, or `unknown` without a commit.
fn describe(commit: Option<String>, dirty: bool) -> String {
    match commit {
        Some(c) if dirty => format!("{c}-dirty"),
        Some(c) => c,
        None => "unknown".to_string(),
    }
}

/// Whether `root` is the top of its own git work tree (not a folder inside
/// some other repository).
fn own_checkout(root: &Path) -> Option<()> {
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    let same = Path::new(&top).canonicalize().ok()? == root.canonicalize().ok()?;
    same.then_some(())
}

/// Reruns this script when HEAD or the ref it points at changes (both
/// through `--git-path`, right in a linked worktree too).
fn watch_head(root: &Path) {
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(reference) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(reference);
    }
    for name in watched {
        let Some(path) = git(root, &["rev-parse", "--git-path", &name]) else {
            continue;
        };
        let path = root.join(path);
        // A path that does not exist would rerun the script on every build.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Whether tracked files differ from HEAD.
fn dirty(root: &Path) -> bool {
    git(root, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty())
}

/// `git ARGS` in `root`: its trimmed output, or nothing when git is missing
/// or fails.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_string())
}
