//! `pgdeploy secrets init` and the encrypted secrets file: passwords are
//! generated once (0600, no plaintext on disk), kept on later runs, read by
//! `validate`/`apply` (the site playbook's required passwords come from
//! it), and a wrong identity is bad input (exit 2). No lab needed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn run(identity: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdeploy"))
        .args(args)
        .env("PGDEPLOY_AGE_IDENTITY", identity)
        .current_dir(common::root())
        .output()
        .expect("pgdeploy runs")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn secrets_are_generated_once_encrypted_and_read_by_runs() {
    let dir = tempfile::tempdir().expect("tmp");
    let inventory = dir.path().join("inventory.yaml");
    std::fs::copy(common::root().join("inventories/example.yaml"), &inventory).expect("copy");
    let inventory = inventory.to_str().expect("utf8");
    let identity = dir.path().join("keys/identity.txt");

    let out = run(&identity, &["validate", "-i", inventory]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "control: the passwords are required:\n{}",
        common::text(&out)
    );
    assert!(common::text(&out).contains("postgres_superuser_password"));

    let out = run(&identity, &["secrets", "init", "-i", inventory]);
    assert!(out.status.success(), "{}", common::text(&out));
    let secrets = dir.path().join("secrets.age");
    assert_eq!(mode(&secrets), 0o600);
    assert_eq!(mode(&identity), 0o600);
    assert_eq!(mode(identity.parent().expect("dir")), 0o700);
    std::env::set_var("PGDEPLOY_AGE_IDENTITY", &identity);
    let vars = pgdeploy_engine::secrets::load(Path::new(inventory), None).expect("decrypts");
    let superuser = vars["postgres_superuser_password"]
        .as_str()
        .expect("str")
        .to_string();
    let replication = vars["postgres_replication_password"]
        .as_str()
        .expect("str")
        .to_string();
    assert!(superuser.len() >= 32 && replication.len() >= 32 && superuser != replication);
    let printed = common::text(&out);
    let on_disk = String::from_utf8_lossy(&std::fs::read(&secrets).expect("read")).into_owned();
    for password in [&superuser, &replication] {
        assert!(
            !printed.contains(password.as_str()),
            "init printed a password"
        );
        assert!(!on_disk.contains(password.as_str()), "plaintext on disk");
    }
    println!("{}", printed.trim());

    let out = run(&identity, &["secrets", "init", "-i", inventory]);
    assert!(
        common::text(&out).contains("generated []"),
        "{}",
        common::text(&out)
    );
    let again = pgdeploy_engine::secrets::load(Path::new(inventory), None).expect("decrypts");
    assert_eq!(
        again["postgres_superuser_password"],
        superuser.as_str(),
        "kept"
    );

    let out = run(&identity, &["validate", "-i", inventory]);
    assert!(
        out.status.success(),
        "validate reads secrets.age:\n{}",
        common::text(&out)
    );

    let other = dir.path().join("other-identity.txt");
    let out = run(
        &other,
        &[
            "secrets",
            "init",
            "-i",
            inventory,
            "--secrets",
            dir.path().join("other.age").to_str().expect("utf8"),
        ],
    );
    assert!(out.status.success(), "{}", common::text(&out));
    let out = run(&other, &["validate", "-i", inventory]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("cannot decrypt"),
        "{}",
        common::text(&out)
    );
    println!(
        "wrong identity: {}",
        common::text(&out).lines().next().unwrap_or_default()
    );
}
