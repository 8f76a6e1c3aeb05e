//! Which playbook and roles a command uses (on disk or built in), and
//! `roles list` / `roles export`.
//!
//! The playbook: the one given; else `playbooks/site.yaml` in the working
//! folder, then beside the inventory; else the built-in one. Roles, role by
//! role, from the first folder that has one of the name: each
//! `--roles-path`, then `roles/` beside the playbook and `../roles` (a
//! playbook on disk), then `roles/` beside the inventory, then the built-in
//! roles.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pgdeploy_engine::playbook::Playbook;

use super::builtin::{self, SITE_PLAYBOOK};
use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

/// Where a playbook or role comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into the binary.
    BuiltIn,
    /// A file or folder on disk.
    Disk(PathBuf),
}

/// The playbook a command runs and the folders its roles are looked up in.
#[derive(Debug, Clone)]
pub struct StackPaths {
    /// The playbook file to read (the unpacked copy when built in).
    pub playbook: PathBuf,
    /// Where it comes from.
    pub playbook_source: Source,
    /// Role folders, first wins; the last is the built-in roles'.
    pub role_dirs: Vec<PathBuf>,
    /// The unpacked built-in stack's folder.
    builtin: PathBuf,
}

impl StackPaths {
    /// Resolves the playbook and role folders for `inventory` (the folder
    /// beside it may hold `playbooks/` and `roles/`).
    pub fn resolve(
        inventory: Option<&Path>,
        playbook: Option<&Path>,
        roles_path: &[PathBuf],
    ) -> Result<StackPaths, ExitCode> {
        Self::resolve_in(Path::new(""), inventory, playbook, roles_path)
    }

    /// [`StackPaths::resolve`] with `cwd` as the working folder.
    fn resolve_in(
        cwd: &Path,
        inventory: Option<&Path>,
        playbook: Option<&Path>,
        roles_path: &[PathBuf],
    ) -> Result<StackPaths, ExitCode> {
        let builtin = builtin::unpacked()
            .map_err(|e| fail(EXIT_FAILED, format!("the built-in stack: {e}")))?;
        let beside_inventory = inventory.map(|i| i.parent().unwrap_or(Path::new("")).to_path_buf());
        let on_disk = playbook.map(Path::to_path_buf).or_else(|| {
            std::iter::once(cwd.join(SITE_PLAYBOOK))
                .chain(beside_inventory.iter().map(|d| d.join(SITE_PLAYBOOK)))
                .find(|p| p.is_file())
        });
        let mut role_dirs: Vec<PathBuf> = roles_path.to_vec();
        if let Some(p) = &on_disk {
            role_dirs.extend(Playbook::roles_beside(p));
        }
        role_dirs.extend(beside_inventory.iter().map(|d| d.join("roles")));
        role_dirs.push(builtin.join("roles"));
        dedup_folders(&mut role_dirs);
        Ok(match on_disk {
            Some(path) => StackPaths {
                playbook: path.clone(),
                playbook_source: Source::Disk(path),
                role_dirs,
                builtin,
            },
            None => StackPaths {
                playbook: builtin.join(SITE_PLAYBOOK),
                playbook_source: Source::BuiltIn,
                role_dirs,
                builtin,
            },
        })
    }

    /// The folder a run takes role `name` from, if any has it.
    pub fn role_dir(&self, name: &str) -> Option<PathBuf> {
        self.role_dirs
            .iter()
            .map(|d| d.join(name))
            .find(|d| d.is_dir())
    }

    /// Where a role folder comes from.
    pub fn source_of(&self, dir: &Path) -> Source {
        if dir.starts_with(&self.builtin) {
            Source::BuiltIn
        } else {
            Source::Disk(dir.to_path_buf())
        }
    }

    /// The playbook's name for people and the apply record:
    /// `built-in playbooks/site.yaml` or its path.
    pub fn playbook_label(&self) -> String {
        match &self.playbook_source {
            Source::BuiltIn => format!("built-in {SITE_PLAYBOOK}"),
            Source::Disk(path) => path.display().to_string(),
        }
    }

    /// One line naming the playbook and where the loaded roles come from:
    /// `stack: playbook built-in playbooks/site.yaml; roles: 14 built-in,
    /// etcd from roles` (up to three roles of a folder by name, more as a
    /// count).
    pub fn describe(&self, playbook: &Playbook) -> String {
        let mut by_folder: Vec<(String, Vec<&str>)> = Vec::new();
        for role in playbook.roles.values() {
            let folder = match self.source_of(&role.dir) {
                Source::BuiltIn => String::new(),
                Source::Disk(dir) => dir.parent().unwrap_or(&dir).display().to_string(),
            };
            match by_folder.iter_mut().find(|(f, _)| *f == folder) {
                Some((_, names)) => names.push(&role.name),
                None => by_folder.push((folder, vec![&role.name])),
            }
        }
        by_folder.sort_by_key(|(folder, _)| !folder.is_empty());
        let parts: Vec<String> = by_folder
            .iter()
            .map(|(folder, names)| {
                let which = if names.len() <= 3 {
                    names.join(", ")
                } else {
                    names.len().to_string()
                };
                if folder.is_empty() {
                    format!("{which} built-in")
                } else {
                    format!("{which} from {folder}")
                }
            })
            .collect();
        format!(
            "stack: playbook {}; roles: {}",
            self.playbook_label(),
            parts.join(", ")
        )
    }
}

/// Drops folders that appear earlier in the list (the same folder by
/// another spelling too).
fn dedup_folders(dirs: &mut Vec<PathBuf>) {
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

/// `roles list`: every role a run would find (built-in ones and those on
/// disk), where it comes from and what it does.
pub fn list(inventory: Option<&Path>, roles_path: &[PathBuf]) -> ExitCode {
    let paths = match StackPaths::resolve(inventory, None, roles_path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut names: Vec<String> = builtin::role_names()
        .into_iter()
        .map(String::from)
        .collect();
    for dir in &paths.role_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    let width = names.iter().map(String::len).max().unwrap_or(0);
    println!("playbook: {}", paths.playbook_label());
    for name in names {
        let Some(dir) = paths.role_dir(&name) else {
            continue;
        };
        let source = match paths.source_of(&dir) {
            Source::BuiltIn => "built-in".to_string(),
            Source::Disk(dir) => dir.display().to_string(),
        };
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
        println!("{name:width$}  {source:10}  {}", summary(&readme));
    }
    ExitCode::SUCCESS
}

/// A README's first sentence (of the first paragraph after its `#`
/// title), on one line, without Markdown emphasis.
fn summary(readme: &str) -> String {
    let paragraph: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty() || l.starts_with('#'))
        .take_while(|l| !l.is_empty())
        .collect();
    let text = paragraph.join(" ").replace("**", "");
    let sentence = match text.find(". ") {
        Some(end) => &text[..=end],
        None => &text,
    };
    sentence.trim_end_matches(':').trim().to_string()
}

/// `roles export DIR`: writes the built-in `roles/` and `playbooks/` into
/// DIR, refusing to overwrite a file unless `force`.
pub fn export(dir: &Path, force: bool) -> ExitCode {
    match builtin::export(dir, force) {
        Ok(written) => {
            println!(
                "wrote {} files: {} and {} (roles and playbooks there win over the built-in ones when DIR is the inventory's folder or given with --roles-path)",
                written.len(),
                dir.join("roles").display(),
                dir.join("playbooks").display()
            );
            ExitCode::SUCCESS
        }
        Err(e @ builtin::StackError::Exists { .. }) => fail(EXIT_BAD_INPUT, e),
        Err(e) => fail(EXIT_FAILED, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_the_first_sentence_after_the_title() {
        assert_eq!(
            summary("# etcd\n\nDebian's **etcd** 3.4 as\na cluster. More text.\n\nNext."),
            "Debian's etcd 3.4 as a cluster."
        );
        assert_eq!(
            summary("# x\nHAProxy in front of:\n"),
            "HAProxy in front of"
        );
        assert_eq!(summary(""), "");
    }

    #[test]
    fn a_role_beside_the_inventory_wins_over_the_built_in_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inventory = dir.path().join("prod.yaml");
        std::fs::create_dir_all(dir.path().join("roles/etcd")).expect("mkdir");
        let paths =
            StackPaths::resolve_in(dir.path(), Some(&inventory), None, &[]).expect("resolve");
        assert_eq!(paths.playbook_source, Source::BuiltIn);
        let etcd = paths.role_dir("etcd").expect("etcd");
        assert_eq!(
            paths.source_of(&etcd),
            Source::Disk(dir.path().join("roles/etcd"))
        );
        let patroni = paths.role_dir("patroni").expect("patroni");
        assert_eq!(paths.source_of(&patroni), Source::BuiltIn);
    }
}
