//! pgdeploy's lab: real Debian 12 (bookworm) or 13 (trixie) hosts, each a
//! systemd-nspawn container with its own systemd and sshd, on a private
//! bridge with NAT out, for end-to-end tests of pgdeploy (see docs/lab.md).
//!
//! The lab is a singleton on the machine: one bridge (`pgdlab0`), one
//! subnet (10.213.47.0/24), state under /var/lib/pgdeploy/lab, a cached
//! root file system per release under /var/cache/pgdeploy/lab. Every
//! command takes a lock, so two lab commands never interleave.

pub mod host;
pub mod inventory;
pub mod net;
pub mod paths;
pub mod prereq;
pub mod procs;
pub mod release;
pub mod rootfs;
pub mod state;
pub mod undo;
pub mod util;

use anyhow::{bail, Context, Result};
use host::HostSpec;
use paths::Layout;
use release::{Release, ReleaseItem, Releases};
use state::{HostRecord, LabState};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use undo::{fail_point, Undo};

/// `pgdeploy lab ...`
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum LabCommand {
    /// Bring the lab up (or repair it): N hosts, SSH-reachable, and an inventory.
    Up {
        /// How many hosts (node1..nodeN).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Where to write the inventory.
        #[arg(long, default_value = "inventories/lab.yaml")]
        inventory: PathBuf,
        /// The Debian release of the hosts: bookworm (default) or trixie, or of one host:
        /// node4=trixie. Repeat it or separate with commas: trixie,node1=bookworm. Hosts that
        /// exist keep theirs (asking another one for them is refused).
        #[arg(long, value_name = "[HOST=]RELEASE", value_delimiter = ',')]
        release: Vec<ReleaseItem>,
    },
    /// Remove every host, mount, the bridge, the nftables table and the keys (the cache stays).
    Down,
    /// List hosts, addresses, running or not, and whether SSH answers.
    Status,
    /// Hard-crash a host (SIGKILL to its init); its disk stays.
    Kill {
        /// The host, e.g. node2.
        host: String,
    },
    /// Replace a host's disk with an empty one, as when a machine is
    /// replaced: it is stopped at once and its disk removed; `pgdeploy lab
    /// up` then boots it fresh, with a new SSH host key.
    Wipe {
        /// The host, e.g. node5.
        host: String,
    },
    /// Boot a stopped host again and wait for SSH.
    Start {
        /// The host, e.g. node2.
        host: String,
    },
    /// Cut a host's network link without stopping it.
    Isolate {
        /// The host, e.g. node2.
        host: String,
    },
    /// Restore a host's network link.
    Heal {
        /// The host, e.g. node2.
        host: String,
    },
}

/// Options of [`up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// How many hosts.
    pub nodes: usize,
    /// Where to write the inventory.
    pub inventory: PathBuf,
    /// The inventory groups the hosts go into.
    pub groups: inventory::Groups,
    /// The releases asked for the hosts (new hosts without one: bookworm).
    pub releases: Releases,
}

/// A host of a running lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Name and hostname.
    pub name: String,
    /// Address on the lab's bridge.
    pub address: Ipv4Addr,
    /// The release it runs (its os-release codename).
    pub release: String,
}

/// What [`up`] did.
#[derive(Debug, Clone)]
pub struct UpReport {
    /// The lab's hosts, all answering SSH.
    pub hosts: Vec<HostInfo>,
    /// What was made or repaired; empty when the lab was already up.
    pub actions: Vec<String>,
    /// The inventory file.
    pub inventory: PathBuf,
    /// The lab's SSH private key.
    pub key: PathBuf,
    /// The lab's known_hosts file.
    pub known_hosts: PathBuf,
    /// How long it took.
    pub elapsed: Duration,
}

impl UpReport {
    /// Whether the lab was already up as asked.
    pub fn nothing_to_do(&self) -> bool {
        self.actions.is_empty()
    }
}

/// What [`down`] removed.
#[derive(Debug, Clone, Default)]
pub struct DownReport {
    /// One line per thing removed.
    pub removed: Vec<String>,
}

/// The state of one host, from [`status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// Name and hostname.
    pub name: String,
    /// Address on the bridge.
    pub address: Ipv4Addr,
    /// The release it runs: VERSION_CODENAME of its os-release (an upgrade
    /// inside changes it), else the one it was made with; `None`: unknown.
    pub release: Option<String>,
    /// Whether its container is running.
    pub running: bool,
    /// Its init's pid, as seen from the machine.
    pub init_pid: Option<u32>,
    /// Whether `ssh admin@ADDRESS hostname` answers its name.
    pub ssh: bool,
    /// Whether its link is cut by `lab isolate`.
    pub isolated: bool,
    /// Memory of its processes (sum of PSS), KiB.
    pub memory_kib: Option<u64>,
}

/// Sort key so node10 comes after node9.
pub fn host_sort_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (p, n) = name.split_at(name.len() - digits);
    (p.to_string(), n.parse().unwrap_or(0))
}

/// The address of a host named `node<k>`.
fn address_of(name: &str) -> Option<Ipv4Addr> {
    let k: usize = name.strip_prefix("node")?.parse().ok()?;
    (1..=net::MAX_NODES).contains(&k).then(|| net::node_addr(k))
}

/// The machine-wide lock every command of this lab instance holds.
fn lab_lock() -> Result<util::FileLock> {
    util::FileLock::acquire(
        &format!("/run/pgdeploy-lab{}.lock", net::instance()),
        "another lab command",
    )
}

/// Runs a lab subcommand, printing what it did; `groups` names the
/// inventory groups `up` puts the hosts in (the product's contract).
pub fn run(cmd: &LabCommand, groups: &inventory::Groups) -> Result<()> {
    match cmd {
        LabCommand::Up {
            nodes,
            inventory,
            release,
        } => {
            let r = up(&LabOptions {
                nodes: *nodes,
                inventory: inventory.clone(),
                groups: groups.clone(),
                releases: Releases::from_items(release)?,
            })?;
            print_up(&r);
        }
        LabCommand::Down => print_down(&down()?),
        LabCommand::Status => print_status(&status()?),
        LabCommand::Kill { host } => {
            kill(host)?;
            println!("{host}: killed (hard crash); its disk is kept; `pgdeploy lab start {host}` boots it again");
        }
        LabCommand::Wipe { host } => {
            wipe(host)?;
            println!("{host}: wiped (its disk is gone); `pgdeploy lab up` boots it fresh");
        }
        LabCommand::Start { host } => {
            if start(host)? {
                println!("{host}: started, SSH answers");
            } else {
                println!("{host}: already running, nothing to do");
            }
        }
        LabCommand::Isolate { host } => {
            isolate(host)?;
            println!("{host}: isolated (network link cut)");
        }
        LabCommand::Heal { host } => {
            heal(host)?;
            println!("{host}: healed (network link restored)");
        }
    }
    Ok(())
}

/// Prints what `lab up` did, the hosts, and how to reach them.
fn print_up(r: &UpReport) {
    if r.nothing_to_do() {
        println!("lab is up: {} hosts, nothing to do", r.hosts.len());
    } else {
        println!(
            "lab is up: {} hosts in {:.1} s",
            r.hosts.len(),
            r.elapsed.as_secs_f64()
        );
        for a in &r.actions {
            println!("  - {a}");
        }
    }
    for h in &r.hosts {
        println!("  {:<8} {:<15} {}", h.name, h.address, h.release);
    }
    println!("inventory: {}", r.inventory.display());
    if let Some(h) = r.hosts.first() {
        println!(
            "ssh:       ssh -i {} -o UserKnownHostsFile={} admin@{}",
            r.key.display(),
            r.known_hosts.display(),
            h.address
        );
    }
}

/// Prints what `lab down` removed.
fn print_down(r: &DownReport) {
    if r.removed.is_empty() {
        println!("lab is down: nothing to do");
    } else {
        println!("lab is down:");
        for x in &r.removed {
            println!("  - removed {x}");
        }
    }
}

/// Prints the `lab status` table.
fn print_status(st: &[HostStatus]) {
    if st.is_empty() {
        println!("lab is down (no hosts)");
    }
    println!(
        "{:<8} {:<15} {:<9} {:<8} {:<4} {:<9} MEMORY",
        "HOST", "ADDRESS", "RELEASE", "STATE", "SSH", "NETWORK"
    );
    for h in st {
        println!(
            "{:<8} {:<15} {:<9} {:<8} {:<4} {:<9} {}",
            h.name,
            h.address,
            h.release.as_deref().unwrap_or("-"),
            if h.running { "running" } else { "stopped" },
            if h.ssh { "yes" } else { "no" },
            if !h.running {
                "-"
            } else if h.isolated {
                "isolated"
            } else {
                "ok"
            },
            h.memory_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into())
        );
    }
}

/// Brings the lab up as `opts` asks, or repairs it; does nothing when it is
/// already up. A failure part way undoes what this call made.
pub fn up(opts: &LabOptions) -> Result<UpReport> {
    if !(1..=net::MAX_NODES).contains(&opts.nodes) {
        bail!("--nodes must be between 1 and {}", net::MAX_NODES);
    }
    opts.releases.check_hosts(opts.nodes)?;
    prereq::check()?;
    let _lock = lab_lock()?;
    let layout = Layout::system();
    let mut undo = Undo::new();
    match up_inner(&layout, opts, &mut undo) {
        Ok(r) => {
            undo.commit();
            Ok(r)
        }
        Err(e) => {
            if std::env::var("PGDEPLOY_LAB_NO_UNDO").is_ok_and(|v| v == "1") {
                eprintln!("lab: up failed; PGDEPLOY_LAB_NO_UNDO=1 leaves what it made for debugging (`lab down` clears it)");
            } else if !undo.is_empty() {
                eprintln!("lab: up failed: {e:#}");
                eprintln!("lab: undoing what this run made ...");
                for f in undo.rollback() {
                    eprintln!("lab: undo failed: {f}");
                }
            }
            Err(e)
        }
    }
}

/// The containers running now, by host name.
type Running = BTreeMap<String, procs::Container>;

/// The steps of `up` in order; each step records how to undo what it made
/// in `undo` and what it did in the report's actions.
fn up_inner(layout: &Layout, opts: &LabOptions, undo: &mut Undo) -> Result<UpReport> {
    let t0 = Instant::now();
    let mut actions = Vec::new();
    let prior = LabState::load(&layout.state_file())?.unwrap_or_default();
    let specs = plan_hosts(layout, opts, &prior)?;
    net::check_subnet_free()?;
    let mirror = rootfs::detect_mirror()?;
    let dns = rootfs::detect_nameserver()?;

    let running = procs::containers(&layout.lab_dir);
    ensure_rootfs(layout, &specs, &prior, &mirror, &running, &mut actions)?;
    fail_point("rootfs")?;

    ensure_lab_dir(layout, undo)?;
    let state_path = layout.state_file();
    let mut state = load_state(&state_path, undo)?;
    let pubkey = ensure_ssh_key(layout, undo, &mut actions)?;
    fail_point("key")?;

    // Network: bridge, forwarding, NAT.
    ensure_bridge(undo, &mut actions)?;
    fail_point("bridge")?;
    ensure_sysctls(&mut state, undo, &mut actions)?;
    ensure_nat(undo, &mut actions)?;
    state.save(&state_path)?;
    fail_point("nat")?;

    let wanted: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    remove_unwanted_hosts(layout, &wanted, &running, &state, &mut actions)?;
    prepare_hosts(layout, &specs, &running, &pubkey, &dns, undo, &mut actions)?;
    fail_point("configure")?;
    write_known_hosts(layout, &specs, undo, &mut actions)?;

    let stopped: Vec<&str> = specs
        .iter()
        .filter(|s| !running.contains_key(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    clear_remains(layout, &stopped)?;
    let (inits, children) = boot_stopped(layout, &specs, &running, &mut state, undo, &mut actions)?;
    fail_point("boot")?;
    wait_for_ssh(layout, &specs, &inits, children)?;

    write_inventory(layout, opts, &specs, &mut actions)?;
    record_hosts(&mut state, opts, &specs, &wanted, &inits);
    state.save(&state_path)?;
    Ok(UpReport {
        hosts: specs
            .iter()
            .map(|s| HostInfo {
                name: s.name.clone(),
                address: s.address,
                release: runs(layout, &s.name).unwrap_or_else(|| s.release.to_string()),
            })
            .collect(),
        actions,
        inventory: opts.inventory.clone(),
        key: layout.key(),
        known_hosts: layout.known_hosts(),
        elapsed: t0.elapsed(),
    })
}

/// The release a host's root says it runs (VERSION_CODENAME of its
/// os-release): from the mounted overlay, else from its disk's upper layer
/// (where an upgrade inside writes it). `None`: neither tells.
fn runs(layout: &Layout, name: &str) -> Option<String> {
    release::codename_of_root(&layout.merged(name))
        .or_else(|| release::codename_of_root(&layout.upper(name)))
}

/// The hosts `up` wants, each with the release its disk overlays: a host
/// that exists keeps the one it was made with, a new one gets the one
/// asked (else bookworm). Refuses, before anything changes, when a host
/// that exists runs another release than asked: `up` never recreates a disk.
fn plan_hosts(layout: &Layout, opts: &LabOptions, state: &LabState) -> Result<Vec<HostSpec>> {
    let mut specs = Vec::new();
    let mut mismatches = Vec::new();
    for k in 1..=opts.nodes {
        let name = format!("node{k}");
        let exists = layout.upper(&name).is_dir();
        let release = match exists {
            true => state.release(&name),
            false => opts.releases.for_new_host(k),
        };
        if let Some(asked) = opts.releases.asked(k).filter(|_| exists) {
            let now = runs(layout, &name).unwrap_or_else(|| release.to_string());
            if now != asked.codename() {
                mismatches.push(release::Mismatch {
                    host: name,
                    runs: now,
                    asked,
                });
            }
        }
        specs.push(HostSpec::nth(k, release));
    }
    if !mismatches.is_empty() {
        return Err(release::ReleaseMismatch(mismatches).into());
    }
    Ok(specs)
}

/// Builds the cached root file system of every release the hosts need
/// when it is missing or stale.
fn ensure_rootfs(
    layout: &Layout,
    specs: &[HostSpec],
    state: &LabState,
    mirror: &rootfs::Mirror,
    running: &Running,
    actions: &mut Vec<String>,
) -> Result<()> {
    let releases: BTreeSet<Release> = specs.iter().map(|s| s.release).collect();
    for r in releases {
        let dir = layout.rootfs(r);
        // Overlaid by hosts of any lab instance, or by running hosts of this one.
        let in_use = procs::overlaid(&dir)? || running.keys().any(|n| state.release(n) == r);
        if rootfs::ensure(&dir, r, mirror, in_use)? {
            actions.push(format!("built the {r} root file system cache"));
        }
    }
    Ok(())
}

/// Makes the lab directory when it is missing.
fn ensure_lab_dir(layout: &Layout, undo: &mut Undo) -> Result<()> {
    if !layout.lab_dir.exists() {
        fs::create_dir_all(&layout.lab_dir)
            .with_context(|| format!("cannot create {}", layout.lab_dir.display()))?;
        let d = layout.lab_dir.clone();
        undo.push(format!("remove {}", d.display()), move || {
            let _ = fs::remove_dir(&d);
            Ok(())
        });
    }
    Ok(())
}

/// The lab's state file, or a new state when there is none, with this
/// instance's bridge, subnet and nftables table.
fn load_state(state_path: &std::path::Path, undo: &mut Undo) -> Result<LabState> {
    let mut state = match LabState::load(state_path)? {
        Some(s) => s,
        None => {
            let p = state_path.to_path_buf();
            undo.push("remove the state file", move || {
                let _ = fs::remove_file(&p);
                Ok(())
            });
            LabState::default()
        }
    };
    state.bridge = net::bridge();
    state.subnet = net::subnet_cidr();
    state.nft_table = net::nft_table();
    Ok(state)
}

/// Makes the lab's SSH key when either half is missing; returns the
/// public key.
fn ensure_ssh_key(layout: &Layout, undo: &mut Undo, actions: &mut Vec<String>) -> Result<String> {
    if !layout.key().exists() || !layout.pubkey().exists() {
        let (k, p) = (layout.key(), layout.pubkey());
        let _ = fs::remove_file(&k);
        let _ = fs::remove_file(&p);
        util::run(
            "ssh-keygen",
            [
                std::ffi::OsStr::new("-q"),
                "-t".as_ref(),
                "ed25519".as_ref(),
                "-N".as_ref(),
                "".as_ref(),
                "-C".as_ref(),
                "pgdeploy-lab".as_ref(),
                "-f".as_ref(),
                k.as_os_str(),
            ],
        )
        .context("cannot make the lab's SSH key")?;
        undo.push("remove the lab's SSH key", move || {
            let _ = fs::remove_file(&k);
            let _ = fs::remove_file(&p);
            Ok(())
        });
        actions.push(format!("made the SSH key {}", layout.key().display()));
    }
    fs::read_to_string(layout.pubkey()).context("cannot read the lab's public key")
}

/// Makes the lab's bridge when it is missing.
fn ensure_bridge(undo: &mut Undo, actions: &mut Vec<String>) -> Result<()> {
    if net::ensure_bridge()? {
        undo.push(format!("delete bridge {}", net::bridge()), || {
            net::delete_bridge().map(drop)
        });
        actions.push(format!(
            "made bridge {} ({}/{})",
            net::bridge(),
            net::gateway(),
            net::PREFIX
        ));
    }
    Ok(())
}

/// Raises the sysctls the lab needs (forwarding, ...) to their minimums,
/// keeping their values before in the state for `down`.
fn ensure_sysctls(state: &mut LabState, undo: &mut Undo, actions: &mut Vec<String>) -> Result<()> {
    for (key, min) in net::SYSCTL_MINIMUMS {
        let cur = net::sysctl(key)?;
        if cur.parse::<u64>().is_ok_and(|v| v >= *min) {
            continue;
        }
        net::set_sysctl(key, &min.to_string())?;
        let (k, before) = (key.to_string(), cur.clone());
        undo.push(format!("restore sysctl {key}"), move || {
            net::set_sysctl(&k, &before)
        });
        state.sysctl_before.entry(key.to_string()).or_insert(cur);
        actions.push(format!("set sysctl {} = {min}", key.replace('/', ".")));
    }
    Ok(())
}

/// Makes the nftables table (NAT out) when it is missing.
fn ensure_nat(undo: &mut Undo, actions: &mut Vec<String>) -> Result<()> {
    if !net::nft_table_exists() {
        net::ensure_nft()?;
        undo.push(
            format!("delete nftables table ip {}", net::nft_table()),
            || net::delete_nft().map(drop),
        );
        actions.push(format!(
            "made nftables table ip {} (NAT out)",
            net::nft_table()
        ));
    }
    Ok(())
}

/// Hosts beyond the asked number go.
fn remove_unwanted_hosts(
    layout: &Layout,
    wanted: &BTreeSet<&str>,
    running: &Running,
    state: &LabState,
    actions: &mut Vec<String>,
) -> Result<()> {
    let mut existing: BTreeSet<String> = layout.host_dirs().into_iter().collect();
    existing.extend(running.keys().cloned());
    existing.extend(state.hosts.iter().map(|h| h.name.clone()));
    for name in existing.iter().filter(|n| !wanted.contains(n.as_str())) {
        remove_host(layout, name, running.get(name))?;
        actions.push(format!("removed {name}"));
    }
    Ok(())
}

/// Each host's disk (mounted) and settings.
fn prepare_hosts(
    layout: &Layout,
    specs: &[HostSpec],
    running: &Running,
    pubkey: &str,
    dns: &str,
    undo: &mut Undo,
    actions: &mut Vec<String>,
) -> Result<()> {
    for spec in specs {
        let name = &spec.name;
        if !layout.host_dir(name).exists() {
            fs::create_dir_all(layout.host_dir(name))?;
            let d = layout.host_dir(name);
            undo.push(format!("remove {}", d.display()), move || {
                util::remove_tree(&d)
            });
        }
        if host::ensure_mounted(layout, name, spec.release)? {
            let (l, n) = (layout.clone(), name.clone());
            undo.push(format!("unmount {name}"), move || {
                host::unmount(&l, &n).map(drop)
            });
            if running.contains_key(name) {
                bail!("{name} runs, but its overlay was not mounted: run `pgdeploy lab down` and up again");
            }
        }
        if host::configure(layout, spec, specs, pubkey, dns)? && running.contains_key(name) {
            actions.push(format!("updated the settings of {name}"));
        }
    }
    Ok(())
}

/// Writes the lab's known_hosts file: every host's key by address and name.
fn write_known_hosts(
    layout: &Layout,
    specs: &[HostSpec],
    undo: &mut Undo,
    actions: &mut Vec<String>,
) -> Result<()> {
    let mut kh = String::new();
    for spec in specs {
        let k = host::host_pubkey(layout, &spec.name)?;
        kh.push_str(&format!("{} {k}\n{} {k}\n", spec.address, spec.name));
    }
    if util::write_if_changed(&layout.known_hosts(), &kh, 0o644)? {
        actions.push(format!("wrote {}", layout.known_hosts().display()));
        let p = layout.known_hosts();
        undo.push("remove known_hosts", move || {
            let _ = fs::remove_file(&p);
            Ok(())
        });
    }
    Ok(())
}

/// Boots what is not running, all at once; returns every host's init pid
/// and the nspawn processes started.
fn boot_stopped(
    layout: &Layout,
    specs: &[HostSpec],
    running: &Running,
    state: &mut LabState,
    undo: &mut Undo,
    actions: &mut Vec<String>,
) -> Result<(BTreeMap<String, u32>, Vec<std::process::Child>)> {
    let mut inits: BTreeMap<String, u32> = running
        .iter()
        .map(|(n, c)| (n.clone(), c.init_pid))
        .collect();
    let mut children = Vec::new();
    let mut booted = Vec::new();
    for spec in specs.iter().filter(|s| !running.contains_key(&s.name)) {
        let started = host::start(layout, &spec.name)?;
        let c = procs::Container {
            host: spec.name.clone(),
            init_pid: started.init_pid,
            nspawn_pid: Some(started.nspawn.id()),
        };
        undo.push(format!("stop {}", spec.name), move || host::stop(&c, None));
        inits.insert(spec.name.clone(), started.init_pid);
        if let Some(r) = state.host_mut(&spec.name) {
            r.nspawn_pid = Some(started.nspawn.id());
            r.init_pid = Some(started.init_pid);
            r.release = spec.release;
        } else {
            state.hosts.push(HostRecord {
                name: spec.name.clone(),
                address: spec.address.to_string(),
                nspawn_pid: Some(started.nspawn.id()),
                init_pid: Some(started.init_pid),
                release: spec.release,
            });
        }
        booted.push(spec.name.clone());
        children.push(started.nspawn);
    }
    if !booted.is_empty() {
        eprintln!("lab: booting {} ...", booted.join(", "));
        actions.push(format!("booted {}", booted.join(", ")));
    }
    Ok((inits, children))
}

/// Waits until every host answers SSH (all at once), then reaps the
/// nspawn processes that already exited (none should have).
fn wait_for_ssh(
    layout: &Layout,
    specs: &[HostSpec],
    inits: &BTreeMap<String, u32>,
    children: Vec<std::process::Child>,
) -> Result<()> {
    let timeout = Duration::from_secs(90 + 4 * specs.len() as u64);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| {
                let init = inits.get(&spec.name).copied();
                s.spawn(move || host::wait_ssh(layout, spec, init, timeout))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(_) => Some("an SSH wait thread panicked".into()),
            })
            .collect()
    });
    for mut c in children {
        let _ = c.try_wait();
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(())
}

/// Writes the inventory of the lab's hosts.
fn write_inventory(
    layout: &Layout,
    opts: &LabOptions,
    specs: &[HostSpec],
    actions: &mut Vec<String>,
) -> Result<()> {
    let inv_hosts: Vec<inventory::InvHost> = specs
        .iter()
        .map(|s| inventory::InvHost {
            name: s.name.clone(),
            address: s.address,
        })
        .collect();
    let text = inventory::render(
        &inv_hosts,
        &layout.key(),
        &layout.known_hosts(),
        net::vip(),
        &net::subnet_cidr(),
        &opts.groups,
    );
    if util::write_if_changed(&opts.inventory, &text, 0o644)? {
        actions.push(format!("wrote the inventory {}", opts.inventory.display()));
    }
    Ok(())
}

/// Records in the state the hosts as they are now (the wanted ones, sorted).
fn record_hosts(
    state: &mut LabState,
    opts: &LabOptions,
    specs: &[HostSpec],
    wanted: &BTreeSet<&str>,
    inits: &BTreeMap<String, u32>,
) {
    state.nodes = opts.nodes;
    state.inventory = Some(opts.inventory.clone());
    state.hosts.retain(|h| wanted.contains(h.name.as_str()));
    for spec in specs {
        match state.host_mut(&spec.name) {
            Some(r) => r.release = spec.release,
            None => state.hosts.push(HostRecord {
                name: spec.name.clone(),
                address: spec.address.to_string(),
                nspawn_pid: None,
                init_pid: inits.get(&spec.name).copied(),
                release: spec.release,
            }),
        }
    }
    state.hosts.sort_by_key(|h| host_sort_key(&h.name));
}

/// Clears what stopped hosts may leave for a moment after their init died
/// (an nspawn process still exiting and holding the directory's lock, a
/// veth the kernel has not dropped yet), so they can boot again.
fn clear_remains(layout: &Layout, stopped: &[&str]) -> Result<()> {
    for (pid, dir) in procs::nspawn_processes(&layout.lab_dir) {
        if stopped.iter().any(|n| dir.starts_with(layout.host_dir(n))) {
            procs::signal(pid, libc::SIGKILL)?;
            procs::wait_gone(pid, Duration::from_secs(5));
        }
    }
    net::clear_stale_veths(stopped, Duration::from_secs(3))
}

/// Stops a host (cleanly), unmounts and removes its disk.
fn remove_host(layout: &Layout, name: &str, running: Option<&procs::Container>) -> Result<()> {
    if let Some(c) = running {
        host::stop(c, Some(Duration::from_secs(15)))?;
    }
    host::unmount(layout, name)?;
    util::remove_tree(&layout.host_dir(name))
}

/// Removes everything the lab made (hosts, mounts, bridge, nftables table,
/// keys, state), found from /proc and the lab directory as well as the
/// state file, so a half-alive lab is cleared too. The cache stays.
pub fn down() -> Result<DownReport> {
    prereq::check()?;
    let _lock = lab_lock()?;
    let layout = Layout::system();
    let mut removed = Vec::new();
    let state = LabState::load(&layout.state_file()).unwrap_or_else(|e| {
        eprintln!("lab: ignoring the state file: {e:#}");
        None
    });

    let errors = stop_all_hosts(&layout, &mut removed)?;
    let mut names: BTreeSet<String> = layout.host_dirs().into_iter().collect();
    if let Some(s) = &state {
        names.extend(s.hosts.iter().map(|h| h.name.clone()));
    }
    remove_host_links(&names, &mut removed)?;
    remove_disks(&layout, &names, &mut removed)?;
    // Network.
    if net::delete_nft()? {
        removed.push(format!("nftables table ip {}", net::nft_table()));
    }
    if net::delete_bridge()? {
        removed.push(format!("bridge {}", net::bridge()));
    }
    restore_sysctls(&layout, state.as_ref(), &mut removed)?;
    remove_files(&layout, &mut removed)?;
    let _ = fs::remove_dir(&layout.lab_dir);
    if !errors.is_empty() {
        bail!("lab down left hosts behind: {}", errors.join("; "));
    }
    Ok(DownReport { removed })
}

/// Hosts: a clean poweroff for all at once, then SIGKILL for stragglers.
/// Returns the hosts that would not stop, with why.
fn stop_all_hosts(layout: &Layout, removed: &mut Vec<String>) -> Result<Vec<String>> {
    let running = procs::containers(&layout.lab_dir);
    let results: Vec<(String, Result<()>)> = std::thread::scope(|s| {
        let hs: Vec<_> = running
            .values()
            .map(|c| {
                (
                    c.host.clone(),
                    s.spawn(move || host::stop(c, Some(Duration::from_secs(15)))),
                )
            })
            .collect();
        hs.into_iter()
            .map(|(n, h)| {
                (
                    n,
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("stop thread panicked"))),
                )
            })
            .collect()
    });
    let mut errors = Vec::new();
    for (n, r) in results {
        match r {
            Ok(()) => removed.push(format!("container {n}")),
            Err(e) => errors.push(format!("{n}: {e:#}")),
        }
    }
    for (pid, dir) in procs::nspawn_processes(&layout.lab_dir) {
        procs::signal(pid, libc::SIGKILL)?;
        procs::wait_gone(pid, Duration::from_secs(5));
        removed.push(format!(
            "stray systemd-nspawn (pid {pid}, {})",
            dir.display()
        ));
    }
    Ok(errors)
}

/// The hosts' veth links, and any other `vb-` port left on the bridge.
fn remove_host_links(names: &BTreeSet<String>, removed: &mut Vec<String>) -> Result<()> {
    for n in names {
        if net::delete_link(&net::veth_name(n))? {
            removed.push(format!("link {}", net::veth_name(n)));
        }
    }
    for p in net::bridge_ports()
        .into_iter()
        .filter(|p| p.starts_with("vb-"))
    {
        if net::delete_link(&p)? {
            removed.push(format!("link {p}"));
        }
    }
    Ok(())
}

/// Disks: every mount under the lab directory, then the host directories.
fn remove_disks(
    layout: &Layout,
    names: &BTreeSet<String>,
    removed: &mut Vec<String>,
) -> Result<()> {
    for m in procs::mounts_under(&layout.lab_dir)? {
        if util::run("umount", [m.as_os_str()]).is_err() {
            util::run("umount", [std::ffi::OsStr::new("-l"), m.as_os_str()])
                .with_context(|| format!("cannot unmount {}", m.display()))?;
        }
        removed.push(format!("mount {}", m.display()));
    }
    for n in names {
        let d = layout.host_dir(n);
        if d.exists() {
            util::remove_tree(&d)?;
            removed.push(format!("host directory {}", d.display()));
        }
    }
    Ok(())
}

/// Sets the sysctls `up` raised back to their values before, unless other
/// labs are up (they need them too).
fn restore_sysctls(
    layout: &Layout,
    state: Option<&LabState>,
    removed: &mut Vec<String>,
) -> Result<()> {
    let others = other_instances_up(layout);
    if !others.is_empty() {
        eprintln!(
            "lab: other labs are up ({}): machine sysctls are left as they are",
            others.join(", ")
        );
    }
    let restore = if others.is_empty() {
        state.map(|s| s.sysctl_before.clone())
    } else {
        None
    };
    for (key, before) in restore.unwrap_or_default() {
        if net::sysctl(&key)? != before {
            net::set_sysctl(&key, &before)?;
            removed.push(format!(
                "sysctl {} setting (back to {before})",
                key.replace('/', ".")
            ));
        }
    }
    Ok(())
}

/// Files: the lab's keys, known_hosts and state file.
fn remove_files(layout: &Layout, removed: &mut Vec<String>) -> Result<()> {
    for p in [
        layout.key(),
        layout.pubkey(),
        layout.known_hosts(),
        layout.state_file(),
    ] {
        if p.exists() {
            fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            removed.push(p.display().to_string());
        }
    }
    Ok(())
}

/// Other lab instances with a state file (they need the sysctls too).
fn other_instances_up(layout: &Layout) -> Vec<String> {
    let Some(parent) = layout.lab_dir.parent() else {
        return Vec::new();
    };
    let Ok(rd) = fs::read_dir(parent) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| *p != layout.lab_dir)
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "lab" || n.starts_with("lab-"))
        })
        .filter(|p| p.join("state.json").exists())
        .map(|p| p.display().to_string())
        .collect()
}

/// The lab's hosts (from the state file, the lab directory and /proc) and
/// how each is doing. Empty when the lab is down.
pub fn status() -> Result<Vec<HostStatus>> {
    let layout = Layout::system();
    let state = LabState::load(&layout.state_file())?;
    let running = procs::containers(&layout.lab_dir);
    let mut names: BTreeSet<String> = layout.host_dirs().into_iter().collect();
    names.extend(running.keys().cloned());
    if let Some(s) = &state {
        names.extend(s.hosts.iter().map(|h| h.name.clone()));
    }
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort_by_key(|n| host_sort_key(n));
    let out = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| {
                let c = running.get(n);
                let layout = &layout;
                let made_with = state.as_ref().and_then(|s| s.host(n)).map(|h| h.release);
                s.spawn(move || {
                    let address = address_of(n).unwrap_or(Ipv4Addr::UNSPECIFIED);
                    let veth = net::veth_name(n);
                    let ssh = c.is_some()
                        && host::port22_open(address, Duration::from_secs(1))
                        && host::ssh_hostname(layout, address, 3).is_ok_and(|h| h == *n);
                    HostStatus {
                        name: n.clone(),
                        address,
                        release: runs(layout, n).or_else(|| made_with.map(|r| r.to_string())),
                        running: c.is_some(),
                        init_pid: c.map(|c| c.init_pid),
                        ssh,
                        isolated: c.is_some() && net::link_exists(&veth) && !net::link_is_up(&veth),
                        memory_kib: c.and_then(|c| procs::container_pss_kib(c.init_pid)),
                    }
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    Ok(out)
}

/// A host that exists, with the release it was made with (from the state file).
fn known_host(layout: &Layout, name: &str) -> Result<HostSpec> {
    let address = address_of(name)
        .with_context(|| format!("no such lab host: {name:?} (hosts are node1, node2, ...)"))?;
    if !layout.host_dir(name).join("upper").is_dir() {
        bail!("no such lab host: {name} (is the lab up? `pgdeploy lab status`)");
    }
    let state = LabState::load(&layout.state_file())?;
    Ok(HostSpec {
        name: name.to_string(),
        address,
        release: state.map(|s| s.release(name)).unwrap_or_default(),
    })
}

fn running_container(layout: &Layout, name: &str) -> Result<procs::Container> {
    known_host(layout, name)?;
    procs::containers(&layout.lab_dir)
        .remove(name)
        .with_context(|| format!("{name} is not running (`pgdeploy lab start {name}` boots it)"))
}

/// Hard-crashes a host: SIGKILL to its init; its nspawn process and veth
/// go too; its disk stays as it was.
pub fn kill(name: &str) -> Result<()> {
    prereq::check()?;
    let _lock = lab_lock()?;
    let layout = Layout::system();
    let c = running_container(&layout, name)?;
    host::stop(&c, None)
}

/// Stops a host at once (running or not) and removes its disk, so that
/// the next `up` makes it anew: a machine replaced by a blank one.
pub fn wipe(name: &str) -> Result<()> {
    prereq::check()?;
    let _lock = lab_lock()?;
    let layout = Layout::system();
    known_host(&layout, name)?;
    if let Some(c) = procs::containers(&layout.lab_dir).get(name) {
        host::stop(c, None)?;
    }
    clear_remains(&layout, &[name])?;
    remove_host(&layout, name, None)
}

/// Boots a stopped host again and waits for SSH. Tells whether it booted
/// it (false: it was running).
pub fn start(name: &str) -> Result<bool> {
    prereq::check()?;
    let _lock = lab_lock()?;
    let layout = Layout::system();
    let spec = known_host(&layout, name)?;
    if let Some(c) = procs::containers(&layout.lab_dir).get(name) {
        host::wait_ssh(&layout, &spec, Some(c.init_pid), Duration::from_secs(60))?;
        return Ok(false);
    }
    if !net::link_exists(&net::bridge()) || !net::nft_table_exists() {
        bail!("the lab's network is gone: run `pgdeploy lab up` to repair the lab");
    }
    clear_remains(&layout, &[name])?;
    host::ensure_mounted(&layout, name, spec.release)?;
    let started = host::start(&layout, name)?;
    let mut child = started.nspawn;
    let r = host::wait_ssh(
        &layout,
        &spec,
        Some(started.init_pid),
        Duration::from_secs(120),
    );
    let _ = child.try_wait();
    r?;
    let mut state = LabState::load(&layout.state_file())?.unwrap_or_default();
    if let Some(h) = state.host_mut(name) {
        h.nspawn_pid = Some(child.id());
        h.init_pid = Some(started.init_pid);
        state.save(&layout.state_file())?;
    }
    Ok(true)
}

/// Cuts a host's link (its veth on the machine's side goes down): traffic
/// to and from it fails, but it keeps running.
pub fn isolate(name: &str) -> Result<()> {
    set_isolated(name, true)
}

/// Restores a host's link.
pub fn heal(name: &str) -> Result<()> {
    set_isolated(name, false)
}

fn set_isolated(name: &str, isolated: bool) -> Result<()> {
    prereq::check()?;
    let _lock = lab_lock()?;
    let layout = Layout::system();
    running_container(&layout, name)?;
    let veth = net::veth_name(name);
    if !net::link_exists(&veth) {
        bail!("{name} runs but has no link {veth}: run `pgdeploy lab up` to repair the lab");
    }
    net::set_link(&veth, !isolated)?;
    if net::link_is_up(&veth) == isolated {
        bail!("{veth} did not go {}", if isolated { "down" } else { "up" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_numerically() {
        let mut v = vec!["node10", "node2", "node1"];
        v.sort_by_key(|n| host_sort_key(n));
        assert_eq!(v, vec!["node1", "node2", "node10"]);
    }

    #[test]
    fn addresses_by_name() {
        assert_eq!(address_of("node3"), Some(Ipv4Addr::new(10, 213, 47, 13)));
        assert_eq!(address_of("node0"), None);
        assert_eq!(address_of("db1"), None);
    }

    fn opts(releases: &[&str], nodes: usize) -> LabOptions {
        let items: Vec<ReleaseItem> = releases.iter().map(|r| r.parse().unwrap()).collect();
        LabOptions {
            nodes,
            inventory: "inv.yaml".into(),
            groups: inventory::Groups {
                core: vec![],
                fourth: "backup".into(),
            },
            releases: Releases::from_items(&items).unwrap(),
        }
    }

    #[test]
    fn existing_hosts_keep_their_release() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout {
            lab_dir: d.path().join("lab"),
            cache_dir: d.path().join("cache"),
        };
        // node1 exists, made with trixie; node2 exists from an old state file
        // (no release: bookworm) and was upgraded to trixie inside.
        fs::create_dir_all(layout.upper("node1")).unwrap();
        fs::create_dir_all(layout.upper("node2").join("usr/lib")).unwrap();
        fs::write(
            layout.upper("node2").join("usr/lib/os-release"),
            "VERSION_CODENAME=trixie\n",
        )
        .unwrap();
        let state = LabState {
            hosts: vec![HostRecord {
                name: "node1".into(),
                address: "10.213.47.11".into(),
                nspawn_pid: None,
                init_pid: None,
                release: Release::Trixie,
            }],
            ..Default::default()
        };
        let rel = |specs: Vec<HostSpec>| specs.iter().map(|s| s.release).collect::<Vec<_>>();
        use Release::{Bookworm, Trixie};
        // Nothing asked: hosts that exist keep theirs, new ones are bookworm.
        let specs = plan_hosts(&layout, &opts(&[], 3), &state).unwrap();
        assert_eq!(rel(specs), vec![Trixie, Bookworm, Bookworm]);
        // Asked what they run: fine; node2's disk still overlays bookworm.
        let specs = plan_hosts(&layout, &opts(&["trixie"], 3), &state).unwrap();
        assert_eq!(rel(specs), vec![Trixie, Bookworm, Trixie]);
        let specs = plan_hosts(&layout, &opts(&["node3=trixie"], 4), &state).unwrap();
        assert_eq!(rel(specs), vec![Trixie, Bookworm, Trixie, Bookworm]);
        // Another release for a host that exists: refused, naming it.
        let e = plan_hosts(&layout, &opts(&["trixie", "node1=bookworm"], 2), &state).unwrap_err();
        let m = e.downcast_ref::<release::ReleaseMismatch>().unwrap();
        assert_eq!(
            m.0,
            vec![release::Mismatch {
                host: "node1".into(),
                runs: "trixie".into(),
                asked: Bookworm
            }]
        );
        let e = plan_hosts(&layout, &opts(&["bookworm"], 2), &state).unwrap_err();
        assert_eq!(
            e.downcast_ref::<release::ReleaseMismatch>()
                .unwrap()
                .0
                .len(),
            2
        );
    }

    #[test]
    fn cli_shape() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: LabCommand,
        }
        let c = Cli::try_parse_from(["x", "up"]).unwrap();
        assert_eq!(
            c.cmd,
            LabCommand::Up {
                nodes: 4,
                inventory: "inventories/lab.yaml".into(),
                release: vec![],
            }
        );
        let c = Cli::try_parse_from([
            "x",
            "up",
            "--release",
            "trixie,node1=bookworm",
            "--release",
            "node3=trixie",
        ])
        .unwrap();
        let LabCommand::Up { release, .. } = c.cmd else {
            panic!("not up")
        };
        assert_eq!(
            release,
            vec![
                ReleaseItem::All(Release::Trixie),
                ReleaseItem::Host(1, Release::Bookworm),
                ReleaseItem::Host(3, Release::Trixie),
            ]
        );
        let r = Releases::from_items(&release).unwrap();
        assert_eq!(r.asked(1), Some(Release::Bookworm));
        assert_eq!(r.asked(2), Some(Release::Trixie));
        let e = Cli::try_parse_from(["x", "up", "--release", "jessie"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown release \"jessie\""), "{e}");
        assert!(Cli::try_parse_from(["x", "up", "--release", "db1=trixie"]).is_err());
        let c = Cli::try_parse_from(["x", "kill", "node2"]).unwrap();
        assert_eq!(
            c.cmd,
            LabCommand::Kill {
                host: "node2".into()
            }
        );
        let c = Cli::try_parse_from(["x", "wipe", "node5"]).unwrap();
        assert_eq!(
            c.cmd,
            LabCommand::Wipe {
                host: "node5".into()
            }
        );
    }
}
