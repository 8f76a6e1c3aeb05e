//! The inventory: hosts, groups and their variables, in Ansible's YAML or
//! INI inventory format ([`Format`]), with `group_vars/` and `host_vars/`
//! folders beside it. Host names may be ranges (`www[01:50].example.com`,
//! see [`range`]); `pgdeploy_group_aliases` makes groups aliases of others
//! ([`GROUP_ALIASES_VAR`]).
//!
//! Variable precedence, lowest first (later wins):
//! 1. role defaults (`roles/NAME/defaults.yaml`),
//! 2. inventory `all` vars, then `group_vars/all.yaml`,
//! 3. group vars, parents before children (then by name), each group's
//!    inline vars then `group_vars/GROUP.yaml`,
//! 4. host vars: inline, then `host_vars/HOST.yaml`,
//! 5. play vars, then task vars (`loop` items),
//! 6. registered results,
//! 7. extra vars (`-e`), which beat everything.
//!
//! Facts live under `facts` and never collide with variables. Steps 2 to 4
//! are resolved here; the rest where they become known.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use pgdeploy_transport::ssh_config::{self, Given, Hop};
use serde_json::{Map, Value as Json};

use crate::error::{suggestion, InputError, InputErrors};
use crate::yaml::{self, Key, Node, Pos, Value};

pub mod ini;
pub mod range;

/// Variables as JSON values by name.
pub type Vars = Map<String, Json>;

/// A parsed inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The inventory file.
    pub path: PathBuf,
    /// Hosts in the order they first appear.
    pub hosts: Vec<Host>,
    /// Groups by name, each with its hosts (transitively, children included).
    pub groups: BTreeMap<String, Group>,
}

/// One host with its merged variables.
#[derive(Debug, Clone)]
pub struct Host {
    /// The inventory name (`inventory_hostname`).
    pub name: String,
    /// Where it was first declared.
    pub pos: Pos,
    /// The groups it belongs to (transitively), without `all`.
    pub groups: Vec<String>,
    /// Its variables after inventory precedence (steps 2-4).
    pub vars: Vars,
    /// Where each of its variables is set (the key of the value that won).
    pub var_pos: BTreeMap<String, Pos>,
    /// How to reach it.
    pub connection: Connection,
}

/// Connection settings of one host, from pgdeploy's names or Ansible's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Address or DNS name (`pgdeploy_host` / `ansible_host`; default: the
    /// inventory name).
    pub address: String,
    /// SSH port (`pgdeploy_port` / `ansible_port`; default 22).
    pub port: u16,
    /// Login user (`pgdeploy_user` / `ansible_user`; default root).
    pub user: String,
    /// Private key (`pgdeploy_private_key_file` /
    /// `ansible_ssh_private_key_file`); none means ssh-agent or ~/.ssh keys.
    pub key_file: Option<PathBuf>,
    /// Whether tasks run as root via sudo (`pgdeploy_become` /
    /// `ansible_become`).
    pub become_root: bool,
    /// known_hosts file (`pgdeploy_known_hosts`; default ~/.ssh/known_hosts).
    pub known_hosts: Option<PathBuf>,
    /// Which of the settings above the inventory gave (those win over
    /// `~/.ssh/config`).
    pub given: Given,
    /// Jump hosts, outermost first (`pgdeploy_ssh_jump`, else `-o
    /// ProxyJump=` / `-J` in `ansible_ssh_common_args` or
    /// `ansible_ssh_extra_args`); `Some(empty)` for `none`; `None`: as
    /// `~/.ssh/config` says. A hop naming an inventory host is that host's
    /// address, port and user.
    pub jump: Option<Vec<Hop>>,
}

/// A group of hosts.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// Member hosts, in inventory order (children's hosts included).
    pub hosts: Vec<String>,
    /// How deep it is below `all` (for precedence).
    pub depth: usize,
    /// Where it is declared.
    pub pos: Option<Pos>,
}

/// Raw declarations gathered while walking the inventory tree.
#[derive(Default)]
struct Walk {
    host_order: Vec<(String, Pos)>,
    host_inline: BTreeMap<String, Vec<Node>>,
    group_vars: BTreeMap<String, Vec<Node>>,
    group_members: BTreeMap<String, BTreeSet<String>>,
    group_children: BTreeMap<String, BTreeSet<String>>,
    group_pos: BTreeMap<String, Pos>,
}

impl Connection {
    /// The transport's target for the host named `name`: the inventory's
    /// settings, then the SSH client configuration's
    /// ([`ssh_config::global`]) where the inventory gave none, with the jump
    /// hosts.
    pub fn target(&self, name: &str) -> pgdeploy_transport::Target {
        let plain = pgdeploy_transport::Target {
            name: name.to_string(),
            address: self.address.clone(),
            port: self.port,
            user: self.user.clone(),
            key_file: self.key_file.clone(),
            jump: None,
        };
        ssh_config::global().apply(&plain, self.given, self.jump.as_deref())
    }

    /// `base` with this host's known_hosts file, when it names one.
    pub fn options(
        &self,
        base: &pgdeploy_transport::ConnectOptions,
    ) -> pgdeploy_transport::ConnectOptions {
        let mut options = base.clone();
        if let Some(known_hosts) = &self.known_hosts {
            options.known_hosts = known_hosts.clone();
        }
        options
    }
}

/// The two inventory formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Ansible's YAML inventory (`all:` with `hosts:`, `children:`, `vars:`).
    Yaml,
    /// Ansible's INI inventory (`[group]`, `[group:vars]`,
    /// `[group:children]`; see [`ini`]).
    Ini,
}

impl Format {
    /// The format of inventory `text` read from `path`: INI when the name
    /// ends in `.ini`; otherwise the first line that is not blank or a
    /// comment (`#`, `;`) decides: YAML when it is `---`, a `%` directive, a
    /// flow mapping `{`, a list item `-`, or a mapping key (its first word
    /// or the line ends with `:`, as `all:` does); INI otherwise (a
    /// `[section]` or a host line). An empty file is YAML.
    pub fn of(path: &Path, text: &str) -> Format {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ini"))
        {
            return Format::Ini;
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with(['#', ';']));
        let Some(line) = first else {
            return Format::Yaml;
        };
        let first_word = line.split_whitespace().next().unwrap_or(line);
        let yaml =
            line.starts_with(['%', '{', '-']) || first_word.ends_with(':') || line.ends_with(':');
        if yaml {
            Format::Yaml
        } else {
            Format::Ini
        }
    }
}

impl Inventory {
    /// Loads an inventory file and the `group_vars/` and `host_vars/`
    /// folders beside it. All problems found are reported together.
    pub fn load(path: &Path) -> Result<Inventory, InputErrors> {
        let text = yaml::read(path)?;
        Self::parse(&text, path)
    }

    /// Parses inventory `text` read from `path` (its `group_vars/` and
    /// `host_vars/` folders are looked up beside `path`).
    /// The format is chosen by [`Format::of`].
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, InputErrors> {
        let mut errors = Vec::new();
        let mut walk = Walk::default();
        match Format::of(path, text) {
            Format::Yaml => walk_yaml(text, path, &mut walk, &mut errors)?,
            Format::Ini => ini::walk(text, path, &mut walk, &mut errors),
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        apply_group_aliases(dir, &mut walk, &mut errors);
        let inventory = build(path, dir, walk, &mut errors);
        if errors.is_empty() {
            Ok(inventory)
        } else {
            Err(InputErrors(errors))
        }
    }

    /// Finds a host by name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The hosts matching an Ansible-style pattern: names or groups joined by
    /// `:` or `,`; `&name` intersects, `!name` excludes; `*` is a wildcard.
    /// `all` means every host. An unknown name is an error.
    pub fn select(&self, pattern: &str, pos: &Pos) -> Result<Vec<String>, InputError> {
        let mut selected: Option<BTreeSet<String>> = None;
        let mut excluded = BTreeSet::new();
        let mut intersect: Vec<BTreeSet<String>> = Vec::new();
        for part in pattern
            .split([':', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (op, name) = match part.as_bytes()[0] {
                b'!' => ('!', &part[1..]),
                b'&' => ('&', &part[1..]),
                _ => ('+', part),
            };
            let matched = self.resolve_name(name, pos)?;
            match op {
                '!' => excluded.extend(matched),
                '&' => intersect.push(matched),
                _ => selected.get_or_insert_with(BTreeSet::new).extend(matched),
            }
        }
        let mut set = selected.unwrap_or_default();
        for other in intersect {
            set.retain(|h| other.contains(h));
        }
        set.retain(|h| !excluded.contains(h));
        Ok(self
            .hosts
            .iter()
            .filter(|h| set.contains(&h.name))
            .map(|h| h.name.clone())
            .collect())
    }

    fn resolve_name(&self, name: &str, pos: &Pos) -> Result<BTreeSet<String>, InputError> {
        if name == "all" || name == "*" {
            return Ok(self.hosts.iter().map(|h| h.name.clone()).collect());
        }
        if name.contains('*') {
            let found: BTreeSet<String> = self
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .chain(self.groups.keys().map(String::as_str))
                .filter(|n| glob_match(name, n))
                .flat_map(|n| self.members(n))
                .collect();
            if found.is_empty() {
                return Err(InputError::at(
                    pos,
                    format!("the pattern `{name}` matches no host or group"),
                ));
            }
            return Ok(found);
        }
        if self.host(name).is_some() || self.groups.contains_key(name) {
            return Ok(self.members(name).collect());
        }
        let candidates = self
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(self.groups.keys().map(String::as_str));
        Err(InputError::at(
            pos,
            format!(
                "no host or group named `{name}` in the inventory{}",
                suggestion(name, candidates)
            ),
        ))
    }

    fn members<'a>(&'a self, name: &'a str) -> Box<dyn Iterator<Item = String> + 'a> {
        if let Some(group) = self.groups.get(name) {
            Box::new(group.hosts.iter().cloned())
        } else {
            Box::new(std::iter::once(name.to_string()))
        }
    }

    /// The `groups` variable templates see: group name → host names.
    pub fn groups_json(&self) -> Json {
        let mut map = Map::new();
        map.insert(
            "all".into(),
            self.hosts
                .iter()
                .map(|h| Json::from(h.name.clone()))
                .collect(),
        );
        for (name, group) in &self.groups {
            map.insert(
                name.clone(),
                group.hosts.iter().cloned().map(Json::from).collect(),
            );
        }
        Json::Object(map)
    }
}

fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    rest.is_empty()
}

const GROUP_KEYS: [&str; 3] = ["hosts", "children", "vars"];

/// Reads a YAML inventory into `walk`; a document that is no mapping, or
/// an empty one, stops here.
fn walk_yaml(
    text: &str,
    path: &Path,
    walk: &mut Walk,
    errors: &mut Vec<InputError>,
) -> Result<(), InputErrors> {
    let root = yaml::parse(text, path)?;
    let entries = root.as_map("the inventory")?;
    if entries.is_empty() {
        return Err(root
            .error("the inventory is empty: it needs `all:` with `hosts:`")
            .into());
    }
    for (key, node) in entries {
        if key.name != "all" {
            walk.group_children
                .entry("all".into())
                .or_default()
                .insert(key.name.clone());
        }
        walk_group(&key.name, &key.pos, node, walk, errors);
    }
    Ok(())
}

/// Declares the hosts of `pattern` (a name, a range such as `node[1:3]`,
/// maybe with `:port`) as members of `group`, each with the inline `vars`.
/// A `:port` is the host's `ansible_port`, below its inline vars.
fn add_hosts(
    walk: &mut Walk,
    group: &str,
    pattern: &str,
    pos: &Pos,
    vars: Option<&Node>,
    errors: &mut Vec<InputError>,
) {
    let (names, port) = match range::expand_pattern(pattern) {
        Ok(expanded) => expanded,
        Err(e) => {
            let before = pattern.get(..e.offset).unwrap_or(pattern);
            let at = Pos {
                column: pos.column + before.chars().count() as u32,
                ..pos.clone()
            };
            let message = format!("host `{pattern}`: {}", e.problem);
            return errors.push(InputError::at(&at, message));
        }
    };
    for name in names {
        if !walk.host_inline.contains_key(&name) {
            walk.host_order.push((name.clone(), pos.clone()));
        }
        let inline = walk.host_inline.entry(name.clone()).or_default();
        if let Some(port) = port {
            let key = Key {
                name: "ansible_port".into(),
                pos: pos.clone(),
            };
            let value = Node {
                value: Value::Int(port.into()),
                pos: pos.clone(),
            };
            inline.push(Node {
                value: Value::Map(vec![(key, value)]),
                pos: pos.clone(),
            });
        }
        if let Some(vars) = vars.filter(|v| !matches!(v.value, Value::Null)) {
            inline.push(vars.clone());
        }
        walk.group_members
            .entry(group.to_string())
            .or_default()
            .insert(name);
    }
}

fn walk_group(name: &str, pos: &Pos, node: &Node, walk: &mut Walk, errors: &mut Vec<InputError>) {
    walk.group_pos
        .entry(name.to_string())
        .or_insert_with(|| pos.clone());
    walk.group_members.entry(name.to_string()).or_default();
    let entries = match node.as_map(&format!("group `{name}`")) {
        Ok(e) => e,
        Err(e) => return errors.push(e),
    };
    for (key, value) in entries {
        match key.name.as_str() {
            "hosts" => match value.as_map(&format!("`hosts` of group `{name}`")) {
                Ok(hosts) => {
                    for (host, vars) in hosts {
                        add_hosts(walk, name, &host.name, &host.pos, Some(vars), errors);
                    }
                }
                Err(e) => errors.push(e),
            },
            "children" => match value.as_map(&format!("`children` of group `{name}`")) {
                Ok(children) => {
                    for (child, child_node) in children {
                        if child.name == "all" {
                            errors.push(InputError::at(&child.pos, "`all` cannot be a child group"));
                            continue;
                        }
                        walk.group_children.entry(name.to_string()).or_default().insert(child.name.clone());
                        walk_group(&child.name, &child.pos, child_node, walk, errors);
                    }
                }
                Err(e) => errors.push(e),
            },
            "vars" => walk.group_vars.entry(name.to_string()).or_default().push(value.clone()),
            other => errors.push(InputError::at(
                &key.pos,
                format!(
                    "unknown key `{other}` in group `{name}`: a group has `hosts`, `children` and `vars`{}",
                    suggestion(other, GROUP_KEYS)
                ),
            )),
        }
    }
}

/// The variable (of `all`, inline or in `group_vars/all.yaml`) that makes
/// groups aliases of others: `{ALIAS: GROUP}` or `{ALIAS: [GROUP, ...]}`.
/// The alias group gets every host of GROUP: GROUP becomes a child of ALIAS
/// (so ALIAS's vars and `group_vars/ALIAS.yaml` apply to them, below
/// GROUP's own), and ALIAS a child of `all`. This lets an inventory written
/// for other playbooks, with other group names, be used as it is.
pub const GROUP_ALIASES_VAR: &str = "pgdeploy_group_aliases";

/// Applies [`GROUP_ALIASES_VAR`] to the declarations.
fn apply_group_aliases(dir: &Path, walk: &mut Walk, errors: &mut Vec<InputError>) {
    let Some(node) = group_aliases_node(dir, walk) else {
        return;
    };
    let entries = match node.as_map(&format!("`{GROUP_ALIASES_VAR}`")) {
        Ok(entries) => entries,
        Err(e) => return errors.push(e),
    };
    for (alias, targets) in entries {
        let what = format!("the groups `{}` is an alias of", alias.name);
        let targets = match targets.as_str_list(&what) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if alias.name == "all" {
            errors.push(InputError::at(&alias.pos, "`all` cannot be an alias"));
            continue;
        }
        for target in targets {
            if target == alias.name || target == "all" || !walk.group_members.contains_key(&target)
            {
                let groups = walk.group_members.keys().map(String::as_str);
                let message = format!(
                    "`{GROUP_ALIASES_VAR}`: `{}` is an alias of `{target}`, which is not a group of the inventory (other than `all` and `{}`){}",
                    alias.name,
                    alias.name,
                    suggestion(&target, groups)
                );
                errors.push(InputError::at(&targets_pos(&node, alias), message));
                continue;
            }
            walk.group_children
                .entry(alias.name.clone())
                .or_default()
                .insert(target);
            walk.group_members.entry(alias.name.clone()).or_default();
            walk.group_pos
                .entry(alias.name.clone())
                .or_insert_with(|| alias.pos.clone());
            walk.group_children
                .entry("all".into())
                .or_default()
                .insert(alias.name.clone());
        }
    }
}

/// Where the groups of `alias` are written.
fn targets_pos(node: &Node, alias: &Key) -> Pos {
    node.get(&alias.name)
        .map(|n| n.pos.clone())
        .unwrap_or_else(|| alias.pos.clone())
}

/// The last [`GROUP_ALIASES_VAR`] of `all`: `group_vars/all.yaml` beats
/// the inventory's own `all` vars. (Errors of that file are reported when
/// the group vars are loaded.)
fn group_aliases_node(dir: &Path, walk: &Walk) -> Option<Node> {
    let file = load_vars_file(&dir.join("group_vars"), "all", &mut Vec::new());
    let inline = walk.group_vars.get("all").into_iter().flatten().rev();
    file.iter()
        .chain(inline)
        .find_map(|vars| vars.get(GROUP_ALIASES_VAR))
        .cloned()
}

fn build(path: &Path, dir: &Path, walk: Walk, errors: &mut Vec<InputError>) -> Inventory {
    let depth = group_depths(path, &walk, errors);
    let host_groups = host_memberships(&walk);
    let groups = groups_of(&walk, &host_groups, &depth);
    let ordered = precedence_order(&walk, &depth);
    let group_vars = load_group_vars(dir, &walk, &ordered, errors);

    let mut hosts = Vec::new();
    let mut seen_addresses: BTreeMap<(String, u16), String> = BTreeMap::new();
    for (name, pos) in &walk.host_order {
        let memberships = host_groups.get(name).cloned().unwrap_or_default();
        let (vars, var_pos) = host_vars(
            dir,
            &walk,
            name,
            &memberships,
            &ordered,
            &group_vars,
            errors,
        );
        let Some(connection) = host_connection(&walk, name, pos, &vars, errors) else {
            continue;
        };
        let key = (connection.address.clone(), connection.port);
        if let Some(other) = seen_addresses.insert(key.clone(), name.clone()) {
            errors.push(InputError::at(
                pos,
                format!(
                    "host `{name}` has the same address {}:{} as host `{other}`",
                    key.0, key.1
                ),
            ));
        }
        let groups_of_host = memberships.into_iter().filter(|g| g != "all").collect();
        hosts.push(Host {
            name: name.clone(),
            pos: pos.clone(),
            groups: groups_of_host,
            vars,
            var_pos,
            connection,
        });
    }
    jumps_to_inventory_hosts(&mut hosts);
    if hosts.is_empty() && errors.is_empty() {
        let at = walk.group_pos.get("all").cloned().unwrap_or_else(|| Pos {
            file: std::sync::Arc::new(path.to_path_buf()),
            line: 1,
            column: 1,
        });
        errors.push(InputError::at(
            &at,
            "the inventory has no hosts: list them under `hosts:` of `all` or of a group",
        ));
    }
    Inventory {
        path: path.to_path_buf(),
        hosts,
        groups,
    }
}

/// The depth of each group below `all` (the deepest path to it), reporting
/// a group that is its own ancestor.
fn group_depths(path: &Path, walk: &Walk, errors: &mut Vec<InputError>) -> BTreeMap<String, usize> {
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let mut stack = vec![("all".to_string(), 0usize, vec!["all".to_string()])];
    while let Some((group, d, path_so_far)) = stack.pop() {
        let entry = depth.entry(group.clone()).or_insert(d);
        *entry = (*entry).max(d);
        for child in walk.group_children.get(&group).into_iter().flatten() {
            if path_so_far.contains(child) {
                let pos = walk
                    .group_pos
                    .get(child)
                    .cloned()
                    .unwrap_or_else(|| Pos::synthetic(&path.display().to_string()));
                errors.push(InputError::at(
                    &pos,
                    format!(
                        "group `{child}` is its own ancestor: {} → {child}",
                        path_so_far.join(" → ")
                    ),
                ));
                continue;
            }
            let mut next = path_so_far.clone();
            next.push(child.clone());
            stack.push((child.clone(), d + 1, next));
        }
    }
    depth
}

/// Host → the groups it belongs to, transitively (`all` included).
fn host_memberships(walk: &Walk) -> BTreeMap<String, BTreeSet<String>> {
    let mut host_groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for group in walk.group_members.keys() {
        for host in transitive_hosts(group, walk, &mut BTreeSet::new()) {
            host_groups.entry(host).or_default().insert(group.clone());
        }
    }
    host_groups
}

/// The groups other than `all`, each with its hosts in inventory order.
fn groups_of(
    walk: &Walk,
    host_groups: &BTreeMap<String, BTreeSet<String>>,
    depth: &BTreeMap<String, usize>,
) -> BTreeMap<String, Group> {
    let mut groups = BTreeMap::new();
    for (name, _) in walk
        .group_members
        .iter()
        .filter(|(n, _)| n.as_str() != "all")
    {
        let members = host_groups
            .iter()
            .filter(|(_, gs)| gs.contains(name))
            .map(|(h, _)| h.clone())
            .collect::<BTreeSet<_>>();
        let hosts = walk
            .host_order
            .iter()
            .filter(|(h, _)| members.contains(h))
            .map(|(h, _)| h.clone())
            .collect();
        groups.insert(
            name.clone(),
            Group {
                hosts,
                depth: depth.get(name).copied().unwrap_or(1),
                pos: walk.group_pos.get(name).cloned(),
            },
        );
    }
    groups
}

/// The groups in the order their vars apply: all, then by depth and name.
fn precedence_order<'a>(walk: &'a Walk, depth: &BTreeMap<String, usize>) -> Vec<&'a String> {
    let mut ordered: Vec<&String> = walk.group_members.keys().collect();
    ordered.sort_by_key(|g| {
        (
            if g.as_str() == "all" {
                0
            } else {
                depth.get(*g).copied().unwrap_or(1)
            },
            (*g).clone(),
        )
    });
    ordered
}

/// Variables and where each is set.
type Located = (Vars, BTreeMap<String, Pos>);

/// Each group's vars: inline, then its `group_vars/` file.
fn load_group_vars(
    dir: &Path,
    walk: &Walk,
    ordered: &[&String],
    errors: &mut Vec<InputError>,
) -> BTreeMap<String, Located> {
    let mut group_vars = BTreeMap::new();
    for group in ordered {
        let mut vars = Located::default();
        for node in walk.group_vars.get(*group).into_iter().flatten() {
            merge_node(&mut vars, node, &format!("vars of group `{group}`"), errors);
        }
        if let Some(node) = load_vars_file(&dir.join("group_vars"), group, errors) {
            merge_node(&mut vars, &node, "group_vars file", errors);
        }
        group_vars.insert((*group).clone(), vars);
    }
    group_vars
}

/// One host's vars: its groups' in precedence order, then its inline vars,
/// then its `host_vars/` file.
fn host_vars(
    dir: &Path,
    walk: &Walk,
    name: &str,
    memberships: &BTreeSet<String>,
    ordered: &[&String],
    group_vars: &BTreeMap<String, Located>,
    errors: &mut Vec<InputError>,
) -> Located {
    let mut vars = Located::default();
    for group in ordered {
        if group.as_str() == "all" || memberships.contains(*group) {
            if let Some((values, positions)) = group_vars.get(*group) {
                vars.0.extend(values.clone());
                vars.1.extend(positions.clone());
            }
        }
    }
    for node in walk.host_inline.get(name).into_iter().flatten() {
        merge_node(&mut vars, node, &format!("vars of host `{name}`"), errors);
    }
    if let Some(node) = load_vars_file(&dir.join("host_vars"), name, errors) {
        merge_node(&mut vars, &node, "host_vars file", errors);
    }
    vars
}

/// A host's connection settings; an error (at the last inline connection
/// key, else at the host) if they are wrong.
fn host_connection(
    walk: &Walk,
    name: &str,
    pos: &Pos,
    vars: &Vars,
    errors: &mut Vec<InputError>,
) -> Option<Connection> {
    match connection_of(name, vars) {
        Ok(c) => Some(c),
        Err(message) => {
            let at = walk
                .host_inline
                .get(name)
                .and_then(|nodes| nodes.iter().rev().find_map(connection_key_pos))
                .unwrap_or_else(|| pos.clone());
            errors.push(InputError::at(&at, format!("host `{name}`: {message}")));
            None
        }
    }
}

fn transitive_hosts(group: &str, walk: &Walk, visiting: &mut BTreeSet<String>) -> BTreeSet<String> {
    if !visiting.insert(group.to_string()) {
        return BTreeSet::new();
    }
    let mut hosts: BTreeSet<String> = walk.group_members.get(group).cloned().unwrap_or_default();
    if group == "all" {
        hosts.extend(walk.host_order.iter().map(|(h, _)| h.clone()));
    }
    for child in walk.group_children.get(group).into_iter().flatten() {
        hosts.extend(transitive_hosts(child, walk, visiting));
    }
    visiting.remove(group);
    hosts
}

fn merge_node(vars: &mut Located, node: &Node, what: &str, errors: &mut Vec<InputError>) {
    match node.as_map(what) {
        Ok(entries) => {
            for (key, value) in entries {
                vars.0.insert(key.name.clone(), value.to_json());
                vars.1.insert(key.name.clone(), key.pos.clone());
            }
        }
        Err(e) => errors.push(e),
    }
}

fn load_vars_file(dir: &Path, name: &str, errors: &mut Vec<InputError>) -> Option<Node> {
    ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
        .and_then(|p| yaml::load(&p).map_err(|e| errors.push(e)).ok())
}

const CONNECTION_KEYS: [&str; 14] = [
    "ansible_host",
    "pgdeploy_host",
    "ansible_ssh_host",
    "ansible_port",
    "pgdeploy_port",
    "ansible_ssh_port",
    "ansible_user",
    "pgdeploy_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "pgdeploy_private_key_file",
    JUMP_VAR,
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
];

/// The inventory variable naming a host's jump hosts (OpenSSH's
/// `ProxyJump` syntax: `[user@]host[:port]`, comma-separated, or `none`).
pub const JUMP_VAR: &str = "pgdeploy_ssh_jump";

/// A host's jump hosts from its vars (see [`Connection::jump`]).
fn jump_of(vars: &Vars) -> Result<Option<Vec<Hop>>, String> {
    if let Some(value) = vars.get(JUMP_VAR) {
        let text = json_str(value).ok_or_else(|| {
            format!("`{JUMP_VAR}` must be a string: `[user@]host[:port]`, a comma-separated list of them, or `none`")
        })?;
        return ssh_config::parse_jumps(&text)
            .map(Some)
            .map_err(|e| format!("`{JUMP_VAR}`: {e}"));
    }
    let mut found = None;
    for name in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
        if let Some(args) = vars.get(name).and_then(json_str) {
            if let Some(hops) =
                ssh_config::jumps_in_ssh_args(&args).map_err(|e| format!("`{name}`: {e}"))?
            {
                found = Some(hops);
            }
        }
    }
    Ok(found)
}

/// Jump hosts that are inventory hosts become their address, port and user
/// (unless the hop gives them); a hop naming the host itself ends its list
/// (a bastion in a group that goes through it is reached directly).
fn jumps_to_inventory_hosts(hosts: &mut [Host]) {
    let known: BTreeMap<String, Connection> = hosts
        .iter()
        .map(|h| (h.name.clone(), h.connection.clone()))
        .collect();
    for host in hosts.iter_mut() {
        let Some(hops) = &mut host.connection.jump else {
            continue;
        };
        if let Some(own) = hops.iter().position(|hop| hop.host == host.name) {
            hops.truncate(own);
        }
        for hop in hops.iter_mut() {
            if let Some(other) = known.get(&hop.host) {
                hop.host = other.address.clone();
                hop.port = hop.port.or(Some(other.port));
                hop.user = hop.user.take().or_else(|| Some(other.user.clone()));
            }
        }
    }
}

fn connection_key_pos(node: &Node) -> Option<Pos> {
    CONNECTION_KEYS
        .iter()
        .find_map(|k| node.get(k))
        .map(|n| n.pos.clone())
}

/// The first of `names` that is set: pgdeploy's name, then Ansible's (and
/// Ansible's older `ansible_ssh_*` spelling, which it still reads).
fn pick<'a>(vars: &'a Vars, names: &[&str]) -> Option<&'a Json> {
    names.iter().find_map(|n| vars.get(*n))
}

const HOST_VARS: [&str; 3] = ["pgdeploy_host", "ansible_host", "ansible_ssh_host"];
const PORT_VARS: [&str; 3] = ["pgdeploy_port", "ansible_port", "ansible_ssh_port"];
const USER_VARS: [&str; 3] = ["pgdeploy_user", "ansible_user", "ansible_ssh_user"];

fn json_str(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn connection_of(name: &str, vars: &Vars) -> Result<Connection, String> {
    let address = match pick(vars, &HOST_VARS) {
        Some(v) => json_str(v).ok_or("the host address must be a string")?,
        None => name.to_string(),
    };
    if !valid_address(&address) {
        return Err(format!(
            "`{address}` is not a valid IP address or host name"
        ));
    }
    let port = match pick(vars, &PORT_VARS) {
        Some(v) => {
            let text = json_str(v).ok_or("the SSH port must be a number")?;
            match text.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("SSH port `{text}` is not a port number (1-65535)")),
            }
        }
        None => 22,
    };
    let user = pick(vars, &USER_VARS)
        .and_then(json_str)
        .unwrap_or_else(|| "root".into());
    let key_file = pick(
        vars,
        &["pgdeploy_private_key_file", "ansible_ssh_private_key_file"],
    )
    .and_then(json_str)
    .map(PathBuf::from);
    let become_root = pick(vars, &["pgdeploy_become", "ansible_become"])
        .and_then(json_truthy)
        .unwrap_or(false);
    let known_hosts = vars
        .get("pgdeploy_known_hosts")
        .and_then(json_str)
        .map(PathBuf::from);
    let given = Given {
        address: pick(vars, &HOST_VARS).is_some(),
        port: pick(vars, &PORT_VARS).is_some(),
        user: pick(vars, &USER_VARS).is_some(),
        key_file: key_file.is_some(),
    };
    Ok(Connection {
        address,
        port,
        user,
        key_file,
        become_root,
        known_hosts,
        given,
        jump: jump_of(vars)?,
    })
}

/// Whether `text` is an IP address or a plausible DNS name.
pub fn valid_address(text: &str) -> bool {
    if text.parse::<IpAddr>().is_ok() {
        return true;
    }
    let looks_numeric = text.chars().all(|c| c.is_ascii_digit() || c == '.');
    !looks_numeric
        && !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A variable's value as a boolean, by the one rule: a boolean, the
/// integer 1 (any other number is false), or Ansible's words
/// ([`pgdeploy_text::truthy`]); `None` for anything else (unset, null, an
/// unknown word), which the caller gives its default.
pub fn json_truthy(value: &Json) -> Option<bool> {
    match value {
        Json::Bool(b) => Some(*b),
        Json::Number(n) => Some(n.as_u64() == Some(1)),
        Json::String(s) => pgdeploy_text::truthy(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, text).expect("write");
        path
    }

    const INVENTORY: &str = "\
all:
  vars:
    level: all
    from_all: yes
  hosts:
    node1: {ansible_host: 10.0.0.1, ansible_user: admin}
    node2: {ansible_host: 10.0.0.2, level: host-inline}
    node3: {pgdeploy_host: 10.0.0.3, pgdeploy_port: 2222, ansible_become: true}
  children:
    db:
      vars: {level: db}
      children:
        primary_site:
          vars: {level: primary_site}
          hosts:
            node1:
    etcd:
      hosts: {node2: , node3: }
";

    #[test]
    fn precedence_host_beats_child_group_beats_parent_beats_all() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = write(dir.path(), "inv.yaml", INVENTORY);
        write(
            dir.path(),
            "group_vars/etcd.yaml",
            "level: etcd-file\netcd_only: 1\n",
        );
        write(dir.path(), "host_vars/node3.yaml", "level: host-file\n");
        let inv = Inventory::load(&path).expect("loads");
        let level = |h: &str| inv.host(h).expect("host").vars["level"].clone();
        assert_eq!(level("node1"), "primary_site");
        assert_eq!(level("node2"), "host-inline");
        assert_eq!(level("node3"), "host-file");
        assert_eq!(inv.host("node2").expect("node2").vars["etcd_only"], 1);
        assert_eq!(inv.host("node1").expect("node1").vars["from_all"], true);
        assert_eq!(inv.groups["db"].hosts, vec!["node1"]);
        assert_eq!(
            inv.host("node1").expect("node1").groups,
            vec!["db", "primary_site"]
        );
    }

    #[test]
    fn jump_hosts_from_pgdeploy_ssh_jump_or_ansible_ssh_args() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = "\
all:
  vars:
    ansible_ssh_common_args: '-o StrictHostKeyChecking=no -o ProxyJump=ops@gate.example.com:2222'
  hosts:
    bastion: {ansible_host: 10.0.0.1, ansible_user: admin}
    other: {ansible_host: 10.0.0.4}
  children:
    db:
      vars: {pgdeploy_ssh_jump: bastion}
      hosts:
        db1: {ansible_host: 10.0.0.2}
        bastion: {}
    web:
      hosts:
        web1: {ansible_host: 10.0.0.3, pgdeploy_ssh_jump: none}
";
        let inv = Inventory::load(&write(dir.path(), "inv.yaml", text)).expect("loads");
        let jump = |h: &str| inv.host(h).expect("host").connection.jump.clone();
        let via_bastion = Hop {
            user: Some("admin".into()),
            host: "10.0.0.1".into(),
            port: Some(22),
        };
        assert_eq!(
            jump("db1"),
            Some(vec![via_bastion]),
            "an inventory host as jump host"
        );
        assert_eq!(
            jump("bastion"),
            Some(vec![]),
            "the bastion itself goes direct"
        );
        assert_eq!(jump("web1"), Some(vec![]), "`none`");
        let gate = Hop {
            user: Some("ops".into()),
            host: "gate.example.com".into(),
            port: Some(2222),
        };
        assert_eq!(jump("other"), Some(vec![gate]), "Ansible's -o ProxyJump=");
        let bad = "all:\n  hosts:\n    h1: {ansible_host: 10.0.0.9, pgdeploy_ssh_jump: 'u@:x'}\n";
        let err = Inventory::load(&write(dir.path(), "bad.yaml", bad)).expect_err("bad jump");
        assert!(err.to_string().contains("pgdeploy_ssh_jump"), "{err}");
        let given = inv.host("db1").expect("db1").connection.given;
        assert!(
            given.address && !given.port && !given.user && !given.key_file,
            "{given:?}"
        );
    }

    #[test]
    fn connection_settings_under_both_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let inv = Inventory::load(&write(dir.path(), "inv.yaml", INVENTORY)).expect("loads");
        let c1 = &inv.host("node1").expect("node1").connection;
        assert_eq!(
            (
                c1.address.as_str(),
                c1.port,
                c1.user.as_str(),
                c1.become_root
            ),
            ("10.0.0.1", 22, "admin", false)
        );
        let c3 = &inv.host("node3").expect("node3").connection;
        assert_eq!(
            (c3.address.as_str(), c3.port, c3.become_root),
            ("10.0.0.3", 2222, true)
        );
    }

    #[test]
    fn patterns_union_intersection_exclusion_and_glob() {
        let dir = tempfile::tempdir().expect("tmp");
        let inv = Inventory::load(&write(dir.path(), "inv.yaml", INVENTORY)).expect("loads");
        let pos = Pos::synthetic("test");
        assert_eq!(
            inv.select("db:etcd", &pos).expect("union"),
            vec!["node1", "node2", "node3"]
        );
        assert_eq!(
            inv.select("all:!etcd", &pos).expect("exclude"),
            vec!["node1"]
        );
        assert_eq!(
            inv.select("etcd:&node*", &pos).expect("intersect"),
            vec!["node2", "node3"]
        );
        let err = inv.select("etdc", &pos).expect_err("unknown");
        assert!(err.message.contains("did you mean `etcd`"), "{err}");
    }

    #[test]
    fn bad_address_and_port_name_the_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = "all:\n  hosts:\n    a: {ansible_host: 10.0.0.300}\n    b:\n      ansible_port: 70000\n";
        let errors = Inventory::load(&write(dir.path(), "inv.yaml", text)).expect_err("bad");
        let text = errors.to_string();
        assert!(text.contains("inv.yaml:3:"), "{text}");
        assert!(text.contains("not a valid IP address"), "{text}");
        assert!(text.contains("inv.yaml:5:"), "{text}");
        assert!(text.contains("not a port number"), "{text}");
    }

    #[test]
    fn empty_inventory_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let err =
            Inventory::load(&write(dir.path(), "empty.yaml", "all: {}\n")).expect_err("empty");
        assert!(err.to_string().contains("no hosts"), "{err}");
        let err = Inventory::load(&write(dir.path(), "typo.yaml", "all:\n  host:\n    a:\n"))
            .expect_err("typo");
        assert!(err.to_string().contains("did you mean `hosts`"), "{err}");
    }

    #[test]
    fn yaml_ranges_give_their_vars_to_every_host() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = "all:\n  children:\n    web:\n      hosts:\n        www[01:03]: {ansible_port: 2222}\n        x[1:4:2]-[a:b]:\n";
        let inv = Inventory::load(&write(dir.path(), "inv.yaml", text)).expect("loads");
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["www01", "www02", "www03", "x1-a", "x1-b", "x3-a", "x3-b"]
        );
        for host in &inv.hosts[..3] {
            assert_eq!(host.connection.port, 2222, "{}", host.name);
            assert_eq!(host.pos.line, 5);
        }
        assert_eq!(inv.groups["web"].hosts.len(), 7);
    }

    #[test]
    fn bad_yaml_ranges_name_the_place() {
        let dir = tempfile::tempdir().expect("tmp");
        let text =
            "all:\n  hosts:\n    www[3:1].example.com:\n    db-[a:3]:\n    n[1:3:\n    s[1:9:0]:\n";
        let err = Inventory::load(&write(dir.path(), "inv.yaml", text))
            .expect_err("bad")
            .to_string();
        for expected in [
            "inv.yaml:3:8: host `www[3:1].example.com`: the host range `[3:1]` begins after its end",
            "inv.yaml:4:8: host `db-[a:3]`: the host range `[a:3]` mixes a letter and a number",
            "inv.yaml:5:6: host `n[1:3`: the host range's `[` has no closing `]`",
            "inv.yaml:6:6: host `s[1:9:0]`: the host range `[1:9:0]` has step 0",
        ] {
            assert!(err.contains(expected), "{err}\nwant: {expected}");
        }
    }

    /// An INI inventory laid out as autobase (postgresql_cluster) lays its
    /// own: other group names, mapped by aliases.
    const AUTOBASE_INI: &str = r#"# if dcs_exists: false and dcs_type: "etcd"
[etcd_cluster]  # recommendation: 3, or 5-7 nodes
10.128.64.140
10.128.64.142
10.128.64.143

# if with_haproxy_load_balancing: true
[balancers]
10.128.64.140 # balancer_tags="datacenter=dc1"
10.128.64.142 # balancer_tags="datacenter=dc1"

# PostgreSQL nodes
[master]
10.128.64.140 hostname=pgnode01 postgresql_exists=false

[replica]
10.128.64.142 hostname=pgnode02 postgresql_exists=false
10.128.64.143 hostname=pgnode03 postgresql_exists=false

[postgres_cluster:children]
master
replica

[pgbackrest]  # Dedicated Repository Host
10.128.64.110

# Connection settings
[all:vars]
ansible_connection='ssh'
ansible_ssh_port='22'
"#;

    #[test]
    fn group_aliases_map_an_autobase_inventory() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = write(dir.path(), "inventory", AUTOBASE_INI);
        write(
            dir.path(),
            "group_vars/all.yaml",
            "pgdeploy_group_aliases:\n  postgres: postgres_cluster\n  etcd: etcd_cluster\n  backup: [pgbackrest]\n",
        );
        write(
            dir.path(),
            "group_vars/postgres.yaml",
            "role_of: postgres\n",
        );
        let inv = Inventory::load(&path).expect("loads");
        let hosts = |g: &str| inv.groups[g].hosts.clone();
        let pg = ["10.128.64.140", "10.128.64.142", "10.128.64.143"];
        assert_eq!(hosts("postgres"), pg);
        assert_eq!(hosts("etcd"), pg);
        assert_eq!(hosts("balancers"), pg[..2]);
        assert_eq!(hosts("backup"), ["10.128.64.110"]);
        let first = inv.host(pg[0]).expect("pgnode01");
        assert_eq!(first.vars["hostname"], "pgnode01");
        assert_eq!(first.vars["postgresql_exists"], "false");
        assert_eq!(first.vars["role_of"], "postgres");
        assert!(first.groups.contains(&"postgres".to_string()));
        let pos = Pos::synthetic("test");
        assert_eq!(inv.select("postgres:&etcd", &pos).expect("select"), pg);
        // The same aliases inline, in the INI file's `[all:vars]`.
        let inline = format!(
            "{AUTOBASE_INI}pgdeploy_group_aliases={{'postgres': 'postgres_cluster', 'etcd': 'etcd_cluster', 'backup': 'pgbackrest'}}\n"
        );
        let other = tempfile::tempdir().expect("tmp");
        let inv2 = Inventory::load(&write(other.path(), "inv.ini", &inline)).expect("loads");
        for g in ["postgres", "etcd", "backup", "balancers"] {
            assert_eq!(inv2.groups[g].hosts, inv.groups[g].hosts, "{g}");
        }
    }

    #[test]
    fn a_bad_group_alias_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let text = "all:\n  vars:\n    pgdeploy_group_aliases: {postgres: postgres_clustr, all: db}\n  children:\n    postgres_cluster:\n      hosts: {a: }\n";
        let err = Inventory::load(&write(dir.path(), "inv.yaml", text))
            .expect_err("bad")
            .to_string();
        assert!(
            err.contains("inv.yaml:3:40: `pgdeploy_group_aliases`: `postgres` is an alias of `postgres_clustr`, which is not a group of the inventory (other than `all` and `postgres`) (did you mean `postgres_cluster`?)"),
            "{err}"
        );
        assert!(
            err.contains("inv.yaml:3:57: `all` cannot be an alias"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_addresses_are_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let text =
            "all:\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n    b: {ansible_host: 10.0.0.1}\n";
        let err = Inventory::load(&write(dir.path(), "dup.yaml", text)).expect_err("dup");
        assert!(err.to_string().contains("same address"), "{err}");
    }
}
