//! The stack contract is the one place that names the inventory groups:
//! no Rust code outside `stack/src/contract.rs` (tests aside) may spell a
//! group name as a string literal. A line that holds such a word for
//! another reason says so with a `// not a group:` comment.

use std::path::{Path, PathBuf};

const GROUPS: [&str; 5] = ["etcd", "postgres", "balancers", "backup", "monitoring"];
const CRATES: [&str; 7] = [
    "src",
    "engine/src",
    "stack/src",
    "modules/src",
    "transport/src",
    "lab/src",
    "text/src",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The places outside the contract where a group name is a literal.
fn offenders(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for dir in CRATES {
        rust_files(&root.join(dir), &mut files);
    }
    let contract = root.join("stack/src/contract.rs");
    let mut found = Vec::new();
    for file in files.iter().filter(|f| **f != contract) {
        let text = std::fs::read_to_string(file).expect("readable source");
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            if line.contains("// not a group:") || line.trim_start().starts_with("//") {
                continue;
            }
            for group in GROUPS {
                // A string literal, or a group named in a message.
                if line.contains(&format!("\"{group}\"")) || line.contains(&format!("`{group}`")) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn group_names_live_only_in_the_stack_contract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = offenders(root);
    assert!(
        found.is_empty(),
        "group names outside stack/src/contract.rs (use contract::Group):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_a_planted_literal() {
    let dir = tempfile::tempdir().expect("tmp");
    for c in CRATES {
        std::fs::create_dir_all(dir.path().join(c)).expect("mkdir");
    }
    std::fs::write(
        dir.path().join("stack/src/ops.rs"),
        "fn f(c: &C) { c.group(\"balancers\"); }\nfn g() -> &'static str { \"no `backup` host\" }\n// the `etcd` group, in a comment\n#[cfg(test)]\nmod tests { const X: &str = \"etcd\"; }\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("stack/src/contract.rs"),
        "const E: &str = \"etcd\";\n",
    )
    .expect("write");
    let found = offenders(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("ops.rs:1:"), "{found:?}");
    assert!(found[1].contains("ops.rs:2:"), "{found:?}");
}
