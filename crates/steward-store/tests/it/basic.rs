//! The Python assistant's own cases and the plain API.

use serde_json::json;
use steward_store::{Error, Store, StoreConfig};

use crate::{read, temp_store};

#[test]
fn persists_across_instances() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    assert!(s.create_blocking("name", "Ada").unwrap());
    s.upsert_blocking("n", 1).unwrap();
    drop(s); // no close: the log alone must carry the writes
    let s = Store::open(&path).unwrap();
    assert_eq!(s.get("name"), Some(json!("Ada")));
    assert_eq!(s.get("n"), Some(json!(1)));
    s.close_blocking().unwrap();
    assert!(!s.log_path().exists(), "close removes the log");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_keys(), ["name", "n"]);
}

/// A handle tells the settings in force and shows its file and key count
/// in Debug; a pending write shows what it is.
#[test]
fn a_handle_shows_its_settings_path_and_size() {
    let (_d, path) = temp_store();
    let s = Store::builder(&path).max_keys(7).build().unwrap();
    assert_eq!(s.config().max_keys, 7);
    s.upsert_blocking("a", 1).unwrap();
    let shown = format!("{s:?}");
    assert!(shown.contains(&format!("{path:?}")), "{shown}");
    assert!(shown.contains("keys: 1"), "{shown}");
    let write = s.upsert("b", 2);
    assert_eq!(format!("{write:?}"), "WriteFuture { .. }");
    drop(write);
    // Writes that change nothing are counted apart.
    assert!(!s.create_blocking("a", 5).unwrap());
    assert!(!s.delete_blocking("missing").unwrap());
    let stats = s.stats();
    assert_eq!((stats.writes, stats.unchanged), (2, 2), "{stats:?}");
}

#[test]
fn reset_leaves_empty_object() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert_blocking("a", 1).unwrap();
    s.upsert_blocking("b", 2).unwrap();
    assert!(!s.is_empty());
    s.reset_blocking().unwrap();
    assert!(s.is_empty());
    s.close_blocking().unwrap();
    assert_eq!(read(&path), b"{}");
}

#[test]
fn missing_file_is_empty_store_and_semantics_match_python() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    assert!(s.is_empty());
    assert!(s.create_blocking("a", 1).unwrap());
    assert!(
        !s.create_blocking("a", 2).unwrap(),
        "create refuses an existing key"
    );
    assert_eq!(s.get("a"), Some(json!(1)));
    assert!(!s.update_blocking("missing", 1).unwrap());
    assert!(!s.delete_blocking("missing").unwrap());
    assert_eq!(s.get("missing"), None);
    assert!(
        s.upsert_blocking("b", 2).unwrap(),
        "upsert of a new key says so"
    );
    assert!(!s.upsert_blocking("b", 3).unwrap());
    s.upsert_blocking("c", 3).unwrap();
    // An updated key keeps its place; a deleted and re-added one goes last.
    assert!(s.update_blocking("a", 10).unwrap());
    assert!(s.delete_blocking("b").unwrap());
    s.upsert_blocking("b", 4).unwrap();
    assert_eq!(s.list_keys(), ["a", "c", "b"]);
    let pairs: Vec<_> = s.iter().collect();
    assert_eq!(pairs[0], ("a".to_string(), json!(10)));
    s.close_blocking().unwrap();
    assert_eq!(
        String::from_utf8(read(&path)).unwrap(),
        "{\n  \"a\": 10,\n  \"c\": 3,\n  \"b\": 4\n}"
    );
}

#[test]
fn typed_get_and_set() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Reminder {
        when: String,
        what: String,
    }
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    let r = Reminder {
        when: "9:00".into(),
        what: "dentist".into(),
    };
    s.set_as_blocking("r", &r).unwrap();
    assert_eq!(s.get_as::<Reminder>("r").unwrap(), Some(r));
    assert_eq!(s.get_as::<Reminder>("nope").unwrap(), None);
    let e = s.get_as::<u32>("r").unwrap_err();
    assert!(
        matches!(e, Error::Json { ref key, .. } if key == "r"),
        "{e}"
    );
}

#[test]
fn size_limits_are_errors_and_change_nothing() {
    let (_d, path) = temp_store();
    let s = Store::builder(&path)
        .max_key_bytes(8)
        .max_value_bytes(16)
        .build()
        .unwrap();
    let e = s.upsert_blocking("123456789", 1).unwrap_err();
    assert!(
        matches!(
            e,
            Error::KeyTooLarge {
                len: 9,
                limit: 8,
                ..
            }
        ),
        "{e}"
    );
    let e = s.upsert_blocking("k", "x".repeat(20)).unwrap_err();
    assert!(matches!(e, Error::ValueTooLarge { limit: 16, .. }), "{e}");
    assert!(e.to_string().contains("\"k\""), "{e}");
    assert!(s.is_empty());
    s.upsert_blocking("k", "x".repeat(10)).unwrap();
    assert_eq!(s.len(), 1);
    let mut zero = StoreConfig::default();
    zero.max_key_bytes = 0;
    let bad = Store::builder(&path).config(zero);
    drop(s);
    assert!(matches!(bad.build().unwrap_err(), Error::Config(_)));
}

#[test]
fn compaction_by_size_keeps_everything() {
    let (_d, path) = temp_store();
    let s = Store::builder(&path)
        .compact_log_bytes(2048)
        .build()
        .unwrap();
    for i in 0..300 {
        s.upsert_blocking(
            &format!("k{}", i % 40),
            json!({ "i": i, "pad": "x".repeat(40) }),
        )
        .unwrap();
    }
    let stats = s.stats();
    assert!(stats.compactions > 0, "{stats:?}");
    assert!(stats.log_bytes < 4096, "{stats:?}");
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.len(), 40);
    assert_eq!(s.get("k19").unwrap()["i"], json!(299));
    // The snapshot alone is valid Python-format JSON of a prefix of history.
    let snap = steward_store::load(&path).unwrap();
    assert_eq!(snap.len(), 40);
}

#[test]
fn writes_after_close_fail_and_reads_still_work() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    let clone = s.clone();
    s.upsert_blocking("a", 1).unwrap();
    s.close_blocking().unwrap();
    s.close_blocking().unwrap(); // twice is fine
    assert!(matches!(
        clone.upsert_blocking("b", 2),
        Err(Error::Closed { .. })
    ));
    assert_eq!(clone.get("a"), Some(json!(1)));
    // The lock is free again.
    let again = Store::open(&path).unwrap();
    assert_eq!(again.len(), 1);
}

#[test]
fn python_written_sample_opens_and_round_trips() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/memory.json");
    let original = read(std::path::Path::new(sample));
    let (_d, path) = temp_store();
    std::fs::write(&path, &original).unwrap();
    let s = Store::open(&path).unwrap();
    assert_eq!(s.get("times_greeted"), Some(json!(42)));
    s.compact_blocking().unwrap();
    assert_eq!(read(&path), original, "rewrite is byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    assert!(s.create("a", 1).await.unwrap());
    assert!(!s.create("a", 2).await.unwrap());
    assert!(s.update("a", 3).await.unwrap());
    s.set_as("v", &vec![1, 2]).await.unwrap();
    assert!(s.delete("a").await.unwrap());
    s.compact().await.unwrap();
    s.reset().await.unwrap();
    s.upsert("z", "last").await.unwrap();
    s.close().await.unwrap();
    assert_eq!(read(&path), b"{\n  \"z\": \"last\"\n}");
}

/// Cancel safety as documented: a write is queued when its method is
/// called, so dropping its future un-polled still makes it durable; `close`
/// does nothing until polled.
#[test]
fn a_dropped_write_future_still_writes() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    drop(s.upsert("a", 1));
    drop(s.delete("missing"));
    drop(s.close());
    assert!(s.upsert_blocking("b", 2).unwrap(), "still open");
    // Closing finishes every queued write before it compacts.
    s.close_blocking().unwrap();
    assert_eq!(read(&path), b"{\n  \"a\": 1,\n  \"b\": 2\n}");
}

#[test]
fn too_deep_values_are_refused_and_the_limit_itself_round_trips() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    let nest = |n: usize| (0..n).fold(json!(1), |v, _| json!([v]));
    let e = s.upsert_blocking("deep", nest(400)).unwrap_err();
    assert!(matches!(e, Error::ValueTooDeep { .. }), "{e}");
    s.upsert_blocking("deep", nest(399)).unwrap();
    // Objects count alike, and so does a deep value behind a shallow one.
    let nest_objects = |n: usize| (0..n).fold(json!(1), |v, _| json!({ "k": v }));
    for too_deep in [nest_objects(400), json!({"flat": 1, "deep": nest(399)})] {
        let e = s.upsert_blocking("too_deep", too_deep).unwrap_err();
        assert!(matches!(e, Error::ValueTooDeep { .. }), "{e}");
    }
    s.upsert_blocking("objects", nest_objects(399)).unwrap();
    assert_eq!(s.get("too_deep"), None);
    drop(s); // replayed from the log
    let s = Store::open(&path).unwrap();
    assert_eq!(s.get("deep"), Some(nest(399)));
    assert_eq!(s.get("objects"), Some(nest_objects(399)));
    s.close_blocking().unwrap(); // and from the snapshot
    assert_eq!(Store::open(&path).unwrap().get("deep"), Some(nest(399)));
}

#[test]
fn handles_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<Store>();
    send_sync::<Error>();
    send::<steward_store::WriteFuture>();
}

#[test]
fn check_reports_clean_store_and_modifies_nothing() {
    let (d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert_blocking("a", json!({"x": [1, 2]})).unwrap();
    s.compact_blocking().unwrap();
    s.upsert_blocking("b", 2).unwrap();
    let before: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.clone(), std::fs::read(&p).unwrap())
        })
        .collect();
    let report = steward_store::check(&path).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.keys, report.log_batches), (2, 1));
    assert!(report.to_string().ends_with("ok"), "{report}");
    for (p, bytes) in before {
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "{} changed", p.display());
    }
    // Leftover temporary files are reported as repairable and removed by open.
    std::fs::write(d.path().join("memory.json.tmp"), "{").unwrap();
    drop(s);
    let report = steward_store::check(&path).unwrap();
    assert!(report.is_ok() && !report.is_clean(), "{report}");
    let _s = Store::open(&path).unwrap();
    assert!(!d.path().join("memory.json.tmp").exists());
}

#[test]
fn compaction_keeps_file_permissions_and_follows_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let (d, path) = temp_store();
    std::fs::write(&path, "{}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = Store::open(&path).unwrap();
    s.upsert_blocking("secret", "x").unwrap();
    s.close_blocking().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a private memory file became {mode:o}");
    // A symlinked memory.json stays a symlink; the real file is updated.
    let link = d.path().join("link.json");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let s = Store::open(&link).unwrap();
    s.upsert_blocking("via_link", 1).unwrap();
    s.close_blocking().unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(steward_store::load(&path).unwrap().len(), 2);
    assert_eq!(steward_store::load(&link).unwrap().len(), 2);
}

#[test]
fn large_values_mixed_with_small_ones_survive_reopen() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    let big = "b".repeat(900 << 10);
    for i in 0..3 {
        s.upsert_blocking(&format!("small{i}"), i).unwrap();
        s.upsert_blocking(&format!("big{i}"), big.clone()).unwrap();
    }
    s.upsert_blocking("last", true).unwrap();
    drop(s);
    let report = steward_store::check(&path).unwrap();
    assert!(report.is_clean(), "{report}");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.len(), 7);
    assert_eq!(s.get("big2"), Some(json!(big)));
    assert_eq!(s.get("last"), Some(json!(true)));
}

/// `replace_all` puts a whole memory in place of the old one, telling how
/// many entries the old one held, and refuses one over the limits whole,
/// changing nothing: more distinct keys than `max_keys` (a key given twice
/// counts once), a key over its size.
#[test]
fn replace_all_swaps_the_memory_or_refuses_it_whole() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
        s.upsert_blocking(k, v).unwrap();
    }
    s.close_blocking().unwrap();
    drop(s);
    let entry = |k: &str, v: i64| steward_store::Entry::new(k, json!(v), None);
    let new = [entry("x", 1), entry("y", 2), entry("x", 3)];
    let held = Store::builder(&path).max_keys(2).replace_all(&new).unwrap();
    assert_eq!(held, 3);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_keys(), ["x", "y"]);
    assert_eq!(s.get("x"), Some(json!(3)));
    drop(s);
    let three = [entry("p", 1), entry("q", 2), entry("r", 3)];
    let e = Store::builder(&path)
        .max_keys(2)
        .replace_all(&three)
        .unwrap_err();
    assert!(matches!(e, Error::TooManyKeys { .. }), "{e}");
    let long = [entry(&"k".repeat(10), 1)];
    let e = Store::builder(&path)
        .max_key_bytes(5)
        .replace_all(&long)
        .unwrap_err();
    assert!(matches!(e, Error::KeyTooLarge { .. }), "{e}");
    assert_eq!(Store::open(&path).unwrap().list_keys(), ["x", "y"]);
}
