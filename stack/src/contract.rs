//! The stack contract: what the site playbook's roles promise and what the
//! day-2 commands, `validate` and the post-apply roll-out rely on. The
//! inventory groups and the variables read outside the roles are named here
//! once; their values come from the one variable resolver of the engine
//! (`-e` and secrets, then the inventory, then the roles' `defaults.yaml` in
//! play order), never from a default written in Rust.
//!
//! `tests/contract.rs` fails when a group name appears as a string literal
//! in Rust code outside this file.

use std::net::Ipv4Addr;

use pgdeploy_engine::inventory::{json_truthy, Inventory, Vars};
use pgdeploy_engine::playbook::Playbook;
use pgdeploy_engine::resolve::role_defaults;
use pgdeploy_engine::scope::{host_var, host_var_rendered};
use serde_json::Value as Json;

/// The inventory groups the stack's plays target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// etcd members (the DCS): an odd number, 3 or 5.
    Etcd,
    /// Patroni members (PostgreSQL).
    Postgres,
    /// HAProxy and keepalived (the VIP).
    Balancers,
    /// The pgBackRest repository host (one).
    Backup,
    /// Prometheus (optional).
    Monitoring,
}

impl Group {
    /// Every group, in the order the site playbook deploys them.
    pub const ALL: [Group; 5] = [
        Group::Etcd,
        Group::Postgres,
        Group::Balancers,
        Group::Backup,
        Group::Monitoring,
    ];

    /// The group's name in the inventory.
    pub const fn name(self) -> &'static str {
        match self {
            Group::Etcd => "etcd",
            Group::Postgres => "postgres",
            Group::Balancers => "balancers",
            Group::Backup => "backup",
            Group::Monitoring => "monitoring",
        }
    }
}

/// A variable the code outside the roles reads, with the role whose
/// `defaults.yaml` gives its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The variable's name.
    pub name: &'static str,
    /// The role that declares it (documentation and error messages).
    pub role: &'static str,
}

macro_rules! vars {
    ($($(#[$doc:meta])* $konst:ident = $name:literal in $role:literal;)*) => {
        $($(#[$doc])* pub const $konst: Var = Var { name: $name, role: $role };)*
        /// Every variable of the contract.
        pub const ALL_VARS: &[Var] = &[$($konst),*];
    };
}

vars! {
    /// Patroni's scope, pgBackRest's stanza, etcd's token.
    CLUSTER_NAME = "cluster_name" in "inventory";
    /// The floating address keepalived holds.
    VIP_ADDRESS = "vip_address" in "inventory";
    /// Networks allowed to use HAProxy and PostgreSQL.
    CLIENT_NETWORKS = "client_networks" in "inventory";
    /// Patroni's REST API port.
    PATRONI_RESTAPI_PORT = "patroni_restapi_port" in "patroni";
    /// The user of the REST API's unsafe methods (basic authentication).
    PATRONI_RESTAPI_USER = "patroni_restapi_user" in "patroni";
    /// Its password (`secrets.age`; the superuser's by default).
    PATRONI_RESTAPI_PASSWORD = "patroni_restapi_password" in "patroni";
    /// The superuser Patroni and the day-2 commands log in as.
    PATRONI_SUPERUSER = "patroni_superuser" in "patroni";
    /// Its password (`secrets.age`).
    SUPERUSER_PASSWORD = "postgres_superuser_password" in "postgres";
    /// The replication user's password (`secrets.age`).
    REPLICATION_PASSWORD = "postgres_replication_password" in "postgres";
    /// PostgreSQL's port on each member.
    POSTGRES_PORT = "postgres_port" in "postgres";
    /// Patroni's leader key TTL (seconds; DCS setting).
    PATRONI_TTL = "patroni_ttl" in "patroni";
    /// Patroni's loop (seconds; DCS setting).
    PATRONI_LOOP_WAIT = "patroni_loop_wait" in "patroni";
    /// Patroni's DCS and PostgreSQL retry timeout (seconds; DCS setting).
    PATRONI_RETRY_TIMEOUT = "patroni_retry_timeout" in "patroni";
    /// Lag (bytes) beyond which a replica may not take over (DCS setting).
    PATRONI_MAXIMUM_LAG_ON_FAILOVER = "patroni_maximum_lag_on_failover" in "patroni";
    /// Synchronous replication (DCS setting).
    PATRONI_SYNCHRONOUS_MODE = "patroni_synchronous_mode" in "patroni";
    /// No writes without a synchronous standby (DCS setting).
    PATRONI_SYNCHRONOUS_MODE_STRICT = "patroni_synchronous_mode_strict" in "patroni";
    /// How many synchronous standbys (DCS setting).
    PATRONI_SYNCHRONOUS_NODE_COUNT = "patroni_synchronous_node_count" in "patroni";
    /// The leader keeps its role through a DCS outage (DCS setting).
    PATRONI_FAILSAFE_MODE = "patroni_failsafe_mode" in "patroni";
    /// Cluster-wide PostgreSQL parameters, set in the DCS.
    PATRONI_CLUSTER_PARAMETERS = "patroni_cluster_parameters" in "patroni";
    /// The parameters Patroni takes from the DCS only.
    PATRONI_DCS_PARAMETERS = "patroni_dcs_parameters" in "patroni";
    /// max_connections (a DCS parameter).
    POSTGRES_MAX_CONNECTIONS = "postgres_max_connections" in "postgres";
    /// The PostgreSQL parameters the inventory sets.
    POSTGRES_PARAMETERS = "postgres_parameters" in "postgres";
    /// etcd's client port.
    ETCD_CLIENT_PORT = "etcd_client_port" in "etcd";
    /// etcd's data directory.
    ETCD_DATA_DIR = "etcd_data_dir" in "etcd";
    /// etcd's database size limit (bytes): `status` shows each member's share.
    ETCD_QUOTA_BACKEND_BYTES = "etcd_quota_backend_bytes" in "etcd";
    /// Free space (MB) in a member's database file that makes apply defragment it.
    ETCD_DEFRAG_MIN_FREE_MB = "etcd_defrag_min_free_mb" in "etcd";
    /// ... and the share of the file that free space must also reach.
    ETCD_DEFRAG_MIN_FREE_RATIO = "etcd_defrag_min_free_ratio" in "etcd";
    /// The marker of a pending etcd restart (the role's handler leaves it).
    ETCD_RESTART_PENDING_FILE = "etcd_restart_pending_file" in "etcd";
    /// HAProxy's stats page port (on the balancers' loopback for pgdeploy).
    HAPROXY_STATS_PORT = "haproxy_stats_port" in "haproxy";
    /// Whether pgBackRest archives and backs up.
    PGBACKREST_ENABLED = "pgbackrest_enabled" in "pgbackrest";
    /// The repository's folder on the backup host.
    PGBACKREST_REPO_PATH = "pgbackrest_repo_path" in "pgbackrest";
    /// pgBackRest's spool on each member (archive-async's WAL queue).
    PGBACKREST_SPOOL_PATH = "pgbackrest_spool_path" in "pgbackrest";
    /// The PostgreSQL major a host runs (the local fact's, else its release's).
    POSTGRES_VERSION = "postgres_version" in "postgres";
    /// Each member's data directory (Patroni's `data_dir`).
    POSTGRES_DATA_DIR = "postgres_data_dir" in "postgres";
    /// PostgreSQL's programs (Patroni's `bin_dir`).
    POSTGRES_BIN_DIR = "postgres_bin_dir" in "postgres";
    /// PostgreSQL's server packages (held; `pgdeploy update` moves them).
    POSTGRES_PACKAGES = "postgres_packages" in "postgres";
    /// Patroni's packages (held).
    PATRONI_PACKAGES = "patroni_packages" in "patroni";
    /// etcd's packages (held).
    ETCD_PACKAGES = "etcd_packages" in "etcd";
    /// HAProxy's package (held).
    HAPROXY_PACKAGES = "haproxy_packages" in "haproxy";
    /// keepalived's package (held).
    KEEPALIVED_PACKAGES = "keepalived_packages" in "keepalived";
    /// pgBackRest's package (held).
    PGBACKREST_PACKAGES = "pgbackrest_packages" in "pgbackrest";
    /// PgBouncer's package (held).
    PGBOUNCER_PACKAGES = "pgbouncer_packages" in "pgbouncer";
}

/// The components `pgdeploy update --packages` names, each with the
/// variable that lists its (held) Debian packages, in the order the
/// update's plan lists them.
pub const COMPONENTS: [(&str, Var); 7] = [
    ("postgresql", POSTGRES_PACKAGES),
    ("patroni", PATRONI_PACKAGES),
    ("etcd", ETCD_PACKAGES),
    ("haproxy", HAPROXY_PACKAGES),
    ("keepalived", KEEPALIVED_PACKAGES),
    ("pgbackrest", PGBACKREST_PACKAGES),
    ("pgbouncer", PGBOUNCER_PACKAGES),
];

/// Where role postgres_major's local fact (the PostgreSQL major a member or
/// the backup host runs, `facts.local.postgres.major`) sits in a host's facts.
pub const MAJOR_FACT: &str = "/local/postgres/major";

/// `facts` with the local fact of the PostgreSQL major set to `major`: how
/// the roles would see the host once it runs that major.
pub fn with_major(facts: &Json, major: &str) -> Json {
    let mut facts = facts.clone();
    facts["local"]["postgres"]["major"] = Json::String(major.to_string());
    facts
}

/// The services a host's move to another Debian release stops before its
/// packages move, in that order: the VIP first (keepalived: another
/// balancer takes it), the proxies, PostgreSQL through Patroni, the DCS
/// last. The reboot starts them again.
pub const DRAINED_SERVICES: [&str; 5] = ["keepalived", "haproxy", "pgbouncer", "patroni", "etcd"];

/// The database the day-2 commands connect to (PostgreSQL's own).
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// The passwords `secrets init` generates once for every stack.
pub const GENERATED_SECRETS: [&str; 3] = [
    SUPERUSER_PASSWORD.name,
    REPLICATION_PASSWORD.name,
    PATRONI_RESTAPI_PASSWORD.name,
];

/// The groups of the built-in lab: hosts 1-3 run etcd, PostgreSQL and the
/// balancers, host 4 holds the backup repository.
pub fn lab_groups() -> pgdeploy_lab::inventory::Groups {
    pgdeploy_lab::inventory::Groups {
        core: [Group::Etcd, Group::Postgres, Group::Balancers]
            .map(|g| g.name().to_string())
            .to_vec(),
        fourth: Group::Backup.name().to_string(),
    }
}

/// The stack as one inventory, playbook and set of extra vars describe it:
/// its groups and the contract's variables as each host sees them.
#[derive(Clone)]
pub struct Stack {
    inventory: Inventory,
    defaults: Vars,
    extra: Vars,
}

/// A contract variable that is missing or has the wrong type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{host}: `{}` ({}): {problem}", var.name, var.role)]
pub struct VarError {
    /// The host whose view was asked.
    pub host: String,
    /// The variable.
    pub var: Var,
    /// What is wrong.
    pub problem: String,
}

impl Stack {
    /// The stack of `inventory`, with the role defaults of `playbook` and
    /// the extra vars (`-e`, secrets, the cluster CA).
    pub fn new(inventory: Inventory, playbook: &Playbook, extra: Vars) -> Stack {
        Stack {
            inventory,
            defaults: role_defaults(playbook),
            extra,
        }
    }

    /// Whether the playbook deploys this stack: the Patroni role's contract
    /// (its REST port) is declared and the inventory has members. The
    /// post-apply roll-out runs only then; a role's name does not matter.
    pub fn has_members(&self) -> bool {
        self.defaults.contains_key(PATRONI_RESTAPI_PORT.name)
            && !self.hosts(Group::Postgres).is_empty()
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The extra vars.
    pub fn extra(&self) -> &Vars {
        &self.extra
    }

    /// The hosts of a group (empty when the inventory has none).
    pub fn hosts(&self, group: Group) -> Vec<String> {
        self.inventory
            .groups
            .get(group.name())
            .map(|g| g.hosts.clone())
            .unwrap_or_default()
    }

    /// A variable as `host` sees it (see [`host_var`]); `None` when unset.
    pub fn var(&self, host: &str, var: Var) -> Option<Json> {
        host_var(&self.inventory, &self.defaults, &self.extra, host, var.name)
    }

    /// A string variable; `None` when unset or not a string.
    pub fn string(&self, host: &str, var: Var) -> Option<String> {
        self.var(host, var)
            .and_then(|v| v.as_str().map(String::from))
    }

    /// A variable as `host` sees it with its facts, rendered (see
    /// [`Stack::required_string_with_facts`]); `None` when unset.
    pub fn var_with_facts(
        &self,
        host: &str,
        facts: &Json,
        var: Var,
    ) -> Result<Option<Json>, VarError> {
        self.rendered(host, Some(facts), var)
    }

    /// A variable as `host` sees it, rendered with its facts when given;
    /// a template that cannot be rendered is an error, never its raw text.
    fn rendered(
        &self,
        host: &str,
        facts: Option<&Json>,
        var: Var,
    ) -> Result<Option<Json>, VarError> {
        host_var_rendered(
            &self.inventory,
            &self.defaults,
            &self.extra,
            (host, facts),
            var.name,
        )
        .map_err(|e| VarError {
            host: host.to_string(),
            var,
            problem: format!("cannot be rendered: {e}"),
        })
    }

    /// A string variable that must be set (and, when it is a template,
    /// rendered: see [`Stack::required_string_with_facts`] for one that
    /// reads the host's facts).
    pub fn required_string(&self, host: &str, var: Var) -> Result<String, VarError> {
        self.required_string_in(host, None, var)
    }

    /// [`Stack::required_string`] with the host's facts (read by
    /// `Cluster::facts`): for the variables whose defaults read them, such
    /// as PostgreSQL's major and its paths.
    pub fn required_string_with_facts(
        &self,
        host: &str,
        facts: &Json,
        var: Var,
    ) -> Result<String, VarError> {
        self.required_string_in(host, Some(facts), var)
    }

    fn required_string_in(
        &self,
        host: &str,
        facts: Option<&Json>,
        var: Var,
    ) -> Result<String, VarError> {
        let error = |problem: String| VarError {
            host: host.to_string(),
            var,
            problem,
        };
        match self.rendered(host, facts, var)? {
            Some(Json::String(s)) => Ok(s),
            Some(other) => Err(error(format!("{other} is not a string"))),
            None => Err(error(
                "not set (give it in the inventory, secrets.age or with -e)".into(),
            )),
        }
    }

    /// A port variable: a number or a string of digits in 1..=65535.
    pub fn port(&self, host: &str, var: Var) -> Result<u16, VarError> {
        let error = |problem: String| VarError {
            host: host.to_string(),
            var,
            problem,
        };
        let value = self.var(host, var).ok_or_else(|| {
            error(format!(
                "not set, and no role's defaults.yaml gives it (the `{}` role should)",
                var.role
            ))
        })?;
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| error(format!("{value} is not a port")))
    }

    /// A boolean variable by the one rule ([`json_truthy`]); `default` when
    /// unset or not a boolean.
    pub fn flag(&self, host: &str, var: Var, default: bool) -> bool {
        self.var(host, var)
            .as_ref()
            .and_then(json_truthy)
            .unwrap_or(default)
    }

    /// Topologies that deploy but cannot work as an HA cluster, as warnings
    /// for `validate`, `plan` and `apply` (they do not stop a run: a lab or
    /// a first step of a migration may want them).
    pub fn topology_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let etcd = self.hosts(Group::Etcd);
        let members = self.hosts(Group::Postgres);
        if !members.is_empty() || !etcd.is_empty() {
            match etcd.len() {
                0 => warnings.push(format!(
                    "the `{}` group is empty: Patroni has no DCS to elect a leader with",
                    Group::Etcd.name()
                )),
                1 => warnings.push(format!(
                    "the `{}` group has 1 host: losing it stops every election (use 3 or 5)",
                    Group::Etcd.name()
                )),
                n if n % 2 == 0 => warnings.push(format!(
                    "the `{}` group has {n} hosts: an even count tolerates no more failures than {} (use an odd number)",
                    Group::Etcd.name(),
                    n - 1
                )),
                _ => {}
            }
        }
        let archiving = members
            .first()
            .is_some_and(|m| self.flag(m, PGBACKREST_ENABLED, false));
        if archiving && self.hosts(Group::Backup).is_empty() {
            warnings.push(format!(
                "`{}` is on but the `{}` group is empty: WAL archiving has no repository to go to",
                PGBACKREST_ENABLED.name,
                Group::Backup.name()
            ));
        }
        if let Some(warning) = self.balancers().and_then(|b| self.vip_warning(&b)) {
            warnings.push(warning);
        }
        warnings
    }

    fn balancers(&self) -> Option<String> {
        self.hosts(Group::Balancers).into_iter().next()
    }

    /// The VIP must lie in one of the networks the inventory names for
    /// clients, or clients cannot reach it through the firewall rules.
    fn vip_warning(&self, balancer: &str) -> Option<String> {
        let vip: Ipv4Addr = self.string(balancer, VIP_ADDRESS)?.parse().ok()?;
        let networks: Vec<String> = match self.var(balancer, CLIENT_NETWORKS)? {
            Json::Array(list) => list
                .iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect(),
            Json::String(s) => vec![s],
            _ => return None,
        };
        if networks.is_empty() || networks.iter().any(|n| in_network(vip, n)) {
            return None;
        }
        Some(format!(
            "`{}` {vip} is outside every network of `{}` ({}): clients there cannot reach it",
            VIP_ADDRESS.name,
            CLIENT_NETWORKS.name,
            networks.join(", ")
        ))
    }
}

/// Whether `address` lies in the IPv4 network `cidr` (`a.b.c.d/n`, or one
/// address). Anything unparsable counts as containing it: validate's other
/// checks name bad networks; this one must not add a false alarm.
fn in_network(address: Ipv4Addr, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let (Ok(net), Ok(bits)) = (net.trim().parse::<Ipv4Addr>(), bits.trim().parse::<u32>()) else {
        return true;
    };
    if bits > 32 {
        return true;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(address) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(inventory: &str, defaults: &str) -> Stack {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("inv.yaml"), inventory).expect("write");
        std::fs::create_dir_all(dir.path().join("roles/r")).expect("mkdir");
        std::fs::write(dir.path().join("roles/r/tasks.yaml"), "[]\n").expect("write");
        std::fs::write(dir.path().join("roles/r/defaults.yaml"), defaults).expect("write");
        std::fs::create_dir_all(dir.path().join("playbooks")).expect("mkdir");
        std::fs::write(
            dir.path().join("playbooks/p.yaml"),
            "- hosts: all\n  roles: [r]\n",
        )
        .expect("write");
        let inventory = Inventory::load(&dir.path().join("inv.yaml")).expect("inventory");
        let playbook = Playbook::load(&dir.path().join("playbooks/p.yaml")).expect("playbook");
        Stack::new(inventory, &playbook, Vars::new())
    }

    const THREE: &str = "all:\n  vars: {vip_address: 10.0.0.50, client_networks: [10.0.0.0/24]}\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n    b: {ansible_host: 10.0.0.2}\n    c: {ansible_host: 10.0.0.3}\n    d: {ansible_host: 10.0.0.4}\n  children:\n    etcd: {hosts: {a: {}, b: {}, c: {}}}\n    postgres: {hosts: {a: {}, b: {}, c: {}}}\n    balancers: {hosts: {a: {}}}\n    backup: {hosts: {d: {}}}\n";

    #[test]
    fn values_come_from_role_defaults_and_the_inventory() {
        let s = stack(
            THREE,
            "patroni_restapi_port: 8008\npgbackrest_enabled: true\n",
        );
        assert_eq!(s.port("a", PATRONI_RESTAPI_PORT), Ok(8008));
        assert_eq!(s.hosts(Group::Postgres), ["a", "b", "c"]);
        assert!(s.has_members());
        assert!(
            s.topology_warnings().is_empty(),
            "{:?}",
            s.topology_warnings()
        );
        let missing = s.port("a", ETCD_CLIENT_PORT).expect_err("no default");
        assert!(
            missing.to_string().contains("`etcd_client_port` (etcd)"),
            "{missing}"
        );
    }

    #[test]
    fn a_stack_without_the_patroni_contract_has_no_members_to_roll_out() {
        let s = stack(THREE, "other: 1\n");
        assert!(!s.has_members());
    }

    #[test]
    fn topologies_that_cannot_work_are_named() {
        let even = THREE.replace(
            "etcd: {hosts: {a: {}, b: {}, c: {}}}",
            "etcd: {hosts: {a: {}, b: {}}}",
        );
        let w = stack(&even, "pgbackrest_enabled: true\n").topology_warnings();
        assert!(w.iter().any(|w| w.contains("has 2 hosts")), "{w:?}");
        let single = THREE.replace(
            "etcd: {hosts: {a: {}, b: {}, c: {}}}",
            "etcd: {hosts: {a: {}}}",
        );
        let w = stack(&single, "").topology_warnings();
        assert!(w.iter().any(|w| w.contains("has 1 host")), "{w:?}");
        let no_backup = THREE.replace("backup: {hosts: {d: {}}}", "backup: {hosts: {}}");
        let w = stack(&no_backup, "pgbackrest_enabled: true\n").topology_warnings();
        assert!(w.iter().any(|w| w.contains("no repository")), "{w:?}");
        assert!(stack(&no_backup, "pgbackrest_enabled: false\n")
            .topology_warnings()
            .is_empty());
        let far_vip = THREE.replace("vip_address: 10.0.0.50", "vip_address: 192.168.9.9");
        let w = stack(&far_vip, "").topology_warnings();
        assert!(
            w.iter()
                .any(|w| w.contains("192.168.9.9 is outside every network")),
            "{w:?}"
        );
    }

    #[test]
    fn networks() {
        let a: Ipv4Addr = "10.1.2.3".parse().expect("ip");
        assert!(in_network(a, "10.0.0.0/8"));
        assert!(in_network(a, "10.1.2.3"));
        assert!(!in_network(a, "10.1.3.0/24"));
        assert!(in_network(a, "0.0.0.0/0"));
    }
}
