//! The roles' shell scripts run against fakes of the programs they call (no
//! root, no lab). The lab proves them for real: `pgdeploy-pgbackrest-wal` in
//! tests/e2e_stack.rs s08 (a crashed leader's WAL) and tests/e2e_upkeep.rs
//! s02/s03 (WAL from the archive).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/roles/pgbackrest/files/pgdeploy-pgbackrest-wal.sh"
);

/// A data directory, a fake repository and fakes of `pgbackrest` (serves and
/// takes files from the repository, logs every call) and `pg_controldata`.
struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let rig = Rig { dir };
        for d in ["bin", "repo", "data/pg_wal"] {
            fs::create_dir_all(rig.path(d)).expect("mkdir");
        }
        rig.script(
            "bin/pgbackrest",
            r#"#!/bin/sh
echo "$*" >>"$RIG/calls"
op=$2
case $op in
archive-get) [ -f "$RIG/repo/$3" ] || exit 1; cp "$RIG/repo/$3" "$4" ;;
archive-push) cp "$3" "$RIG/repo/" ;;
esac
"#,
        );
        rig.script(
            "bin/pg_controldata",
            "#!/bin/sh\necho 'Bytes per WAL segment:                16777216'\n",
        );
        rig
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn script(&self, p: &str, body: &str) {
        let path = self.path(p);
        fs::write(&path, body).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A history file in the repository.
    fn history(&self, name: &str, body: &str) {
        fs::write(self.path("repo").join(name), body).expect("write");
    }

    /// `pgdeploy-pgbackrest-wal ARGS` run in the data directory, as PostgreSQL does.
    fn run(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg(WAL)
            .args(args)
            .current_dir(self.path("data"))
            .env("PATH", path)
            .env("RIG", self.dir.path())
            .env("PGDEPLOY_WAL_HISTORY_WAIT", "2")
            .output()
            .expect("sh runs")
    }

    /// The archive-get / archive-push calls of the fake, one per line.
    fn calls(&self) -> String {
        fs::read_to_string(self.path("calls")).unwrap_or_default()
    }

    fn bin(&self) -> String {
        self.path("bin").display().to_string()
    }

    /// `get` of segment `file` as the startup process asks for it.
    fn get(&self, file: &str, dest: &str) -> Output {
        self.run(&["get", "lab", &self.bin(), file, dest])
    }

    /// A segment in pg_wal and `push` of it by its full path (as Patroni
    /// archives before pg_rewind).
    fn push(&self, file: &str) -> Output {
        let seg = self.path("data/pg_wal").join(file);
        fs::write(&seg, b"wal").expect("write");
        self.run(&["push", "lab", &self.bin(), &seg.display().to_string()])
    }
}

fn in_repo(rig: &Rig, file: &str) -> bool {
    Path::new(&rig.path("repo")).join(file).exists()
}

/// Timeline 3 forked off timeline 2 at 0/7030690 (inside segment 7).
const HISTORY_3: &str =
    "1\t0/702AB20\tno recovery target specified\n\n2\t0/7030690\tno recovery target specified\n";

#[test]
fn get_restores_a_segment_before_the_fork() {
    let rig = Rig::new();
    rig.history("00000003.history", HISTORY_3);
    fs::write(rig.path("repo/000000020000000000000006"), b"six").unwrap();
    let out = rig.get("000000020000000000000006", "pg_wal/RECOVERYXLOG");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read(rig.path("data/pg_wal/RECOVERYXLOG")).unwrap(),
        b"six"
    );
}

#[test]
fn get_refuses_the_old_timeline_past_the_fork_during_recovery() {
    let rig = Rig::new();
    rig.history("00000003.history", HISTORY_3);
    fs::write(rig.path("repo/000000020000000000000007"), b"diverged").unwrap();
    for seg in ["000000020000000000000007", "000000020000000000000008"] {
        let out = rig.get(seg, "pg_wal/RECOVERYXLOG");
        assert_eq!(out.status.code(), Some(1), "{seg}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("timeline 3 forked off"),
            "{out:?}"
        );
    }
    assert!(!rig.calls().contains("archive-get 000000020000000000000007"));
    // The new timeline's own segment is restored.
    fs::write(rig.path("repo/000000030000000000000007"), b"tl3").unwrap();
    let out = rig.get("000000030000000000000007", "pg_wal/RECOVERYXLOG");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn get_for_pg_rewind_restores_the_targets_own_wal() {
    let rig = Rig::new();
    rig.history("00000003.history", HISTORY_3);
    fs::write(rig.path("repo/000000020000000000000007"), b"own").unwrap();
    let dest = rig.path("data/pg_wal/000000020000000000000007");
    let out = rig.get("000000020000000000000007", &dest.display().to_string());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read(dest).unwrap(), b"own");
}

#[test]
fn push_by_the_archiver_is_plain() {
    let rig = Rig::new();
    fs::write(rig.path("data/postmaster.pid"), b"1").unwrap();
    rig.history("00000003.history", HISTORY_3);
    let seg = "000000020000000000000007";
    fs::write(rig.path("data/pg_wal").join(seg), b"wal").unwrap();
    // PostgreSQL's archiver passes a path relative to the data directory.
    let out = rig.run(&["push", "lab", &rig.bin(), &format!("pg_wal/{seg}")]);
    assert!(out.status.success(), "{out:?}");
    assert!(in_repo(&rig, seg));
    assert!(!rig.calls().contains(".history"), "{}", rig.calls());
}

#[test]
fn push_of_a_demoted_leaders_wal_skips_what_is_past_the_fork() {
    let rig = Rig::new();
    rig.history("00000003.history", HISTORY_3);
    let out = rig.push("000000020000000000000006");
    assert!(out.status.success(), "{out:?}");
    assert!(in_repo(&rig, "000000020000000000000006"));
    let out = rig.push("000000020000000000000007");
    assert!(out.status.success(), "{out:?}");
    assert!(!in_repo(&rig, "000000020000000000000007"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not archived"),
        "{out:?}"
    );
}

#[test]
fn push_with_postgres_down_and_no_newer_timeline_archives_after_waiting() {
    let rig = Rig::new();
    let out = rig.push("000000020000000000000007");
    assert!(out.status.success(), "{out:?}");
    assert!(in_repo(&rig, "000000020000000000000007"));
    let probes = rig.calls().matches("00000003.history").count();
    assert!(probes >= 2, "waited for the history file: {}", rig.calls());
}

const DERIVE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/roles/pgbackrest/files/pgdeploy-derive-ssh-key"
);

/// `pgdeploy-derive-ssh-key lab DIR/id_ed25519` with a seed.
fn derive(dir: &Path) -> Output {
    Command::new("python3")
        .arg(DERIVE)
        .arg("lab")
        .arg(dir.join("id_ed25519"))
        .env("PGDEPLOY_KEY_SEED", "seed")
        .output()
        .expect("python3 runs")
}

/// The key pair is written without following a link planted in the
/// folder (the role runs it as postgres in postgres's ~/.ssh): a planted
/// public key link is replaced, a planted private key link refused, and
/// the files they point to stay as they were.
#[test]
fn key_derivation_never_writes_through_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("ld.so.preload");
    fs::write(&target, b"untouched").expect("write");
    std::os::unix::fs::symlink(&target, dir.path().join("id_ed25519.pub")).expect("link");
    let out = derive(dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read(&target).expect("read"), b"untouched");
    let public = fs::symlink_metadata(dir.path().join("id_ed25519.pub")).expect("pub");
    assert!(public.is_file(), "a file, not the link");
    let private = fs::metadata(dir.path().join("id_ed25519")).expect("key");
    assert_eq!(private.permissions().mode() & 0o777, 0o600);

    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&target, dir.path().join("id_ed25519")).expect("link");
    let out = derive(dir.path());
    assert!(
        !out.status.success(),
        "a planted private key link is refused"
    );
    assert_eq!(fs::read(&target).expect("read"), b"untouched");
}
