//! Any text as an inventory: parsing must return an inventory or input
//! errors, never panic; host patterns (the text's last line) must select or
//! fail cleanly.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pgdeploy_engine::inventory::Inventory;
use pgdeploy_engine::yaml::Pos;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/pgdeploy-fuzz/inventory.yaml");
    if let Ok(inventory) = Inventory::parse(text, path) {
        let pattern = text.lines().last().unwrap_or("all");
        let _ = inventory.select(pattern, &Pos::synthetic("--limit"));
        let _ = inventory.groups_json();
    }
});
