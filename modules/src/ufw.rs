//! The `ufw` module: firewall rules, default policies and whether ufw is
//! enabled. A task does one of three things:
//!
//! - a rule: `rule` (allow, deny, reject, limit) with `port`, `proto` (tcp,
//!   udp, any; default any), `from` and `to` (address or CIDR; default any),
//!   `direction` (in, out; default in), `comment`, and `delete: true` to
//!   remove it;
//! - a default policy: `default` (allow, deny, reject; `policy` is the same)
//!   with `direction` (incoming, outgoing, routed; default incoming);
//! - `state: enabled` or `state: disabled`.
//!
//! Rules are read from `/etc/ufw/user.rules` and `user6.rules` (their
//! `### tuple ###` lines exist even while ufw is disabled), policies from
//! `/etc/default/ufw`, the enabled state from `/etc/ufw/ufw.conf`. Comments
//! are not compared.
//!
//! **SSH guard**: enabling ufw uses `ufw --force enable`, which keeps
//! established connections, and the action first checks that the rules
//! allow (or limit) incoming TCP to every port `sshd -T` reports (22 if it
//! reports none); otherwise it fails without enabling, so a run can never
//! lock itself out. The guard runs at apply time, so a rule added earlier in
//! the same run counts.

use serde::Deserialize;

use crate::params::{self, opt_bool, opt_scalar_string};
use crate::probe::{self, Kv};
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, Object, ParamSpec, Plan,
    ProbeOutput, Resource,
};
use pgdeploy_text::quote;

/// The `ufw` module.
pub struct Ufw;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    rule: Option<Verb>,
    #[serde(default, deserialize_with = "opt_scalar_string")]
    port: Option<String>,
    proto: Option<String>,
    from: Option<String>,
    to: Option<String>,
    direction: Option<String>,
    comment: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    delete: Option<bool>,
    default: Option<Policy>,
    policy: Option<Policy>,
    state: Option<State>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Verb {
    Allow,
    Deny,
    Reject,
    Limit,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Policy {
    Allow,
    Deny,
    Reject,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum State {
    Enabled,
    Disabled,
}

fn verb_name(v: Verb) -> &'static str {
    match v {
        Verb::Allow => "allow",
        Verb::Deny => "deny",
        Verb::Reject => "reject",
        Verb::Limit => "limit",
    }
}

fn policy_name(p: Policy) -> (&'static str, &'static str) {
    match p {
        Policy::Allow => ("allow", "ACCEPT"),
        Policy::Deny => ("deny", "DROP"),
        Policy::Reject => ("reject", "REJECT"),
    }
}

/// Prefixes a parameter error with the parameter's name.
fn named(param: &str, err: ModuleError) -> ModuleError {
    match err {
        ModuleError::Rejected { mut names, message } => {
            names.insert(0, param.to_string());
            ModuleError::Rejected {
                names,
                message: format!("`{param}`: {message}"),
            }
        }
        other => other,
    }
}

/// Normalizes an address as ufw stores it: `any` → the family's `/0`, host
/// masks dropped, network bits masked.
fn normalize_addr(addr: Option<&str>, v6: bool) -> Result<String, ModuleError> {
    let addr = addr.unwrap_or("any");
    if addr == "any" {
        return Ok(if v6 { "::/0" } else { "0.0.0.0/0" }.into());
    }
    let (ip, len) = match addr.split_once('/') {
        Some((ip, len)) => (
            ip,
            Some(len.parse::<u8>().map_err(|_| {
                ModuleError::rejected(
                    Vec::<&str>::new(),
                    format!("{addr:?} has a prefix length that is not a number"),
                )
            })?),
        ),
        None => (addr, None),
    };
    let ip: std::net::IpAddr = ip.parse().map_err(|_| {
        ModuleError::rejected(
            Vec::<&str>::new(),
            format!("{addr:?} is not an address or CIDR"),
        )
    })?;
    match (ip, len) {
        (std::net::IpAddr::V4(_), Some(32)) | (std::net::IpAddr::V6(_), Some(128)) | (_, None) => {
            Ok(ip.to_string())
        }
        (std::net::IpAddr::V4(v4), Some(len)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Ok(format!(
                "{}/{len}",
                std::net::Ipv4Addr::from(u32::from(v4) & mask)
            ))
        }
        (std::net::IpAddr::V6(v6), Some(len)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Ok(format!(
                "{}/{len}",
                std::net::Ipv6Addr::from(u128::from(v6) & mask)
            ))
        }
        _ => Err(ModuleError::rejected(
            Vec::<&str>::new(),
            format!("{addr:?} has a prefix length out of range (0-32 for IPv4, 0-128 for IPv6)"),
        )),
    }
}

impl Module for Ufw {
    fn name(&self) -> &'static str {
        "ufw"
    }
    fn params(&self) -> &'static [ParamSpec] {
        declared_params!(Params)
    }
    fn resource(
        &self,
        params: &serde_json::Value,
        _ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError> {
        let p: Params = params::parse(self.name(), self.params(), params)?;
        let policy = one_policy(&p)?;
        let modes = [p.rule.is_some(), policy.is_some(), p.state.is_some()]
            .iter()
            .filter(|m| **m)
            .count();
        if modes != 1 {
            return Err(ModuleError::rejected(
                ["rule", "default", "state"],
                "module `ufw` needs exactly one of `rule`, `default` and `state`".into(),
            ));
        }
        let rule_only = p.port.is_some()
            || p.proto.is_some()
            || p.from.is_some()
            || p.to.is_some()
            || p.comment.is_some()
            || p.delete.is_some();
        if let Some(state) = p.state {
            if rule_only || p.direction.is_some() {
                return Err(ModuleError::rejected(
                    ["state"],
                    "`state` takes no other parameter".into(),
                ));
            }
            return Ok(Box::new(UfwState(state)));
        }
        if let Some(policy) = policy {
            if rule_only {
                return Err(ModuleError::rejected(
                    ["default"],
                    "`default` takes only `direction`".into(),
                ));
            }
            return Ok(Box::new(default_resource(policy, p.direction.as_deref())?));
        }
        Ok(Box::new(rule_resource(p)?))
    }
}

/// `default` or its synonym `policy`, not both.
fn one_policy(p: &Params) -> Result<Option<Policy>, ModuleError> {
    match (p.default, p.policy) {
        (Some(_), Some(_)) => Err(ModuleError::rejected(
            ["default", "policy"],
            "give `default` or `policy`, not both".into(),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// A default policy for the chain `direction` names.
fn default_resource(policy: Policy, direction: Option<&str>) -> Result<UfwDefault, ModuleError> {
    let chain = match direction.unwrap_or("incoming") {
        "incoming" | "in" => ("incoming", "INPUT"),
        "outgoing" | "out" => ("outgoing", "OUTPUT"),
        "routed" => ("routed", "FORWARD"),
        other => {
            return Err(ModuleError::rejected(
                ["direction"],
                format!("direction {other:?} must be incoming, outgoing or routed"),
            ))
        }
    };
    Ok(UfwDefault {
        policy,
        direction: chain.0,
        chain: chain.1,
    })
}

/// A rule: its parameters checked, the tuple ufw stores for it and the
/// `ufw` command that adds it.
fn rule_resource(p: Params) -> Result<UfwRule, ModuleError> {
    let verb = p
        .rule
        .ok_or_else(|| ModuleError::rejected(["rule"], "`rule` is missing".into()))?;
    let proto = p.proto.clone().unwrap_or_else(|| "any".into());
    if !matches!(proto.as_str(), "tcp" | "udp" | "any") {
        return Err(ModuleError::rejected(
            ["proto"],
            format!("proto {proto:?} must be tcp, udp or any"),
        ));
    }
    let direction = rule_direction(p.direction.as_deref())?;
    if let Some(port) = &p.port {
        check_port(port, &proto)?;
    }
    if p.port.is_none() && p.from.is_none() && p.to.is_none() {
        return Err(ModuleError::rejected(
            ["port", "from", "to"],
            "a rule needs at least one of `port`, `from`, `to`".into(),
        ));
    }
    let v6 = p.from.as_deref().is_some_and(|a| a.contains(':'))
        || p.to.as_deref().is_some_and(|a| a.contains(':'));
    let tuple = Tuple {
        action: verb_name(verb).into(),
        proto: proto.clone(),
        dport: p.port.as_deref().map_or_else(|| "any".into(), sorted_ports),
        dst: normalize_addr(p.to.as_deref(), v6).map_err(|e| named("to", e))?,
        src: normalize_addr(p.from.as_deref(), v6).map_err(|e| named("from", e))?,
        direction: direction.into(),
    };
    let comment = p
        .comment
        .clone()
        .map(|c| vec!["comment".to_string(), c])
        .unwrap_or_default();
    Ok(UfwRule {
        tuple,
        v6,
        command: rule_command(verb, direction, proto, &p),
        comment,
        delete: p.delete.unwrap_or(false),
    })
}

/// A rule's `direction`: in (default) or out.
fn rule_direction(direction: Option<&str>) -> Result<&'static str, ModuleError> {
    match direction.unwrap_or("in") {
        "in" | "incoming" => Ok("in"),
        "out" | "outgoing" => Ok("out"),
        other => Err(ModuleError::rejected(
            ["direction"],
            format!("direction {other:?} of a rule must be in or out"),
        )),
    }
}

/// A rule's `port`: a number, a range or a list (the last two with a
/// protocol).
fn check_port(port: &str, proto: &str) -> Result<(), ModuleError> {
    let ok = !port.is_empty()
        && port
            .split([':', ','])
            .all(|n| n.parse::<u16>().is_ok_and(|n| n > 0));
    if !ok {
        return Err(ModuleError::rejected(
            ["port"],
            format!("`port` {port:?} must be a port number (1-65535), a range a:b or a list a,b"),
        ));
    }
    if (port.contains(':') || port.contains(',')) && proto == "any" {
        return Err(ModuleError::rejected(
            ["port", "proto"],
            "port ranges and lists need `proto: tcp` or `proto: udp`".into(),
        ));
    }
    Ok(())
}

/// The arguments of `ufw` that add a rule (without its comment).
fn rule_command(verb: Verb, direction: &str, proto: String, p: &Params) -> Vec<String> {
    let mut command = vec![verb_name(verb).to_string(), direction.to_string()];
    if proto != "any" {
        command.extend(["proto".into(), proto]);
    }
    command.extend([
        "from".into(),
        p.from.clone().unwrap_or_else(|| "any".into()),
        "to".into(),
        p.to.clone().unwrap_or_else(|| "any".into()),
    ]);
    if let Some(port) = &p.port {
        command.extend(["port".into(), port.clone()]);
    }
    command
}

/// What the ufw probe reads and ufw changes: its files and the live rules,
/// and the kernel parameters it applies from /etc/ufw/sysctl.conf.
fn firewall() -> Footprint {
    Footprint::only([
        Object::path("/etc/ufw"),
        Object::path("/etc/default/ufw"),
        Object::State("firewall", None),
        Object::State("sysctl", None),
    ])
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tuple {
    action: String,
    proto: String,
    dport: String,
    dst: String,
    src: String,
    direction: String,
}

impl Tuple {
    /// Parses a `### tuple ###` line's rest: `action proto dport dst sport
    /// src [dapp sapp] direction[_iface] [comment=hex]`.
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line
            .split_whitespace()
            .filter(|f| !f.starts_with("comment="))
            .collect();
        if fields.len() < 7 {
            return None;
        }
        let action = fields[0].split('_').next()?.to_string();
        let direction = fields.last()?.split('_').next()?.to_string();
        Some(Tuple {
            action,
            proto: fields[1].into(),
            dport: fields[2].into(),
            dst: fields[3].into(),
            src: fields[5].into(),
            direction,
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {}/{} from {} to {}",
            self.action, self.direction, self.dport, self.proto, self.src, self.dst
        )
    }
}

struct UfwRule {
    tuple: Tuple,
    v6: bool,
    /// The rule's words for `ufw` (without `delete` and the comment).
    command: Vec<String>,
    comment: Vec<String>,
    delete: bool,
}

impl Resource for UfwRule {
    fn probe(&self) -> String {
        probe::wrap(crate::shell::scripts::UFW_PROBE)
    }

    fn reads(&self) -> Footprint {
        firewall()
    }

    fn writes(&self) -> Footprint {
        firewall()
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let key = if self.v6 { "v6" } else { "v4" };
        let present = kv
            .all(key)
            .iter()
            .filter_map(|l| Tuple::parse(l))
            .any(|t| t == self.tuple);
        let subject = format!("ufw rule {}", self.tuple.describe());
        let words: Vec<String> = self.command.iter().map(|w| quote(w)).collect();
        match (present, self.delete) {
            (false, false) => {
                let comment: Vec<String> = self.comment.iter().map(|w| quote(w)).collect();
                let script = format!("ufw {} {}\n", words.join(" "), comment.join(" "));
                Ok(Plan::none().with(
                    Change::new(ChangeKind::Create, subject).states("absent", "present"),
                    [Action::run(script)],
                ))
            }
            (true, true) => {
                let script = format!("ufw delete {}\n", words.join(" "));
                Ok(Plan::none().with(
                    Change::new(ChangeKind::Remove, subject).states("present", "absent"),
                    [Action::run(script)],
                ))
            }
            _ => Ok(Plan::none()),
        }
    }
}

struct UfwDefault {
    policy: Policy,
    direction: &'static str,
    chain: &'static str,
}

impl Resource for UfwDefault {
    fn probe(&self) -> String {
        probe::wrap(crate::shell::scripts::UFW_PROBE)
    }

    fn reads(&self) -> Footprint {
        firewall()
    }

    fn writes(&self) -> Footprint {
        firewall()
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let (word, target) = policy_name(self.policy);
        let now = kv
            .get(&format!("default_{}", self.chain))
            .unwrap_or("unknown");
        if now == target {
            return Ok(Plan::none());
        }
        let change = Change::new(
            ChangeKind::Update,
            format!("ufw default {}", self.direction),
        )
        .states(now, target);
        Ok(Plan::none().with(
            change,
            [Action::run(format!(
                "ufw default {word} {}\n",
                self.direction
            ))],
        ))
    }
}

struct UfwState(State);

/// A port list as ufw records it: its parts (ports or `a:b` ranges) in
/// ascending order, so `9100,8008` matches the rule ufw stored as
/// `8008,9100`.
fn sorted_ports(ports: &str) -> String {
    let mut parts: Vec<&str> = ports.split(',').collect();
    parts.sort_by_key(|part| {
        let first = part.split(':').next().unwrap_or(part);
        (first.parse::<u32>().unwrap_or(u32::MAX), part.to_string())
    });
    parts.join(",")
}

/// Fails unless the rules allow incoming TCP to every SSH port.
const SSH_GUARD: &str = crate::shell::scripts::UFW_SSH_GUARD;

impl Resource for UfwState {
    fn probe(&self) -> String {
        probe::wrap(crate::shell::scripts::UFW_PROBE)
    }

    fn reads(&self) -> Footprint {
        firewall()
    }

    fn writes(&self) -> Footprint {
        firewall()
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let enabled = kv
            .get("enabled")
            .is_some_and(|v| v.trim_matches('"') == "yes");
        match (self.0, enabled) {
            (State::Enabled, false) => Ok(Plan::none().with(
                Change::new(ChangeKind::Update, "ufw").states("disabled", "enabled"),
                [Action::run(format!(
                    "set -e\n{SSH_GUARD}ufw --force enable\n"
                ))],
            )),
            (State::Disabled, true) => Ok(Plan::none().with(
                Change::new(ChangeKind::Update, "ufw").states("enabled", "disabled"),
                [Action::run("ufw disable\n")],
            )),
            _ => Ok(Plan::none()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, probe_out, sh};
    use crate::ChangeKind;
    use serde_json::json;

    const PROBE: &str = "installed=yes\n\
        v4=allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n\
        v4=allow tcp 5432 0.0.0.0/0 any 10.0.0.0/8 in comment=706f737467726573\n\
        v6=allow tcp 22 ::/0 any ::/0 in\n\
        default_INPUT=DROP\ndefault_OUTPUT=ACCEPT\nenabled=no\n";

    #[test]
    fn rules() {
        let r = build("ufw", json!({"rule": "allow", "port": 5432, "proto": "tcp", "from": "10.1.2.3/8", "comment": "postgres"})).expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").is_empty());
        let r = build(
            "ufw",
            json!({"rule": "allow", "port": "8008", "proto": "tcp", "from": "10.0.0.0/8"}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Create);
        assert_eq!(
            plan.actions[0].script,
            "ufw allow in proto tcp from 10.0.0.0/8 to any port 8008 \n"
        );
        let r = build(
            "ufw",
            json!({"rule": "allow", "port": 22, "proto": "tcp", "delete": true}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Remove);
        assert!(plan.actions[0]
            .script
            .starts_with("ufw delete allow in proto tcp from any to any port 22"));
        let r = build(
            "ufw",
            json!({"rule": "allow", "port": 22, "proto": "tcp", "from": "::/0"}),
        )
        .expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").is_empty());
    }

    #[test]
    fn defaults_and_state() {
        let r = build("ufw", json!({"default": "deny", "direction": "incoming"})).expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").is_empty());
        let r = build("ufw", json!({"policy": "deny", "direction": "outgoing"})).expect("valid");
        assert_eq!(
            r.plan(&probe_out(PROBE)).expect("plan").actions[0].script,
            "ufw default deny outgoing\n"
        );
        let r = build("ufw", json!({"state": "enabled"})).expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        assert!(plan.actions[0].script.contains("ufw --force enable"));
        assert!(r
            .plan(&probe_out("enabled=yes\n"))
            .expect("plan")
            .is_empty());
    }

    #[test]
    fn ssh_guard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("user.rules");
        let guard = super::SSH_GUARD
            .replace(
                "/etc/ufw/user.rules /etc/ufw/user6.rules",
                &rules.display().to_string(),
            )
            .replace("sshd -T", "false");
        std::fs::write(
            &rules,
            "### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in\n",
        )
        .expect("write");
        assert_ne!(sh(&guard, None).status, 0);
        for ok in [
            "limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in",
            "allow any 20:30 0.0.0.0/0 any 10.0.0.0/8 in",
            "allow tcp 80,22 0.0.0.0/0 any 0.0.0.0/0 in comment=6162",
        ] {
            std::fs::write(&rules, format!("### tuple ### {ok}\n")).expect("write");
            assert_eq!(sh(&guard, None).status, 0, "{ok}");
        }
    }

    #[test]
    fn bad_params() {
        assert!(build("ufw", json!({})).is_err());
        assert!(build("ufw", json!({"rule": "allow", "port": "22; reboot"})).is_err());
        assert_eq!(super::sorted_ports("9187,8008,9100"), "8008,9100,9187");
        assert_eq!(super::sorted_ports("6000:6010,22"), "22,6000:6010");
        assert!(build("ufw", json!({"rule": "allow", "port": "1:2"})).is_err());
        assert!(build(
            "ufw",
            json!({"rule": "allow", "port": 22, "from": "10.0.0.300"})
        )
        .is_err());
        assert!(build("ufw", json!({"rule": "permit", "port": 22})).is_err());
        let err = build("ufw", json!({"rule": "allow", "proot": "tcp", "port": 22}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `proto`?"), "{err}");
        let err = build(
            "ufw",
            json!({"rule": "allow", "port": 22, "from": "10.0.0.0/33"}),
        )
        .err()
        .expect("error");
        assert_eq!(err.parameters(), Some(vec!["from"]));
        assert_eq!(
            err.to_string(),
            "`from`: \"10.0.0.0/33\" has a prefix length out of range (0-32 for IPv4, 0-128 for IPv6)"
        );
    }
}
