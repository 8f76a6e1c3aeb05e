//! The stack built into the binary: `roles/` and `playbooks/` of the
//! checkout it was built from (build.rs embeds them), so an installed
//! `pgdeploy` deploys from any folder.
//!
//! The engine reads roles from folders (templates, files, READMEs), so the
//! embedded files are unpacked once into a folder named after their hash,
//! `$XDG_CACHE_HOME/pgdeploy/stack-HASH` (default `~/.cache/...`; the
//! system's temporary folder when that cannot be written), and checked
//! against the embedded bytes on every use: a file changed or removed there
//! is written again, so the built-in stack is always exactly the one built.

use std::path::{Path, PathBuf};

mod generated {
    include!(concat!(env!("OUT_DIR"), "/builtin_stack.rs"));
}

pub use generated::{FILES, HASH};

/// The built-in site playbook, relative to the stack's folder.
pub const SITE_PLAYBOOK: &str = "playbooks/site.yaml";

/// A failure to unpack or write out the built-in stack.
#[derive(Debug)]
pub enum StackError {
    /// A folder or file could not be written.
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `roles export` would overwrite these files (without `--force`).
    Exists { paths: Vec<PathBuf> },
}

impl std::fmt::Display for StackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StackError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
            StackError::Exists { paths } => {
                write!(f, "{} file(s) exist already (", paths.len())?;
                for (i, p) in paths.iter().take(3).enumerate() {
                    write!(f, "{}{}", if i > 0 { ", " } else { "" }, p.display())?;
                }
                if paths.len() > 3 {
                    write!(f, ", ...")?;
                }
                write!(f, "); --force overwrites them")
            }
        }
    }
}

/// The folder holding the unpacked built-in stack (`roles/`,
/// `playbooks/`), unpacked or repaired first when needed.
pub fn unpacked() -> Result<PathBuf, StackError> {
    let mut last = None;
    for base in cache_bases() {
        let dir = base.join(format!("stack-{HASH}"));
        match unpack_into(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| StackError::Write {
        path: PathBuf::from("stack"),
        error: std::io::Error::other("no folder to unpack the built-in stack into"),
    }))
}

/// Where the stack may be unpacked, preferred first.
fn cache_bases() -> Vec<PathBuf> {
    let mut bases = Vec::new();
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
    if let Some(cache) = xdg
        .map(PathBuf::from)
        .or_else(|| home.map(|h| PathBuf::from(h).join(".cache")))
    {
        bases.push(cache.join("pgdeploy"));
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    bases.push(std::env::temp_dir().join(format!("pgdeploy-{user}")));
    bases
}

/// Writes every embedded file under `dir` whose content differs there.
fn unpack_into(dir: &Path) -> Result<(), StackError> {
    for (rel, bytes) in FILES {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|on_disk| on_disk == *bytes) {
            continue;
        }
        write_file(&path, bytes)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` (its folders made first) through a temporary
/// file and a rename, so a concurrent reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StackError> {
    let fail = |error| StackError::Write {
        path: path.to_path_buf(),
        error,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let temporary = path.with_extension(format!("pgdeploy-{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        fail(e)
    })
}

/// The built-in roles' names, in order.
pub fn role_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FILES
        .iter()
        .filter_map(|(rel, _)| rel.strip_prefix("roles/")?.split('/').next())
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
/// An embedded file's text, if there is such a file.
pub fn text(rel: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(r, _)| *r == rel)
        .and_then(|(_, bytes)| std::str::from_utf8(bytes).ok())
}

/// Writes the built-in roles and playbooks into `dir` (as `roles/` and
/// `playbooks/`); refuses to overwrite a file unless `force`. Gives the
/// files written.
pub fn export(dir: &Path, force: bool) -> Result<Vec<PathBuf>, StackError> {
    if !force {
        let existing: Vec<PathBuf> = FILES
            .iter()
            .map(|(rel, _)| dir.join(rel))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() {
            return Err(StackError::Exists { paths: existing });
        }
    }
    let mut written = Vec::new();
    for (rel, bytes) in FILES {
        let path = dir.join(rel);
        write_file(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_playbook_and_its_roles_are_embedded() {
        assert!(text(SITE_PLAYBOOK).is_some_and(|t| t.contains("roles:")));
        let names = role_names();
        for role in ["etcd", "patroni", "haproxy"] {
            assert!(names.contains(&role), "{names:?}");
            assert!(
                text(&format!("roles/{role}/tasks.yaml")).is_some(),
                "{role}"
            );
        }
        assert_eq!(HASH.len(), 16);
    }

    #[test]
    fn unpacking_repairs_a_changed_file_and_export_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stack = dir.path().join("stack");
        unpack_into(&stack).expect("unpack");
        let site = stack.join(SITE_PLAYBOOK);
        std::fs::write(&site, "changed").expect("write");
        unpack_into(&stack).expect("unpack again");
        assert_eq!(
            std::fs::read_to_string(&site).expect("read"),
            text(SITE_PLAYBOOK).expect("site")
        );
        let out = dir.path().join("out");
        let written = export(&out, false).expect("export");
        assert_eq!(written.len(), FILES.len());
        match export(&out, false) {
            Err(StackError::Exists { paths }) => assert_eq!(paths.len(), FILES.len()),
            other => panic!("{other:?}"),
        }
        export(&out, true).expect("--force overwrites");
    }
}
