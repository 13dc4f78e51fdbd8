//! `steward store` on memory files: a missing folder, `repair`, `copy --force`.

use super::{file_in, stderr, stdout, steward};

#[test]
fn a_missing_folder_is_created_and_an_impossible_one_named_with_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("not/yet/memory.json");
    let n = nested.to_string_lossy().into_owned();
    let o = steward(&["store", "set", &n, "k", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&steward(&["store", "get", &n, "k"])).trim(), "1");

    let (file, f) = file_in(&dir);
    std::fs::write(&file, "{}").unwrap();
    let under_file = format!("{f}/sub/memory.json");
    let o = steward(&["store", "set", &under_file, "k", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!("steward: creating the folder {f}/sub: Not a directory (os error 20)\n")
    );
}
