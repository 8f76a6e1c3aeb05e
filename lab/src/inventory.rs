//! The Ansible-style YAML inventory `lab up` writes.

use std::net::Ipv4Addr;
use std::path::Path;

/// One host of the inventory: name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvHost {
    /// The host's name.
    pub name: String,
    /// Its address.
    pub address: Ipv4Addr,
}

/// The groups of the lab's topology, named by the product that deploys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    /// Groups that hosts 1-3 are all in (the DCS, the database members, the
    /// balancers).
    pub core: Vec<String>,
    /// The group host 4 is in alone (the backup repository).
    pub fourth: String,
}

/// Renders the inventory. Hosts 1-3 are in every `core` group; host 4 is
/// in `fourth`; more hosts are in no group. With fewer than 4 hosts, all of
/// them are in the core groups and `fourth` is empty.
pub fn render(
    hosts: &[InvHost],
    key: &Path,
    known_hosts: &Path,
    vip: Ipv4Addr,
    subnet: &str,
    groups: &Groups,
) -> String {
    let mut s = String::new();
    s.push_str("# Written by `pgdeploy lab up`; rewritten on every up.\n");
    s.push_str("all:\n  vars:\n");
    s.push_str("    ansible_user: admin\n    ansible_become: true\n");
    s.push_str(&format!(
        "    ansible_ssh_private_key_file: {}\n",
        key.display()
    ));
    s.push_str(&format!(
        "    pgdeploy_known_hosts: {}\n",
        known_hosts.display()
    ));
    s.push_str("    cluster_name: lab\n");
    s.push_str(&format!("    vip_address: {vip}\n"));
    s.push_str(&format!("    lab_subnet: {subnet}\n"));
    s.push_str(&format!(
        "    admin_networks: [{subnet}]\n    client_networks: [{subnet}]\n"
    ));
    s.push_str("  hosts:\n");
    for h in hosts {
        s.push_str(&format!(
            "    {}: {{ansible_host: {}}}\n",
            h.name, h.address
        ));
    }
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let core: Vec<&str> = names.iter().take(3).copied().collect();
    let backup: Vec<&str> = names.get(3).into_iter().copied().collect();
    let group = |g: &[&str]| -> String {
        let inner: Vec<String> = g.iter().map(|n| format!("{n}: {{}}")).collect();
        format!("{{hosts: {{{}}}}}", inner.join(", "))
    };
    s.push_str("  children:\n");
    for g in &groups.core {
        s.push_str(&format!("    {g}: {}\n", group(&core)));
    }
    s.push_str(&format!("    {}: {}\n", groups.fourth, group(&backup)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Groups {
        Groups {
            core: ["etcd", "postgres", "balancers"].map(String::from).to_vec(),
            fourth: "backup".into(),
        }
    }

    fn hosts(n: u8) -> Vec<InvHost> {
        (1..=n)
            .map(|k| InvHost {
                name: format!("node{k}"),
                address: Ipv4Addr::new(10, 213, 47, 10 + k),
            })
            .collect()
    }

    #[test]
    fn four_hosts() {
        let s = render(
            &hosts(4),
            Path::new("/k"),
            Path::new("/kh"),
            Ipv4Addr::new(10, 213, 47, 250),
            "10.213.47.0/24",
            &groups(),
        );
        assert!(s.contains("    node4: {ansible_host: 10.213.47.14}\n"));
        assert!(s.contains("    etcd: {hosts: {node1: {}, node2: {}, node3: {}}}\n"));
        assert!(s.contains("    backup: {hosts: {node4: {}}}\n"));
        assert!(s.contains("    admin_networks: [10.213.47.0/24]\n"));
        assert!(s.contains("    pgdeploy_known_hosts: /kh\n"));
    }

    #[test]
    fn two_and_six_hosts() {
        let s = render(
            &hosts(2),
            Path::new("/k"),
            Path::new("/kh"),
            Ipv4Addr::new(10, 213, 47, 250),
            "x",
            &groups(),
        );
        assert!(s.contains("    postgres: {hosts: {node1: {}, node2: {}}}\n"));
        assert!(s.contains("    backup: {hosts: {}}\n"));
        let s = render(
            &hosts(6),
            Path::new("/k"),
            Path::new("/kh"),
            Ipv4Addr::new(10, 213, 47, 250),
            "x",
            &groups(),
        );
        assert!(s.contains("    node6: {ansible_host: 10.213.47.16}\n"));
        assert!(!s.contains("node5: {}"));
    }
}
