//! A memory whose folder does not exist yet, and how a failed open reads.

use steward_store::{Error, Store};

#[test]
fn opening_creates_the_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/memory.json");
    let s = Store::open(&path).unwrap();
    assert!(s.create_blocking("k", 1).unwrap());
    s.close_blocking().unwrap();
    assert!(path.parent().unwrap().is_dir());
    assert_eq!(Store::open(&path).unwrap().get("k"), Some(1.into()));
}

#[test]
fn a_folder_that_cannot_be_made_is_named_with_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a folder").unwrap();
    let e = Store::open(file.join("sub/memory.json")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    let folder = file.join("sub");
    // The message names the thing; the OS error is its source, shown once.
    assert_eq!(
        e.to_string(),
        format!("creating the folder {}", folder.display())
    );
    assert_eq!(
        e.chain(),
        format!(
            "creating the folder {}: Not a directory (os error 20)",
            folder.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
}

/// A memory that never held a TTL entry is the Python assistant's folder
/// after a close: `memory.json` and the lock file, no expiry sidecar, log or
/// temporary file. One that did keeps its sidecar.
#[test]
fn a_closed_memory_without_ttl_entries_leaves_no_sidecar() {
    let (dir, path) = crate::temp_store();
    let s = Store::open(&path).unwrap();
    assert!(s.upsert_blocking("k", 1).unwrap());
    s.compact_blocking().unwrap();
    s.close_blocking().unwrap();
    assert_eq!(names(dir.path()), ["memory.json", "memory.json.lock"]);
    let s = Store::open(&path).unwrap();
    s.upsert_with_ttl_blocking("t", 2, std::time::Duration::from_secs(3600))
        .unwrap();
    s.close_blocking().unwrap();
    assert_eq!(
        names(dir.path()),
        ["memory.json", "memory.json.lock", "memory.json.ttl"]
    );
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
