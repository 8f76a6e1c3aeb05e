//! Any text as a playbook, run through the whole static pipeline that
//! `validate` and `apply` run before contacting a host: parse, resolve the
//! DAG against a small fixed inventory, and check. Roles come from the
//! bad-input corpus's base (`tests/fixtures/bad/_base/roles`).
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use pgdeploy_engine::inventory::{Inventory, Vars};
use pgdeploy_engine::playbook::Playbook;
use pgdeploy_engine::resolve::{Resolved, Selection};

const INVENTORY: &str = "all:
  vars: {admin_networks: [10.0.0.0/24], motd_text: hi}
  hosts:
    node1: {ansible_host: 127.0.0.2}
    node2: {ansible_host: 127.0.0.3}
  children:
    db: {hosts: {node1: , node2: }}
    etcd: {hosts: {node2: }}
";

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bad/_base")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = base();
    let Ok(inventory) = Inventory::parse(INVENTORY, Path::new("/nonexistent/inventory.yaml"))
    else {
        return;
    };
    let Ok(playbook) = Playbook::parse(text, &dir.join("playbook.yaml")) else {
        return;
    };
    let selection = Selection::default();
    let Ok(resolved) = Resolved::build(&inventory, &playbook, &selection) else {
        return;
    };
    let _ = pgdeploy_engine::validate::check(&inventory, &playbook, &resolved, &Vars::new());
    let _ = pgdeploy_engine::graph::text(&resolved);
});
