//! Puts the git commit in `pgdeploy --version` (`pgdeploy 0.1.0 (abc1234)`,
//! `abc1234-dirty` when tracked files had uncommitted changes when this
//! script last ran). A crate built without its git checkout (a tarball, a
//! vendored copy inside another repository) says `unknown`. Cheap: a few
//! `git` calls, rerun only when HEAD or the branch's ref moves.
//!
//! Also embeds the stack (`roles/`, `playbooks/`) in the binary: it writes
//! `$OUT_DIR/builtin_stack.rs`, a list of every file's path and
//! `include_bytes!` with a hash of the whole (src/cli/builtin.rs uses it).

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
    embed_stack(&root);
}

/// The folders of the stack that travel inside the binary.
const STACK_DIRS: [&str; 2] = ["roles", "playbooks"];

/// Writes `$OUT_DIR/builtin_stack.rs`: `FILES` (path relative to the
/// checkout, bytes) in path order and `HASH`, a hash of all of them (FNV-1a,
/// 64 bits, as hex) that names the folder they are unpacked into.
fn embed_stack(root: &Path) {
    let mut files = Vec::new();
    for dir in STACK_DIRS {
        println!("cargo:rerun-if-changed={dir}");
        walk(root, &root.join(dir), &mut files);
    }
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut out = String::from("/// The embedded stack: (path, bytes), in path order.\npub static FILES: &[(&str, &[u8])] = &[\n");
    for rel in &files {
        let path = root.join(rel);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        feed(rel.as_bytes());
        feed(&(bytes.len() as u64).to_le_bytes());
        feed(&bytes);
        out.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    out.push_str(&format!("/// A hash of every embedded file (path and bytes).\npub const HASH: &str = \"{hash:016x}\";\n"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out_dir.join("builtin_stack.rs"), out).expect("write builtin_stack.rs");
}

/// Every file below `dir`, as paths relative to `root` with `/`.
fn walk(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            files.push(rel.join("/"));
        }
    }
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
