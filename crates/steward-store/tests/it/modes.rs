//! Every file the store creates (log, expiry file, lock, the compaction's
//! temporary snapshot that becomes `memory.json`) gets `memory.json`'s
//! mode and owner; a new memory's files are 0600. Real files, the
//! process's real umask.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use steward_store::Store;

use crate::temp_store;

fn files_of(path: &Path) -> Vec<PathBuf> {
    ["", ".log", ".ttl", ".lock"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", path.display())))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Writes, a TTL write (so there is an expiry file), a compaction, and a
/// write after it (so there is a log again).
fn exercise(path: &Path) -> Store {
    let s = Store::open(path).unwrap();
    s.upsert_blocking("name", "Ada").unwrap();
    s.upsert_with_ttl_blocking("weather", "rain", Duration::from_secs(3600))
        .unwrap();
    s.compact_blocking().unwrap();
    s.upsert_blocking("after", 1).unwrap();
    s
}

#[test]
fn every_file_gets_the_mode_of_memory_json() {
    for want in [0o600, 0o640, 0o604] {
        let (_d, path) = temp_store();
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want)).unwrap();
        let s = exercise(&path);
        for f in files_of(&path) {
            assert_eq!(mode(&f), want, "{} (memory.json is {want:o})", f.display());
        }
        s.close_blocking().unwrap();
        assert_eq!(mode(&path), want, "after close");
    }
}

/// No memory.json yet: everything is 0600 (memories are personal), the
/// umask notwithstanding.
#[test]
fn a_new_memory_is_private() {
    let (_d, path) = temp_store();
    let s = exercise(&path);
    for f in files_of(&path) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    s.close_blocking().unwrap();
    assert_eq!(mode(&path), 0o600);
    // Exported with `write_snapshot` to a new file: private too.
    let export = path.with_file_name("export.json");
    steward_store::write_snapshot(&export, &serde_json::Map::new()).unwrap();
    assert_eq!(mode(&export), 0o600);
}

/// Run as root (a compaction by an administrator), the files keep
/// memory.json's owner, so its user's Python assistant can still write
/// them. Not as root: a file cannot be given away, so it is ours, which
/// is then also memory.json's owner (or we could not write it).
#[test]
fn files_keep_the_owner_of_memory_json_when_run_as_root() {
    let (_d, path) = temp_store();
    std::fs::write(&path, "{}").unwrap();
    if std::fs::metadata(&path).unwrap().uid() != 0 {
        eprintln!("not root: the owner test needs root (files stay the runner's, as memory.json)");
        return;
    }
    let (uid, gid) = (4242, 4343);
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = exercise(&path);
    for f in files_of(&path) {
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{}", f.display());
        assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{}", f.display());
    }
    s.close_blocking().unwrap();
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!((m.uid(), m.gid()), (uid, gid), "memory.json after close");
}
