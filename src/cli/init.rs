//! `init DIR`: a starter project for the stack. It writes a commented
//! inventory with the stack contract's groups, a `.gitignore`, a
//! `README.md` of next steps and a GitHub Actions workflow that posts the
//! plan of every pull request (docs/ci.md); never overwrites a file.
//!
//! Without `--hosts`, the host addresses are placeholders and the stack's
//! required settings (`cluster_name`, `vip_address`, `admin_networks`) are
//! left commented out, so `validate` names each thing to fill in, with its
//! line. With `--hosts`, the addresses are filled in, the settings get
//! values derived from them (check them) and `secrets init` runs: the
//! inventory then validates as written.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pgdeploy_engine::inventory::valid_address;
use pgdeploy_stack::contract::{
    Group, CLIENT_NETWORKS, CLUSTER_NAME, PGBACKREST_ENABLED, VIP_ADDRESS,
};

use super::{fail, EXIT_BAD_INPUT, EXIT_FAILED};

/// The inventory's file name in the project folder.
pub const INVENTORY: &str = "inventory.yaml";

/// Where `init` writes the pull-request plan workflow, in the project folder.
pub const WORKFLOW: &str = ".github/workflows/pgdeploy-plan.yml";

/// The workflow, `INVENTORY` standing for the inventory's path.
const WORKFLOW_TEXT: &str = include_str!("init/pgdeploy-plan.yml");

/// Who may SSH in (role firewall's required var; not read outside the roles).
const ADMIN_NETWORKS_VAR: &str = "admin_networks";

/// Hosts of a skeleton without `--hosts`.
const PLACEHOLDER_HOSTS: usize = 4;

/// `init DIR [--hosts A,B,...]`.
pub fn init(dir: &Path, hosts: &[String]) -> ExitCode {
    if let Some(bad) = hosts.iter().find(|h| !valid_address(h)) {
        return fail(
            EXIT_BAD_INPUT,
            format!("--hosts: `{bad}` is not a valid IP address or host name"),
        );
    }
    let files = [
        (INVENTORY, inventory(hosts)),
        ("README.md", readme(dir, !hosts.is_empty())),
        (".gitignore", GITIGNORE.to_string()),
        (WORKFLOW, WORKFLOW_TEXT.replace("INVENTORY", INVENTORY)),
    ];
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| dir.join(name))
        .chain((!hosts.is_empty()).then(|| dir.join("secrets.age")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        return fail(
            EXIT_BAD_INPUT,
            format!(
                "{} exist(s) already; init writes only new files (move them away first)",
                existing.join(", ")
            ),
        );
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(EXIT_FAILED, format!("cannot create {}: {e}", dir.display()));
    }
    for (name, text) in &files {
        let path = dir.join(name);
        let written = match path.parent() {
            Some(parent) => {
                std::fs::create_dir_all(parent).and_then(|()| std::fs::write(&path, text))
            }
            None => std::fs::write(&path, text),
        };
        if let Err(e) = written {
            return fail(EXIT_FAILED, format!("cannot write {}: {e}", path.display()));
        }
        println!("wrote {}", path.display());
    }
    let inventory = dir.join(INVENTORY);
    if !hosts.is_empty() {
        let code = super::secrets::init(&inventory, None);
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    if (1..4).contains(&hosts.len()) {
        println!(
            "note: no host for the `{}` group (4 hosts or more: the last one holds the backups): no backups are taken until one is added",
            Group::Backup.name()
        );
    }
    println!("next: {}", next_step(&inventory, !hosts.is_empty()));
    ExitCode::SUCCESS
}

fn next_step(inventory: &Path, filled: bool) -> String {
    if filled {
        format!(
            "check the values marked CHECK in {}, then `pgdeploy plan -i {}` (README.md beside it)",
            inventory.display(),
            inventory.display()
        )
    } else {
        format!(
            "fill in {} (`pgdeploy validate -i {}` names each placeholder), then see README.md beside it",
            inventory.display(),
            inventory.display()
        )
    }
}

const GITIGNORE: &str = "\
# Written by `pgdeploy init`. Never commit the cluster CA's private key; the
# age identity that decrypts secrets.age lives outside this folder
# ($PGDEPLOY_AGE_IDENTITY or ~/.config/pgdeploy/age-identity.txt): keep it
# out of the repository too (secrets.age itself is encrypted and may be
# committed).
pki/ca.key
age-identity.txt
*.last-apply.json
";

/// Host names and addresses: `node1 ...` with the given addresses, or
/// placeholders.
fn host_list(addresses: &[String]) -> Vec<(String, String)> {
    if addresses.is_empty() {
        (1..=PLACEHOLDER_HOSTS)
            .map(|n| (format!("node{n}"), format!("<address of node{n}>")))
            .collect()
    } else {
        addresses
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("node{}", i + 1), a.clone()))
            .collect()
    }
}

/// The /24 networks of the IPv4 addresses among `addresses`.
fn networks(addresses: &[String]) -> Vec<String> {
    let mut nets: Vec<String> = addresses
        .iter()
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .map(|ip| {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.0/24")
        })
        .collect();
    nets.dedup();
    nets
}

/// A guess at a free VIP: `.250` of the first host's /24.
fn vip_guess(addresses: &[String]) -> Option<String> {
    addresses
        .iter()
        .find_map(|a| a.parse::<Ipv4Addr>().ok())
        .map(|ip| {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.250")
        })
}

/// The inventory text.
fn inventory(addresses: &[String]) -> String {
    let hosts = host_list(addresses);
    // Four hosts or more: the last one holds the backup repository.
    let (core, backup) = if hosts.len() >= 4 {
        hosts.split_at(hosts.len() - 1)
    } else {
        (&hosts[..], &[][..])
    };
    let filled = !addresses.is_empty();
    let nets = networks(addresses);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Inventory written by `pgdeploy init` (Ansible's YAML format). Next steps: README.md."
    );
    let _ = writeln!(t, "#");
    let _ = writeln!(
        t,
        "#   pgdeploy validate -i {INVENTORY}    # no host contacted: names what is missing"
    );
    let _ = writeln!(
        t,
        "#   pgdeploy plan     -i {INVENTORY}    # what apply would change"
    );
    let _ = writeln!(t, "#   pgdeploy apply    -i {INVENTORY}");
    let _ = writeln!(t, "#");
    let _ = writeln!(t, "# Passwords live in secrets.age beside this file (`pgdeploy secrets init -i {INVENTORY}`), never here.");
    let _ = writeln!(t, "all:");
    let _ = writeln!(t, "  vars:");
    let _ = writeln!(
        t,
        "    ansible_user: admin                # an account with passwordless sudo on every host"
    );
    let _ = writeln!(t, "    ansible_become: true");
    let _ = writeln!(t, "    # ansible_ssh_private_key_file: ~/.ssh/id_ed25519   # default: ssh-agent, then ~/.ssh/id_ed25519");
    let _ = writeln!(t, "    # pgdeploy_ssh_jump: admin@bastion.example.com     # hosts behind a jump host (or ProxyJump in ~/.ssh/config)");
    let _ = writeln!(t);
    if filled {
        let _ = writeln!(
            t,
            "    {}: main    # CHECK: Patroni scope, pgBackRest stanza, etcd token",
            CLUSTER_NAME.name
        );
        let vip = vip_guess(addresses).unwrap_or_else(|| "<floating address for clients>".into());
        let _ = writeln!(
            t,
            "    {}: {vip}    # CHECK: a free address in the balancers' subnet (keepalived)",
            VIP_ADDRESS.name
        );
        let list = if nets.is_empty() {
            "[<network that may SSH in>]".to_string()
        } else {
            format!("[{}]", nets.join(", "))
        };
        let _ = writeln!(
            t,
            "    {ADMIN_NETWORKS_VAR}: {list}    # CHECK: who may SSH in"
        );
        let _ = writeln!(
            t,
            "    {}: {list}    # CHECK: who may use HAProxy and PostgreSQL",
            CLIENT_NETWORKS.name
        );
        if backup.is_empty() {
            let _ = writeln!(t, "    {}: false    # CHECK: no backup host (with 4 hosts or more, init makes the last one the backup host)", PGBACKREST_ENABLED.name);
        }
    } else {
        let _ = writeln!(t, "    # Required: uncomment and fill in.");
        let _ = writeln!(
            t,
            "    # {}: main                # Patroni scope, pgBackRest stanza, etcd token",
            CLUSTER_NAME.name
        );
        let _ = writeln!(
            t,
            "    # {}: 10.0.0.50           # a free address in the balancers' subnet (keepalived)",
            VIP_ADDRESS.name
        );
        let _ = writeln!(
            t,
            "    # {ADMIN_NETWORKS_VAR}: [10.0.9.0/24]    # who may SSH in"
        );
        let _ = writeln!(
            t,
            "    # {}: [10.0.0.0/16]   # who may use HAProxy and PostgreSQL",
            CLIENT_NETWORKS.name
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "    # Optional tuning (each role's README.md lists its settings):"
    );
    let _ = writeln!(t, "    # postgres_memory_mb: 16384        # size PostgreSQL for 16 GiB (default: host memory capped at 2 GiB)");
    let _ = writeln!(t, "    # patroni_synchronous_mode: true");
    let _ = writeln!(t, "    # pgbackrest_retention_full: 4");
    let _ = writeln!(t, "  hosts:");
    for (name, address) in &hosts {
        let value = if filled {
            address.clone()
        } else {
            format!("'{address}'")
        };
        let _ = writeln!(t, "    {name}: {{ansible_host: {value}}}");
    }
    let _ = writeln!(t, "  children:");
    let members = |list: &[(String, String)]| {
        let names: Vec<String> = list.iter().map(|(n, _)| format!("{n}: {{}}")).collect();
        format!("{{{}}}", names.join(", "))
    };
    let groups = [
        (Group::Etcd, core, "odd number, 3 or 5: the DCS"),
        (Group::Postgres, core, "Patroni members"),
        (
            Group::Balancers,
            core,
            "HAProxy + keepalived (one L2 segment for the VIP)",
        ),
        (
            Group::Backup,
            backup,
            "one pgBackRest repository host (none: no backups)",
        ),
    ];
    for (group, list, what) in groups {
        let _ = writeln!(t, "    {}:    # {what}", group.name());
        let _ = writeln!(t, "      hosts: {}", members(list));
    }
    let _ = writeln!(
        t,
        "    # {}:    # optional: Prometheus; exporters on every host",
        Group::Monitoring.name()
    );
    let _ = writeln!(t, "    #   hosts: {{mon1: {{}}}}");
    t
}

/// The next-steps text.
fn readme(dir: &Path, filled: bool) -> String {
    let inv = PathBuf::from(INVENTORY);
    let inv = inv.display();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# {}: a pgdeploy project",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cluster".into())
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "Written by `pgdeploy init`. The PostgreSQL HA stack's playbook and roles are built into `pgdeploy`");
    let _ = writeln!(t, "(`pgdeploy roles list`); `pgdeploy roles export .` writes them here to customise them (a `roles/NAME`");
    let _ = writeln!(t, "folder here wins over the built-in role of that name).");
    let _ = writeln!(t);
    let _ = writeln!(t, "## Next steps");
    let _ = writeln!(t);
    if filled {
        let _ = writeln!(t, "1. Check the values marked `CHECK` in `{inv}` (the VIP and networks were guessed from the addresses).");
        let _ = writeln!(
            t,
            "2. `secrets.age` holds the generated passwords (encrypted to your age identity, "
        );
        let _ = writeln!(t, "   `$PGDEPLOY_AGE_IDENTITY` or `~/.config/pgdeploy/age-identity.txt`: back it up, never commit it).");
    } else {
        let _ = writeln!(
            t,
            "1. Fill in `{inv}`: the host addresses (`<address of ...>`), and uncomment `{}`,",
            CLUSTER_NAME.name
        );
        let _ = writeln!(t, "   `{}` and `{ADMIN_NETWORKS_VAR}`. `pgdeploy validate -i {inv}` names each one still missing, with its line.", VIP_ADDRESS.name);
        let _ = writeln!(t, "2. `pgdeploy secrets init -i {inv}`: generates the passwords once into `secrets.age` beside it, encrypted");
        let _ = writeln!(t, "   to your age identity (`$PGDEPLOY_AGE_IDENTITY` or `~/.config/pgdeploy/age-identity.txt`: back it up,");
        let _ = writeln!(t, "   never commit it).");
    }
    let _ = writeln!(t, "3. Record the hosts' SSH keys once (after checking them): `pgdeploy facts -i {inv} HOST --accept-new-host-keys`.");
    let _ = writeln!(t, "   Hosts behind a bastion: `ProxyJump` in `~/.ssh/config`, or `pgdeploy_ssh_jump` in the inventory.");
    let _ = writeln!(t, "4. `pgdeploy plan -i {inv}`, then `pgdeploy apply -i {inv}`, then `pgdeploy status -i {inv}`.");
    let _ = writeln!(t, "5. In pull-request CI: `{WORKFLOW}` posts `pgdeploy plan -i {inv} --detailed-exitcode --output markdown`");
    let _ = writeln!(t, "   on every pull request (a self-hosted runner inside the hosts' network; docs/ci.md of pgdeploy).");
    let _ = writeln!(t);
    let _ = writeln!(t, "`.gitignore` keeps the cluster CA's key (`pki/ca.key`, made by the first plan or apply) out of the repository.");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skeleton_has_every_group_and_placeholders() {
        let text = inventory(&[]);
        for group in [
            Group::Etcd,
            Group::Postgres,
            Group::Balancers,
            Group::Backup,
        ] {
            assert!(text.contains(&format!("    {}:", group.name())), "{text}");
        }
        assert!(text.contains("'<address of node1>'"), "{text}");
        assert!(text.contains(&format!("# {}:", VIP_ADDRESS.name)), "{text}");
    }

    #[test]
    fn the_workflow_plans_the_projects_inventory() {
        let text = WORKFLOW_TEXT.replace("INVENTORY", INVENTORY);
        assert!(!text.contains("INVENTORY"), "{text}");
        assert!(
            text.contains("pgdeploy plan -i inventory.yaml --detailed-exitcode --output markdown"),
            "{text}"
        );
        let parsed = pgdeploy_engine::yaml::parse(&text, Path::new(WORKFLOW))
            .expect("the workflow is YAML")
            .to_json();
        assert!(parsed["jobs"]["plan"]["steps"].is_array(), "{parsed}");
    }

    #[test]
    fn hosts_fill_addresses_networks_and_the_backup_host() {
        let hosts: Vec<String> = ["10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.1.14"]
            .map(String::from)
            .to_vec();
        let text = inventory(&hosts);
        assert!(text.contains("node4: {ansible_host: 10.0.1.14}"), "{text}");
        assert!(text.contains("[10.0.0.0/24, 10.0.1.0/24]"), "{text}");
        assert!(
            text.contains(&format!("{}: 10.0.0.250", VIP_ADDRESS.name)),
            "{text}"
        );
        assert!(
            text.contains("hosts: {node4: {}}"),
            "the last host holds the backups: {text}"
        );
    }
}
