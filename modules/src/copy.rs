//! The `copy` module: a file with given content (`content`) or the content
//! of a role file (`src`). See [`crate::content`] for the shared logic.

use serde::Deserialize;

use crate::content::ContentFile;
use crate::params::{self, opt_mode};
use crate::probe::Attrs;
use crate::{Context, Module, ModuleError, ParamSpec, Resource};

/// The `copy` module.
pub struct Copy;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    dest: String,
    content: Option<String>,
    src: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_mode")]
    mode: Option<String>,
    validate: Option<String>,
}

impl Module for Copy {
    fn name(&self) -> &'static str {
        "copy"
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
        let content = match (p.content, p.src) {
            (Some(content), None) => content.into_bytes(),
            (None, Some(src)) => ctx.read_file(&src)?,
            _ => {
                return Err(ModuleError::rejected(
                    ["content", "src"],
                    "module `copy` needs exactly one of `content` and `src`".into(),
                ))
            }
        };
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
    use crate::testing::{build, converge, FakeContext};
    use serde_json::json;

    #[test]
    fn needs_exactly_one_source() {
        assert!(build("copy", json!({"dest": "/x"})).is_err());
        assert!(build("copy", json!({"dest": "/x", "content": "a", "src": "b"})).is_err());
        let err = build("copy", json!({"dest": "/x", "contnet": "a"}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `content`?"), "{err}");
        assert!(build("copy", json!({"dest": "relative", "content": "a"})).is_err());
    }

    #[test]
    fn src_comes_from_the_role_and_converges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("motd");
        let mut ctx = FakeContext::default();
        ctx.files.insert("motd".into(), b"hello\n".to_vec());
        let module = crate::find("copy").expect("copy");
        let r = module
            .resource(
                &json!({"dest": dest.to_str().expect("utf8"), "src": "motd", "mode": 600}),
                &ctx,
            )
            .expect("valid");
        converge(r.as_ref());
        assert_eq!(std::fs::read(&dest).expect("read"), b"hello\n");
    }

    #[test]
    fn hostile_content_and_paths_stay_literal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("pwned");
        let dest = dir.path().join("$(touch pwned)'; touch pwned; '");
        let r = build(
            "copy",
            json!({"dest": dest.to_str().expect("utf8"), "content": format!("$(touch {})\n", marker.display()), "owner": "root", "group": "$(touch /tmp/pwned-group)"}),
        )
        .expect("valid");
        // The group does not exist: the upload fails, but nothing is run.
        let plan = r
            .plan(&crate::testing::probe_local(r.as_ref()))
            .expect("plan");
        assert!(!crate::testing::apply_local(&plan));
        assert!(!std::path::Path::new("/tmp/pwned-group").exists());
        let r = build("copy", json!({"dest": dest.to_str().expect("utf8"), "content": format!("$(touch {})\n", marker.display())})).expect("valid");
        converge(r.as_ref());
        assert!(dest.exists());
        assert!(!marker.exists());
    }
}
