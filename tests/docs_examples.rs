//! Every ```` ```yaml ```` example in `docs/*.md` and `roles/*/README.md`
//! validates, so the docs and the code cannot drift apart: a playbook (a
//! list of plays) against `inventories/example.yaml` with the repository's
//! roles, a task list inside a play, an inventory (a mapping with `all`)
//! against the site playbook. Templates and files the examples name come
//! from `tests/fixtures/docs/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One example: where it is and its text.
struct Example {
    file: PathBuf,
    line: usize,
    text: String,
}

fn examples_in(file: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(file).expect("readable doc");
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```yaml" => current = Some((n + 1, String::new())),
            Some((start, body)) if line.trim_start() == "```" => {
                out.push(Example {
                    file: file.to_path_buf(),
                    line: *start,
                    text: std::mem::take(body),
                });
                current = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

fn all_examples(root: &Path) -> Vec<Example> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["docs", "roles"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if path.join("README.md").exists() {
                files.push(path.join("README.md"));
            }
        }
    }
    files.sort();
    files.iter().flat_map(|f| examples_in(f)).collect()
}

/// What kind of example `text` is, by its first meaningful line.
enum Kind {
    Playbook,
    Tasks,
    Inventory,
}

fn kind(text: &str) -> Kind {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    if first.starts_with("all:") {
        Kind::Inventory
    } else if text.lines().any(|l| {
        let l = l.trim_start_matches([' ', '-']);
        l.starts_with("hosts:") && (l.len() > 6)
    }) && first.starts_with('-')
    {
        Kind::Playbook
    } else {
        Kind::Tasks
    }
}

const SECRETS: [&str; 6] = [
    "-e",
    "postgres_superuser_password=docs-example",
    "-e",
    "postgres_replication_password=docs-example",
    "-e",
    "postgres_monitoring_password=docs-example",
];

/// Validates one example; the error names its file and line.
fn validate(root: &Path, example: &Example) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tmp");
    let books = dir.path().join("playbooks");
    copy_dir(&root.join("tests/fixtures/docs"), &books);
    std::os::unix::fs::symlink(root.join("roles"), dir.path().join("roles")).expect("link roles");
    let (inventory, playbook) = match kind(&example.text) {
        Kind::Inventory => {
            let inventory = dir.path().join("inventory.yaml");
            std::fs::write(&inventory, &example.text).expect("write");
            (inventory, root.join("playbooks/site.yaml"))
        }
        Kind::Playbook | Kind::Tasks => {
            let text = match kind(&example.text) {
                Kind::Tasks => {
                    let indented: String =
                        example.text.lines().map(|l| format!("    {l}\n")).collect();
                    format!("- hosts: all\n  tasks:\n{indented}")
                }
                _ => example.text.clone(),
            };
            let playbook = books.join("example.yaml");
            std::fs::write(&playbook, text).expect("write");
            (root.join("inventories/example.yaml"), playbook)
        }
    };
    let out = Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .arg("validate")
        .arg("-i")
        .arg(&inventory)
        .arg(&playbook)
        .args(SECRETS)
        .env("PGDEPLOY_AGE_IDENTITY", dir.path().join("no-identity"))
        .output()
        .expect("pgdeploy runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}:{}: the example does not validate:\n{}{}",
            example.file.display(),
            example.line,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("fixture folder") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[test]
fn every_yaml_example_in_the_docs_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = all_examples(root);
    assert!(
        examples.len() >= 2,
        "found only {} examples: the extraction is broken",
        examples.len()
    );
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|e| validate(root, e).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_broken_example_is_caught_with_its_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = Example {
        file: PathBuf::from("docs/broken.md"),
        line: 7,
        text: "- name: typo\n  comand: echo hi\n".into(),
    };
    let error = validate(root, &example).expect_err("an unknown module is refused");
    assert!(error.starts_with("docs/broken.md:7:"), "{error}");
    assert!(error.contains("did you mean `command`"), "{error}");
}
