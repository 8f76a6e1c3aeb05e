//! The `template` module: a file rendered from a role template, optionally
//! checked by `validate` (a command with `%s` for the new file) before it
//! replaces the old one. See [`crate::content`] for the shared logic.

use serde::Deserialize;

use crate::content::ContentFile;
use crate::params::{self, opt_mode};
use crate::probe::Attrs;
use crate::{Context, Module, ModuleError, ParamSpec, Resource};

/// The `template` module.
pub struct Template;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    src: String,
    dest: String,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_mode")]
    mode: Option<String>,
    validate: Option<String>,
}

impl Module for Template {
    fn name(&self) -> &'static str {
        "template"
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
        let content = ctx.render_template(&p.src)?.into_bytes();
        let attrs = Attrs {
            owner: p.owner,
            group: p.group,
            mode: p.mode,
        };
        Ok(Box::new(ContentFile::new(
            p.dest, content, attrs, p.validate,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{apply_local, converge, probe_local, FakeContext};
    use crate::ChangeKind;
    use serde_json::json;

    #[test]
    fn renders_validates_and_converges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("haproxy.cfg");
        let dest_s = dest.to_str().expect("utf8");
        let mut ctx = FakeContext::default();
        ctx.templates
            .insert("haproxy.cfg.j2".into(), "global\n  maxconn 100\n".into());
        ctx.templates.insert("broken.j2".into(), "garbage\n".into());
        let module = crate::find("template").expect("template");
        let params = json!({"src": "haproxy.cfg.j2", "dest": dest_s, "mode": "0640", "validate": "grep -q '^global' %s"});
        let r = module.resource(&params, &ctx).expect("valid");
        assert_eq!(converge(r.as_ref()).changes[0].kind, ChangeKind::Create);
        let params =
            json!({"src": "broken.j2", "dest": dest_s, "validate": "grep -q '^global' %s"});
        let broken = module.resource(&params, &ctx).expect("valid");
        let plan = broken.plan(&probe_local(broken.as_ref())).expect("plan");
        assert_eq!(plan.changes.len(), 1);
        assert!(!apply_local(&plan), "validation must fail the task");
        assert_eq!(
            std::fs::read_to_string(&dest).expect("read"),
            "global\n  maxconn 100\n"
        );
        let err = module
            .resource(&json!({"src": "missing.j2", "dest": dest_s}), &ctx)
            .err()
            .expect("error");
        assert!(err.to_string().contains("missing.j2"));
        let err = module
            .resource(&json!({"dest": dest_s}), &ctx)
            .err()
            .expect("error");
        assert!(err.to_string().contains("missing required parameter `src`"));
    }
}
