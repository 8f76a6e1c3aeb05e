//! Any text as a template, a `when` condition and a parameter value:
//! checking, rendering and evaluating must return a value or an error,
//! never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgdeploy_engine::template::{value, Templater};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let templater = Templater::new();
    let vars = value(&serde_json::json!({
        "x": 1,
        "name": "node1",
        "groups": {"db": ["node1", "node2"]},
        "list": [1, 2, 3],
        "nested": {"a": {"b": "c"}},
    }));
    let _ = templater.check_syntax(text);
    let _ = templater.render(text, &vars);
    let _ = templater.condition(text, &vars);
    let _ = templater.render_json(&serde_json::Value::String(text.to_string()), &vars);
});
