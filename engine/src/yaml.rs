//! YAML with positions: every node of an input file keeps its line and
//! column, so any error found later (an unknown module, a bad address, a
//! missing role) can name the exact place in the file.
//!
//! Parsing uses serde-saphyr (serde_yaml is unmaintained upstream); duplicate
//! keys are an error.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::InputError;

/// A place in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The file.
    pub file: Arc<PathBuf>,
    /// 1-based line (0 when unknown).
    pub line: u32,
    /// 1-based column (0 when unknown).
    pub column: u32,
}

impl Pos {
    /// A position for things that do not come from a file (`-e` on the
    /// command line, built-in defaults).
    pub fn synthetic(what: &str) -> Self {
        Self {
            file: Arc::new(PathBuf::from(what)),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// A YAML value with its position.
#[derive(Debug, Clone)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub pos: Pos,
}

/// The value of a [`Node`].
#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order; keys are strings with positions.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key as a string.
    pub name: String,
    /// Where it is.
    pub pos: Pos,
}

impl Node {
    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// An error at this node.
    pub fn error(&self, message: impl Into<String>) -> InputError {
        InputError::at(&self.pos, message)
    }

    /// The node as a mapping, or an error naming `what` it should be.
    pub fn as_map(&self, what: &str) -> Result<&[(Key, Node)], InputError> {
        match &self.value {
            Value::Map(entries) => Ok(entries),
            Value::Null => Ok(&[]),
            _ => Err(self.error(format!(
                "{what} must be a mapping, found {}",
                self.type_name()
            ))),
        }
    }

    /// The node as a list, or an error.
    pub fn as_seq(&self, what: &str) -> Result<&[Node], InputError> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            Value::Null => Ok(&[]),
            _ => Err(self.error(format!("{what} must be a list, found {}", self.type_name()))),
        }
    }

    /// The node as a string (numbers and booleans are accepted and written
    /// out), or an error.
    pub fn as_str(&self, what: &str) -> Result<String, InputError> {
        match &self.value {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(i) => Ok(i.to_string()),
            Value::Float(x) => Ok(x.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.error(format!(
                "{what} must be a string, found {}",
                self.type_name()
            ))),
        }
    }

    /// A string or a list of strings, as a list.
    pub fn as_str_list(&self, what: &str) -> Result<Vec<String>, InputError> {
        match &self.value {
            Value::Seq(items) => items.iter().map(|n| n.as_str(what)).collect(),
            Value::Null => Ok(Vec::new()),
            _ => Ok(vec![self.as_str(what)?]),
        }
    }

    /// The node as a boolean, or an error.
    pub fn as_bool(&self, what: &str) -> Result<bool, InputError> {
        match &self.value {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) if matches!(s.as_str(), "yes" | "true" | "True") => Ok(true),
            Value::Str(s) if matches!(s.as_str(), "no" | "false" | "False") => Ok(false),
            _ => Err(self.error(format!(
                "{what} must be true or false, found {}",
                self.type_name()
            ))),
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node as plain JSON (positions dropped), for templating and
    /// module parameters.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses YAML text read from `file`.
pub fn parse(text: &str, file: &Path) -> Result<Node, InputError> {
    let file = Arc::new(file.to_path_buf());
    if let Some((line, column)) = find_tab_indent(text) {
        return Err(InputError::at(
            &Pos { file, line, column },
            "a tab is used for indentation; YAML allows only spaces",
        ));
    }
    let raw: RawNode = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((0, 0));
        let message = first_line(&e.to_string());
        InputError::at(
            &Pos {
                file: file.clone(),
                line,
                column,
            },
            format!("invalid YAML: {message}"),
        )
    })?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(raw.into_node(&file, &lines))
}

/// Reads an input file as text; a failure names the file.
pub fn read(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|e| {
        InputError::at(
            &Pos::synthetic(&path.display().to_string()),
            format!("cannot read: {e}"),
        )
    })
}

/// Reads and parses a YAML file.
pub fn load(path: &Path) -> Result<Node, InputError> {
    parse(&read(path)?, path)
}

fn first_line(message: &str) -> String {
    // serde-saphyr's messages may carry a rendered snippet, an "error: line
    // X column Y: " prefix and a hint about its own options; keep the gist,
    // as the position is printed in our format.
    let mut line = message.lines().next().unwrap_or(message).trim();
    line = line.strip_prefix("error: ").unwrap_or(line);
    if let Some(rest) = line.strip_prefix("line ") {
        if let Some((_, after)) = rest.split_once(": ") {
            line = after;
        }
    }
    if let Some(i) = line.find(" at line ") {
        line = &line[..i];
    }
    if let Some(key) = line.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return format!("duplicate key `{key}` (a key may appear once in a mapping)");
    }
    line.to_string()
}

fn find_tab_indent(text: &str) -> Option<(u32, u32)> {
    for (n, line) in text.lines().enumerate() {
        let indent: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if let Some(i) = indent.find('\t') {
            let rest = line.trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                return Some((n as u32 + 1, i as u32 + 1));
            }
        }
    }
    None
}

/// The parse tree as serde-saphyr gives it, before positions get their file.
struct RawNode {
    value: RawValue,
    line: u32,
    column: u32,
}

enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<RawNode>),
    Map(Vec<(RawNode, RawNode)>),
}

impl RawNode {
    /// A plain `y`, `Y`, `n` or `N` at this node's place in `lines`: YAML
    /// 1.1 makes it a boolean, but Ansible's parser (and YAML 1.2) reads
    /// it as a string, so `vars: {y: 5}` names a variable `y`.
    fn letter_not_bool(&self, lines: &[&str]) -> Option<String> {
        let line = lines.get((self.line as usize).checked_sub(1)?)?;
        let rest: String = line
            .chars()
            .skip((self.column as usize).checked_sub(1)?)
            .collect();
        let token = rest
            .split(|c: char| c.is_whitespace() || matches!(c, ':' | ',' | '}' | ']' | '#'))
            .next()?;
        matches!(token, "y" | "Y" | "n" | "N").then(|| token.to_string())
    }

    fn into_node(self, file: &Arc<PathBuf>, lines: &[&str]) -> Node {
        let pos = Pos {
            file: file.clone(),
            line: self.line,
            column: self.column,
        };
        let letter = match self.value {
            RawValue::Bool(_) => self.letter_not_bool(lines),
            _ => None,
        };
        let value = match self.value {
            RawValue::Null => Value::Null,
            RawValue::Bool(_) if letter.is_some() => Value::Str(letter.unwrap_or_default()),
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Float(x) => Value::Float(x),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Seq(items) => Value::Seq(
                items
                    .into_iter()
                    .map(|n| n.into_node(file, lines))
                    .collect(),
            ),
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key_pos = Pos {
                            file: file.clone(),
                            line: k.line,
                            column: k.column,
                        };
                        let letter = match k.value {
                            RawValue::Bool(_) => k.letter_not_bool(lines),
                            _ => None,
                        };
                        let name = match k.value {
                            RawValue::Bool(_) if letter.is_some() => letter.unwrap_or_default(),
                            RawValue::Str(s) => s,
                            RawValue::Int(i) => i.to_string(),
                            RawValue::Bool(b) => b.to_string(),
                            RawValue::Float(x) => x.to_string(),
                            RawValue::Null => "null".to_string(),
                            RawValue::Seq(_) | RawValue::Map(_) => "<complex key>".to_string(),
                        };
                        (Key { name, pos: key_pos }, v.into_node(file, lines))
                    })
                    .collect(),
            ),
        };
        Node { value, pos }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<RawValue>::deserialize(deserializer)?;
        Ok(RawNode {
            value: spanned.value,
            line: spanned.referenced.line() as u32,
            column: spanned.referenced.column() as u32,
        })
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<RawNode>()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<RawNode>()? {
            let value = map.next_value::<RawNode>()?;
            entries.push((key, value));
        }
        Ok(RawValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Node, InputError> {
        parse(text, Path::new("test.yaml"))
    }

    #[test]
    fn nodes_keep_their_positions() {
        let node = parse_str("all:\n  hosts:\n    node1:\n      ansible_host: 10.0.0.1\n")
            .expect("parses");
        let host = node
            .get("all")
            .and_then(|n| n.get("hosts"))
            .and_then(|n| n.get("node1"))
            .expect("node1");
        let addr = host.get("ansible_host").expect("address");
        assert_eq!((addr.pos.line, addr.pos.column), (4, 21));
        let (key, _) = &host.as_map("host").expect("map")[0];
        assert_eq!((key.pos.line, key.name.as_str()), (4, "ansible_host"));
    }

    #[test]
    fn duplicate_keys_are_an_error_with_a_line() {
        let err = parse_str("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        let text = err.to_string();
        assert!(text.contains("test.yaml:3:"), "{text}");
        assert!(text.to_lowercase().contains("duplicate"), "{text}");
    }

    #[test]
    fn tabs_in_indentation_are_named() {
        let err = parse_str("a:\n\tb: 1\n").expect_err("tab");
        assert!(err.to_string().starts_with("test.yaml:2:1: a tab"), "{err}");
    }

    #[test]
    fn unclosed_bracket_names_a_line() {
        let err = parse_str("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(err.to_string().contains("invalid YAML"), "{err}");
        assert!(err.pos.line >= 1, "{err}");
    }

    #[test]
    fn scalars_keep_their_types() {
        let node = parse_str("a: 1\nb: true\nc: x\nd: ~\ne: 1.5\n").expect("parses");
        let json = node.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": 1, "b": true, "c": "x", "d": null, "e": 1.5})
        );
    }

    #[test]
    fn a_single_letter_y_or_n_is_a_string_as_ansible_reads_it() {
        let node = parse_str(
            "vars: {y: 5, x: '{{ y }}-suffix'}
n: N
b: yes
c: off
d: [y, true]
",
        )
        .expect("parses");
        assert_eq!(
            node.to_json(),
            serde_json::json!({
                "vars": {"y": 5, "x": "{{ y }}-suffix"},
                "n": "N",
                "b": true,
                "c": false,
                "d": ["y", true],
            })
        );
    }
}
