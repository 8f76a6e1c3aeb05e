//! Facts: what a host is (OS, addresses, CPUs, memory), read in one round
//! trip before its tasks are templated. Templates see them as `facts.*`.
//!
//! Local facts are what roles left on the host for later runs: each
//! `/etc/pgdeploy/facts.d/NAME.fact` holds `KEY=VALUE` lines, read as
//! `facts.local.NAME.KEY` (a string). `facts.local` is always there (empty
//! on a new host), so a default can ask `facts.local.NAME is defined`.

use serde_json::{json, Value as Json};

/// The read-only script that prints a host's facts as `key=value` lines.
pub const SCRIPT: &str = include_str!("sh/facts.sh");

/// Parses the script's output into the `facts` object.
pub fn parse(output: &str) -> Json {
    let mut facts = serde_json::Map::new();
    let mut interfaces = serde_json::Map::new();
    let mut addresses = Vec::new();
    let mut local = serde_json::Map::new();
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "address" => {
                let mut parts = value.split_whitespace();
                if let (Some(dev), Some(addr), Some(prefix)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    addresses.push(Json::from(addr));
                    // The first address is the interface's own; later ones
                    // are secondary (a floating VIP, say).
                    interfaces.entry(dev.to_string()).or_insert_with(
                        || json!({"address": addr, "prefix": prefix.parse::<u8>().unwrap_or(0)}),
                    );
                }
            }
            "local" => {
                let mut parts = value.splitn(3, ' ');
                if let (Some(file), Some(name), Some(value)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    if let Json::Object(keys) =
                        local.entry(file.to_string()).or_insert_with(|| json!({}))
                    {
                        keys.insert(name.to_string(), Json::from(value));
                    }
                }
            }
            "cpus" | "memory_kb" => {
                facts.insert(
                    key.to_string(),
                    Json::from(value.trim().parse::<u64>().unwrap_or(0)),
                );
            }
            _ => {
                facts.insert(key.to_string(), Json::from(value.trim()));
            }
        }
    }
    let memory_mb = facts.get("memory_kb").and_then(Json::as_u64).unwrap_or(0) / 1024;
    facts.insert("memory_mb".into(), Json::from(memory_mb));
    let default_address = facts
        .get("default_interface")
        .and_then(Json::as_str)
        .and_then(|dev| interfaces.get(dev))
        .and_then(|i| i.get("address").cloned())
        .or_else(|| addresses.first().cloned())
        .unwrap_or(Json::Null);
    facts.insert("default_ipv4".into(), default_address);
    facts.insert("addresses".into(), Json::Array(addresses));
    facts.insert("interfaces".into(), Json::Object(interfaces));
    facts.insert("local".into(), Json::Object(local));
    Json::Object(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_script_output() {
        let out =
            "os_id=debian\nos_version=12\ncpus=2\nmemory_kb=2048000\ndefault_interface=host0\n\
                   address=host0 10.1.0.11 24\naddress=host0 10.1.0.250 32\naddress=eth1 10.2.0.5 16\nhostname=node1\n";
        let facts = parse(out);
        assert_eq!(facts["os_id"], "debian");
        assert_eq!(facts["cpus"], 2);
        assert_eq!(facts["memory_mb"], 2000);
        assert_eq!(facts["default_ipv4"], "10.1.0.11");
        assert_eq!(facts["interfaces"]["eth1"]["prefix"], 16);
        assert_eq!(facts["local"], json!({}), "always there");
    }

    #[test]
    fn local_facts_are_grouped_by_file() {
        let facts =
            parse("local=postgres major 15\nlocal=postgres data /var/lib/x y\nlocal=etcd v 3.5\n");
        assert_eq!(facts["local"]["postgres"]["major"], "15");
        assert_eq!(facts["local"]["postgres"]["data"], "/var/lib/x y");
        assert_eq!(facts["local"]["etcd"]["v"], "3.5");
    }

    #[test]
    fn the_script_runs_locally() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .output()
            .expect("sh");
        let facts = parse(&String::from_utf8_lossy(&out.stdout));
        assert!(facts["cpus"].as_u64().unwrap_or(0) >= 1, "{facts}");
        assert!(facts["memory_mb"].as_u64().unwrap_or(0) > 0, "{facts}");
    }
}
