//! The lab's network: a bridge with a private /24, NAT out through an
//! nftables table of the lab's own, and per-host veth links.

use crate::util::{run, succeeds};
use anyhow::{bail, Context, Result};
use std::fs;
use std::net::Ipv4Addr;

/// The lab instance: `PGDEPLOY_LAB_INSTANCE` (0-9, default 0). Instance 0
/// is the lab everyone uses; another instance is a second, independent lab
/// (its own bridge, subnet, table, directory and machine names), e.g. for
/// the lab's own test while the main lab is in use.
pub fn instance() -> u8 {
    static I: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *I.get_or_init(|| match std::env::var("PGDEPLOY_LAB_INSTANCE") {
        Err(_) => 0,
        Ok(v) => match v.parse::<u8>() {
            Ok(n) if n <= 9 => n,
            _ => {
                eprintln!("lab: ignoring PGDEPLOY_LAB_INSTANCE={v:?} (must be 0-9); using the main lab");
                0
            }
        },
    })
}

/// The lab's bridge: `pgdlab0` (instance N: `pgdlabN`).
pub fn bridge() -> String {
    format!("pgdlab{}", instance())
}

/// The lab's subnet (network address): 10.213.47.0 (instance N: 10.213.(50+N).0).
pub fn subnet() -> Ipv4Addr {
    match instance() {
        0 => Ipv4Addr::new(10, 213, 47, 0),
        n => Ipv4Addr::new(10, 213, 50 + n, 0),
    }
}

/// The nftables table the lab owns (family `ip`): `pgdeploy_lab` (instance N: `pgdeploy_lab_N`).
pub fn nft_table() -> String {
    match instance() {
        0 => "pgdeploy_lab".into(),
        n => format!("pgdeploy_lab_{n}"),
    }
}

/// The container (machine) name of a host: the host name (instance N:
/// `lN-HOST`, so veths of two instances never clash). The hostname inside
/// is always the host name.
pub fn machine_name(host: &str) -> String {
    match instance() {
        0 => host.to_string(),
        n => format!("l{n}-{host}"),
    }
}

/// The prefix length of the lab's subnet.
pub const PREFIX: u8 = 24;
/// Highest host number: node N is at .(10+N) and .250 is the VIP.
pub const MAX_NODES: usize = 200;

/// The subnet as `a.b.c.d/len`.
pub fn subnet_cidr() -> String {
    format!("{}/{PREFIX}", subnet())
}

/// The address of the bridge (the hosts' gateway): .1.
pub fn gateway() -> Ipv4Addr {
    offset(1)
}

/// The virtual IP reserved for the HA stack: .250.
pub fn vip() -> Ipv4Addr {
    offset(250)
}

/// The address of node `k` (1-based): .(10+k).
pub fn node_addr(k: usize) -> Ipv4Addr {
    offset(10 + k as u32)
}

fn offset(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet()) + n)
}

/// The host-side veth of a container started with `--network-bridge`:
/// `vb-` and the machine name, cut to the kernel's 15 characters.
pub fn veth_name(host: &str) -> String {
    let mut s = format!("vb-{}", machine_name(host));
    s.truncate(15);
    s
}

/// Parses `a.b.c.d[/len]` (a bare address is a /32).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse().ok()?),
        None => (s, 32),
    };
    if l > 32 {
        return None;
    }
    Some((a.parse().ok()?, l))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// Whether two prefixes share any address.
pub fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// From `ip -o -4 route show table all` and `ip -o -4 addr show` output,
/// the routes/addresses overlapping the lab's subnet that are not the lab's
/// own (on its bridge). Default routes do not count.
pub fn conflicts(routes: &str, addrs: &str) -> Vec<String> {
    let lab = (subnet(), PREFIX);
    let bridge = bridge();
    let mut out = Vec::new();
    for line in routes.lines() {
        let mut words = line.split_whitespace().peekable();
        // Route types (unicast, local, broadcast, ...) may come first.
        let first = match words.peek() {
            Some(&w)
                if [
                    "unicast",
                    "local",
                    "broadcast",
                    "multicast",
                    "blackhole",
                    "unreachable",
                    "prohibit",
                    "throw",
                    "anycast",
                ]
                .contains(&w) =>
            {
                words.next();
                words.next()
            }
            _ => words.next(),
        };
        let Some(dst) = first else { continue };
        if dst == "default" {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        let dev = rest
            .iter()
            .position(|w| *w == "dev")
            .and_then(|i| rest.get(i + 1))
            .copied();
        if dev == Some(bridge.as_str()) {
            continue;
        }
        if let Some(p) = parse_cidr(dst) {
            if overlaps(p, lab) {
                out.push(format!("route {}", line.trim()));
            }
        }
    }
    for line in addrs.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(i)) = (w.get(1), w.iter().position(|x| *x == "inet")) else {
            continue;
        };
        if *dev == bridge {
            continue;
        }
        if let Some(p) = w.get(i + 1).and_then(|a| parse_cidr(a)) {
            if overlaps(p, lab) {
                out.push(format!("address {} on {dev}", w[i + 1]));
            }
        }
    }
    out
}

/// Fails clearly if something on this machine already uses the lab's subnet.
pub fn check_subnet_free() -> Result<()> {
    let routes = run("ip", ["-o", "-4", "route", "show", "table", "all"])?;
    let addrs = run("ip", ["-o", "-4", "addr", "show"])?;
    let c = conflicts(&routes, &addrs);
    if !c.is_empty() {
        bail!(
            "the lab's subnet {} overlaps what this machine already uses: {}; remove that route or address first",
            subnet_cidr(),
            c.join("; ")
        );
    }
    Ok(())
}

/// Whether a network link exists.
pub fn link_exists(name: &str) -> bool {
    fs::metadata(format!("/sys/class/net/{name}")).is_ok()
}

/// Whether a link is administratively up.
pub fn link_is_up(name: &str) -> bool {
    fs::read_to_string(format!("/sys/class/net/{name}/flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & 1 != 0)
}

/// Creates the bridge with its address if missing; tells whether it made it.
pub fn ensure_bridge() -> Result<bool> {
    let bridge = bridge();
    let created = if link_exists(&bridge) {
        false
    } else {
        run("ip", ["link", "add", &bridge, "type", "bridge"])
            .context("cannot create the lab bridge")?;
        true
    };
    let addr = format!("{}/{PREFIX}", gateway());
    let shown = run("ip", ["-o", "-4", "addr", "show", "dev", &bridge])?;
    if !shown.contains(&format!("inet {addr} ")) {
        run("ip", ["addr", "add", &addr, "dev", &bridge])
            .context("cannot address the lab bridge")?;
    }
    if !link_is_up(&bridge) {
        run("ip", ["link", "set", &bridge, "up"])?;
    }
    Ok(created)
}

/// Deletes the bridge if present; tells whether it did.
pub fn delete_bridge() -> Result<bool> {
    let bridge = bridge();
    if !link_exists(&bridge) {
        return Ok(false);
    }
    run("ip", ["link", "del", &bridge]).context("cannot delete the lab bridge")?;
    Ok(true)
}

/// Deletes a link if present (a veth left behind). The kernel may remove
/// it meanwhile (its peer's namespace going away): that counts as done.
pub fn delete_link(name: &str) -> Result<bool> {
    if !link_exists(name) {
        return Ok(false);
    }
    match run("ip", ["link", "del", name]) {
        Ok(_) => Ok(true),
        Err(_) if !link_exists(name) => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot delete link {name}")),
    }
}

/// Removes the host-side veths of containers whose init died: waits up to
/// `grace` (one deadline for all of them) for the kernel to drop them with
/// the containers' network namespaces (that teardown is asynchronous), then
/// deletes those still there.
pub fn clear_stale_veths(hosts: &[&str], grace: std::time::Duration) -> Result<()> {
    let veths: Vec<String> = hosts.iter().map(|h| veth_name(h)).collect();
    let deadline = std::time::Instant::now() + grace;
    while veths.iter().any(|v| link_exists(v)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for veth in &veths {
        delete_link(veth)?;
    }
    Ok(())
}

/// The links enslaved to the lab bridge.
pub fn bridge_ports() -> Vec<String> {
    fs::read_dir(format!("/sys/class/net/{}/brif", bridge()))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Sets a host's veth down (isolate) or up (heal).
pub fn set_link(name: &str, up: bool) -> Result<()> {
    run("ip", ["link", "set", name, if up { "up" } else { "down" }])
        .with_context(|| format!("cannot set {name} {}", if up { "up" } else { "down" }))?;
    Ok(())
}

/// The nftables ruleset of the lab: masquerade what leaves the subnet, and
/// accept forwarding to and from the bridge.
pub fn nft_script() -> String {
    let net = subnet_cidr();
    let (table, bridge) = (nft_table(), bridge());
    format!(
        "table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {net} ip daddr != {net} masquerade\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{bridge}\" accept\n\
         \t\toifname \"{bridge}\" ct state established,related accept\n\
         \t}}\n\
         }}\n"
    )
}

/// Whether the lab's nftables table exists.
pub fn nft_table_exists() -> bool {
    succeeds("nft", ["list", "table", "ip", &nft_table()])
}

/// Loads the lab's table (replacing it atomically); tells whether it was missing.
pub fn ensure_nft() -> Result<bool> {
    let existed = nft_table_exists();
    let t = nft_table();
    let script = format!("add table ip {t}\ndelete table ip {t}\n{}", nft_script());
    let dir = tempfile_path("nft");
    fs::write(&dir, script).with_context(|| format!("cannot write {}", dir.display()))?;
    let r = run("nft", [std::ffi::OsStr::new("-f"), dir.as_os_str()])
        .context("cannot load the lab's nftables table");
    let _ = fs::remove_file(&dir);
    r?;
    Ok(!existed)
}

/// Deletes the lab's table if present; tells whether it did.
pub fn delete_nft() -> Result<bool> {
    if !nft_table_exists() {
        return Ok(false);
    }
    run("nft", ["delete", "table", "ip", &nft_table()])
        .context("cannot delete the lab's nftables table")?;
    Ok(true)
}

fn tempfile_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pgdeploy-lab-{tag}-{}", std::process::id()))
}

/// Machine-wide settings the lab needs at least, as (key under /proc/sys,
/// minimum): forwarding for NAT, and inotify instances (every host's
/// systemd takes several, and all hosts share root's limit of 128).
pub const SYSCTL_MINIMUMS: &[(&str, u64)] = &[
    ("net/ipv4/ip_forward", 1),
    ("fs/inotify/max_user_instances", 8192),
];

/// Reads a sysctl (`key` is the path under /proc/sys).
pub fn sysctl(key: &str) -> Result<String> {
    Ok(fs::read_to_string(format!("/proc/sys/{key}"))
        .with_context(|| format!("cannot read sysctl {key}"))?
        .trim()
        .to_string())
}

/// Sets a sysctl (`key` is the path under /proc/sys).
pub fn set_sysctl(key: &str, value: &str) -> Result<()> {
    fs::write(format!("/proc/sys/{key}"), format!("{value}\n"))
        .with_context(|| format!("cannot set sysctl {key}={value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(gateway().to_string(), "10.213.47.1");
        assert_eq!(node_addr(1).to_string(), "10.213.47.11");
        assert_eq!(node_addr(30).to_string(), "10.213.47.40");
        assert_eq!(vip().to_string(), "10.213.47.250");
        assert_eq!(veth_name("node12"), "vb-node12");
        assert_eq!(veth_name("averyveryverylongname").len(), 15);
    }

    #[test]
    fn overlap_math() {
        let lab = (subnet(), PREFIX);
        assert!(overlaps(parse_cidr("10.0.0.0/8").unwrap(), lab));
        assert!(overlaps(parse_cidr("10.213.47.77").unwrap(), lab));
        assert!(!overlaps(parse_cidr("10.213.48.0/24").unwrap(), lab));
        assert!(!overlaps(parse_cidr("192.168.0.0/16").unwrap(), lab));
        assert!(parse_cidr("1.2.3.4/33").is_none());
    }

    #[test]
    fn finds_conflicts() {
        let routes = "default via 192.0.2.1 dev eth0\n\
                      192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n\
                      10.213.47.0/24 dev pgdlab0 proto kernel scope link src 10.213.47.1\n\
                      local 10.213.47.1 dev pgdlab0 table local proto kernel scope host src 10.213.47.1\n";
        let addrs = "3: pgdlab0    inet 10.213.47.1/24 scope global pgdlab0\n";
        assert!(conflicts(routes, addrs).is_empty());
        let routes2 = format!("{routes}10.213.0.0/16 via 192.0.2.9 dev eth0\n");
        let addrs2 = "2: eth1    inet 10.213.47.5/24 scope global eth1\n";
        let c = conflicts(&routes2, addrs2);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].contains("10.213.0.0/16"));
        assert!(c[1].contains("eth1"));
    }

    #[test]
    fn nft_script_names_table() {
        let s = nft_script();
        assert!(s.starts_with("table ip pgdeploy_lab {"));
        assert!(s.contains("ip saddr 10.213.47.0/24 ip daddr != 10.213.47.0/24 masquerade"));
    }
}
