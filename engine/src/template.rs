//! Templating with minijinja: role templates, every string parameter, and
//! `when` conditions. An undefined variable is an error, never an empty
//! string.
//!
//! A parameter that is exactly one expression (`"{{ groups['etcd'] }}"`)
//! keeps its type (a list stays a list), as Ansible does.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde_json::Value as Json;

/// A templating failure, with the variable at fault when it is undefined.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What went wrong, for people.
    pub message: String,
    /// Whether the cause is an undefined variable.
    pub undefined: bool,
    /// 1-based line and column of the fault in the template's source, when
    /// known.
    pub location: Option<(u32, u32)>,
    /// When the fault is a variable whose own template cannot be rendered
    /// (a cycle, an undefined name in it): that error.
    pub var: Option<Box<crate::scope::VarError>>,
}

impl TemplateError {
    fn from_minijinja(err: &minijinja::Error, source: &str) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cause {
            if let Some(var) = e.downcast_ref::<crate::scope::VarError>() {
                let undefined = matches!(
                    var,
                    crate::scope::VarError::Render {
                        undefined: true,
                        ..
                    }
                );
                return Self {
                    message: var.to_string(),
                    undefined,
                    location: None,
                    var: Some(Box::new(var.clone())),
                };
            }
            cause = e.source();
        }
        let undefined = err.kind() == ErrorKind::UndefinedError;
        let mut message = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        let mut location = err.line().map(|l| (l as u32, 0));
        if let Some(range) = err.range() {
            let start = range.start.min(source.len());
            if let Some(prefix) = source.get(..start) {
                let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
                let line = prefix.matches('\n').count() + 1;
                location = Some((
                    line as u32,
                    (prefix[line_start..].chars().count() + 1) as u32,
                ));
            }
            match source.get(range).map(str::trim) {
                Some(text)
                    if undefined
                        && !text.is_empty()
                        && text
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '.') =>
                {
                    message = format!("`{text}` is undefined")
                }
                Some(text) if !text.is_empty() => message = format!("{message} (in `{text}`)"),
                _ => {}
            }
        }
        if let Some(line) = err.line().filter(|_| source.contains('\n')) {
            message = format!("line {line}: {message}");
        }
        Self {
            message,
            undefined,
            location,
            var: None,
        }
    }

    /// An error that is not about one place in a template.
    fn plain(message: String, undefined: bool) -> Self {
        Self {
            message,
            undefined,
            location: None,
            var: None,
        }
    }
}

/// The placeholder behind `value`, when it is one.
fn placeholder(value: &Value) -> Option<Arc<Unknown>> {
    value.downcast_object::<Unknown>()
}

/// The built-in filters that convert or pick from a value, taught that a
/// placeholder ([`Unknown`]) gives a placeholder: `facts.os_version | int`
/// is known at run time, not "cannot convert map to integer".
fn add_placeholder_filters(env: &mut Environment<'static>) {
    use minijinja::filters;
    use minijinja::value::Kwargs;
    use minijinja::State;
    let through = |u: &Arc<Unknown>| {
        u.touch();
        Value::from_dyn_object(u.clone())
    };
    env.add_filter(
        "int",
        move |state: &State,
              value: &Value,
              default: Option<Value>,
              base: Option<u32>,
              kwargs: Kwargs| {
            match placeholder(value) {
                Some(u) => Ok(through(&u)),
                None => filters::int(state, value, default, base, kwargs),
            }
        },
    );
    env.add_filter(
        "float",
        move |state: &State, value: &Value, default: Option<Value>, kwargs: Kwargs| {
            match placeholder(value) {
                Some(u) => Ok(through(&u)),
                None => filters::float(state, value, default, kwargs),
            }
        },
    );
    env.add_filter("first", move |value: &Value| match placeholder(value) {
        Some(u) => Ok(through(&u)),
        None => filters::first(value),
    });
    env.add_filter("last", move |value: Value| match placeholder(&value) {
        Some(u) => Ok(through(&u)),
        None => filters::last(value),
    });
    env.add_filter("length", move |value: &Value| match placeholder(value) {
        Some(u) => Ok(through(&u)),
        None => filters::length(value).map(Value::from),
    });
}

/// The shared templating environment (filters, strict undefined); a clone
/// shares it.
#[derive(Clone, Debug)]
pub struct Templater {
    env: Arc<Environment<'static>>,
}

impl Default for Templater {
    fn default() -> Self {
        Self::new()
    }
}

impl Templater {
    /// A strict environment with pgdeploy's extra filters.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.add_filter("to_json", |v: Value| {
            serde_json::to_string(&v).unwrap_or_default()
        });
        env.add_filter("quote", |v: String| pgdeploy_text::quote(&v));
        // Ansible's boolean words (pgdeploy_text::truthy); other words are false.
        env.add_filter("bool", |v: Value| match v.as_str() {
            Some(s) => pgdeploy_text::truthy(s).unwrap_or(false),
            None => v.is_true(),
        });
        // Ansible's `extract`: `groups['x'] | map('extract', hostvars, 'address')`.
        env.add_filter(
            "extract",
            |key: Value, container: Value, attr: Option<Value>| match attr {
                Some(attr) => container.get_item(&key)?.get_item(&attr),
                None => container.get_item(&key),
            },
        );
        add_placeholder_filters(&mut env);
        Self { env: Arc::new(env) }
    }

    /// Renders a template text.
    pub fn render(&self, source: &str, vars: &Value) -> Result<String, TemplateError> {
        self.env
            .render_str(source, vars.clone())
            .map_err(|e| TemplateError::from_minijinja(&e, source))
    }

    /// Renders a template file.
    pub fn render_file(&self, path: &Path, vars: &Value) -> Result<String, TemplateError> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            TemplateError::plain(format!("cannot read {}: {e}", path.display()), false)
        })?;
        self.render(&source, vars)
    }

    /// Checks a template's syntax without rendering it.
    pub fn check_syntax(&self, source: &str) -> Result<(), TemplateError> {
        self.env
            .template_from_str(source)
            .map(|_| ())
            .map_err(|e| TemplateError::from_minijinja(&e, source))
    }

    /// The top-level names a template reads (not those it sets itself);
    /// none when its syntax is wrong.
    pub fn names(&self, source: &str) -> std::collections::HashSet<String> {
        if !source.contains("{{") && !source.contains("{%") {
            return Default::default();
        }
        self.env
            .template_from_str(source)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
    }

    /// Whether `name` is one of minijinja's global functions (`range`,
    /// `dict`, `namespace`, ...), which are no variables.
    pub fn is_global(&self, name: &str) -> bool {
        self.env.globals().any(|(n, _)| n == name)
    }

    /// Evaluates a `when` condition.
    pub fn condition(&self, expr: &str, vars: &Value) -> Result<bool, TemplateError> {
        let expr = expr
            .trim()
            .trim_start_matches("{{")
            .trim_end_matches("}}")
            .trim();
        Ok(self.eval(expr, vars)?.is_true())
    }

    /// The value of one expression; undefined is an error.
    fn eval(&self, expr: &str, vars: &Value) -> Result<Value, TemplateError> {
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| TemplateError::from_minijinja(&e, expr))?;
        let value = compiled
            .eval(vars.clone())
            .map_err(|e| TemplateError::from_minijinja(&e, expr))?;
        if value.is_undefined() {
            return Err(TemplateError::plain(format!("`{expr}` is undefined"), true));
        }
        Ok(value)
    }

    /// Renders every string inside a JSON value.
    pub fn render_json(&self, value: &Json, vars: &Value) -> Result<Json, TemplateError> {
        Ok(match value {
            Json::String(s) => self.render_string(s, vars)?,
            Json::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|v| self.render_json(v, vars))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json(v, vars)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }

    fn render_string(&self, s: &str, vars: &Value) -> Result<Json, TemplateError> {
        if !s.contains("{{") && !s.contains("{%") {
            return Ok(Json::String(s.to_string()));
        }
        if let Some(expr) = single_expression(s) {
            let value = self.eval(expr, vars)?;
            return serde_json::to_value(&value)
                .map_err(|e| TemplateError::plain(format!("`{expr}`: {e}"), false));
        }
        self.render(s, vars).map(Json::String)
    }
}

/// A value that fails, with `error`, wherever a template reads it.
pub fn invalid(error: crate::scope::VarError) -> Value {
    let message = error.to_string();
    Value::from(minijinja::Error::new(ErrorKind::InvalidOperation, message).with_source(error))
}

/// A template value as JSON; the error an invalid value carries.
pub fn to_json(value: &Value) -> Result<Json, crate::scope::VarError> {
    if value.is_undefined() {
        return Ok(Json::Null);
    }
    let checked =
        Environment::new().render_str("{{ v }}", minijinja::context! {v => value.clone()});
    if let Err(e) = checked {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cause {
            if let Some(var) = err.downcast_ref::<crate::scope::VarError>() {
                return Err(var.clone());
            }
            cause = err.source();
        }
    }
    Ok(serde_json::to_value(value).unwrap_or(Json::Null))
}

/// Converts anything serializable into a template value.
pub fn value<T: serde::Serialize>(v: &T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// `expr` when `s` is exactly `{{ expr }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// Stands for values only known once a host is contacted (facts, registered
/// results) when inputs are checked without connecting: any attribute of it
/// exists, so only truly undefined variables are reported. Every use of it
/// (or of anything reached through it) raises its shared `used` flag, so a
/// check can tell a fully known rendering from one that holds placeholders.
#[derive(Debug, Clone, Default)]
pub struct Unknown {
    used: Arc<AtomicBool>,
    /// Attributes known already (a command that apply will run is known to
    /// change something, not what it prints); reading them raises nothing.
    known: Option<Arc<serde_json::Map<String, Json>>>,
}

impl Unknown {
    /// A placeholder whose uses raise `used`.
    pub fn value(used: &Arc<AtomicBool>) -> Value {
        Value::from_object(Unknown {
            used: used.clone(),
            known: None,
        })
    }

    /// A placeholder whose attributes in `known` (an object) are those
    /// values, and whose other uses raise `used`.
    pub fn partly(used: &Arc<AtomicBool>, known: &Json) -> Value {
        Value::from_object(Unknown {
            used: used.clone(),
            known: known.as_object().cloned().map(Arc::new),
        })
    }

    fn touch(&self) {
        self.used.store(true, Ordering::Relaxed);
    }
}

impl Object for Unknown {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let known = key
            .as_str()
            .and_then(|k| self.known.as_ref().and_then(|m| m.get(k)));
        if let Some(known) = known {
            return Some(value(known));
        }
        self.touch();
        Some(Value::from_object(Unknown {
            used: self.used.clone(),
            known: None,
        }))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.touch();
        Enumerator::Empty
    }
    fn is_true(self: &Arc<Self>) -> bool {
        self.touch();
        true
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.touch();
        f.write_str("<known at run time>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(j: Json) -> Value {
        value(&j)
    }

    #[test]
    fn undefined_variables_are_errors() {
        let t = Templater::new();
        let err = t
            .render("port {{ haproxy_port }}", &vars(json!({})))
            .expect_err("undefined");
        assert!(err.undefined, "{err}");
        assert!(err.message.contains("haproxy_port"), "{err}");
        assert_eq!(
            t.render("{{ x | default(5) }}", &vars(json!({})))
                .expect("default"),
            "5"
        );
    }

    #[test]
    fn single_expressions_keep_their_type() {
        let t = Templater::new();
        let v = vars(json!({"groups": {"etcd": ["a", "b"]}, "n": 3}));
        assert_eq!(
            t.render_json(&json!("{{ groups['etcd'] }}"), &v)
                .expect("list"),
            json!(["a", "b"])
        );
        assert_eq!(
            t.render_json(&json!({"k": "{{ n + 1 }}"}), &v)
                .expect("int"),
            json!({"k": 4})
        );
        assert_eq!(
            t.render_json(&json!("n={{ n }}"), &v).expect("str"),
            json!("n=3")
        );
    }

    #[test]
    fn extract_looks_items_up_in_a_container() {
        let t = Templater::new();
        let v = vars(
            json!({"groups": {"lb": ["a", "b"]}, "hostvars": {"a": {"address": "10.0.0.1"}, "b": {"address": "10.0.0.2"}}}),
        );
        assert_eq!(
            t.render_json(
                &json!("{{ groups['lb'] | map('extract', hostvars, 'address') | list }}"),
                &v
            )
            .expect("list"),
            json!(["10.0.0.1", "10.0.0.2"])
        );
        assert_eq!(
            t.render("{{ 'a' | extract(hostvars) | tojson }}", &v)
                .expect("item"),
            r#"{"address": "10.0.0.1"}"#
        );
    }

    #[test]
    fn conditions_accept_bare_and_braced_expressions() {
        let t = Templater::new();
        let v = vars(json!({"enabled": false, "r": {"rc": 0}}));
        assert!(!t.condition("enabled", &v).expect("bare"));
        assert!(t.condition("{{ r.rc == 0 }}", &v).expect("braced"));
        assert!(t
            .condition("missing is not defined", &v)
            .expect("defined test"));
    }

    #[test]
    fn unknown_stands_for_anything() {
        let t = Templater::new();
        let used = Arc::new(AtomicBool::new(false));
        let ctx = Value::from_pairs([("facts", Unknown::value(&used)), ("x", Value::from(1))]);
        assert_eq!(t.render("{{ x }}", &ctx).expect("x"), "1");
        assert!(!used.load(Ordering::Relaxed), "x alone is fully known");
        let rendered = t.render("{{ facts.memory_mb }} {{ x }}", &ctx);
        assert!(rendered.is_ok(), "{rendered:?}");
        assert!(used.load(Ordering::Relaxed), "facts are a placeholder");
        assert!(t.render("{{ y }}", &ctx).expect_err("y").undefined);
    }

    #[test]
    fn filters_pass_placeholders_through() {
        let t = Templater::new();
        let used = Arc::new(AtomicBool::new(false));
        let ctx = Value::from_pairs([("facts", Unknown::value(&used))]);
        for source in [
            "{{ 17 if facts.os_version | int >= 13 else 15 }}",
            "{{ facts.memory_kb | float }}",
            "{{ facts.majors | last }} {{ facts.majors | first }} {{ facts.majors | length }}",
        ] {
            used.store(false, Ordering::Relaxed);
            let rendered = t.render(source, &ctx);
            assert!(rendered.is_ok(), "{source}: {rendered:?}");
            assert!(
                used.load(Ordering::Relaxed),
                "{source}: a placeholder was used"
            );
        }
        // Known values keep the built-in behaviour.
        let known = Value::from_pairs([("v", Value::from("13")), ("l", Value::from(vec![1, 2]))]);
        assert_eq!(
            t.render("{{ v | int + 1 }} {{ l | last }} {{ l | first }} {{ l | length }} {{ 'x' | int(default=7) }} {{ '2.5' | float }}", &known)
                .expect("builtins"),
            "14 2 1 2 7 2.5"
        );
    }
}
