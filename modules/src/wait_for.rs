//! The `wait_for` module: wait until a TCP port accepts connections (or stops
//! accepting them), an HTTP URL answers with `status` (default 200), or a
//! command exits 0.
//!
//! The probe checks once, for at most [`PROBE_LIMIT`] seconds; if the
//! condition holds the plan is empty, else it has no change and one action
//! that polls every second until the condition holds or `timeout` seconds
//! (default 60) pass, then fails with a message. The limit matters because
//! probes are fetched ahead in batches: a check that hangs (etcdctl against
//! a member not started yet waits 5 s) would hold up the whole batch, and
//! its answer is usually dropped by the action that comes first.
//! Ports are checked with bash's `/dev/tcp`, URLs with `python3` (no curl on
//! minimal Debian); `command` is an `sh` script.

use serde::Deserialize;

use crate::params::{self, opt_scalar_string, opt_u64};
use crate::probe::{self, Kv};
use crate::shell::{scripts, with_args};
use crate::{Action, Context, Module, ModuleError, ParamSpec, Plan, ProbeOutput, Resource};
use pgdeploy_text::quote;

/// The `wait_for` module.
pub struct WaitFor;

/// The module's parameters, declared once: their names and which are
/// required are read from this struct ([`crate::introspect`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    #[serde(default, deserialize_with = "opt_u64")]
    port: Option<u64>,
    #[serde(default, deserialize_with = "opt_scalar_string")]
    host: Option<String>,
    url: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    status: Option<u64>,
    command: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    timeout: Option<u64>,
    #[serde(default)]
    state: State,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum State {
    #[default]
    Started,
    Stopped,
}

const URL_CHECK: &str = "import sys, urllib.request, urllib.error\n\
try:\n    code = urllib.request.urlopen(sys.argv[1], timeout=5).status\n\
except urllib.error.HTTPError as e:\n    code = e.code\n\
except Exception:\n    code = 0\n\
sys.exit(0 if code == int(sys.argv[2]) else 1)\n";

/// Seconds a probe gives the check before it counts as not ready yet.
pub const PROBE_LIMIT: u64 = 2;

impl Module for WaitFor {
    fn name(&self) -> &'static str {
        "wait_for"
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
        let given = [p.port.is_some(), p.url.is_some(), p.command.is_some()]
            .iter()
            .filter(|g| **g)
            .count();
        if given != 1 {
            return Err(ModuleError::rejected(
                ["port", "url", "command"],
                "module `wait_for` needs exactly one of `port`, `url` and `command`".into(),
            ));
        }
        if p.host.is_some() && p.port.is_none() {
            return Err(ModuleError::rejected(
                ["host", "port"],
                "`host` goes with `port`".into(),
            ));
        }
        if p.status.is_some() && p.url.is_none() {
            return Err(ModuleError::rejected(
                ["status", "url"],
                "`status` goes with `url`".into(),
            ));
        }
        let (check, what) = if let Some(port) = p.port {
            if port == 0 || port > 65535 {
                return Err(ModuleError::rejected(
                    ["port"],
                    format!("port {port} is out of range"),
                ));
            }
            let host = p.host.unwrap_or_else(|| "127.0.0.1".into());
            let check = format!(
                "timeout 3 bash -c 'exec 3<>\"/dev/tcp/$1/$2\"' _ {} {port} >/dev/null 2>&1",
                quote(&host)
            );
            (check, format!("port {host}:{port}"))
        } else if let Some(url) = p.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ModuleError::rejected(
                    ["url"],
                    format!("url {url:?} must start with http:// or https://"),
                ));
            }
            let status = p.status.unwrap_or(200);
            let check = format!(
                "python3 -c {} {} {status} >/dev/null 2>&1",
                quote(URL_CHECK),
                quote(&url)
            );
            (check, format!("{url} (status {status})"))
        } else {
            let command = p.command.unwrap_or_default();
            let check = format!("sh -c {} >/dev/null 2>&1 </dev/null", quote(&command));
            (check, format!("`{command}`"))
        };
        let check = match p.state {
            State::Started => check,
            State::Stopped => format!("! {check}"),
        };
        let what = match p.state {
            State::Started => what,
            State::Stopped => format!("{what} to stop"),
        };
        Ok(Box::new(WaitResource {
            check,
            what,
            timeout: p.timeout.unwrap_or(60),
        }))
    }
}

struct WaitResource {
    /// A command that succeeds when the condition holds.
    check: String,
    what: String,
    timeout: u64,
}

impl Resource for WaitResource {
    fn probe(&self) -> String {
        probe::wrap(&format!(
            "if timeout {PROBE_LIMIT} sh -c {}; then echo ready=yes; else echo ready=no; fi",
            quote(&self.check)
        ))
    }

    fn plan(&self, out: &ProbeOutput) -> Result<Plan, ModuleError> {
        if Kv::parse(out).get("ready") == Some("yes") {
            return Ok(Plan::none());
        }
        let script = with_args(
            scripts::WAIT,
            &[
                self.timeout.to_string(),
                format!(
                    "timed out after {} s waiting for {}",
                    self.timeout, self.what
                ),
                self.check.clone(),
            ],
        );
        Ok(Plan {
            changes: Vec::new(),
            actions: vec![Action::run(script)],
        })
    }

    fn probe_ahead_while_changing(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{apply_local, build, probe_local, probe_out};
    use serde_json::json;

    #[test]
    fn ready_means_nothing_to_do() {
        let r = build("wait_for", json!({"port": 5432})).expect("valid");
        assert!(r.plan(&probe_out("ready=yes\n")).expect("plan").is_empty());
        let plan = r.plan(&probe_out("ready=no\n")).expect("plan");
        assert!(plan.changes.is_empty());
        assert_eq!(plan.actions.len(), 1);
    }

    #[test]
    fn ports_locally() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let r = build("wait_for", json!({"port": port, "timeout": 2})).expect("valid");
        assert!(r.plan(&probe_local(r.as_ref())).expect("plan").is_empty());
        drop(listener);
        let r = build("wait_for", json!({"port": port, "timeout": 1})).expect("valid");
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        assert!(!apply_local(&plan), "nothing listens: times out");
        let r = build("wait_for", json!({"port": port, "state": "stopped"})).expect("valid");
        assert!(r.plan(&probe_local(r.as_ref())).expect("plan").is_empty());
    }

    #[test]
    fn commands_locally() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("flag");
        let r = build(
            "wait_for",
            json!({"command": format!("test -e {}", flag.display()), "timeout": 5}),
        )
        .expect("valid");
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        assert_eq!(plan.actions.len(), 1);
        let f = flag.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1200));
            std::fs::write(f, "").expect("write");
        });
        assert!(apply_local(&plan));
        t.join().expect("join");
    }

    /// A check that hangs (a service not started yet) costs the probe at
    /// most the limit and reads as not ready; the action still waits for
    /// the check to pass.
    #[test]
    fn a_hanging_check_is_cut_short_by_the_probe_but_not_by_the_action() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("flag");
        let command = format!("test -e {0} || sleep 30; test -e {0}", flag.display());
        let r = build("wait_for", json!({"command": command, "timeout": 20})).expect("valid");
        let started = std::time::Instant::now();
        let plan = r.plan(&probe_local(r.as_ref())).expect("plan");
        let probed = started.elapsed();
        assert!(
            probed < std::time::Duration::from_secs(super::PROBE_LIMIT + 3),
            "the probe took {probed:?}"
        );
        assert_eq!(plan.actions.len(), 1, "not ready yet");
        std::fs::write(&flag, "").expect("write");
        assert!(r.plan(&probe_local(r.as_ref())).expect("plan").is_empty());
        let hang = build(
            "wait_for",
            json!({"command": format!("sleep 3; test -e {}", flag.display()), "timeout": 20}),
        )
        .expect("valid");
        let plan = hang.plan(&probe_local(hang.as_ref())).expect("plan");
        assert_eq!(
            plan.actions.len(),
            1,
            "a 3 s check is past the probe's limit"
        );
        assert!(apply_local(&plan), "the action waits the 3 s out");
    }

    #[test]
    fn bad_params() {
        assert!(build("wait_for", json!({})).is_err());
        assert!(build("wait_for", json!({"port": 1, "url": "http://x"})).is_err());
        assert!(build("wait_for", json!({"url": "ftp://x"})).is_err());
        assert!(build("wait_for", json!({"port": 70000})).is_err());
        let err = build("wait_for", json!({"port": 1, "timout": 3}))
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("did you mean `timeout`?"), "{err}");
    }
}
