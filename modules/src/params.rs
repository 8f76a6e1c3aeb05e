//! Turning a task's parameters (a JSON object) into a module's typed
//! parameter struct, with errors people can act on: unknown parameters get a
//! "did you mean", missing ones are named, wrong types say which parameter.
//!
//! Values are accepted leniently where templating makes that necessary: a
//! rendered `"{{ port }}"` arrives as the string `"5432"`, so numbers accept
//! digit strings and booleans accept Ansible's boolean words
//! ([`pgdeploy_text::truthy`]).

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

use crate::{ModuleError, ParamSpec};

/// Parses `params` for module `module` whose accepted parameters are `specs`.
pub(crate) fn parse<T: DeserializeOwned>(
    module: &str,
    specs: &[ParamSpec],
    params: &serde_json::Value,
) -> Result<T, ModuleError> {
    let empty = serde_json::Map::new();
    let map = match params {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => &empty,
        other => {
            return Err(ModuleError::NotAMapping {
                module: module.to_string(),
                found: kind_of(other),
            })
        }
    };
    for key in map.keys() {
        if !specs.iter().any(|s| s.name == key) {
            return Err(ModuleError::UnknownParameter {
                module: module.to_string(),
                name: key.clone(),
                suggestion: pgdeploy_text::did_you_mean(key, specs.iter().map(|s| s.name))
                    .map(String::from),
                accepted: specs.iter().map(|s| s.name.to_string()).collect(),
            });
        }
    }
    for spec in specs.iter().filter(|s| s.required) {
        if map.get(spec.name).is_none_or(serde_json::Value::is_null) {
            return Err(ModuleError::MissingParameter {
                module: module.to_string(),
                name: spec.name.to_string(),
            });
        }
    }
    // Nulls mean "not given" (a YAML `mode:` with nothing after it).
    let cleaned: serde_json::Map<_, _> = map
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let value = serde_json::Value::Object(cleaned);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let name = match err.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        let path = err.path().to_string();
        let reason = err.into_inner().to_string();
        match name {
            Some(name) => ModuleError::InvalidValue {
                module: module.to_string(),
                name,
                path,
                reason,
            },
            // Not within one parameter: the mapping as a whole (unknown and
            // missing parameters are found above, so this is not expected).
            None => ModuleError::rejected([], format!("module `{module}`: {reason}")),
        }
    })
}

/// A short name of a JSON value's type, for error messages ("a list").
pub fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<serde_json::Value>),
}

/// A boolean, also given as one of Ansible's boolean words
/// ([`pgdeploy_text::truthy`]: `y yes on 1 true t` and `n no off 0 false f`
/// or empty, without case) or as the integer 0 or 1.
pub(crate) fn bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Loose::deserialize(d).map_err(|_| D::Error::custom("expected a boolean"))? {
        Loose::Bool(b) => Ok(b),
        Loose::Str(s) => pgdeploy_text::truthy(&s)
            .ok_or_else(|| D::Error::custom(format!("expected a boolean, found the string {s:?}"))),
        Loose::Int(i) if i == 0 || i == 1 => Ok(i == 1),
        _ => Err(D::Error::custom("expected a boolean (true or false)")),
    }
}

/// An optional [`bool_lenient`].
pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    bool_lenient(d).map(Some)
}

/// A non-negative integer, also given as a string of digits.
pub(crate) fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Loose::deserialize(d).map_err(|_| D::Error::custom("expected a number"))? {
        Loose::Int(i) if i >= 0 => Ok(i as u64),
        Loose::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("expected a number, found the string {s:?}"))),
        _ => Err(D::Error::custom("expected a non-negative whole number")),
    }
}

/// An optional [`u64_lenient`].
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64_lenient(d).map(Some)
}

/// A string, also given as a number or boolean (written as YAML would).
pub(crate) fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Loose::deserialize(d).map_err(|_| D::Error::custom("expected a string"))? {
        Loose::Str(s) => Ok(s),
        Loose::Int(i) => Ok(i.to_string()),
        Loose::Float(f) => Ok(f.to_string()),
        Loose::Bool(b) => Ok(b.to_string()),
        Loose::List(_) => Err(D::Error::custom("expected a string, found a list")),
    }
}

/// An optional [`scalar_string`].
pub(crate) fn opt_scalar_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    scalar_string(d).map(Some)
}

/// One string or a list of strings.
pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Loose::deserialize(d)
        .map_err(|_| D::Error::custom("expected a string or a list of strings"))?
    {
        Loose::Str(s) => Ok(vec![s]),
        Loose::List(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                other => Err(D::Error::custom(format!(
                    "expected a list of strings, found {} in it",
                    kind_of(&other)
                ))),
            })
            .collect(),
        _ => Err(D::Error::custom("expected a string or a list of strings")),
    }
}

/// An optional [`string_list`].
pub(crate) fn opt_string_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    string_list(d).map(Some)
}

/// A file mode, normalized to four octal digits (`"0640"`). Strings are read
/// as octal (`"0640"`, `"640"`, `"2750"`); integers are read by their decimal
/// digits as octal text (YAML `0640` and `640` both mean `"0640"`), since
/// YAML 1.2 reads `0640` as the decimal 640.
pub(crate) fn opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = match Loose::deserialize(d)
        .map_err(|_| D::Error::custom("expected an octal mode like \"0640\""))?
    {
        Loose::Str(s) => s.trim().to_string(),
        Loose::Int(i) if i >= 0 => i.to_string(),
        _ => return Err(D::Error::custom("expected an octal mode like \"0640\"")),
    };
    normalize_mode(&text).map(Some).map_err(D::Error::custom)
}

/// `"640"` → `"0640"`; errors on anything but 1 to 4 octal digits.
pub(crate) fn normalize_mode(text: &str) -> Result<String, String> {
    let digits = text.trim_start_matches("0o");
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!(
            "invalid mode {text:?}: give octal digits like \"0640\" (symbolic modes are not supported)"
        ));
    }
    let value = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    Ok(format!("{value:04o}"))
}

/// Rejects names that could be mistaken for options by the commands they
/// are passed to (they are quoted, so this is about clarity, not injection).
pub(crate) fn no_leading_dash(param: &str, value: &str) -> Result<(), ModuleError> {
    if value.is_empty() {
        return Err(ModuleError::rejected(
            [param],
            format!("{param} must not be empty"),
        ));
    }
    if value.starts_with('-') {
        return Err(ModuleError::rejected(
            [param],
            format!("{param} {value:?} must not start with '-'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        path: String,
        #[serde(default, deserialize_with = "opt_mode")]
        mode: Option<String>,
        #[serde(default, deserialize_with = "opt_bool")]
        create: Option<bool>,
    }
    fn specs() -> Vec<ParamSpec> {
        crate::introspect::specs::<P>()
    }

    fn err(v: serde_json::Value) -> String {
        parse::<P>("file", &specs(), &v)
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn unknown_parameter_suggests_the_closest() {
        let msg = err(serde_json::json!({"path": "/x", "mdoe": "0644"}));
        assert!(msg.contains("unknown parameter `mdoe`"), "{msg}");
        assert!(msg.contains("did you mean `mode`?"), "{msg}");
        let msg = err(serde_json::json!({"path": "/x", "zzzzzz": 1}));
        assert!(msg.contains("it accepts `path`, `mode`, `create`"), "{msg}");
    }

    #[test]
    fn missing_and_wrong_type_are_named() {
        assert!(
            err(serde_json::json!({"mode": "0644"})).contains("missing required parameter `path`")
        );
        let msg = err(serde_json::json!({"path": "/x", "create": "perhaps"}));
        assert!(
            msg.contains("parameter `create`") && msg.contains("boolean"),
            "{msg}"
        );
        let msg = err(serde_json::json!({"path": ["/x"]}));
        assert!(msg.contains("parameter `path`"), "{msg}");
        assert!(err(serde_json::json!("x")).contains("mapping"));
    }

    #[test]
    fn errors_carry_the_parameter_they_are_about() {
        let e = |v| parse::<P>("file", &specs(), &v).expect_err("should fail");
        match e(serde_json::json!({"path": "/x", "mdoe": "0644"})) {
            ModuleError::UnknownParameter {
                module,
                name,
                suggestion,
                accepted,
            } => {
                assert_eq!((module.as_str(), name.as_str()), ("file", "mdoe"));
                assert_eq!(suggestion.as_deref(), Some("mode"));
                assert_eq!(accepted, ["path", "mode", "create"]);
            }
            other => panic!("{other:?}"),
        }
        let missing = e(serde_json::json!({"path": null}));
        assert!(
            matches!(&missing, ModuleError::MissingParameter { name, .. } if name == "path"),
            "{missing:?}"
        );
        assert_eq!(missing.parameters(), Some(vec!["path"]));
        match e(serde_json::json!({"path": "/x", "create": [1]})) {
            ModuleError::InvalidValue {
                name, path, reason, ..
            } => {
                assert_eq!((name.as_str(), path.as_str()), ("create", "create"));
                assert!(reason.contains("boolean"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let not_a_map = e(serde_json::json!(["x"]));
        assert!(matches!(
            not_a_map,
            ModuleError::NotAMapping {
                found: "a list",
                ..
            }
        ));
        assert_eq!(not_a_map.parameters(), Some(vec![]));
        assert_eq!(ModuleError::Probe("x".into()).parameters(), None);
    }

    #[test]
    fn modes_are_octal_text() {
        for (given, want) in [
            (serde_json::json!("0640"), "0640"),
            (serde_json::json!("640"), "0640"),
            (serde_json::json!(640), "0640"),
            (serde_json::json!(2750), "2750"),
        ] {
            let p: P = parse(
                "file",
                &specs(),
                &serde_json::json!({"path": "/x", "mode": given}),
            )
            .expect("parses");
            assert_eq!(p.mode.as_deref(), Some(want));
        }
        assert!(err(serde_json::json!({"path": "/x", "mode": "0890"})).contains("invalid mode"));
        assert!(err(serde_json::json!({"path": "/x", "mode": "u+rw"})).contains("symbolic"));
    }

    #[test]
    fn lenient_booleans_and_nulls() {
        let p: P = parse(
            "file",
            &specs(),
            &serde_json::json!({"path": "/x", "create": "yes", "mode": null}),
        )
        .expect("parses");
        assert_eq!(p.create, Some(true));
        assert_eq!(p.mode, None);
        for (word, want) in [
            (serde_json::json!("Y"), true),
            (serde_json::json!("t"), true),
            (serde_json::json!(1), true),
            (serde_json::json!("off"), false),
            (serde_json::json!("F"), false),
            (serde_json::json!(0), false),
        ] {
            let p: P = parse(
                "file",
                &specs(),
                &serde_json::json!({"path": "/x", "create": word.clone()}),
            )
            .expect("parses");
            assert_eq!(p.create, Some(want), "{word}");
        }
        assert!(err(serde_json::json!({"path": "/x", "create": 2})).contains("boolean"));
    }
}
