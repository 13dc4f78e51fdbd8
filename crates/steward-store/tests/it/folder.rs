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
