//! End-to-end test of pgdeploy as an admin workstation uses it: database
//! hosts behind a bastion. On a 3-host lab, node1 is the bastion; node2 and
//! node3 are cut off from the workstation (an `unreachable` route to each on
//! this machine, so only the lab's bridge, i.e. node1, reaches them). node2
//! goes through node1 by the inventory's `pgdeploy_ssh_jump: node1`, node3
//! by `ProxyJump` in an SSH client configuration given with `-F` (which
//! also gives its address). `apply` of a small playbook reaches all three,
//! a `plan` afterwards finds nothing to change, and the files are read back
//! over direct SSH once the routes are gone.
//!
//! One test per scenario, sharing one lab (see `Suite` in tests/common);
//! the last one to finish removes the routes and takes the lab down.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

const SCENARIOS: [&str; 3] = [
    "s01_the_hosts_behind_the_bastion_refuse_the_workstation",
    "s02_apply_reaches_them_through_the_bastion",
    "s03_plan_through_the_bastion_changes_nothing",
];

static LAB: Suite<JumpLab> = Suite::new(&SCENARIOS, set_up, lab_down::<JumpLab>);

/// The hosts behind the bastion.
const BEHIND: [&str; 2] = ["node2", "node3"];

struct JumpLab {
    dir: tempfile::TempDir,
    routes: Routes,
    /// s02 applied the playbook.
    applied: bool,
}

impl JumpLab {
    fn inventory(&self) -> PathBuf {
        self.dir.path().join("hosts.yaml")
    }

    fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    fn empty_ssh_config(&self) -> PathBuf {
        self.dir.path().join("empty_ssh_config")
    }

    /// `pgdeploy ARGS -i INVENTORY -F SSH_CONFIG`.
    fn run(&self, args: &[&str]) -> Output {
        let inventory = self.inventory();
        let config = self.ssh_config();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-i", path(&inventory), "-F", path(&config)]);
        pgdeploy(&all)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn set_up() -> JumpLab {
    lab_up(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = format!(
        "all:
  vars:
{login}  hosts:
    node1: {{ansible_host: {a1}}}
    node2: {{ansible_host: {a2}, pgdeploy_ssh_jump: node1}}
    node3: {{}}
",
        login = lab_login_vars(),
        a1 = address("node1"),
        a2 = address("node2"),
    );
    std::fs::write(dir.path().join("hosts.yaml"), inventory).expect("inventory");
    let config = format!(
        "# node3's address and jump host come from here.\n\
         Host node3\n  HostName {a3}\n  ProxyJump admin@{a1}\n\
         Host *\n  ServerAliveInterval 5\n",
        a1 = address("node1"),
        a3 = address("node3"),
    );
    std::fs::write(dir.path().join("ssh_config"), config).expect("ssh_config");
    std::fs::write(dir.path().join("empty_ssh_config"), "").expect("empty ssh_config");
    let routes = Routes::block(&BEHIND);
    JumpLab {
        dir,
        routes,
        applied: false,
    }
}

#[test]
fn s01_the_hosts_behind_the_bastion_refuse_the_workstation() {
    LAB.run(|lab| {
        let inventory = lab_inventory();
        let empty = lab.empty_ssh_config();
        // Without a jump host: node1 answers, node2 and node3 do not.
        pgdeploy_ok(&["facts", "-i", path(&inventory), "-F", path(&empty), "node1"]);
        for host in BEHIND {
            let out = pgdeploy(&["facts", "-i", path(&inventory), "-F", path(&empty), host]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{host} must be unreachable directly: {}",
                text(&out)
            );
            assert!(text(&out).contains(&address(host)), "{}", text(&out));
        }
    });
}

#[test]
fn s02_apply_reaches_them_through_the_bastion() {
    LAB.run(|lab| {
        let playbook = root().join("tests/fixtures/workstation/jump.yaml");
        let out = lab.run(&["apply", path(&playbook), "--output", "json"]);
        assert!(
            out.status.success(),
            "apply through the bastion: {}",
            text(&out)
        );
        let report = json(&out);
        let mut changed: Vec<String> = changes(&report)
            .into_iter()
            .map(|(host, _, _)| host)
            .collect();
        changed.sort();
        changed.dedup();
        assert_eq!(changed, ["node1", "node2", "node3"], "{report}");
        lab.applied = true;
        // facts through the bastion too, with node3's address from -F.
        let facts = json(&lab.run(&["facts", "node3"]));
        assert_eq!(facts["hostname"], "node3", "{facts}");
    });
}

#[test]
fn s03_plan_through_the_bastion_changes_nothing() {
    LAB.run(|lab| {
        let playbook = root().join("tests/fixtures/workstation/jump.yaml");
        if !lab.applied {
            let out = lab.run(&["apply", path(&playbook)]);
            assert!(out.status.success(), "{}", text(&out));
        }
        let plan = lab.run(&["plan", path(&playbook), "--detailed-exitcode"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "nothing pending: {}",
            text(&plan)
        );
        // Read back from outside, directly, once the routes are gone.
        lab.routes.remove();
        for host in ["node1", "node2", "node3"] {
            let content = ssh(host, "cat /etc/pgdeploy-jump-test");
            assert_eq!(content, format!("reached {host}\n"));
        }
    });
}

scenarios_are_listed!();
