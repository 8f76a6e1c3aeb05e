//! Files pgdeploy writes on the workstation (secrets, the cluster CA, the
//! apply state, the report page).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` with `mode` through a temporary file beside it
/// (synced to disk) and a rename, so a reader or a crash sees the old file
/// or the new one, never half of one. The temporary goes again on failure.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let temp = path.with_file_name(name);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        // An older temporary file keeps its mode: set it.
        fs::set_permissions(&temp, fs::Permissions::from_mode(mode))?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        fs::write(&path, "old").expect("write");
        write_atomically(&path, b"new", 0o600).expect("atomic write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "new");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
        let missing = dir.path().join("no-such-folder/state.json");
        assert!(write_atomically(&missing, b"x", 0o644).is_err());
    }
}
