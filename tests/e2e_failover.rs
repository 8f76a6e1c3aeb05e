//! End-to-end tests of synchronous replication and failover on fresh lab
//! hosts (4 hosts, the site playbook deployed with
//! `patroni_synchronous_mode: true`): HAProxy's synchronous-standby port
//! reaches the synchronous standby only, and a hard crash of the leader's
//! host loses no acknowledged commit while writes come back through the
//! VIP within a bound.
//!
//! One test per scenario, sharing one lab and one deploy (see `Suite` in
//! tests/common); the crash comes last, and the last scenario takes the lab
//! down.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SCENARIOS: [&str; 2] = [
    "s01_sync_port_reaches_the_synchronous_standby_only",
    "s02_leader_host_crash_in_sync_mode_loses_no_acknowledged_commit",
];

static LAB: Suite<()> = Suite::new(&SCENARIOS, set_up, lab_down::<()>);

const SUPERUSER_PASSWORD: &str = "e2e-Super-9c4hw1";
const REPLICATION_PASSWORD: &str = "e2e-Repl-5t2zp8";

/// HAProxy's ports through the VIP (roles/haproxy defaults).
const RW_PORT: u16 = 5000;
const RO_PORT: u16 = 5001;
const SYNC_PORT: u16 = 5002;

/// The bound on writes coming back after a hard crash of the leader's host
/// (docs/ha.md measures about 20 s; the bound leaves room for a loaded CI
/// machine).
const CRASH_BOUND: Duration = Duration::from_secs(30);

/// Fresh hosts, then the site playbook with synchronous mode on.
fn set_up() {
    pgdeploy_ok(&["lab", "down"]);
    lab_up(4);
    let inventory = lab_inventory();
    fresh_deploy("fresh deploy", || {
        let mut args: Vec<String> = vec![
            "apply".into(),
            "-i".into(),
            inventory.to_string_lossy().into_owned(),
            "-e".into(),
            "patroni_synchronous_mode=true".into(),
        ];
        args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        pgdeploy(&refs)
    });
}

/// `sql` on a fresh connection through the VIP's `port` (at most 3 s).
fn psql(port: u16, sql: &str) -> Result<String, String> {
    vip_psql(port, SUPERUSER_PASSWORD, sql, Duration::from_secs(3))
}

/// The member a connection through `port` lands on, and whether it is in
/// recovery: `ADDRESS true|false`.
fn landed_on(port: u16) -> Result<String, String> {
    psql(
        port,
        "select host(inet_server_addr()) || ' ' || pg_is_in_recovery()",
    )
}

/// The synchronous standby as the leader reports it (`pg_stat_replication`
/// through the VIP's read-write port): its address, once exactly one
/// replica streams with `sync_state = sync` and the other is async.
fn sync_standby() -> String {
    let sql = "select string_agg(sync_state || ' ' || host(client_addr), ',' order by sync_state desc) from pg_stat_replication where state = 'streaming'";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = psql(RW_PORT, sql);
        if let Ok(list) = &got {
            let states: Vec<(&str, &str)> =
                list.split(',').filter_map(|s| s.split_once(' ')).collect();
            if let [("sync", address), ("async", _)] = states.as_slice() {
                return address.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no synchronous standby with one async replica: {got:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The lab host with `address`.
fn host_of(address_: &str) -> String {
    ["node1", "node2", "node3"]
        .into_iter()
        .find(|h| address(h) == address_)
        .unwrap_or_else(|| panic!("no member has the address {address_}"))
        .to_string()
}

scenarios_are_listed!();

/// Through the VIP, every fresh connection to the synchronous-standby port
/// lands on the synchronous standby (in recovery), never on the async
/// replica or the leader; the read-only port still reaches replicas.
#[test]
fn s01_sync_port_reaches_the_synchronous_standby_only() {
    LAB.run(|_| {
        let sync = sync_standby();
        let expected = format!("{sync} true");
        // HAProxy marks the standby up after two good checks of GET /sync.
        let deadline = Instant::now() + Duration::from_secs(20);
        while landed_on(SYNC_PORT).as_deref() != Ok(expected.as_str()) {
            assert!(
                Instant::now() < deadline,
                "the sync port never reached the synchronous standby {sync}: {:?}",
                landed_on(SYNC_PORT)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut read_only = BTreeSet::new();
        for _ in 0..6 {
            assert_eq!(landed_on(SYNC_PORT), Ok(expected.clone()), "sync port");
            let ro = landed_on(RO_PORT).expect("read-only port");
            assert!(ro.ends_with(" true"), "the read-only port reached {ro}");
            read_only.insert(ro);
        }
        // Round robin over both replicas: the async one is reachable, just not on the sync port.
        assert_eq!(read_only.len(), 2, "read-only port: {read_only:?}");
    });
}

/// A writer commits rows through the VIP's read-write port (a fresh
/// connection each) and logs every commit the server acknowledged; the
/// leader's host is hard-crashed meanwhile. The synchronous standby takes
/// over, writes come back within `CRASH_BOUND`, and every acknowledged row
/// is there.
#[test]
fn s02_leader_host_crash_in_sync_mode_loses_no_acknowledged_commit() {
    LAB.run(|_| {
        psql(
            RW_PORT,
            "create table if not exists acked (id int primary key)",
        )
        .expect("table");
        let sync = host_of(&sync_standby());
        let leader = patroni_leader(&sync);

        let acked = Arc::new(Mutex::new(Vec::<(u32, Instant)>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut id = 0;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    if psql(RW_PORT, &format!("insert into acked values ({id})")).is_ok() {
                        acked.lock().expect("log").push((id, Instant::now()));
                    } else {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        };
        let acked_count = || acked.lock().expect("log").len();
        // Writes flow before the crash.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked_count() < 20 {
            assert!(Instant::now() < deadline, "the writer got no commits");
            std::thread::sleep(Duration::from_millis(100));
        }

        pgdeploy_ok(&["lab", "kill", &leader]);
        let crashed = Instant::now();
        let resumed = loop {
            let after = acked
                .lock()
                .expect("log")
                .iter()
                .find(|(_, at)| *at > crashed + Duration::from_secs(1))
                .map(|(_, at)| *at - crashed);
            if let Some(resumed) = after {
                break resumed;
            }
            if crashed.elapsed() > Duration::from_secs(90) {
                break crashed.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // A few more commits on the new leader, then the writer stops.
        let target = acked_count() + 10;
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked_count() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        println!(
            "hard crash of {leader} in sync mode: writes back after {:.1}s",
            resumed.as_secs_f64()
        );
        assert!(
            resumed <= CRASH_BOUND,
            "writes came back after {:.1}s (bound {}s)",
            resumed.as_secs_f64(),
            CRASH_BOUND.as_secs()
        );

        let new_leader = patroni_leader(&sync);
        assert_eq!(new_leader, sync, "the synchronous standby {sync} took over");
        let acknowledged: BTreeSet<u32> = acked
            .lock()
            .expect("log")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let present: BTreeSet<u32> = psql(RW_PORT, "select id from acked")
            .expect("read back")
            .lines()
            .map(|l| l.parse().expect("an id"))
            .collect();
        let lost: Vec<&u32> = acknowledged.difference(&present).collect();
        println!(
            "{} commits acknowledged, {} rows present",
            acknowledged.len(),
            present.len()
        );
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    });
}
