//! The `package` module: Debian packages through apt.
//!
//! `name` is a package or a list; `pkg=version` pins a version. The apt
//! cache is refreshed at most once per run (before the first install of the
//! run on that host), and only when something must be installed and
//! `update_cache` is not false.
//!
//! When another process holds an apt or dpkg lock (unattended-upgrades, a
//! person's `apt-get`), the task waits for it, reporting as progress every
//! 5 s which lock, which process holds it and how long it has waited, and
//! goes on when it is released; after `lock_timeout` seconds (default 300)
//! it fails naming the lock and the process.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::params::{self, opt_bool, opt_u64, string_list};
use crate::probe;
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, Object, ParamSpec, Plan,
    ProbeOutput, Resource,
};
use pgdeploy_text::{quote, quote_argv};

/// The `package` module.
pub struct Package;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required("name"),
    ParamSpec::optional("state"),
    ParamSpec::optional("update_cache"),
    ParamSpec::optional("purge"),
    ParamSpec::optional("lock_timeout"),
];

/// The locks apt and dpkg take, in the order apt takes them.
const APT_LOCKS: [&str; 4] = [
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/dpkg/lock",
    "/var/lib/apt/lists/lock",
    "/var/cache/apt/archives/lock",
];

/// How often (seconds) a task waiting for an apt lock reports it.
const LOCK_REPORT_EVERY: u64 = 5;

/// Where the id of the run that last refreshed the apt cache is kept.
pub const APT_RUN_ID_FILE: &str = "/var/lib/pgdeploy/apt-run-id";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(deserialize_with = "string_list")]
    name: Vec<String>,
    #[serde(default)]
    state: State,
    #[serde(default, deserialize_with = "opt_bool")]
    update_cache: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    purge: Option<bool>,
    #[serde(default, deserialize_with = "opt_u64")]
    lock_timeout: Option<u64>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum State {
    #[default]
    Present,
    Absent,
    Latest,
}

impl Module for Package {
    fn name(&self) -> &'static str {
        "package"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn resource(
        &self,
        params: &serde_json::Value,
        ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError> {
        let p: Params = params::parse(self.name(), PARAMS, params)?;
        if p.name.is_empty() {
            return Err(ModuleError::Params("`name` lists no package".into()));
        }
        let mut packages = Vec::new();
        for spec in &p.name {
            let (name, version) = match spec.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (spec.clone(), None),
            };
            let base = name.split(':').next().unwrap_or_default().to_string();
            let valid = base.len() >= 2
                && base.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && base
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            if !valid
                || version
                    .as_deref()
                    .is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace))
            {
                return Err(ModuleError::Params(format!(
                    "{spec:?} is not a Debian package name (name or name=version)"
                )));
            }
            if version.is_some() && p.state != State::Present {
                return Err(ModuleError::Params(format!(
                    "{spec:?}: a version can only be given with state: present"
                )));
            }
            packages.push(Pkg {
                spec: spec.clone(),
                name,
                base,
                version,
            });
        }
        Ok(Box::new(PackageResource {
            packages,
            state: p.state,
            update_cache: p.update_cache.unwrap_or(true),
            purge: p.purge.unwrap_or(false),
            lock_timeout: p.lock_timeout.unwrap_or(300),
            run_id: ctx.run_id().to_string(),
        }))
    }
}

struct Pkg {
    /// As given (`name=version`), for apt.
    spec: String,
    /// Without the version (maybe with `:arch`).
    name: String,
    /// Without `:arch`, as dpkg-query prints it.
    base: String,
    version: Option<String>,
}

struct PackageResource {
    packages: Vec<Pkg>,
    state: State,
    update_cache: bool,
    purge: bool,
    /// Seconds to wait for apt's and dpkg's locks.
    lock_timeout: u64,
    run_id: String,
}

impl PackageResource {
    /// Shell functions: `apt_lock_holder` prints `LOCK PID COMMAND` for a
    /// lock of [`APT_LOCKS`] held by another process (a process in
    /// `/proc/locks` that has the lock file open), and `wait_for_apt_locks`
    /// waits until none is held, reporting progress, up to the timeout
    /// (shared by every wait of the action, in `$waited`).
    fn lock_wait_functions(&self) -> String {
        let timeout = self.lock_timeout;
        let progress = crate::PROGRESS_PREFIX;
        let every = LOCK_REPORT_EVERY;
        format!(
            "apt_lock_holder() {{\n\
             \x20 for pid in $(awk '$2 != \"->\" {{ print $5 }}' /proc/locks 2>/dev/null | sort -un); do\n\
             \x20   for fd in /proc/$pid/fd/*; do\n\
             \x20     target=$(readlink \"$fd\" 2>/dev/null) || continue\n\
             \x20     case \" {locks} \" in *\" $target \"*)\n\
             \x20       echo \"$target $pid $(cat /proc/$pid/comm 2>/dev/null)\"; return 0;;\n\
             \x20     esac\n\
             \x20   done\n\
             \x20 done\n\
             \x20 return 1\n\
             }}\n\
             waited=0\n\
             wait_for_apt_locks() {{\n\
             \x20 while holder=$(apt_lock_holder); do\n\
             \x20   lock=${{holder%% *}}; rest=${{holder#* }}; pid=${{rest%% *}}; comm=${{rest#* }}\n\
             \x20   if [ \"$waited\" -ge {timeout} ]; then\n\
             \x20     echo \"the apt lock $lock is still held by process $pid ($comm) after waiting ${{waited}}s (lock_timeout {timeout}); giving up\" >&2\n\
             \x20     exit 1\n\
             \x20   fi\n\
             \x20   if [ $((waited % {every})) -eq 0 ]; then\n\
             \x20     echo \"{progress}waiting for the apt lock $lock, held by process $pid ($comm), for ${{waited}}s (giving up after {timeout}s)\" >&2\n\
             \x20   fi\n\
             \x20   sleep 1; waited=$((waited + 1))\n\
             \x20 done\n\
             \x20 if [ \"$waited\" -gt 0 ]; then echo \"{progress}the apt lock was released after ${{waited}}s; going on\" >&2; fi\n\
             }}\n",
            locks = APT_LOCKS.join(" "),
        )
    }

    /// `apt-get` with the time left of the lock timeout for apt's own wait
    /// (a process may take a lock between the check and apt).
    fn apt(&self) -> String {
        format!(
            "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$(( {t} - waited > 1 ? {t} - waited : 1 )) -y -q",
            t = self.lock_timeout
        )
    }
}

impl Resource for PackageResource {
    fn probe(&self) -> String {
        let list: Vec<&str> = self.packages.iter().map(|p| p.name.as_str()).collect();
        let names = quote_argv(&list);
        let words = quote(&list.join(" "));
        let mut body = format!(
            "out=$(dpkg-query -W -f='dpkg=${{Package}} ${{Status}} ${{Version}}\\n' {names})\nprintf '%s\\n' \"$out\"\n"
        );
        // Candidates come from apt's cache, which is slow to load: only for
        // what is not installed, unless the latest version is wanted.
        let policy = "LC_ALL=C apt-cache policy $wanted | sed -n 's/^\\([^ ].*\\):$/policy=\\1/p; s/^  Candidate: /candidate=/p'\n";
        match self.state {
            State::Absent => {}
            State::Latest => body.push_str(&format!("wanted={words}\n{policy}")),
            State::Present => body.push_str(&format!(
                "wanted=$(printf '%s\\n' \"$out\" | awk -v names={words} 'BEGIN {{ n = split(names, w, \" \") }} /^dpkg=/ && $4 == \"installed\" {{ ok[substr($1, 6)] = 1 }} END {{ for (i = 1; i <= n; i++) {{ split(w[i], b, \":\"); if (!(b[1] in ok)) print w[i] }} }}')\nif [ -n \"$wanted\" ]; then\n{policy}fi\n"
            )),
        }
        probe::wrap(&body)
    }

    /// dpkg's database and apt's lists and settings. Installing a package
    /// can change anything, so its writes stay everything.
    fn reads(&self) -> Footprint {
        Footprint::only(
            [
                "/var/lib/dpkg",
                "/var/lib/apt",
                "/var/cache/apt",
                "/etc/apt",
            ]
            .map(Object::path),
        )
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        // name → installed version
        let mut installed: BTreeMap<&str, &str> = BTreeMap::new();
        let mut candidate: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in out.stdout.lines() {
            if let Some(rest) = line.strip_prefix("dpkg=") {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // name want flag status version
                if fields.len() >= 5 && fields[3] == "installed" {
                    installed.insert(fields[0], fields[4]);
                }
            } else if let Some(name) = line.strip_prefix("policy=") {
                current = Some(name.split(':').next().unwrap_or_default().to_string());
            } else if let (Some(c), Some(name)) = (line.strip_prefix("candidate="), &current) {
                if c != "(none)" {
                    candidate.insert(name.clone(), c.trim().to_string());
                }
            }
        }
        let mut plan = Plan::none();
        let mut to_install = Vec::new();
        let mut to_remove = Vec::new();
        for pkg in &self.packages {
            let have = installed.get(pkg.base.as_str()).copied();
            let subject = format!("package {}", pkg.name);
            let wanted = pkg
                .version
                .clone()
                .or_else(|| candidate.get(&pkg.base).cloned());
            let after = || wanted.clone().unwrap_or_else(|| "latest".into());
            match (self.state, have) {
                (State::Absent, Some(v)) => {
                    plan.changes
                        .push(Change::new(ChangeKind::Remove, subject).states(v, "absent"));
                    to_remove.push(pkg.name.as_str());
                }
                (State::Absent, None) => {}
                (_, None) => {
                    plan.changes
                        .push(Change::new(ChangeKind::Create, subject).states("absent", after()));
                    to_install.push(pkg.spec.as_str());
                }
                (State::Present, Some(v)) => {
                    if let Some(want) = &pkg.version {
                        if want != v {
                            plan.changes.push(
                                Change::new(ChangeKind::Update, subject).states(v, want.clone()),
                            );
                            to_install.push(pkg.spec.as_str());
                        }
                    }
                }
                (State::Latest, Some(v)) => {
                    if let Some(c) = candidate.get(&pkg.base) {
                        if c != v {
                            plan.changes.push(
                                Change::new(ChangeKind::Update, subject).states(v, c.clone()),
                            );
                            to_install.push(pkg.spec.as_str());
                        }
                    }
                }
            }
        }
        let apt = self.apt();
        if !to_install.is_empty() {
            let mut script = format!("set -e\n{}", self.lock_wait_functions());
            if self.update_cache {
                let file = quote(APT_RUN_ID_FILE);
                let id = quote(&self.run_id);
                script.push_str(&format!(
                    "if [ \"$(cat {file} 2>/dev/null)\" != {id} ]; then\n  wait_for_apt_locks\n  {apt} update\n  mkdir -p \"$(dirname {file})\"\n  printf '%s\\n' {id} > {file}\nfi\n"
                ));
            }
            script.push_str(&format!(
                "wait_for_apt_locks\n{apt} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install --no-install-recommends {}\n",
                quote_argv(&to_install)
            ));
            plan.actions.push(Action::run(script));
        }
        if !to_remove.is_empty() {
            let verb = if self.purge { "purge" } else { "remove" };
            plan.actions.push(Action::run(format!(
                "set -e\n{}wait_for_apt_locks\n{apt} {verb} {}\n",
                self.lock_wait_functions(),
                quote_argv(&to_remove)
            )));
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{build, probe_local, probe_out};
    use crate::ChangeKind;
    use serde_json::json;

    const PROBE: &str = "dpkg=haproxy install ok installed 2.6.12-1\n\
        dpkg=curl deinstall ok config-files 7.88.1-10\n\
        policy=haproxy:\ncandidate=2.6.12-1+deb12u1\npolicy=curl:\ncandidate=7.88.1-10+deb12u5\npolicy=nosuch:\n";

    #[test]
    fn present_installs_only_what_is_missing() {
        let r = build("package", json!({"name": ["haproxy", "curl", "nosuch"]})).expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        let subjects: Vec<_> = plan
            .changes
            .iter()
            .map(|c| (c.kind, c.subject.as_str(), c.after.as_deref()))
            .collect();
        assert_eq!(
            subjects,
            vec![
                (
                    ChangeKind::Create,
                    "package curl",
                    Some("7.88.1-10+deb12u5")
                ),
                (ChangeKind::Create, "package nosuch", Some("latest"))
            ]
        );
        assert_eq!(plan.actions.len(), 1);
        let script = &plan.actions[0].script;
        assert!(
            script.contains("install --no-install-recommends curl nosuch"),
            "{script}"
        );
        assert!(
            script.contains("-y -q update")
                && script.contains("DPkg::Lock::Timeout=$(( 300 - waited"),
            "{script}"
        );
        assert!(script.contains("test-run"));
        let r = build("package", json!({"name": "haproxy"})).expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").is_empty());
    }

    #[test]
    fn latest_and_absent_and_versions() {
        let r = build(
            "package",
            json!({"name": "haproxy", "state": "latest", "update_cache": false}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Update);
        assert_eq!(plan.changes[0].after.as_deref(), Some("2.6.12-1+deb12u1"));
        assert!(!plan.actions[0].script.contains(" update"));
        let r = build(
            "package",
            json!({"name": ["haproxy", "curl"], "state": "absent", "purge": true}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert!(plan.actions[0].script.contains("purge haproxy"));
        let r = build("package", json!({"name": "haproxy=2.6.12-1"})).expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").is_empty());
        let r = build("package", json!({"name": "haproxy=2.6.12-2"})).expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").actions[0]
            .script
            .contains("haproxy=2.6.12-2"));
    }

    #[test]
    fn scripts_wait_for_the_locks_and_parse() {
        let r = build("package", json!({"name": ["curl"], "lock_timeout": "7"})).expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        let script = &plan.actions[0].script;
        assert_eq!(
            script.matches("wait_for_apt_locks\n").count(),
            2,
            "{script}"
        );
        assert!(script.contains("lock_timeout 7); giving up"), "{script}");
        let check = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .expect("sh");
        assert!(check.status.success(), "{check:?}\n{script}");
        assert!(build("package", json!({"name": "curl", "lock_timeout": "soon"})).is_err());
    }

    #[test]
    fn bad_params() {
        assert!(build("package", json!({"name": "$(touch /tmp/pwned)"})).is_err());
        assert!(build("package", json!({"name": []})).is_err());
        assert!(build("package", json!({"name": "x", "state": "installed"})).is_err());
        let err = build("package", json!({"name": "x", "update-cache": true}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `update_cache`?"), "{err}");
    }

    #[test]
    fn probe_runs_here() {
        // This machine is Debian with dpkg: coreutils is installed, the other is not.
        let r = build(
            "package",
            json!({"name": ["coreutils", "pgdeploy-no-such-package"]}),
        )
        .expect("valid");
        let out = probe_local(r.as_ref());
        let plan = r.plan(&out).expect("plan");
        assert_eq!(plan.changes.len(), 1, "{out:?}");
        assert_eq!(plan.changes[0].subject, "package pgdeploy-no-such-package");
    }
}
