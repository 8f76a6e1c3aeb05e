//! The `file` module: a path's type (file, directory, link, absent), owner,
//! group and mode.
//!
//! Differences from Ansible, on purpose: `state: touch` creates a missing
//! file but does not update times of an existing one (so it is idempotent);
//! `state: file` never creates a file (use `copy` or `touch`) and fails at
//! apply time if the file is still missing then; `state: link` refuses to
//! replace anything but a symbolic link.

use serde::Deserialize;

use crate::params::{self, opt_bool, opt_mode};
use crate::probe::{self, Attrs, Kv, PathState};
use crate::{
    Action, Change, ChangeKind, Context, Footprint, Module, ModuleError, ParamSpec, Plan,
    ProbeOutput, Resource,
};
use pgdeploy_text::quote;

/// The `file` module.
pub struct File;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    path: String,
    #[serde(default)]
    state: State,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_mode")]
    mode: Option<String>,
    src: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    recurse: Option<bool>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum State {
    #[default]
    File,
    Directory,
    Link,
    Absent,
    Touch,
}

impl Module for File {
    fn name(&self) -> &'static str {
        "file"
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
        if !p.path.starts_with('/') || p.path.trim_end_matches('/').is_empty() {
            return Err(ModuleError::rejected(
                ["path"],
                format!("path {:?} must be an absolute path other than /", p.path),
            ));
        }
        let recurse = p.recurse.unwrap_or(false);
        if recurse && p.state != State::Directory {
            return Err(ModuleError::rejected(
                ["recurse", "state"],
                "`recurse` only applies to state: directory".into(),
            ));
        }
        match (p.state, &p.src) {
            (State::Link, None) => {
                return Err(ModuleError::rejected(
                    ["state", "src"],
                    "state: link needs `src` (the link's target)".into(),
                ))
            }
            (State::Link, Some(_)) if p.mode.is_some() => {
                return Err(ModuleError::rejected(
                    ["mode"],
                    "`mode` cannot be set on a symbolic link".into(),
                ))
            }
            (State::Link, Some(_)) => {}
            (_, Some(_)) => {
                return Err(ModuleError::rejected(
                    ["src"],
                    "`src` only applies to state: link".into(),
                ))
            }
            _ => {}
        }
        if p.state == State::Absent && (p.owner.is_some() || p.group.is_some() || p.mode.is_some())
        {
            return Err(ModuleError::rejected(
                ["state", "owner", "group", "mode"],
                "state: absent takes no owner, group or mode".into(),
            ));
        }
        let path = p.path.trim_end_matches('/').to_string();
        Ok(Box::new(FileResource {
            path,
            state: p.state,
            attrs: Attrs {
                owner: p.owner,
                group: p.group,
                mode: p.mode,
            },
            src: p.src,
            recurse,
        }))
    }
}

struct FileResource {
    path: String,
    state: State,
    attrs: Attrs,
    src: Option<String>,
    recurse: bool,
}

impl Resource for FileResource {
    fn probe(&self) -> String {
        let mut body = probe::path_snippet(&self.path, "", 0);
        if self.recurse {
            let mut tests = Vec::new();
            if let Some(o) = &self.attrs.owner {
                tests.push(format!("! -user {}", quote(o)));
            }
            if let Some(g) = &self.attrs.group {
                tests.push(format!("! -group {}", quote(g)));
            }
            if let Some(m) = &self.attrs.mode {
                tests.push(format!("! -perm {}", quote(m)));
            }
            if !tests.is_empty() {
                body.push_str(&format!(
                    "\nif [ \"$t\" = directory ] && [ -n \"$(find \"$p\" -mindepth 1 \\( {} \\) -print -quit)\" ]; then echo recurse_drift=yes; fi",
                    tests.join(" -o ")
                ));
            }
        }
        probe::wrap(&body)
    }

    fn reads(&self) -> Footprint {
        Footprint::file_probe(&self.path)
    }

    fn writes(&self) -> Footprint {
        Footprint::path(&self.path)
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        let kv = Kv::parse(out);
        let state = PathState::from_kv(&kv, "")?;
        if self.state == State::Absent {
            return Ok(self.plan_absent(&state));
        }
        self.check_kind(&state)?;
        if !state.exists() {
            return Ok(self.plan_create());
        }
        let plan = self.plan_update(&state);
        Ok(self.plan_recurse(&kv, plan))
    }
}

impl FileResource {
    /// What the change is about: "directory /srv/x", "link /a", "file /b".
    fn subject(&self) -> String {
        let noun = match self.state {
            State::Directory => "directory",
            State::Link => "link",
            _ => "file",
        };
        format!("{noun} {}", self.path)
    }

    /// `what` followed by the wanted owner, group and mode.
    fn described(&self, what: &str) -> String {
        let mut parts = vec![what.to_string()];
        parts.extend(self.attrs.describe());
        parts.join(", ")
    }

    /// state: absent: remove whatever is there.
    fn plan_absent(&self, state: &PathState) -> Plan {
        if !state.exists() {
            return Plan::none();
        }
        let p = quote(&self.path);
        let change =
            Change::new(ChangeKind::Remove, self.subject()).states(state.kind.clone(), "absent");
        Plan::none().with(change, [Action::run(format!("rm -rf -- {p}"))])
    }

    /// Refuses to replace an existing path of another type.
    fn check_kind(&self, state: &PathState) -> Result<(), ModuleError> {
        let wanted_kind = match self.state {
            State::Directory => "directory",
            State::Link => "link",
            _ => "file",
        };
        if state.exists() && state.kind != wanted_kind {
            return Err(ModuleError::Probe(format!(
                "{} is a {}, not a {wanted_kind}; refusing to replace it (remove it first with state: absent)",
                self.path, state.kind
            )));
        }
        Ok(())
    }

    /// The path is missing: create it, or (state: file) fail at apply time
    /// if it is still missing then.
    fn plan_create(&self) -> Plan {
        let p = quote(&self.path);
        let subject = self.subject();
        let is_link = self.state == State::Link;
        let (what, create) = match self.state {
            State::Directory => ("directory".to_string(), format!("mkdir -p -- {p}\n")),
            State::Touch => ("file".to_string(), format!("touch -- {p}\n")),
            State::Link => {
                let src = self.src.as_deref().unwrap_or_default();
                (
                    format!("link to {src}"),
                    format!("ln -s -- {} {p}\n", quote(src)),
                )
            }
            State::File | State::Absent => return self.plan_missing_file(),
        };
        let script = format!(
            "set -e\n{create}{}",
            self.attrs.apply_script(&self.path, self.recurse, is_link)
        );
        let change =
            Change::new(ChangeKind::Create, subject).states("absent", self.described(&what));
        Plan::none().with(change, [Action::run(script)])
    }

    /// state: file on a missing path: it is not created; the script fails
    /// unless something earlier in the run created it.
    fn plan_missing_file(&self) -> Plan {
        let p = quote(&self.path);
        let msg = format!(
            "{} does not exist (state: file does not create files; use copy or state: touch)",
            self.path
        );
        let script = format!(
            "if [ ! -e {p} ]; then echo {} >&2; exit 1; fi\n{}",
            quote(&msg),
            self.attrs.apply_script(&self.path, false, false)
        );
        let change = Change::new(ChangeKind::Update, self.subject())
            .states("absent", self.described("file"));
        Plan::none().with(change, [Action::run(script)])
    }

    /// The path exists: correct a link's target and the attributes.
    fn plan_update(&self, state: &PathState) -> Plan {
        let p = quote(&self.path);
        let is_link = self.state == State::Link;
        let (mut before, mut after) = self.attrs.drift(state);
        let mut script = String::from("set -e\n");
        if is_link {
            let src = self.src.as_deref().unwrap_or_default();
            if state.target.as_deref() != Some(src) {
                before.insert(
                    0,
                    format!("link to {}", state.target.as_deref().unwrap_or("?")),
                );
                after.insert(0, format!("link to {src}"));
                script.push_str(&format!("ln -sfn -- {} {p}\n", quote(src)));
            }
        }
        if before.is_empty() {
            return Plan::none();
        }
        script.push_str(&self.attrs.apply_script(&self.path, false, is_link));
        Plan::none().with(
            Change::new(ChangeKind::Update, self.subject())
                .states(before.join(", "), after.join(", ")),
            [Action::run(script)],
        )
    }

    /// recurse: the directory's contents differ from the wanted attributes.
    fn plan_recurse(&self, kv: &Kv, plan: Plan) -> Plan {
        if kv.get("recurse_drift") != Some("yes") {
            return plan;
        }
        let change = Change::new(
            ChangeKind::Update,
            format!("{}/* (recursively)", self.subject()),
        )
        .states("differ", self.described("contents"));
        plan.with(
            change,
            [Action::run(format!(
                "set -e\n{}",
                self.attrs.apply_script(&self.path, true, false)
            ))],
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{apply_local, build, converge, probe_local, probe_out};
    use crate::ChangeKind;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(p: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(p)
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn synthetic_plans() {
        let r = build(
            "file",
            json!({"path": "/srv/x", "state": "directory", "mode": "0750", "owner": "postgres"}),
        )
        .expect("valid");
        let plan = r.plan(&probe_out("type=absent\n")).expect("plan");
        assert_eq!(plan.changes[0].kind, ChangeKind::Create);
        assert_eq!(
            plan.changes[0].after.as_deref(),
            Some("directory, owner postgres, mode 0750")
        );
        let same = "type=directory\nowner=postgres\nuid=106\ngroup=postgres\ngid=110\nmode=750\nsize=4096\n";
        assert!(r.plan(&probe_out(same)).expect("plan").is_empty());
        let differ = "type=directory\nowner=root\nuid=0\ngroup=root\ngid=0\nmode=755\nsize=4096\n";
        let plan = r.plan(&probe_out(differ)).expect("plan");
        assert_eq!(
            plan.changes[0].before.as_deref(),
            Some("owner root, mode 0755")
        );
        assert_eq!(
            plan.changes[0].after.as_deref(),
            Some("owner postgres, mode 0750")
        );
        let file = "type=file\nowner=root\nuid=0\ngroup=root\ngid=0\nmode=644\nsize=1\n";
        assert!(
            r.plan(&probe_out(file)).is_err(),
            "a file where a directory is wanted"
        );
        // Numeric owners match too.
        let r = build(
            "file",
            json!({"path": "/srv/x", "state": "directory", "owner": "106"}),
        )
        .expect("valid");
        assert!(r.plan(&probe_out(same)).expect("plan").is_empty());
    }

    #[test]
    fn bad_params() {
        let err = build("file", json!({"path": "/x", "stat": "directory"}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `state`?"), "{err}");
        let err = build("file", json!({"path": "/x", "state": "folder"}))
            .err()
            .expect("error")
            .to_string();
        assert!(
            err.contains("parameter `state`") && err.contains("directory"),
            "{err}"
        );
        assert!(build("file", json!({"path": "/x", "state": "link"})).is_err());
        assert!(build("file", json!({"path": "/"})).is_err());
        assert!(build("file", json!({"path": "/x", "recurse": true})).is_err());
    }

    #[test]
    fn directories_links_touch_and_absent_converge_locally() {
        if !crate::testing::root_or_skip(
            "file::directories_links_touch_and_absent_converge_locally",
        ) {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("data");
        let ds = d.to_str().expect("utf8");
        converge(
            build(
                "file",
                json!({"path": ds, "state": "directory", "mode": 700, "owner": "root"}),
            )
            .expect("valid")
            .as_ref(),
        );
        assert_eq!(mode_of(&d), 0o700);
        let f = d.join("f");
        let fs = f.to_str().expect("utf8");
        converge(
            build(
                "file",
                json!({"path": fs, "state": "touch", "mode": "0600"}),
            )
            .expect("valid")
            .as_ref(),
        );
        converge(
            build("file", json!({"path": fs, "mode": "0640"}))
                .expect("valid")
                .as_ref(),
        );
        assert_eq!(mode_of(&f), 0o640);
        let plan = converge(
            build(
                "file",
                json!({"path": ds, "state": "directory", "mode": "0750", "recurse": true}),
            )
            .expect("valid")
            .as_ref(),
        );
        assert_eq!(plan.changes.len(), 2, "{plan:#?}");
        assert_eq!(mode_of(&f), 0o750);
        let l = dir.path().join("current");
        let ls = l.to_str().expect("utf8");
        converge(
            build("file", json!({"path": ls, "state": "link", "src": ds}))
                .expect("valid")
                .as_ref(),
        );
        assert_eq!(std::fs::read_link(&l).expect("link"), d);
        let plan = converge(
            build(
                "file",
                json!({"path": ls, "state": "link", "src": "/nowhere"}),
            )
            .expect("valid")
            .as_ref(),
        );
        assert_eq!(plan.changes[0].kind, ChangeKind::Update);
        let plan = converge(
            build("file", json!({"path": ds, "state": "absent"}))
                .expect("valid")
                .as_ref(),
        );
        assert_eq!(plan.changes[0].kind, ChangeKind::Remove);
        assert!(!d.exists());
        let missing = build("file", json!({"path": fs, "mode": "0600"})).expect("valid");
        let plan = missing.plan(&probe_local(missing.as_ref())).expect("plan");
        assert!(!apply_local(&plan), "state: file does not create files");
    }
}
