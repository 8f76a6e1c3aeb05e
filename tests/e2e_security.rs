//! Security on the lab's real hosts, one test, scenarios in order:
//! no shell injection through variables, secrets never printed, host
//! keys checked strictly (unknown refused, changed refused naming both
//! fingerprints), and the real stack (site playbook on node1-4) deployed
//! from an age-encrypted secrets file: no password in any output stream,
//! every file holding one is 0600/0640 and owned by its service's user, and
//! the firewall proven from node5, a lab host in no group.
//!
//! One test per scenario; they share one 5-host lab, brought up (and
//! node1-2 cleaned) by the first one that runs (see `Suite` in
//! tests/common). Names start `sNN_` to keep the order they were written
//! in (libtest runs them in name order): the small playbooks first, the
//! site playbook (which hardens SSH) last. The last one to finish takes
//! the lab down.

mod common;

use std::process::{Command, Output};

use common::*;

const SECRET: &str = "e2e-Secret-q7Lw2x9K";

const SCENARIOS: [&str; 5] = [
    "s01_no_shell_injection_through_variables",
    "s02_secrets_never_printed",
    "s03_unknown_host_key_refused",
    "s04_changed_host_key_refused_naming_both_fingerprints",
    "s05_stack_from_encrypted_secrets",
];

static LAB: Suite<String> = Suite::new(&SCENARIOS, set_up, lab_down::<String>);

/// The lab (5 hosts) with node1-2 free of this file's leftovers; the
/// inventory's path.
fn set_up() -> String {
    lab_up(5);
    for host in ["node1", "node2"] {
        ssh(
            host,
            "rm -rf /opt/pgd-inj /opt/pgd-sec /tmp/pwned* /pwned* /root/pwned* /home/admin/pwned*",
        );
    }
    lab_inventory().to_str().expect("utf8 path").to_string()
}

scenarios_are_listed!();

#[test]
fn s01_no_shell_injection_through_variables() {
    LAB.run(|inventory| no_shell_injection(inventory));
}

#[test]
fn s02_secrets_never_printed() {
    LAB.run(|inventory| secrets_never_printed(inventory));
}

#[test]
fn s03_unknown_host_key_refused() {
    LAB.run(|inventory| unknown_host_key_refused(inventory));
}

#[test]
fn s04_changed_host_key_refused_naming_both_fingerprints() {
    LAB.run(|inventory| changed_host_key_refused(inventory));
}

#[test]
fn s05_stack_from_encrypted_secrets() {
    LAB.run(|inventory| stack_from_encrypted_secrets(inventory));
}

/// Every place a payload could run: files named pwned* anywhere on the
/// host (outside the payload's own directory) or on this machine.
fn pwned_files(host: &str) -> String {
    ssh(
        host,
        "find / -xdev -name '*pwned*' -not -path '/opt/pgd-inj/*' 2>/dev/null; true",
    )
}

fn no_shell_injection(inventory: &str) {
    let _ = std::fs::remove_file("/tmp/pwned-1");
    let out = pgdeploy(&[
        "apply",
        "-i",
        inventory,
        &fixture("security/injection.yaml"),
    ]);
    assert!(
        out.status.success(),
        "injection playbook applies:\n{}",
        text(&out)
    );
    let text_payload = "$(touch /tmp/pwned-1); touch /tmp/pwned-2 `touch /tmp/pwned-3` ' ; touch /tmp/pwned-4 ; ' \" ; touch /tmp/pwned-5 ; \" | touch /tmp/pwned-6 && touch /tmp/pwned-7 $HOME ${IFS} \\ end";
    let dir = "/opt/pgd-inj/$(touch pwned-a);touch pwned-b;`touch pwned-c`'\"x";
    let quoted_dir = format!("'{}'", dir.replace('\'', r"'\''"));
    for host in ["node1", "node2"] {
        assert_eq!(pwned_files(host).trim(), "", "{host}: a payload ran");
        for (file, expected) in [
            ("copy", text_payload.to_string()),
            ("template", format!("{text_payload}\n")),
            ("printed", text_payload.to_string()),
        ] {
            let got = ssh(host, &format!("cat {quoted_dir}/{file}"));
            assert_eq!(got, expected, "{host}: {file} holds the payload literally");
        }
        let lines = ssh(host, &format!("cat {quoted_dir}/lines"));
        assert_eq!(lines.trim_end(), text_payload, "{host}: lineinfile");
        let block = ssh(host, &format!("cat {quoted_dir}/block"));
        assert!(
            block.contains(text_payload),
            "{host}: blockinfile:\n{block}"
        );
        let shell = ssh(host, "cat /opt/pgd-inj/shell");
        assert_eq!(shell, text_payload, "{host}: shell with | quote");
        let link = ssh(host, &format!("readlink {quoted_dir}/link"));
        assert_eq!(link.trim(), format!("{dir}/copy"), "{host}: link target");
    }
    // A second run finds everything converged: the probes quote too.
    let again = pgdeploy(&[
        "apply",
        "-i",
        inventory,
        &fixture("security/injection.yaml"),
        "--output",
        "json",
    ]);
    assert!(again.status.success(), "{}", text(&again));
    let changed: Vec<_> = changes(&json(&again))
        .into_iter()
        .filter(|(_, kind, _)| kind != "run")
        .collect();
    assert!(changed.is_empty(), "second run changed {changed:?}");
    // Names that reach useradd, groupadd, systemctl and apt are refused
    // before any host is contacted.
    let names = pgdeploy(&[
        "apply",
        "-i",
        inventory,
        &fixture("security/injection-names.yaml"),
    ]);
    assert_eq!(names.status.code(), Some(2), "{}", text(&names));
    for what in [
        "valid user name",
        "valid group name",
        "not a unit name",
        "Debian package name",
    ] {
        assert!(
            text(&names).contains(what),
            "missing `{what}`:\n{}",
            text(&names)
        );
    }
    assert_eq!(pwned_files("node1").trim(), "");
    assert!(
        !std::path::Path::new("/tmp/pwned-1").exists(),
        "a payload ran on this machine"
    );
    println!("injection: 2 payloads through 10 module parameters on 2 hosts, nothing ran; 4 payload names refused with exit 2");
}

/// A second value, in every character the templates escape: the first one
/// rotated to it, and back.
const SPECIAL: &str = "e2e-Sp3cial-'<x>&\"y z/%";

/// Runs the secrets playbook with `demo_password` = `secret` and `args`.
fn secrets_run(inventory: &str, secret: &str, args: &[&str]) -> Output {
    let secret = format!("demo_password={secret}");
    let playbook = fixture("security/secrets.yaml");
    let mut all = vec![args[0], "-i", inventory, playbook.as_str(), "-e", &secret];
    all.extend(&args[1..]);
    pgdeploy(&all)
}

fn secrets_never_printed(inventory: &str) {
    let runs: Vec<(&str, &str, Vec<&str>, Option<i32>)> = vec![
        ("plan", SECRET, vec!["plan"], Some(0)),
        (
            "check diff verbose",
            SECRET,
            vec!["apply", "--check", "--diff", "-v"],
            Some(0),
        ),
        (
            "apply diff verbose",
            SECRET,
            vec!["apply", "--diff", "-v"],
            Some(0),
        ),
        (
            "apply json",
            SECRET,
            vec!["apply", "--output", "json", "-v"],
            Some(0),
        ),
        (
            "failing task, verbose",
            SECRET,
            vec!["apply", "-v", "--diff", "-e", "fail_with_secret=true"],
            Some(1),
        ),
        (
            "failing task, json",
            SECRET,
            vec!["apply", "--output", "json", "-e", "fail_with_secret=true"],
            Some(1),
        ),
        // Rotations: the diffs remove the value the masker no longer knows.
        (
            "rotation plan, json",
            SPECIAL,
            vec!["plan", "--output", "json"],
            Some(0),
        ),
        (
            "rotation apply, diff verbose",
            SPECIAL,
            vec!["apply", "--diff", "-v"],
            Some(0),
        ),
        (
            "failing task, special value",
            SPECIAL,
            vec!["apply", "-v", "-e", "fail_with_secret=true"],
            Some(1),
        ),
        (
            "rotation back, markdown",
            SECRET,
            vec!["plan", "--output", "markdown"],
            Some(0),
        ),
        (
            "rotation back, apply diff",
            SECRET,
            vec!["apply", "--diff"],
            Some(0),
        ),
    ];
    // A value the first run replaces, as a rotation would.
    let old = "e2e-Old-Secret-5tR";
    ssh(
        "node1",
        &format!(
            "test -f /opt/pgd-sec/app.conf && echo 'password = {old}' > /opt/pgd-sec/app.conf; true"
        ),
    );
    for (what, secret, args, code) in runs {
        let out = secrets_run(inventory, secret, &args);
        let all = text(&out);
        assert_eq!(out.status.code(), code, "{what}:\n{all}");
        // Every escaped form of SPECIAL holds "Sp3cial"; the `no_log` task's
        // upper-cased value, which the masker cannot know, "SP3CIAL" or
        // "SECRET-Q7LW".
        for leak in [SECRET, "Sp3cial", old, "SP3CIAL", "SECRET-Q7LW"] {
            assert!(!all.contains(leak), "{what} printed {leak:?}:\n{all}");
        }
        if what.starts_with("failing") || what.starts_with("rotation") {
            assert!(
                all.contains("***"),
                "{what}: the masked secret is shown as ***:\n{all}"
            );
        }
        if what.contains("diff") {
            assert!(
                all.contains("a value derived from the secret, not logged"),
                "{what}: the no_log task is listed:\n{all}"
            );
        }
    }
    for host in ["node1", "node2"] {
        let content = ssh(host, "cat /opt/pgd-sec/app.conf");
        assert_eq!(
            content,
            format!("password = {SECRET}\n"),
            "the host got the real value"
        );
        let modes = ssh(
            host,
            "stat -c '%a %U' /opt/pgd-sec/app.conf /opt/pgd-sec/templated.conf /opt/pgd-sec/echoed /opt/pgd-sec/forms.conf",
        );
        for line in modes.lines() {
            assert_eq!(line, "600 root", "{host}: secret file mode/owner: {modes}");
        }
    }
    println!("secrets: 11 runs (plan, check/diff/-v, apply diff/-v, json, markdown, two failing runs, a rotation to a value with ' < > & \" / % and back), stdout and stderr never hold either value, the replaced one, or a no_log task's derived value");
}

/// An inventory like the lab's whose known_hosts is `known_hosts`.
fn inventory_with_known_hosts(inventory: &str, known_hosts: &str) -> String {
    let text = std::fs::read_to_string(inventory).expect("lab inventory");
    let changed = text.replace(
        &format!("pgdeploy_known_hosts: {}/known_hosts", lab_dir()),
        &format!("pgdeploy_known_hosts: {known_hosts}"),
    );
    assert_ne!(changed, text, "the lab inventory names its known_hosts");
    let path = format!("/tmp/pgd-sec-inventory-{}.yaml", std::process::id());
    std::fs::write(&path, changed).expect("write inventory");
    path
}

fn unknown_host_key_refused(inventory: &str) {
    let known = format!("/tmp/pgd-sec-known-{}", std::process::id());
    std::fs::write(&known, "").expect("empty known_hosts");
    let inv = inventory_with_known_hosts(inventory, &known);
    let out = pgdeploy(&["facts", "-i", &inv, "node1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unknown host key"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&known).expect("read"),
        "",
        "nothing recorded"
    );
    let out = pgdeploy(&["facts", "-i", &inv, "node1", "--accept-new-host-keys"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::read_to_string(&known)
            .expect("read")
            .contains(&address("node1")),
        "the new key is recorded"
    );
    let _ = std::fs::remove_file(&known);
    let _ = std::fs::remove_file(&inv);
    println!(
        "host keys: an unknown key is refused (exit 1), recorded only with --accept-new-host-keys"
    );
}

/// `SHA256:...` of the first key `ssh-keygen -l` lists in `file`.
fn fingerprint_of(file: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-f", file])
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

fn changed_host_key_refused(inventory: &str) {
    // The recorded ed25519 key of node2, and a fresh one put in its place.
    let recorded =
        std::fs::read_to_string(format!("{}/known_hosts", lab_dir())).expect("known_hosts");
    let line = recorded
        .lines()
        .find(|l| {
            l.split_whitespace().next() == Some(address("node2").as_str())
                && l.contains("ssh-ed25519")
        })
        .expect("node2's recorded key")
        .to_string();
    let old_file = format!("/tmp/pgd-sec-old-{}", std::process::id());
    std::fs::write(&old_file, format!("{line}\n")).expect("write");
    let old = fingerprint_of(&old_file);
    let _ = std::fs::remove_file(&old_file);
    let new = ssh(
        "node2",
        "mkdir -p /root/pgd-hostkeys && cp -a /etc/ssh/ssh_host_* /root/pgd-hostkeys/ && \
         rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && \
         systemctl restart ssh && ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub",
    )
    .split_whitespace()
    .nth(1)
    .unwrap_or_default()
    .to_string();
    assert_ne!(old, new);
    for extra in [None, Some("--accept-new-host-keys")] {
        let mut args = vec!["apply", "-i", inventory, "--limit", "node1:node2"];
        let playbook = fixture("security/secrets.yaml");
        args.push(&playbook);
        let secret = format!("demo_password={SECRET}");
        args.extend(["-e", &secret]);
        args.extend(extra);
        let out = pgdeploy(&args);
        let all = text(&out);
        // Restore before asserting, so a failure leaves the lab usable.
        if extra.is_some() {
            ssh_restore_node2_keys();
        }
        assert_eq!(out.status.code(), Some(1), "{extra:?}:\n{all}");
        assert!(
            all.contains("node2") && all.contains("host key changed"),
            "{all}"
        );
        assert!(
            all.contains(&old) && all.contains(&new),
            "both fingerprints {old} {new}:\n{all}"
        );
        assert!(all.contains("node1"), "{all}");
        println!(
            "host keys: a changed key ({extra:?}) is refused: {}",
            all.lines()
                .find(|l| l.contains("host key changed"))
                .unwrap_or_default()
        );
    }
    // node2 is reachable again with its original key.
    let out = pgdeploy(&["facts", "-i", inventory, "node2"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Puts node2's original host keys back (saved by the test). The host's
/// key is the test's own fresh one at this point, so this one connection
/// does not check it.
fn ssh_restore_node2_keys() {
    let restored = Command::new("ssh")
        .args([
            "-i",
            &format!("{}/id_ed25519", lab_dir()),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            &format!("admin@{}", address("node2")),
            "sudo sh -c 'cp -a /root/pgd-hostkeys/. /etc/ssh/ && rm -rf /root/pgd-hostkeys && systemctl restart ssh'",
        ])
        .status()
        .expect("ssh");
    assert!(restored.success(), "restore node2's host keys");
}

/// Which of `targets` (`ADDRESS:PORT`) accept a TCP connection from
/// `from` within 3 s (all tried at once), in the order given.
fn reachable(from: &str, targets: &[String]) -> Vec<String> {
    let list = targets.join(" ");
    let open = ssh(
        from,
        &format!(
            "for t in {list}; do (timeout 3 bash -c \"echo > /dev/tcp/${{t%:*}}/${{t#*:}}\" 2>/dev/null && echo \"$t\") & done; wait"
        ),
    );
    let open: Vec<&str> = open.lines().collect();
    targets
        .iter()
        .filter(|t| open.contains(&t.as_str()))
        .cloned()
        .collect()
}

/// `pgdeploy ARGS` with `PGDEPLOY_AGE_IDENTITY` set.
fn pgdeploy_with_identity(identity: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .args(args)
        .env("PGDEPLOY_AGE_IDENTITY", identity)
        .current_dir(root())
        .output()
        .expect("pgdeploy runs")
}

/// Runs `command` as root on a lab host with `input` on its stdin; its
/// stdout.
fn ssh_with_input(host: &str, command: &str, input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("ssh")
        .args(["-i", &format!("{}/id_ed25519", lab_dir())])
        .args([
            "-o",
            &format!("UserKnownHostsFile={}/known_hosts", lab_dir()),
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(format!("admin@{}", address(host)))
        .arg(format!("sudo sh -c '{}'", command.replace('\'', r"'\''")))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ssh runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("ssh ends");
    assert!(out.status.success(), "{host}: {command}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The user a secret-holding file must belong to, by where it is.
const SECRET_FILE_OWNERS: [(&str, &str); 6] = [
    ("/etc/patroni/", "postgres"),
    ("/etc/pgbouncer/", "postgres"),
    ("/var/lib/postgresql/", "postgres"),
    ("/etc/pgbackrest", "postgres"),
    ("/etc/keepalived/", "root"),
    ("/etc/prometheus/", "prometheus"),
];

/// Deploys the site playbook on node1-4 with the passwords generated by
/// `secrets init` into an age file (nothing on the command line); checks
/// the output streams, the files holding secrets, and the firewall.
fn stack_from_encrypted_secrets(lab_inventory: &str) {
    let dir = std::env::temp_dir().join(format!("pgd-sec-stack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let inventory = dir.join("lab.yaml");
    std::fs::copy(lab_inventory, &inventory).expect("copy inventory");
    let inventory = inventory.to_str().expect("utf8");
    let identity = dir.join("age/identity.txt");
    let identity = identity.to_str().expect("utf8");
    let init = pgdeploy_with_identity(identity, &["secrets", "init", "-i", inventory]);
    assert!(init.status.success(), "{}", text(&init));
    std::env::set_var("PGDEPLOY_AGE_IDENTITY", identity);
    let secrets =
        pgdeploy_engine::secrets::load(std::path::Path::new(inventory), None).expect("decrypt");
    let passwords: Vec<String> = secrets
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(passwords.len() >= 2, "{secrets:?}");

    let site = root().join("playbooks/site.yaml");
    let site = site.to_str().expect("utf8");
    // PgBouncer too: its userlist holds the superuser's password.
    let extra = [
        "--limit",
        "node1:node2:node3:node4",
        "-e",
        "pgbouncer_enabled=true",
    ];
    let started = std::time::Instant::now();
    let fresh = pgdeploy_with_identity(
        identity,
        &[
            &["apply", "-i", inventory, site, "--diff", "-v"][..],
            &extra,
        ]
        .concat(),
    );
    let took = started.elapsed();
    assert!(
        fresh.status.success(),
        "the stack deploys:\n{}",
        text(&fresh)
    );
    let again = pgdeploy_with_identity(
        identity,
        &[
            &["apply", "-i", inventory, site, "--output", "json", "-v"][..],
            &extra,
        ]
        .concat(),
    );
    assert!(again.status.success(), "{}", text(&again));
    for (what, out) in [
        ("fresh deploy --diff -v", &fresh),
        ("converged run, json", &again),
    ] {
        for password in &passwords {
            assert!(
                !text(out).contains(password.as_str()),
                "{what} printed a password"
            );
        }
    }
    println!(
        "stack from secrets.age: fresh deploy (--diff -v) {:.1}s, then a converged json run; {} passwords in neither output",
        took.as_secs_f64(),
        passwords.len()
    );

    // Every file holding a password, anywhere a service keeps state or
    // settings (and /tmp, logs): 0600 or 0640, owned by its service's user.
    // The passwords go on stdin: a command line would be in sudo's log.
    let patterns: String = passwords.iter().map(|p| format!("{p}\n")).collect();
    let mut found = Vec::new();
    for host in ["node1", "node2", "node3", "node4"] {
        let files = ssh_with_input(
            host,
            "grep -rlsF -f /dev/stdin /etc /var /root /home /opt /tmp /run /srv 2>/dev/null | \
             while read -r f; do stat -c '%n %a %U:%G' \"$f\"; done; true",
            &patterns,
        );
        for line in files.lines() {
            let mut words = line.rsplitn(3, ' ');
            let (owner, mode, path) = (
                words.next().unwrap_or_default(),
                words.next().unwrap_or_default(),
                words.next().unwrap_or_default(),
            );
            let user = owner.split(':').next().unwrap_or_default();
            let expected = SECRET_FILE_OWNERS
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix))
                .map(|(_, user)| *user);
            assert!(
                expected.is_some(),
                "{host}: a password in an unexpected place: {line}"
            );
            assert!(
                (mode == "600" || mode == "640") && Some(user) == expected,
                "{host}: {path} is {mode} {owner}, expected 0600/0640 owned by {expected:?}"
            );
            found.push(format!("{host} {line}"));
        }
    }
    // Patroni's .pgpass exists only while it connects to another member;
    // its config and PgBouncer's userlist always: the scan must find them.
    for must in [" /etc/patroni/config.yml ", " /etc/pgbouncer/userlist.txt "] {
        assert_eq!(
            found.iter().filter(|l| l.contains(must)).count(),
            3,
            "{must} on every member: {found:#?}"
        );
    }
    println!(
        "files holding a password ({}):\n  {}",
        found.len(),
        found.join("\n  ")
    );

    // The firewall, from node5 (in no group, not managed) and from members.
    let mut blocked = Vec::new();
    for member in ["node1", "node2", "node3"] {
        for port in [5432, 8008, 2379, 2380] {
            blocked.push(format!("{}:{port}", address(member)));
        }
    }
    // HAProxy's stats page listens on the balancers' loopback only.
    for balancer in ["node1", "node2", "node3"] {
        blocked.push(format!("{}:7000", address(balancer)));
    }
    let open_from_node5 = reachable("node5", &blocked);
    assert!(
        open_from_node5.is_empty(),
        "node5 reached {open_from_node5:?}"
    );
    // node5 is in the client network: it reaches PostgreSQL through
    // HAProxy on the VIP.
    let haproxy = format!("{}:5000", lab_vip());
    assert_eq!(
        reachable("node5", std::slice::from_ref(&haproxy)),
        vec![haproxy.clone()]
    );
    for (from, to) in [("node2", "node1"), ("node3", "node2")] {
        let targets: Vec<String> = [5432, 8008, 2379, 2380]
            .iter()
            .map(|p| format!("{}:{p}", address(to)))
            .collect();
        assert_eq!(
            reachable(from, &targets),
            targets,
            "{from} (a member) reaches {to}"
        );
    }
    println!(
        "firewall: node5 (no group) reaches none of {} (PostgreSQL, Patroni, etcd client and peer, HAProxy stats on node1-3) but HAProxy {haproxy}; members reach each other's 5432, 8008, 2379, 2380",
        blocked.len()
    );

    // Patroni's REST API (from node1, a member and balancer, which reaches
    // node2's port 8008): unsafe methods without the REST user are refused,
    // GET stays open (HAProxy's checks), patronictl on the host
    // authenticates from its config, and so does the switchover below.
    let curl = |args: &str| {
        ssh(
            "node1",
            &format!(
                "curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/pgdeploy/tls/ca.crt \
                 --resolve node2:8008:{} {args}",
                address("node2")
            ),
        )
    };
    for (what, args) in [
        ("POST /reload", "-XPOST https://node2:8008/reload"),
        ("POST /restart", "-XPOST -d '{}' https://node2:8008/restart"),
        (
            "PATCH /config",
            "-XPATCH -d '{\"ttl\": 21}' https://node2:8008/config",
        ),
        (
            "POST /switchover",
            "-XPOST -d '{\"leader\": \"node2\"}' https://node2:8008/switchover",
        ),
        (
            "wrong password",
            "-u patroni:guessed -XPOST https://node2:8008/reload",
        ),
    ] {
        assert_eq!(curl(args), "401", "{what} without the REST user's password");
    }
    assert_eq!(
        curl("https://node2:8008/health"),
        "200",
        "GET /health stays open"
    );
    let reload = ssh_output(
        "node1",
        "patronictl -c /etc/patroni/config.yml reload lab --force",
    );
    assert!(
        reload.status.success(),
        "patronictl reload: {}",
        text(&reload)
    );

    // Day-2 commands read secrets.age as apply does: no -e. A switchover
    // checkpoints the leader over SQL as the superuser first; without the
    // password it would say "checkpoint ... skipped (... not set)".
    let switchover = pgdeploy_with_identity(identity, &["switchover", "-i", inventory]);
    assert!(switchover.status.success(), "{}", text(&switchover));
    let said = text(&switchover);
    assert!(
        said.lines()
            .any(|l| l.contains("checkpoint on ") && l.ends_with(": done")),
        "the switchover ran its checkpoint with the password from secrets.age:\n{said}"
    );
    assert!(!said.contains(contract_password_var()), "{said}");
    for password in &passwords {
        assert!(
            !said.contains(password.as_str()),
            "switchover printed a password"
        );
    }
    println!("switchover without -e: the superuser's password came from secrets.age");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The variable that names the superuser's password (the stack contract's).
fn contract_password_var() -> &'static str {
    pgdeploy_stack::contract::SUPERUSER_PASSWORD.name
}
