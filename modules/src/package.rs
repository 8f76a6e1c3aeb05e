//! The `package` module: Debian packages through apt.
//!
//! `name` is a package or a list; `pkg=version` pins a version. `hold:
//! true` holds the packages (`apt-mark hold`) once installed, so that
//! unattended-upgrades never upgrades (and restarts) them behind the
//! operator's back; `hold: false` releases them; unset leaves the hold as
//! it is. A held package this task installs or upgrades is changed on
//! purpose (`--allow-change-held-packages`). The apt
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
use crate::shell::{scripts, with_args};
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, Object, ParamSpec, Plan,
    ProbeOutput, Resource,
};

/// The `package` module.
pub struct Package;

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

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
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
    #[serde(default, deserialize_with = "opt_bool")]
    hold: Option<bool>,
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
        declared_params!(Params)
    }
    fn resource(
        &self,
        params: &serde_json::Value,
        ctx: &dyn Context,
    ) -> Result<Box<dyn Resource>, ModuleError> {
        let p: Params = params::parse(self.name(), self.params(), params)?;
        if p.name.is_empty() {
            return Err(ModuleError::rejected(
                ["name"],
                "`name` lists no package".into(),
            ));
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
                return Err(ModuleError::rejected(
                    ["name"],
                    format!("{spec:?} is not a Debian package name (name or name=version)"),
                ));
            }
            if p.hold.is_some() && p.state == State::Absent {
                return Err(ModuleError::rejected(
                    ["hold", "state"],
                    "`hold` is for installed packages, not with state: absent".into(),
                ));
            }
            if version.is_some() && p.state != State::Present {
                return Err(ModuleError::rejected(
                    ["name", "state"],
                    format!("{spec:?}: a version can only be given with state: present"),
                ));
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
            hold: p.hold,
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
    /// Held (true) or released (false) once installed; `None`: as it is.
    hold: Option<bool>,
    /// Seconds to wait for apt's and dpkg's locks.
    lock_timeout: u64,
    run_id: String,
}

impl PackageResource {
    /// The start of every action: `set -e` and the functions of
    /// [`scripts::APT_LOCKS`] (`wait_for_apt_locks` waits for apt's and
    /// dpkg's locks up to the lock timeout, reporting progress; `apt_get` is
    /// apt-get with the time left of the timeout for apt's own wait).
    fn lock_wait_functions(&self) -> String {
        let mut args = vec![
            self.lock_timeout.to_string(),
            LOCK_REPORT_EVERY.to_string(),
            crate::PROGRESS_PREFIX.to_string(),
        ];
        args.extend(APT_LOCKS.map(String::from));
        format!("set -e\n{}", with_args(scripts::APT_LOCKS, &args))
    }
}

impl Resource for PackageResource {
    fn probe(&self) -> String {
        let state = match self.state {
            State::Present => "present",
            State::Latest => "latest",
            State::Absent => "absent",
        };
        let mut args = vec![state];
        args.extend(self.packages.iter().map(|p| p.name.as_str()));
        let body = with_args(scripts::PACKAGE_PROBE, &args);
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
        let probed = Probed::parse(&out.stdout);
        let mut plan = Plan::none();
        let mut to_install = Vec::new();
        let mut to_remove = Vec::new();
        let mut to_mark = Vec::new();
        for pkg in &self.packages {
            if let Some((change, step)) = self.package_change(pkg, &probed) {
                plan.changes.push(change);
                match step {
                    Step::Install => to_install.push(pkg.spec.as_str()),
                    Step::Remove => to_remove.push(pkg.name.as_str()),
                }
            }
            if let Some(hold) = self.hold {
                if probed.held.contains(pkg.base.as_str()) != hold {
                    let (before, after) = if hold {
                        ("not held", "held")
                    } else {
                        ("held", "not held")
                    };
                    plan.changes.push(
                        Change::new(ChangeKind::Update, format!("package {} hold", pkg.name))
                            .states(before, after),
                    );
                    to_mark.push(pkg.name.as_str());
                }
            }
        }
        if !to_install.is_empty() {
            plan.actions.push(self.install_action(&to_install));
        }
        if !to_remove.is_empty() {
            plan.actions.push(self.remove_action(&to_remove));
        }
        if let (Some(hold), false) = (self.hold, to_mark.is_empty()) {
            let mut args = vec![if hold { "hold" } else { "unhold" }];
            args.extend(to_mark);
            plan.actions.push(Action::run(
                self.lock_wait_functions() + &with_args(scripts::APT_MARK, &args),
            ));
        }
        Ok(plan)
    }
}

/// What the probe found: installed versions and apt's candidates.
struct Probed<'a> {
    /// name → installed version
    installed: BTreeMap<&'a str, &'a str>,
    /// name → candidate version
    candidate: BTreeMap<String, String>,
    /// Installed packages dpkg holds.
    held: std::collections::BTreeSet<&'a str>,
}

impl<'a> Probed<'a> {
    fn parse(stdout: &'a str) -> Self {
        let mut installed: BTreeMap<&str, &str> = BTreeMap::new();
        let mut candidate: BTreeMap<String, String> = BTreeMap::new();
        let mut held = std::collections::BTreeSet::new();
        let mut current: Option<String> = None;
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("dpkg=") {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // name want flag status version
                if fields.len() >= 5 && fields[3] == "installed" {
                    installed.insert(fields[0], fields[4]);
                    if fields[1] == "hold" {
                        held.insert(fields[0]);
                    }
                }
            } else if let Some(name) = line.strip_prefix("policy=") {
                current = Some(name.split(':').next().unwrap_or_default().to_string());
            } else if let (Some(c), Some(name)) = (line.strip_prefix("candidate="), &current) {
                if c != "(none)" {
                    candidate.insert(name.clone(), c.trim().to_string());
                }
            }
        }
        Probed {
            installed,
            candidate,
            held,
        }
    }
}

/// What apt is to do with one package.
enum Step {
    Install,
    Remove,
}

impl PackageResource {
    /// One package's change, if it needs one, and what apt does about it.
    fn package_change(&self, pkg: &Pkg, probed: &Probed) -> Option<(Change, Step)> {
        let have = probed.installed.get(pkg.base.as_str()).copied();
        let subject = format!("package {}", pkg.name);
        let candidate = probed.candidate.get(&pkg.base);
        match (self.state, have) {
            (State::Absent, Some(v)) => Some((
                Change::new(ChangeKind::Remove, subject).states(v, "absent"),
                Step::Remove,
            )),
            (State::Absent, None) => None,
            (_, None) => {
                let after = pkg
                    .version
                    .clone()
                    .or_else(|| candidate.cloned())
                    .unwrap_or_else(|| "latest".into());
                Some((
                    Change::new(ChangeKind::Create, subject).states("absent", after),
                    Step::Install,
                ))
            }
            (State::Present, Some(v)) => {
                let want = pkg.version.as_ref().filter(|want| *want != v)?;
                Some((
                    Change::new(ChangeKind::Update, subject).states(v, want.clone()),
                    Step::Install,
                ))
            }
            (State::Latest, Some(v)) => {
                let c = candidate.filter(|c| *c != v)?;
                Some((
                    Change::new(ChangeKind::Update, subject).states(v, c.clone()),
                    Step::Install,
                ))
            }
        }
    }

    /// Installs `to_install` (specs), refreshing the cache first if this
    /// run has not yet (and `update_cache` is not false).
    fn install_action(&self, to_install: &[&str]) -> Action {
        let run_id = if self.update_cache {
            self.run_id.as_str()
        } else {
            ""
        };
        let mut args = vec![APT_RUN_ID_FILE, run_id];
        args.extend(to_install);
        Action::run(self.lock_wait_functions() + &with_args(scripts::APT_INSTALL, &args))
    }

    /// Removes (or purges) `to_remove`.
    fn remove_action(&self, to_remove: &[&str]) -> Action {
        let verb = if self.purge { "purge" } else { "remove" };
        let mut args = vec![verb];
        args.extend(to_remove);
        Action::run(self.lock_wait_functions() + &with_args(scripts::APT_REMOVE, &args))
    }
}

#[cfg(test)]
mod tests {
    use crate::shell::{scripts, with_args};
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
        assert!(script.starts_with("set -e\nset -- 300 5 "), "{script}");
        let install = "-o DPkg::Lock::Timeout=300 -y -q -o Dpkg::Options::=--force-confdef \
                       -o Dpkg::Options::=--force-confold install --no-install-recommends --allow-change-held-packages curl nosuch";
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            with_fake_apt(script, dir.path()),
            ["-o DPkg::Lock::Timeout=300 -y -q update", install]
        );
        // The lists were refreshed by this run: not again.
        assert_eq!(with_fake_apt(script, dir.path()), [install]);
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
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            with_fake_apt(&plan.actions[0].script, dir.path()),
            [
                "-o DPkg::Lock::Timeout=300 -y -q -o Dpkg::Options::=--force-confdef \
              -o Dpkg::Options::=--force-confold install --no-install-recommends \
              --allow-change-held-packages haproxy"
            ]
        );
        let r = build(
            "package",
            json!({"name": ["haproxy", "curl"], "state": "absent", "purge": true}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out(PROBE)).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(
            with_fake_apt(&plan.actions[0].script, dir.path()),
            ["-o DPkg::Lock::Timeout=300 -y -q purge haproxy"]
        );
        let r = build("package", json!({"name": "haproxy=2.6.12-1"})).expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").is_empty());
        let r = build("package", json!({"name": "haproxy=2.6.12-2"})).expect("valid");
        assert!(r.plan(&probe_out(PROBE)).expect("plan").actions[0]
            .script
            .contains("haproxy=2.6.12-2"));
    }

    #[test]
    fn hold_marks_what_is_not_held_yet() {
        let probe = "dpkg=haproxy hold ok installed 2.6.12-1\n\
            dpkg=curl install ok installed 7.88.1-10\n";
        let r = build(
            "package",
            json!({"name": ["haproxy", "curl"], "hold": true}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out(probe)).expect("plan");
        let changes: Vec<_> = plan.changes.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(changes, ["package curl hold"]);
        assert_eq!(plan.changes[0].after.as_deref(), Some("held"));
        assert_eq!(plan.actions.len(), 1);
        let script = &plan.actions[0].script;
        assert!(script.contains("set -- hold curl\n"), "{script}");
        let r = build("package", json!({"name": "haproxy", "hold": false})).expect("valid");
        let plan = r.plan(&probe_out(probe)).expect("plan");
        assert!(plan.actions[0].script.contains("set -- unhold haproxy\n"));
        let r = build("package", json!({"name": "haproxy"})).expect("valid");
        assert!(
            r.plan(&probe_out(probe)).expect("plan").is_empty(),
            "unset: as it is"
        );
        assert!(build(
            "package",
            json!({"name": "x", "state": "absent", "hold": true})
        )
        .is_err());
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
        assert!(script.starts_with("set -e\nset -- 7 5 "), "{script}");
        let check = std::process::Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .expect("sh");
        assert!(check.status.success(), "{check:?}\n{script}");
        assert!(build("package", json!({"name": "curl", "lock_timeout": "soon"})).is_err());
    }

    /// Runs a package action here with an `apt-get` that only records its
    /// arguments (one call a line, checked to be noninteractive), and the
    /// run-id file in `dir`; returns the calls.
    fn with_fake_apt(script: &str, dir: &std::path::Path) -> Vec<String> {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let fake = bin.join("apt-get");
        std::fs::write(
            &fake,
            "#!/bin/sh\n[ \"$DEBIAN_FRONTEND\" = noninteractive ] || exit 9\n\
             printf '%s\\n' \"$*\" >> \"$(dirname \"$0\")/calls\"\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let _ = std::fs::remove_file(bin.join("calls"));
        let run_id_file = dir.join("run-id").to_str().expect("utf8").to_string();
        let script = format!(
            "PATH={}:$PATH\n{}",
            bin.display(),
            script.replacen(super::APT_RUN_ID_FILE, &run_id_file, 1)
        );
        let out = crate::testing::sh(&script, None);
        assert_eq!(out.status, 0, "{out:?}");
        std::fs::read_to_string(bin.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// A lock file held by another process is waited for, with progress,
    /// and the action gives up after the timeout naming the holder.
    #[test]
    fn held_locks_are_waited_for_then_given_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = dir.path().join("lock");
        std::fs::write(&lock, "").expect("write");
        let mut holder = std::process::Command::new("flock")
            .arg(&lock)
            .args(["sleep", "30"])
            .spawn()
            .expect("flock runs");
        let lock = lock.to_str().expect("utf8");
        let script = with_args(
            scripts::APT_LOCKS,
            &["2", "1", "progress: ", "/nonexistent", lock],
        ) + "wait_for_apt_locks\necho never\n";
        // Give flock a moment to take the lock.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let out = crate::testing::sh(&script, None);
        holder.kill().expect("kill");
        let _ = holder.wait();
        let pid = holder.id();
        assert_ne!(out.status, 0, "{out:?}");
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.contains(&format!(
                "progress: waiting for the apt lock {lock}, held by process {pid} (flock), for 0s (giving up after 2s)"
            )) && out.stderr.contains(&format!(
                "the apt lock {lock} is still held by process {pid} (flock) after waiting 2s (lock_timeout 2); giving up"
            )),
            "{out:?}"
        );
        // Free locks: no wait, no word.
        let out = crate::testing::sh(
            &(with_args(scripts::APT_LOCKS, &["2", "1", "progress: ", lock])
                + "wait_for_apt_locks\necho done\n"),
            None,
        );
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("done\n", ""));
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
