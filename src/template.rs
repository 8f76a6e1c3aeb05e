//! Templating with minijinja: role templates, every string parameter, and
//! `when` conditions. An undefined variable is an error, never an empty
//! string.
//!
//! A parameter that is exactly one expression (`"{{ groups['etcd'] }}"`)
//! keeps its type (a list stays a list), as Ansible does.

use std::path::Path;
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
}

impl TemplateError {
    fn from_minijinja(err: &minijinja::Error, source: &str) -> Self {
        let undefined = err.kind() == ErrorKind::UndefinedError;
        let mut message = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        if let Some(range) = err.range() {
            if let Some(text) = source.get(range) {
                message = format!("{message} (in `{}`)", text.trim());
            }
        }
        if let Some(line) = err.line().filter(|_| source.contains('\n')) {
            message = format!("line {line}: {message}");
        }
        Self { message, undefined }
    }
}

/// The shared templating environment (filters, strict undefined).
pub struct Templater {
    env: Environment<'static>,
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
        env.add_filter("quote", |v: String| pgdeploy_modules::quote(&v));
        env.add_filter("bool", |v: Value| match v.as_str() {
            Some(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1"),
            None => v.is_true(),
        });
        Self { env }
    }

    /// Renders a template text.
    pub fn render(&self, source: &str, vars: &Value) -> Result<String, TemplateError> {
        self.env
            .render_str(source, vars.clone())
            .map_err(|e| TemplateError::from_minijinja(&e, source))
    }

    /// Renders a template file.
    pub fn render_file(&self, path: &Path, vars: &Value) -> Result<String, TemplateError> {
        let source = std::fs::read_to_string(path).map_err(|e| TemplateError {
            message: format!("cannot read {}: {e}", path.display()),
            undefined: false,
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

    /// Evaluates a `when` condition.
    pub fn condition(&self, expr: &str, vars: &Value) -> Result<bool, TemplateError> {
        let expr = expr
            .trim()
            .trim_start_matches("{{")
            .trim_end_matches("}}")
            .trim();
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| TemplateError::from_minijinja(&e, expr))?;
        compiled
            .eval(vars.clone())
            .map(|v| v.is_true())
            .map_err(|e| TemplateError::from_minijinja(&e, expr))
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
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| TemplateError::from_minijinja(&e, expr))?;
            let value = compiled
                .eval(vars.clone())
                .map_err(|e| TemplateError::from_minijinja(&e, expr))?;
            if value.is_undefined() {
                return Err(TemplateError {
                    message: format!("`{expr}` is undefined"),
                    undefined: true,
                });
            }
            return serde_json::to_value(&value).map_err(|e| TemplateError {
                message: format!("`{expr}`: {e}"),
                undefined: false,
            });
        }
        self.render(s, vars).map(Json::String)
    }
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
/// exists, so only truly undefined variables are reported.
#[derive(Debug)]
pub struct Unknown;

impl Object for Unknown {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from_object(Unknown))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }
    fn is_true(self: &Arc<Self>) -> bool {
        true
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
        let ctx = Value::from_pairs([
            ("facts", Value::from_object(Unknown)),
            ("x", Value::from(1)),
        ]);
        let rendered = t.render("{{ facts.memory_mb }} {{ x }}", &ctx);
        assert!(rendered.is_ok(), "{rendered:?}");
        assert!(t.render("{{ y }}", &ctx).expect_err("y").undefined);
    }
}
