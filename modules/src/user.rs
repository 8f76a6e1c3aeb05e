//! The `user` module: a local account (`useradd`/`usermod`/`userdel`).
//!
//! `groups` are supplementary groups; by default they are added to the ones
//! the user already has (`append: true`); with `append: false` the user gets
//! exactly those. `create_home` defaults to true except for system users.

use serde::Deserialize;

use crate::group::{check_name, Presence};
use crate::params::{self, opt_bool, opt_string_list, opt_u64};
use crate::probe::{self, Kv};
use crate::shell::{scripts, with_args};
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, Object, ParamSpec, Plan,
    ProbeOutput, Resource,
};
use pgdeploy_text::quote;

/// The `user` module.
pub struct User;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    name: String,
    #[serde(default, deserialize_with = "opt_u64")]
    uid: Option<u64>,
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_string_list")]
    groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_bool")]
    append: Option<bool>,
    home: Option<String>,
    shell: Option<String>,
    comment: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    system: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    create_home: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    remove: Option<bool>,
    #[serde(default)]
    state: Presence,
}

impl Module for User {
    fn name(&self) -> &'static str {
        "user"
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
        check_name("name", "user", &p.name)?;
        if let Some(g) = &p.group {
            if !g.chars().all(|c| c.is_ascii_digit()) {
                check_name("group", "group", g)?;
            }
        }
        for g in p.groups.iter().flatten() {
            check_name("groups", "group", g)?;
        }
        for (what, v) in [("home", &p.home), ("shell", &p.shell)] {
            if let Some(v) = v {
                if !v.starts_with('/') || v.contains(':') || v.contains('\n') {
                    return Err(ModuleError::rejected(
                        [what],
                        format!("`{what}` {v:?} must be an absolute path without ':'"),
                    ));
                }
            }
        }
        if p.comment
            .as_deref()
            .is_some_and(|c| c.contains(':') || c.contains('\n'))
        {
            return Err(ModuleError::rejected(
                ["comment"],
                "`comment` must not contain ':' or a line break".into(),
            ));
        }
        let system = p.system.unwrap_or(false);
        Ok(Box::new(UserResource {
            create_home: p.create_home.unwrap_or(!system),
            name: p.name,
            uid: p.uid,
            group: p.group,
            groups: p.groups.unwrap_or_default(),
            append: p.append.unwrap_or(true),
            home: p.home,
            shell: p.shell,
            comment: p.comment,
            system,
            remove: p.remove.unwrap_or(false),
            state: p.state,
        }))
    }
}

struct UserResource {
    name: String,
    uid: Option<u64>,
    group: Option<String>,
    groups: Vec<String>,
    append: bool,
    home: Option<String>,
    shell: Option<String>,
    comment: Option<String>,
    system: bool,
    create_home: bool,
    remove: bool,
    state: Presence,
}

impl Resource for UserResource {
    fn probe(&self) -> String {
        probe::wrap(&with_args(scripts::USER_PROBE, &[&self.name]))
    }

    fn reads(&self) -> Footprint {
        Footprint::only(["/etc/passwd", "/etc/group"].map(Object::path))
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let Some(passwd) = kv.get("passwd") else {
            if self.state == Presence::Absent {
                return Ok(Plan::none());
            }
            return Ok(self.plan_create());
        };
        let entry = Entry::parse(passwd)?;
        if self.state == Presence::Absent {
            return Ok(self.plan_remove(&entry));
        }
        let primary = kv.get("primary").unwrap_or_default();
        let current_groups: Vec<&str> = kv
            .get("groups")
            .unwrap_or_default()
            .split_whitespace()
            .filter(|g| *g != primary)
            .collect();
        let mut diff = Diff::default();
        self.diff_account(&entry, primary, &mut diff);
        self.diff_groups(&current_groups, &mut diff);
        if diff.flags.is_empty() {
            return Ok(Plan::none());
        }
        Ok(Plan::none().with(
            Change::new(ChangeKind::Update, self.subject())
                .states(diff.before.join(", "), diff.after.join(", ")),
            [Action::run(format!(
                "usermod {} {}",
                diff.flags.join(" "),
                quote(&self.name)
            ))],
        ))
    }
}

/// The fields of the user's passwd entry that are compared.
struct Entry<'a> {
    uid: &'a str,
    gid: &'a str,
    gecos: &'a str,
    home: &'a str,
    shell: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(passwd: &'a str) -> Result<Self, ModuleError> {
        let f: Vec<&str> = passwd.split(':').collect();
        if f.len() < 7 {
            return Err(ModuleError::Probe(format!(
                "cannot read passwd entry {passwd:?}"
            )));
        }
        Ok(Entry {
            uid: f[2],
            gid: f[3],
            gecos: f[4],
            home: f[5],
            shell: f[6],
        })
    }
}

/// The differences found so far and the `usermod` flags that correct them.
#[derive(Default)]
struct Diff {
    before: Vec<String>,
    after: Vec<String>,
    flags: Vec<String>,
}

impl Diff {
    fn push(&mut self, what: &str, now: &str, want: &str, flag: String) {
        self.before.push(format!("{what} {now}"));
        self.after.push(format!("{what} {want}"));
        self.flags.push(flag);
    }
}

impl UserResource {
    fn subject(&self) -> String {
        format!("user {}", self.name)
    }

    /// The user does not exist: `useradd` with every attribute given.
    fn plan_create(&self) -> Plan {
        let mut flags = Vec::new();
        let mut after = Vec::new();
        if let Some(uid) = self.uid {
            flags.push(format!("-u {uid}"));
            after.push(format!("uid {uid}"));
        }
        if let Some(g) = &self.group {
            flags.push(format!("-g {}", quote(g)));
            after.push(format!("group {g}"));
        }
        if !self.groups.is_empty() {
            flags.push(format!("-G {}", quote(&self.groups.join(","))));
            after.push(format!("groups {}", self.groups.join(",")));
        }
        if let Some(h) = &self.home {
            flags.push(format!("-d {}", quote(h)));
            after.push(format!("home {h}"));
        }
        if let Some(s) = &self.shell {
            flags.push(format!("-s {}", quote(s)));
            after.push(format!("shell {s}"));
        }
        if let Some(c) = &self.comment {
            flags.push(format!("-c {}", quote(c)));
        }
        if self.system {
            flags.push("-r".into());
            after.push("system".into());
        }
        flags.push(if self.create_home { "-m" } else { "-M" }.into());
        let after = if after.is_empty() {
            "present".to_string()
        } else {
            after.join(", ")
        };
        Plan::none().with(
            Change::new(ChangeKind::Create, self.subject()).states("absent", after),
            [Action::run(format!(
                "useradd {} {}",
                flags.join(" "),
                quote(&self.name)
            ))],
        )
    }

    /// state: absent on an existing user: `userdel` (`-r` with `remove`).
    fn plan_remove(&self, entry: &Entry) -> Plan {
        let n = quote(&self.name);
        let cmd = if self.remove {
            format!("userdel -r {n}")
        } else {
            format!("userdel {n}")
        };
        Plan::none().with(
            Change::new(ChangeKind::Remove, self.subject())
                .states(format!("uid {}", entry.uid), "absent"),
            [Action::run(cmd)],
        )
    }

    /// uid, primary group, home, shell and comment against the entry.
    fn diff_account(&self, entry: &Entry, primary: &str, diff: &mut Diff) {
        if let Some(want) = self.uid {
            if want.to_string() != entry.uid {
                diff.push("uid", entry.uid, &want.to_string(), format!("-u {want}"));
            }
        }
        if let Some(g) = &self.group {
            if g != primary && g != entry.gid {
                diff.push("group", primary, g, format!("-g {}", quote(g)));
            }
        }
        if let Some(h) = &self.home {
            if h != entry.home {
                diff.push("home", entry.home, h, format!("-d {}", quote(h)));
            }
        }
        if let Some(s) = &self.shell {
            if s != entry.shell {
                diff.push("shell", entry.shell, s, format!("-s {}", quote(s)));
            }
        }
        if let Some(c) = &self.comment {
            if c != entry.gecos {
                diff.push("comment", entry.gecos, c, format!("-c {}", quote(c)));
            }
        }
    }

    /// Supplementary groups: the missing ones added (`append`), or exactly
    /// the wanted ones.
    fn diff_groups(&self, current_groups: &[&str], diff: &mut Diff) {
        let missing: Vec<&str> = self
            .groups
            .iter()
            .map(String::as_str)
            .filter(|g| !current_groups.contains(g))
            .collect();
        let extra = !self.append
            && current_groups
                .iter()
                .any(|g| !self.groups.iter().any(|w| w == g));
        if missing.is_empty() && !extra {
            return;
        }
        let now = current_groups.join(",");
        if self.append {
            let mut all = current_groups.to_vec();
            all.extend(&missing);
            diff.push(
                "groups",
                &now,
                &all.join(","),
                format!("-a -G {}", quote(&missing.join(","))),
            );
        } else {
            diff.push(
                "groups",
                &now,
                &self.groups.join(","),
                format!("-G {}", quote(&self.groups.join(","))),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, converge, probe_out};
    use crate::ChangeKind;
    use serde_json::json;

    const PG: &str = "passwd=postgres:x:106:110:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\nprimary=postgres\ngroups=postgres ssl-cert\n";

    #[test]
    fn synthetic_plans() {
        let r = build("user", json!({"name": "postgres", "group": "postgres", "groups": ["ssl-cert"], "shell": "/bin/bash", "system": true})).expect("valid");
        assert!(r.plan(&probe_out(PG)).expect("plan").is_empty());
        let plan = r.plan(&probe_out("")).expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Create);
        assert_eq!(
            plan.actions[0].script,
            "useradd -g postgres -G ssl-cert -s /bin/bash -r -M postgres"
        );
        let r = build(
            "user",
            json!({"name": "postgres", "groups": "etcd", "uid": 5432}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out(PG)).expect("plan");
        assert_eq!(
            plan.changes[0].before.as_deref(),
            Some("uid 106, groups ssl-cert")
        );
        assert_eq!(
            plan.changes[0].after.as_deref(),
            Some("uid 5432, groups ssl-cert,etcd")
        );
        assert_eq!(
            plan.actions[0].script,
            "usermod -u 5432 -a -G etcd postgres"
        );
        assert!(build("user", json!({"name": "x", "shel": "/bin/sh"}))
            .err()
            .expect("error")
            .to_string()
            .contains("did you mean `shell`?"));
    }

    #[test]
    fn converges_locally() {
        if !crate::testing::root_or_skip("user::converges_locally") {
            return;
        }
        let id = std::process::id() % 100000;
        let (user, group) = (format!("pgdu{id}"), format!("pgdg{id}"));
        converge(
            build("group", json!({"name": group}))
                .expect("valid")
                .as_ref(),
        );
        let r = build("user", json!({"name": user, "system": true, "shell": "/usr/sbin/nologin", "comment": "pgdeploy test"})).expect("valid");
        assert_eq!(converge(r.as_ref()).changes[0].kind, ChangeKind::Create);
        let r = build(
            "user",
            json!({"name": user, "groups": [group], "shell": "/bin/sh"}),
        )
        .expect("valid");
        assert_eq!(converge(r.as_ref()).changes[0].kind, ChangeKind::Update);
        let r = build("user", json!({"name": user, "groups": [], "append": false})).expect("valid");
        converge(r.as_ref());
        converge(
            build("user", json!({"name": user, "state": "absent"}))
                .expect("valid")
                .as_ref(),
        );
        converge(
            build("group", json!({"name": group, "state": "absent"}))
                .expect("valid")
                .as_ref(),
        );
    }
}
