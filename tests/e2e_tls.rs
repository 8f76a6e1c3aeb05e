//! End-to-end test of TLS in the HA stack on fresh lab hosts: the cluster CA
//! made once beside the inventory, PostgreSQL (clients and replication),
//! Patroni's REST API and etcd verified with it, plain connections refused,
//! a tampered certificate re-issued, and a second apply that changes
//! nothing.
//!
//! One test per scenario; they share one 4-host lab and one fresh
//! deploy, made by the first scenario that runs (see `Suite` in
//! tests/common), which also records what `validate` left before it. Names
//! start `sNN_` because libtest runs them in name order: the scenario that
//! tampers with a certificate runs after the ones that read them, and the
//! converged re-apply last. The last one to finish takes the lab down.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SUPERUSER_PASSWORD: &str = "e2e-Tls-Super-4hq8z";
const REPLICATION_PASSWORD: &str = "e2e-Tls-Repl-9wd2k";

fn inventory() -> String {
    lab_inventory().to_string_lossy().into_owned()
}

fn pki() -> std::path::PathBuf {
    root().join("inventories/pki")
}

fn run(command: &str, extra: &[&str]) -> std::process::Output {
    let inventory = inventory();
    let mut args: Vec<String> = vec![command.into(), "-i".into(), inventory];
    args.extend(secret_args(SUPERUSER_PASSWORD, REPLICATION_PASSWORD));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    pgdeploy(&refs)
}

/// No password and no line of the CA key in a run's output.
fn assert_no_secrets(out: &std::process::Output) {
    let all = text(out);
    let key = std::fs::read_to_string(pki().join("ca.key")).unwrap_or_default();
    assert!(!all.contains("PRIVATE KEY"), "key material was printed");
    for line in key.lines().filter(|l| l.len() > 20) {
        assert!(!all.contains(line), "a line of the CA key was printed");
    }
    for secret in [SUPERUSER_PASSWORD, REPLICATION_PASSWORD] {
        assert!(!all.contains(secret), "a password was printed");
    }
}

/// psql from this machine with a libpq connection string; stdout or the error.
fn local_psql(conninfo: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([conninfo, "-XAtc", sql])
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// psql on a lab host (the password in the environment, not the command line).
fn remote_psql(host: &str, conninfo: &str, sql: &str) -> std::process::Output {
    ssh_output(
        host,
        &format!(
            "PGPASSWORD={} PGCONNECT_TIMEOUT=5 psql {} -XAtc {} 2>&1",
            SUPERUSER_PASSWORD,
            quote(conninfo),
            quote(sql)
        ),
    )
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const SCENARIOS: [&str; 10] = [
    "s01_validate_creates_no_ca",
    "s02_fresh_deploy_creates_the_ca_and_private_keys",
    "s03_postgres_verify_full_with_the_ca_and_not_another",
    "s04_plain_connections_refused_by_pg_hba",
    "s05_replication_runs_over_verified_tls",
    "s06_patroni_rest_api_verified_with_the_ca",
    "s07_etcd_verified_with_the_ca_for_clients_and_peers",
    "s08_haproxy_and_status_verify_tls",
    "s09_certificate_of_another_ca_is_reissued",
    "s10_second_apply_changes_nothing_and_keeps_the_ca",
];

static LAB: Suite<TlsLab> = Suite::new(&SCENARIOS, set_up, lab_down::<TlsLab>);

struct TlsLab {
    /// Whether `validate` (before the deploy) left a CA folder.
    pki_after_validate: bool,
    /// The fresh deploy's output and duration.
    fresh: std::process::Output,
    /// The CA the fresh deploy made.
    ca_cert: String,
    ca_key: String,
}

fn set_up() -> TlsLab {
    pgdeploy_ok(&["lab", "down"]);
    lab_up(4);
    // The CA is made by the first apply (s02 proves it, so none may be left over).
    if pki().exists() {
        std::fs::remove_dir_all(pki()).expect("remove the old lab CA");
    }
    pgdeploy_ok(&[
        "validate",
        "-i",
        &inventory(),
        "-e",
        "postgres_superuser_password=x",
        "-e",
        "postgres_replication_password=y",
    ]);
    let pki_after_validate = pki().exists();
    let fresh = fresh_deploy("fresh deploy with TLS", || run("apply", &[]));
    TlsLab {
        pki_after_validate,
        fresh,
        ca_cert: std::fs::read_to_string(pki().join("ca.crt")).expect("ca.crt"),
        ca_key: std::fs::read_to_string(pki().join("ca.key")).expect("ca.key"),
    }
}

fn ca_file() -> String {
    pki().join("ca.crt").to_string_lossy().into_owned()
}

/// `verify-full` through the VIP's read-write port with the cluster CA.
fn verified() -> String {
    format!(
        "host={} port=5000 user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        lab_vip(),
        ca_file()
    )
}

/// The leader, and a replica (the first member that is not the leader).
fn leader_and_replica() -> (String, &'static str) {
    let leader = patroni_leader("node1");
    let replica = ["node1", "node2", "node3"]
        .into_iter()
        .find(|h| *h != leader)
        .expect("a replica");
    (leader, replica)
}

/// A certificate of another CA on `host`, at this path.
const OTHER_ON_HOST: &str = "/tmp/pgdeploy-other-ca.crt";

fn other_ca_on(host: &str) {
    ssh(
        host,
        &format!("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other -days 1 -keyout /dev/null -out {OTHER_ON_HOST} 2>/dev/null"),
    );
}

scenarios_are_listed!();

/// validate creates nothing: no CA before the first apply.
#[test]
fn s01_validate_creates_no_ca() {
    LAB.run(|lab| assert!(!lab.pki_after_validate, "validate wrote the CA"));
}

/// A fresh deploy creates the CA once (0600 key in a 0700 folder), prints
/// no secret, and each host's keys belong to their service's user, 0600.
#[test]
fn s02_fresh_deploy_creates_the_ca_and_private_keys() {
    LAB.run(|lab| {
        let out = &lab.fresh;
        assert!(
            text(out).contains("created the cluster CA"),
            "{}",
            text(out)
        );
        assert_no_secrets(out);
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
        };
        assert_eq!(mode(&pki()), 0o700);
        assert_eq!(mode(&pki().join("ca.key")), 0o600);

        // Keys on the hosts: owned by the service's user, 0600.
        for host in ["node1", "node2", "node3"] {
            let owners = ssh(
                host,
                "stat -c '%n %U %a' /etc/pgdeploy/tls/postgres.key /etc/pgdeploy/tls/etcd.key",
            );
            assert!(
                owners.contains("/etc/pgdeploy/tls/postgres.key postgres 600")
                    && owners.contains("/etc/pgdeploy/tls/etcd.key etcd 600"),
                "{host}: {owners}"
            );
        }
    });
}

/// PostgreSQL with verify-full and the CA: through HAProxy on the VIP, and
/// directly from a replica to the leader; another CA is refused.
#[test]
fn s03_postgres_verify_full_with_the_ca_and_not_another() {
    LAB.run(|_| {
        let ssl = local_psql(
            &verified(),
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        )
        .expect("verify-full through the VIP");
        assert_eq!(ssl, "t");
        let (leader, replica) = leader_and_replica();
        let direct = remote_psql(
            replica,
            &format!("host={leader} port=5432 user=postgres dbname=postgres sslmode=verify-full sslrootcert=/etc/pgdeploy/tls/ca.crt"),
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        );
        assert_eq!(
            String::from_utf8_lossy(&direct.stdout).trim(),
            "t",
            "direct verify-full from {replica} to {leader}"
        );
        // Verification is real: another CA is refused.
        let other_ca = std::env::temp_dir()
            .join(format!("pgdeploy-e2e-tls-other-ca-{}.crt", lab_instance()));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args([
                "-subj",
                "/CN=not the cluster CA",
                "-days",
                "1",
                "-keyout",
                "/dev/null",
                "-out",
            ])
            .arg(&other_ca)
            .output()
            .expect("openssl runs");
        assert!(made.status.success(), "{}", text(&made));
        let wrong = local_psql(
            &format!(
                "host={} port=5000 user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
                lab_vip(),
                other_ca.display()
            ),
            "select 1",
        );
        let _ = std::fs::remove_file(other_ca);
        let wrong = wrong.expect_err("another CA must not verify");
        assert!(wrong.contains("certificate verify failed"), "{wrong}");
    });
}

/// No TLS from the network: refused by pg_hba, through HAProxy and from
/// another host directly.
#[test]
fn s04_plain_connections_refused_by_pg_hba() {
    LAB.run(|_| {
        let plain = local_psql(
            &format!(
                "host={} port=5000 user=postgres dbname=postgres sslmode=disable",
                lab_vip()
            ),
            "select 1",
        )
        .expect_err("a plain connection through the VIP must be refused");
        assert!(
            plain.contains("pg_hba.conf rejects connection") && plain.contains("no encryption"),
            "{plain}"
        );
        let (leader, replica) = leader_and_replica();
        let plain = remote_psql(
            replica,
            &format!("host={leader} port=5432 user=postgres dbname=postgres sslmode=disable"),
            "select 1",
        );
        let said = String::from_utf8_lossy(&plain.stdout);
        assert!(
            !plain.status.success() && said.contains("no encryption"),
            "plain from {replica} to {leader}: {said}"
        );
    });
}

/// Replication runs over TLS, verified (verify-full in the replicas' conninfo).
#[test]
fn s05_replication_runs_over_verified_tls() {
    LAB.run(|_| {
        let replication = local_psql(
            &verified(),
            "select r.application_name || ' ' || s.ssl from pg_stat_replication r join pg_stat_ssl s using (pid) order by 1",
        )
        .expect("pg_stat_replication");
        println!("replication connections (member ssl): {replication:?}");
        assert_eq!(replication.lines().count(), 2, "{replication}");
        assert!(
            replication.lines().all(|l| l.ends_with(" true")),
            "{replication}"
        );
        let (_, replica) = leader_and_replica();
        let conninfo = ssh(
            replica,
            "runuser -u postgres -- psql -XAtc 'show primary_conninfo' | grep -o 'sslmode=[a-z-]*'",
        );
        assert_eq!(conninfo.trim(), "sslmode=verify-full");
    });
}

/// Patroni's REST API: https verified with the CA; plain http and another
/// CA fail; patronictl reads the cluster from etcd over https.
#[test]
fn s06_patroni_rest_api_verified_with_the_ca() {
    LAB.run(|_| {
        let (leader, replica) = leader_and_replica();
        other_ca_on(replica);
        let curl = |args: &str| {
            ssh_output(
                replica,
                &format!("curl -sS -m 5 -o /dev/null -w '%{{http_code}}' {args} 2>&1"),
            )
        };
        let https = curl(&format!(
            "--cacert /etc/pgdeploy/tls/ca.crt https://{leader}:8008/primary"
        ));
        assert_eq!(
            String::from_utf8_lossy(&https.stdout).trim(),
            "200",
            "{}",
            text(&https)
        );
        let http = curl(&format!("http://{leader}:8008/primary"));
        assert!(
            !http.status.success(),
            "plain http answered: {}",
            text(&http)
        );
        // (--capath: curl would also look in the system store, which holds the cluster CA.)
        let wrong = curl(&format!(
            "--cacert {OTHER_ON_HOST} --capath /nonexistent https://{leader}:8008/primary"
        ));
        assert!(
            !wrong.status.success(),
            "another CA verified: {}",
            text(&wrong)
        );
        // patronictl reads the cluster from etcd over https.
        let list = patroni_list("node1");
        assert_eq!(list.matches("Replica").count(), 2, "{list}");
    });
}

/// etcd: https with the CA for clients; peers over https too; plain and
/// another CA fail.
#[test]
fn s07_etcd_verified_with_the_ca_for_clients_and_peers() {
    LAB.run(|_| {
        let (_, replica) = leader_and_replica();
        other_ca_on(replica);
        let etcdctl = |endpoint: &str, ca: &str| {
            ssh_output(
                replica,
                &format!("ETCDCTL_API=3 etcdctl --dial-timeout=3s --command-timeout=5s --endpoints={endpoint} {ca} endpoint health 2>&1"),
            )
        };
        for member in ["node1", "node2", "node3"] {
            let ok = etcdctl(
                &format!("https://{member}:2379"),
                "--cacert=/etc/pgdeploy/tls/ca.crt",
            );
            assert!(
                ok.status.success() && text(&ok).contains("is healthy"),
                "{}",
                text(&ok)
            );
        }
        let plain = etcdctl("http://node1:2379", "");
        assert!(
            !plain.status.success(),
            "plain etcd answered: {}",
            text(&plain)
        );
        let wrong = etcdctl("https://node1:2379", &format!("--cacert={OTHER_ON_HOST}"));
        assert!(
            !wrong.status.success(),
            "another CA verified etcd: {}",
            text(&wrong)
        );
        let members = ssh(
            "node1",
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgdeploy/tls/ca.crt member list",
        );
        assert_eq!(members.matches(":2380").count(), 3, "{members}");
        assert_eq!(
            members.matches("https://").count(),
            6,
            "peer and client URLs: {members}"
        );
    });
}

/// HAProxy checks Patroni over verified TLS, and the day-2 code verifies
/// the CA too: `status` reads Patroni and etcd through tunnels over TLS and
/// finds the cluster healthy.
#[test]
fn s08_haproxy_and_status_verify_tls() {
    LAB.run(|_| {
        let cfg = ssh("node1", "grep -c 'check-ssl verify required ca-file /etc/pgdeploy/tls/ca.crt verifyhost' /etc/haproxy/haproxy.cfg");
        // Three backends (read-write, replicas, sync standbys), three members each.
        assert_eq!(cfg.trim(), "9");
        let (leader, _) = leader_and_replica();
        let status = pgdeploy(&[
            "status",
            "-i",
            &inventory(),
            "-e",
            &format!("postgres_superuser_password={SUPERUSER_PASSWORD}"),
        ]);
        assert!(status.status.success(), "status:\n{}", text(&status));
        assert!(
            text(&status).contains(&format!("rw/{leader} UP")),
            "{}",
            text(&status)
        );
    });
}

/// A certificate from another CA on a host is found by plan and re-issued
/// by apply (no secret printed); clients verify again, and Patroni and
/// PostgreSQL serve the new certificate.
#[test]
fn s09_certificate_of_another_ca_is_reissued() {
    LAB.run(|_| {
        ssh(
            "node1",
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=node1 -days 30 \
               -keyout /etc/pgdeploy/tls/postgres.key -out /etc/pgdeploy/tls/postgres.crt 2>/dev/null \
             && chown postgres:postgres /etc/pgdeploy/tls/postgres.key /etc/pgdeploy/tls/postgres.crt",
        );
        let plan = run("plan", &["--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(2), "plan:\n{}", text(&plan));
        assert!(
            text(&plan).contains("/etc/pgdeploy/tls/postgres.crt")
                && text(&plan).contains("not signed by the cluster CA"),
            "{}",
            text(&plan)
        );
        assert_no_secrets(&plan);
        let out = run("apply", &[]);
        assert!(out.status.success(), "repair apply failed:\n{}", text(&out));
        assert_no_secrets(&out);
        let repaired = remote_psql(
            "node2",
            "host=node1 port=5432 user=postgres dbname=postgres sslmode=verify-full sslrootcert=/etc/pgdeploy/tls/ca.crt",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        );
        assert_eq!(
            String::from_utf8_lossy(&repaired.stdout).trim(),
            "t",
            "{}",
            text(&repaired)
        );
        // Patroni's REST API and PostgreSQL serve the new certificate (the handler's reload).
        let file = ssh(
            "node1",
            "openssl x509 -in /etc/pgdeploy/tls/postgres.crt -noout -fingerprint -sha256",
        );
        for connect in [
            "-connect node1:8008",
            "-starttls postgres -connect node1:5432",
        ] {
            // Patroni applies a reload in its next cycle (loop_wait): give it 30 s.
            let deadline = Instant::now() + Duration::from_secs(30);
            let served = loop {
                let served = ssh(
                    "node2",
                    &format!("openssl s_client {connect} -CAfile /etc/pgdeploy/tls/ca.crt -verify_hostname node1 -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"),
                );
                if served == file || Instant::now() > deadline {
                    break served;
                }
                std::thread::sleep(Duration::from_secs(1));
            };
            assert_eq!(served, file, "{connect} serves another certificate");
        }
    });
}

/// A second apply changes nothing, and the CA is the one the fresh deploy made.
#[test]
fn s10_second_apply_changes_nothing_and_keeps_the_ca() {
    LAB.run(|lab| {
        let started = Instant::now();
        let again = run("apply", &[]);
        println!("converged apply: {:.1}s", started.elapsed().as_secs_f64());
        assert!(again.status.success(), "{}", text(&again));
        assert!(
            text(&again).contains("No changes"),
            "second apply changed something:\n{}",
            text(&again)
        );
        assert!(!text(&again).contains("created the cluster CA"));
        assert_eq!(
            std::fs::read_to_string(pki().join("ca.crt")).expect("ca.crt"),
            lab.ca_cert
        );
        assert_eq!(
            std::fs::read_to_string(pki().join("ca.key")).expect("ca.key"),
            lab.ca_key
        );
    });
}
