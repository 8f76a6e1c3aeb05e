//! Ansible's INI inventory format, read into the same declarations as the
//! YAML format (so both give the same [`Inventory`](super::Inventory)):
//!
//! * hosts before the first section are in group `ungrouped`, as in
//!   Ansible (YAML: `ungrouped: {hosts: ...}`); `[group]` lists a group's
//!   hosts, one per line: a name, a range (`node[1:3]`) or `name:port`, then
//!   `key=value` vars; `[all]` lists hosts in no group (YAML: `all: hosts:`);
//! * `[group:vars]` has one `key=value` per line, `[group:children]` one
//!   group name per line; a `:children` entry must be declared as a group
//!   somewhere (`[child]` or `[child:children]`), as must the group of a
//!   `:vars` section;
//! * values are read as Python literals, as Ansible does: `True`/`False`,
//!   `None`, integers and floats, lists and dicts (`[1, 2]`, `{'a': 1}`);
//!   a quoted value (`'...'` or `"..."`) is a string, anything else is the
//!   string as written (`false` stays the string `false`, as in Ansible);
//! * whole-line comments start with `#` or `;`; a `#` starting a word ends a
//!   line (after a header, a host or a value);
//! * groups no `:children` names are children of `all`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{add_hosts, Walk};
use crate::error::{suggestion, InputError};
use crate::yaml::{self, Key, Node, Pos, Value};

/// What is wrong with a line of an INI inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A line starting with `[` that is not `[group]`, `[group:vars]` or
    /// `[group:children]`.
    BadHeader { line: String },
    /// `[group:KIND]` with another kind than `vars` or `children`.
    UnknownSectionType { group: String, kind: String },
    /// A quote without its closing quote.
    UnclosedQuote,
    /// A word after a host name that is not `key=value`.
    NotKeyValue { word: String },
    /// A line of a `:vars` section without `=`.
    VarNotKeyValue { line: String },
    /// `=value` without a key.
    EmptyKey,
    /// A line of a `:children` section that is not one group name.
    BadGroupName { line: String },
    /// `all` named as a child group.
    AllAsChild,
    /// A `:children` entry never declared as a group.
    UndefinedChild { parent: String, child: String },
    /// A `:vars` section of a group never declared.
    VarsOfUndefinedGroup { group: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadHeader { line } => write!(
                f,
                "`{line}` is not a section header: write `[group]`, `[group:vars]` or `[group:children]` (a group name has no spaces, `:` or `]`)"
            ),
            Problem::UnknownSectionType { group, kind } => write!(
                f,
                "section `[{group}:{kind}]` has an unknown type `{kind}`: a section is `[{group}]`, `[{group}:vars]` or `[{group}:children]`{}",
                suggestion(kind, ["vars", "children"])
            ),
            Problem::UnclosedQuote => write!(f, "this quote is not closed"),
            Problem::NotKeyValue { word } => write!(
                f,
                "`{word}` after the host name is not a `key=value` variable"
            ),
            Problem::VarNotKeyValue { line } => {
                write!(f, "`{line}` in a `:vars` section is not `key=value`")
            }
            Problem::EmptyKey => write!(f, "a variable has no name before `=`"),
            Problem::BadGroupName { line } => write!(
                f,
                "`{line}` in a `:children` section is not one group name"
            ),
            Problem::AllAsChild => write!(f, "`all` cannot be a child group"),
            Problem::UndefinedChild { parent, child } => write!(
                f,
                "section `[{parent}:children]` names group `{child}`, which is not declared (with `[{child}]` or `[{child}:children]`)"
            ),
            Problem::VarsOfUndefinedGroup { group } => write!(
                f,
                "section `[{group}:vars]` is for group `{group}`, which is not declared (with `[{group}]` or `[{group}:children]`)"
            ),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hosts,
    Vars,
    Children,
}

/// A reference to a group, checked once the whole file is read.
struct Reference {
    group: String,
    pos: Pos,
    parent: Option<String>,
}

/// One line of the file, for positions.
struct Line<'a> {
    file: &'a Arc<PathBuf>,
    number: u32,
    raw: &'a str,
}

impl Line<'_> {
    /// The position of byte `offset` of the line.
    fn pos(&self, offset: usize) -> Pos {
        let before = self.raw.get(..offset).unwrap_or(self.raw);
        Pos {
            file: self.file.clone(),
            line: self.number,
            column: before.chars().count() as u32 + 1,
        }
    }
}

struct Parser<'a> {
    walk: &'a mut Walk,
    errors: &'a mut Vec<InputError>,
    group: String,
    kind: Kind,
    declared: BTreeSet<String>,
    references: Vec<Reference>,
}

/// Reads INI inventory `text` from `file` into `walk`.
pub(super) fn walk(text: &str, file: &Path, walk: &mut Walk, errors: &mut Vec<InputError>) {
    let file = Arc::new(file.to_path_buf());
    walk.group_members.entry("all".into()).or_default();
    let mut parser = Parser {
        walk,
        errors,
        group: "ungrouped".into(),
        kind: Kind::Hosts,
        declared: ["all".to_string(), "ungrouped".to_string()].into(),
        references: Vec::new(),
    };
    for (index, raw) in text.lines().enumerate() {
        let line = Line {
            file: &file,
            number: u32::try_from(index + 1).unwrap_or(u32::MAX),
            raw,
        };
        if let Err((offset, problem)) = parser.line(&line) {
            parser
                .errors
                .push(InputError::at(&line.pos(offset), problem.to_string()));
        }
    }
    parser.finish();
}

type LineResult = Result<(), (usize, Problem)>;

impl Parser<'_> {
    fn line(&mut self, line: &Line) -> LineResult {
        let start = line.raw.len() - line.raw.trim_start().len();
        let text = line.raw.trim();
        if text.is_empty() || text.starts_with(['#', ';']) {
            return Ok(());
        }
        let shift = |(offset, problem): (usize, Problem)| (start + offset, problem);
        if text.starts_with('[') {
            return self.header(text, &line.pos(start)).map_err(shift);
        }
        match self.kind {
            Kind::Hosts => self.host_line(line, start).map_err(shift),
            Kind::Vars => self.var_line(line, start).map_err(shift),
            Kind::Children => self.child_line(text, &line.pos(start)).map_err(shift),
        }
    }

    /// `[group]`, `[group:vars]` or `[group:children]`, maybe a comment after.
    fn header(&mut self, text: &str, pos: &Pos) -> LineResult {
        let bad = || {
            (
                0,
                Problem::BadHeader {
                    line: text.to_string(),
                },
            )
        };
        let end = text.find(']').ok_or_else(bad)?;
        let after = text[end + 1..].trim_start();
        if !after.is_empty() && !after.starts_with('#') {
            return Err(bad());
        }
        let inner = &text[1..end];
        let (group, kind) = inner.split_once(':').unwrap_or((inner, ""));
        if !group_name(group) {
            return Err(bad());
        }
        self.kind = match kind {
            "" => Kind::Hosts,
            "vars" => Kind::Vars,
            "children" => Kind::Children,
            other => {
                let problem = Problem::UnknownSectionType {
                    group: group.into(),
                    kind: other.into(),
                };
                return Err((group.len() + 2, problem));
            }
        };
        self.group = group.to_string();
        self.walk.group_members.entry(group.into()).or_default();
        self.walk
            .group_pos
            .entry(group.into())
            .or_insert_with(|| Pos {
                column: pos.column + 1,
                ..pos.clone()
            });
        if self.kind == Kind::Vars {
            self.references.push(Reference {
                group: group.into(),
                pos: pos.clone(),
                parent: None,
            });
        } else {
            self.declared.insert(group.into());
        }
        Ok(())
    }

    /// `pattern key=value ...`.
    fn host_line(&mut self, line: &Line, start: usize) -> LineResult {
        let words = words(&line.raw[start..]).map_err(|at| (at, Problem::UnclosedQuote))?;
        let Some((first, rest)) = words.split_first() else {
            return Ok(());
        };
        let mut entries = Vec::new();
        for word in rest {
            let Some(eq) = word.text.find('=') else {
                let problem = Problem::NotKeyValue {
                    word: word.text.clone(),
                };
                return Err((word.start, problem));
            };
            if eq == 0 {
                return Err((word.start, Problem::EmptyKey));
            }
            let value_pos = line.pos(start + word.start + eq + 1);
            let raw_value = &word.text[eq + 1..];
            let value = if word.quoted_from.is_some_and(|q| q > eq) {
                Value::Str(raw_value.into())
            } else {
                literal(raw_value, &value_pos)
            };
            let key = Key {
                name: word.text[..eq].into(),
                pos: line.pos(start + word.start),
            };
            entries.push((key, node(value, value_pos)));
        }
        let vars = (!entries.is_empty()).then(|| node(Value::Map(entries), line.pos(start)));
        let group = self.group.clone();
        let pos = line.pos(start + first.start);
        add_hosts(
            self.walk,
            &group,
            &first.text,
            &pos,
            vars.as_ref(),
            self.errors,
        );
        Ok(())
    }

    /// `key=value` of a `:vars` section: everything after `=` is the value.
    fn var_line(&mut self, line: &Line, start: usize) -> LineResult {
        let text = line.raw[start..].trim_end();
        let Some((key, value)) = text.split_once('=') else {
            let problem = Problem::VarNotKeyValue {
                line: text.to_string(),
            };
            return Err((0, problem));
        };
        let name = key.trim();
        if name.is_empty() {
            return Err((0, Problem::EmptyKey));
        }
        let value_start = start + key.len() + 1;
        let leading = value.len() - value.trim_start().len();
        let value_pos = line.pos(value_start + leading);
        let key = Key {
            name: name.to_string(),
            pos: line.pos(start),
        };
        let entry = (key, node(var_value(value.trim(), &value_pos), value_pos));
        let vars = node(Value::Map(vec![entry]), line.pos(start));
        self.walk
            .group_vars
            .entry(self.group.clone())
            .or_default()
            .push(vars);
        Ok(())
    }

    /// One group name of a `:children` section.
    fn child_line(&mut self, text: &str, pos: &Pos) -> LineResult {
        let child = cut_comment(text).trim_end();
        if !group_name(child) {
            let problem = Problem::BadGroupName {
                line: text.to_string(),
            };
            return Err((0, problem));
        }
        if child == "all" {
            return Err((0, Problem::AllAsChild));
        }
        self.walk
            .group_children
            .entry(self.group.clone())
            .or_default()
            .insert(child.into());
        self.walk.group_members.entry(child.into()).or_default();
        self.walk
            .group_pos
            .entry(child.into())
            .or_insert_with(|| pos.clone());
        self.references.push(Reference {
            group: child.into(),
            pos: pos.clone(),
            parent: Some(self.group.clone()),
        });
        Ok(())
    }

    /// Reports references to undeclared groups and puts the groups no
    /// `:children` names under `all`.
    fn finish(self) {
        for reference in &self.references {
            if self.declared.contains(&reference.group) {
                continue;
            }
            let problem = match &reference.parent {
                Some(parent) => Problem::UndefinedChild {
                    parent: parent.clone(),
                    child: reference.group.clone(),
                },
                None => Problem::VarsOfUndefinedGroup {
                    group: reference.group.clone(),
                },
            };
            let hint = suggestion(&reference.group, self.declared.iter().map(String::as_str));
            self.errors
                .push(InputError::at(&reference.pos, format!("{problem}{hint}")));
        }
        let children: BTreeSet<String> = self
            .walk
            .group_children
            .values()
            .flatten()
            .cloned()
            .collect();
        let top: Vec<String> = self
            .walk
            .group_members
            .keys()
            .filter(|g| g.as_str() != "all" && !children.contains(*g))
            .cloned()
            .collect();
        self.walk
            .group_children
            .entry("all".into())
            .or_default()
            .extend(top);
    }
}

/// Ansible's group names: no whitespace, `:`, `[` or `]`.
fn group_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ':' | '[' | ']'))
}

fn node(value: Value, pos: Pos) -> Node {
    Node { value, pos }
}

/// A word of a host line: its text without quotes, where it starts, and
/// where in the text the first quote opened.
#[derive(Debug)]
struct Word {
    text: String,
    start: usize,
    quoted_from: Option<usize>,
}

/// Splits a host line into words like a shell: quotes group, `\` escapes
/// outside single quotes, a `#` starting a word ends the line. An unclosed
/// quote is an error at its offset.
fn words(line: &str) -> Result<Vec<Word>, usize> {
    let mut words = Vec::new();
    let mut current: Option<Word> = None;
    let mut quote: Option<(char, usize)> = None;
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        let word = current.get_or_insert_with(|| Word {
            text: String::new(),
            start: i,
            quoted_from: None,
        });
        match (quote, c) {
            (Some((q, _)), c) if c == q => quote = None,
            (Some(('"', _)) | None, '\\') => word.text.extend(chars.next().map(|(_, n)| n)),
            (Some(_), c) => word.text.push(c),
            (None, '\'' | '"') => {
                word.quoted_from.get_or_insert(word.text.len());
                quote = Some((c, i));
            }
            (None, '#') if word.text.is_empty() && word.quoted_from.is_none() => {
                current = None;
                break;
            }
            (None, c) if c.is_whitespace() => {
                let done = current.take().filter(|w| w.start != i);
                words.extend(done);
            }
            (None, c) => word.text.push(c),
        }
    }
    if let Some((_, at)) = quote {
        return Err(at);
    }
    words.extend(current);
    Ok(words)
}

/// The text before a `#` that starts a word (outside quotes).
fn cut_comment(text: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => return &text[..i],
            _ => {}
        }
        previous = c;
    }
    text
}

/// A `:vars` value: a quoted string (maybe a comment after), else a literal.
fn var_value(value: &str, pos: &Pos) -> Value {
    let value = cut_comment(value).trim_end();
    let mut chars = value.chars();
    match (chars.next(), chars.next_back()) {
        (Some(open @ ('\'' | '"')), Some(close)) if open == close && value.len() > 1 => {
            Value::Str(value[1..value.len() - 1].to_string())
        }
        _ => literal(value, pos),
    }
}

/// An unquoted value as a Python literal, else the text itself.
fn literal(text: &str, pos: &Pos) -> Value {
    if text.starts_with(['[', '{']) {
        if let Ok(parsed) = yaml::parse(text, Path::new("-")) {
            if matches!(parsed.value, Value::Seq(_) | Value::Map(_)) {
                return relocate(parsed, pos).value;
            }
        }
    }
    literal_value(text)
}

fn literal_value(text: &str) -> Value {
    match text {
        "True" => return Value::Bool(true),
        "False" => return Value::Bool(false),
        "None" => return Value::Null,
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let is_int = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if is_int {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
    }
    let float_chars = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    let float_marks = digits.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if float_chars && float_marks && digits.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(x) = text.parse::<f64>() {
            if x.is_finite() {
                return Value::Float(x);
            }
        }
    }
    Value::Str(text.to_string())
}

/// `node` with every position set to `pos` (a value parsed on its own).
fn relocate(node: Node, pos: &Pos) -> Node {
    let value = match node.value {
        Value::Seq(items) => Value::Seq(items.into_iter().map(|n| relocate(n, pos)).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = Key {
                        name: k.name,
                        pos: pos.clone(),
                    };
                    (key, relocate(v, pos))
                })
                .collect(),
        ),
        other => other,
    };
    Node {
        value,
        pos: pos.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;

    use super::super::{Connection, Inventory, Vars};
    use super::*;

    type HostShape = (String, Vec<String>, Vars, Connection);
    type GroupShapes = BTreeMap<String, (Vec<String>, usize)>;

    /// What must be equal between two inventories: hosts (in order) with
    /// their groups, vars and connection; groups with hosts and depth.
    fn shape(inv: &Inventory) -> (Vec<HostShape>, GroupShapes) {
        let hosts = inv
            .hosts
            .iter()
            .map(|h| {
                let c = h.connection.clone();
                (h.name.clone(), h.groups.clone(), h.vars.clone(), c)
            })
            .collect();
        let groups = inv
            .groups
            .iter()
            .map(|(name, g)| (name.clone(), (g.hosts.clone(), g.depth)))
            .collect();
        (hosts, groups)
    }

    fn load(dir: &Path, name: &str, text: &str) -> Result<Inventory, crate::error::InputErrors> {
        let path = dir.join(name);
        fs::write(&path, text).expect("write");
        Inventory::load(&path)
    }

    /// Loads `ini` (as `inv.ini`) and `yaml` (as `inv.yaml`) and checks they
    /// are the same inventory.
    fn same(ini: &str, yaml: &str) -> Inventory {
        let dir = tempfile::tempdir().expect("tmp");
        let from_ini = load(dir.path(), "inv.ini", ini).expect("the INI loads");
        let from_yaml = load(dir.path(), "inv.yaml", yaml).expect("the YAML loads");
        assert_eq!(shape(&from_ini), shape(&from_yaml));
        from_ini
    }

    fn error(name: &str, text: &str) -> String {
        let dir = tempfile::tempdir().expect("tmp");
        let errors = load(dir.path(), name, text).expect_err("refused");
        errors
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR")
    }

    // Ansible's "How to build your inventory": hosts and groups.
    const DOC_BASIC_INI: &str = "\
mail.example.com

[webservers]
foo.example.com
bar.example.com

[dbservers]
one.example.com
two.example.com
three.example.com
";
    const DOC_BASIC_YAML: &str = "\
ungrouped:
  hosts:
    mail.example.com:
webservers:
  hosts:
    foo.example.com:
    bar.example.com:
dbservers:
  hosts:
    one.example.com:
    two.example.com:
    three.example.com:
";

    #[test]
    fn ansible_doc_hosts_and_groups() {
        let inv = same(DOC_BASIC_INI, DOC_BASIC_YAML);
        assert_eq!(inv.hosts.len(), 6);
        assert_eq!(inv.groups["ungrouped"].hosts, ["mail.example.com"]);
        assert_eq!(inv.groups["dbservers"].hosts.len(), 3);
        // Chosen by content too: no extension, and even `.yaml`.
        let dir = tempfile::tempdir().expect("tmp");
        for name in ["hosts", "inventory.yaml"] {
            let by_content = load(dir.path(), name, DOC_BASIC_INI).expect("loads");
            assert_eq!(shape(&by_content), shape(&inv), "{name}");
        }
    }

    #[test]
    fn ansible_doc_ranges() {
        let ini = "[webservers]\nwww[01:50].example.com\n\n[databases]\ndb-[a:f].example.com\n";
        let yaml = "\
all:
  children:
    webservers:
      hosts:
        www[01:50].example.com:
    databases:
      hosts:
        db-[a:f].example.com:
";
        let inv = same(ini, yaml);
        let web = &inv.groups["webservers"].hosts;
        assert_eq!((web.len(), web[0].as_str()), (50, "www01.example.com"));
        assert_eq!(web[49], "www50.example.com");
        let db = &inv.groups["databases"].hosts;
        assert_eq!(db.first().map(String::as_str), Some("db-a.example.com"));
        assert_eq!(db.last().map(String::as_str), Some("db-f.example.com"));
    }

    #[test]
    fn ansible_doc_host_vars_ports_and_group_vars() {
        let ini = "\
[atlanta]
host1 http_port=80 maxRequestsPerChild=808
host2 http_port=303 maxRequestsPerChild=909
badwolf.example.com:5309
jumper ansible_port=5555 ansible_host=192.0.2.50

[atlanta:vars]
ntp_server=ntp.atlanta.example.com
proxy=proxy.atlanta.example.com
";
        let yaml = "\
atlanta:
  hosts:
    host1: {http_port: 80, maxRequestsPerChild: 808}
    host2: {http_port: 303, maxRequestsPerChild: 909}
    badwolf.example.com: {ansible_port: 5309}
    jumper: {ansible_port: 5555, ansible_host: 192.0.2.50}
  vars:
    ntp_server: ntp.atlanta.example.com
    proxy: proxy.atlanta.example.com
";
        let inv = same(ini, yaml);
        let badwolf = &inv.host("badwolf.example.com").expect("badwolf").connection;
        assert_eq!(badwolf.port, 5309);
        let jumper = &inv.host("jumper").expect("jumper").connection;
        assert_eq!((jumper.address.as_str(), jumper.port), ("192.0.2.50", 5555));
        let host1 = &inv.host("host1").expect("host1").vars;
        assert_eq!(host1["ntp_server"], "ntp.atlanta.example.com");
        assert_eq!(host1["http_port"], 80);
    }

    /// Ansible's older spellings, which it still reads: `ansible_ssh_host`,
    /// `ansible_ssh_port`, `ansible_ssh_user`; the newer ones win.
    #[test]
    fn ansible_ssh_host_port_and_user_are_read() {
        let ini = "\
[db]
old ansible_ssh_host=192.0.2.7 ansible_ssh_port=2200 ansible_ssh_user=deploy
both ansible_ssh_host=192.0.2.8 ansible_host=192.0.2.9 ansible_ssh_port=1 ansible_port=2222
";
        let dir = tempfile::tempdir().expect("tmp");
        let inv = load(dir.path(), "inv.ini", ini).expect("parses");
        let old = &inv.host("old").expect("old").connection;
        assert_eq!(
            (old.address.as_str(), old.port, old.user.as_str()),
            ("192.0.2.7", 2200, "deploy")
        );
        let both = &inv.host("both").expect("both").connection;
        assert_eq!((both.address.as_str(), both.port), ("192.0.2.9", 2222));
        let bad = error("inv.ini", "[db]\nx ansible_ssh_port=none\n");
        assert!(bad.contains("DIR/inv.ini:2:"), "{bad}");
    }

    #[test]
    fn ansible_doc_children() {
        // The doc's example, with the undeclared `usa` children left out
        // (Ansible refuses those too).
        let ini = "\
[atlanta]
host1
host2

[raleigh]
host2
host3

[southeast:children]
atlanta
raleigh

[southeast:vars]
some_server=foo.southeast.example.com
halon_system_timeout=30
self_destruct_countdown=60
escape_pods=2

[usa:children]
southeast
";
        let yaml = "\
all:
  children:
    usa:
      children:
        southeast:
          children:
            atlanta:
              hosts:
                host1:
                host2:
            raleigh:
              hosts:
                host2:
                host3:
          vars:
            some_server: foo.southeast.example.com
            halon_system_timeout: 30
            self_destruct_countdown: 60
            escape_pods: 2
";
        let inv = same(ini, yaml);
        assert_eq!(inv.groups["usa"].hosts, ["host1", "host2", "host3"]);
        assert_eq!(inv.groups["atlanta"].depth, 3);
        assert_eq!(inv.host("host3").expect("host3").vars["escape_pods"], 2);
    }

    #[test]
    fn values_are_python_literals_and_quotes_make_strings() {
        let ini = "\
[all:vars]
port_text='22'
plain=FALSE
spaced = hello world   # a comment
[g]
h1 a=1 b=2.5 c=True d=None e=false f=\"x y\" g='7' h=[1,2] j=007 k=a#b # comment
";
        let yaml = "\
all:
  vars:
    port_text: '22'
    plain: 'FALSE'
    spaced: hello world
  children:
    g:
      hosts:
        h1: {a: 1, b: 2.5, c: true, d: null, e: 'false', f: x y, g: '7', h: [1, 2], j: '007', k: 'a#b'}
";
        let inv = same(ini, yaml);
        assert_eq!(inv.host("h1").expect("h1").vars["plain"], "FALSE");
    }

    #[test]
    fn the_ini_examples_of_the_docs_load() {
        let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/engine.md");
        let text = fs::read_to_string(doc).expect("docs/engine.md");
        let blocks: Vec<&str> = text
            .split("```ini\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .collect();
        assert!(!blocks.is_empty(), "docs/engine.md has an ini example");
        let dir = tempfile::tempdir().expect("tmp");
        for block in blocks {
            let inv = load(dir.path(), "doc.ini", block).expect("the doc's example loads");
            assert_eq!(inv.groups["webservers"].hosts.len(), 52);
            assert_eq!(inv.groups["southeast"].hosts, ["host1"]);
        }
    }

    #[test]
    fn the_format_rule() {
        use super::super::Format;
        let of = |name: &str, text: &str| Format::of(Path::new(name), text);
        assert_eq!(of("x.ini", "all:\n"), Format::Ini);
        assert_eq!(of("x.yaml", "# c\n\nall:\n  hosts: {}\n"), Format::Yaml);
        assert_eq!(of("x", "---\nall:\n"), Format::Yaml);
        assert_eq!(of("x", "- node1\n"), Format::Yaml);
        assert_eq!(of("x", "{all: {}}\n"), Format::Yaml);
        assert_eq!(of("x", "\"all\":\n"), Format::Yaml);
        assert_eq!(of("x", ""), Format::Yaml);
        assert_eq!(of("x.yaml", "; c\n[db]\nnode1\n"), Format::Ini);
        assert_eq!(of("hosts", "mail.example.com\n"), Format::Ini);
        assert_eq!(of("hosts", "badwolf.example.com:5309\n"), Format::Ini);
    }

    #[test]
    fn bad_lines_name_file_line_column_and_what() {
        let cases = [
            ("[db\nnode1\n", "DIR/i.ini:1:1: `[db` is not a section header"),
            ("[db:hosts]\n", "DIR/i.ini:1:5: section `[db:hosts]` has an unknown type `hosts`"),
            ("[db]\nnode1 port\n", "DIR/i.ini:2:7: `port` after the host name is not a `key=value` variable"),
            ("[db]\n  node1 a=\"open\n", "DIR/i.ini:2:11: this quote is not closed"),
            ("[db]\nnode1 =1\n", "DIR/i.ini:2:7: a variable has no name before `=`"),
            ("[db]\nn1\n[db:vars]\njust words\n", "DIR/i.ini:4:1: `just words` in a `:vars` section is not `key=value`"),
            ("[db]\nn1\n[x:children]\ndb rep\n", "DIR/i.ini:4:1: `db rep` in a `:children` section is not one group name"),
            ("[db]\nn1\n[x:children]\nall\n", "DIR/i.ini:4:1: `all` cannot be a child group"),
            (
                "[replica]\nn1\n[pg:children]\nreplcia\n",
                "DIR/i.ini:4:1: section `[pg:children]` names group `replcia`, which is not declared (with `[replcia]` or `[replcia:children]`) (did you mean `replica`?)",
            ),
            ("[db]\nn1\n[dv:vars]\na=1\n", "DIR/i.ini:3:1: section `[dv:vars]` is for group `dv`"),
            ("[db]\nnode[3:1] a=1\n", "DIR/i.ini:2:5: host `node[3:1]`: the host range `[3:1]` begins after its end"),
            ("[db]\nnode[1:3\n", "DIR/i.ini:2:5: host `node[1:3`: the host range's `[` has no closing `]`"),
            ("[db]\nnode[a:3]\n", "DIR/i.ini:2:5: host `node[a:3]`: the host range `[a:3]` mixes a letter and a number"),
            ("[db]\n  n[1:9:0]\n", "DIR/i.ini:2:4: host `n[1:9:0]`: the host range `[1:9:0]` has step 0"),
            ("[db]\nnode1:99999\n", "DIR/i.ini:2:7: host `node1:99999`: `99999` after `:` is not a port number"),
        ];
        for (text, expected) in cases {
            let got = error("i.ini", text);
            assert!(
                got.contains(expected),
                "{text:?}:\n got: {got}\nwant: {expected}"
            );
        }
    }
}
