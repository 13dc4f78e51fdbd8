//! The Python assistant's own cases and the plain API.

use serde_json::json;
use steward_store::{Error, Store, StoreConfig};

use crate::{read, temp_store};

#[test]
fn persists_across_instances() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    assert!(s.create("name", "Ada").unwrap());
    s.upsert("n", 1).unwrap();
    drop(s); // no close: the log alone must carry the writes
    let s = Store::open(&path).unwrap();
    assert_eq!(s.read("name"), Some(json!("Ada")));
    assert_eq!(s.read("n"), Some(json!(1)));
    s.close().unwrap();
    assert!(!s.log_path().exists(), "close removes the log");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_keys(), ["name", "n"]);
}

#[test]
fn reset_leaves_empty_object() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    s.upsert("a", 1).unwrap();
    s.upsert("b", 2).unwrap();
    s.reset().unwrap();
    assert!(s.is_empty());
    s.close().unwrap();
    assert_eq!(read(&path), b"{}");
}

#[test]
fn missing_file_is_empty_store_and_semantics_match_python() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    assert!(s.is_empty());
    assert!(s.create("a", 1).unwrap());
    assert!(!s.create("a", 2).unwrap(), "create refuses an existing key");
    assert_eq!(s.read("a"), Some(json!(1)));
    assert!(!s.update("missing", 1).unwrap());
    assert!(!s.delete("missing").unwrap());
    assert_eq!(s.read("missing"), None);
    assert!(s.upsert("b", 2).unwrap(), "upsert of a new key says so");
    assert!(!s.upsert("b", 3).unwrap());
    s.upsert("c", 3).unwrap();
    // An updated key keeps its place; a deleted and re-added one goes last.
    assert!(s.update("a", 10).unwrap());
    assert!(s.delete("b").unwrap());
    s.upsert("b", 4).unwrap();
    assert_eq!(s.list_keys(), ["a", "c", "b"]);
    let pairs: Vec<_> = s.iter().collect();
    assert_eq!(pairs[0], ("a".to_string(), json!(10)));
    s.close().unwrap();
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
    s.set_as("r", &r).unwrap();
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
    let e = s.upsert("123456789", 1).unwrap_err();
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
    let e = s.upsert("k", "x".repeat(20)).unwrap_err();
    assert!(matches!(e, Error::ValueTooLarge { limit: 16, .. }), "{e}");
    assert!(e.to_string().contains("\"k\""), "{e}");
    assert!(s.is_empty());
    s.upsert("k", "x".repeat(10)).unwrap();
    assert_eq!(s.len(), 1);
    let bad = Store::builder(&path).config(StoreConfig {
        max_key_bytes: 0,
        ..StoreConfig::default()
    });
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
        s.upsert(
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
    assert_eq!(s.read("k19").unwrap()["i"], json!(299));
    // The snapshot alone is valid Python-format JSON of a prefix of history.
    let snap = steward_store::load(&path).unwrap();
    assert_eq!(snap.len(), 40);
}

#[test]
fn writes_after_close_fail_and_reads_still_work() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    let clone = s.clone();
    s.upsert("a", 1).unwrap();
    s.close().unwrap();
    s.close().unwrap(); // twice is fine
    assert!(matches!(clone.upsert("b", 2), Err(Error::Closed { .. })));
    assert_eq!(clone.read("a"), Some(json!(1)));
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
    assert_eq!(s.read("times_greeted"), Some(json!(42)));
    s.compact().unwrap();
    assert_eq!(read(&path), original, "rewrite is byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    assert!(s.create_async("a", 1).await.unwrap());
    assert!(!s.create_async("a", 2).await.unwrap());
    assert!(s.update_async("a", 3).await.unwrap());
    s.set_as_async("v", &vec![1, 2]).await.unwrap();
    assert!(s.delete_async("a").await.unwrap());
    s.compact_async().await.unwrap();
    s.reset_async().await.unwrap();
    s.upsert_async("z", "last").await.unwrap();
    s.close_async().await.unwrap();
    assert_eq!(read(&path), b"{\n  \"z\": \"last\"\n}");
}

#[test]
fn too_deep_values_are_refused_and_the_limit_itself_round_trips() {
    let (_d, path) = temp_store();
    let s = Store::open(&path).unwrap();
    let nest = |n: usize| (0..n).fold(json!(1), |v, _| json!([v]));
    let e = s.upsert("deep", nest(400)).unwrap_err();
    assert!(matches!(e, Error::ValueTooDeep { .. }), "{e}");
    s.upsert("deep", nest(399)).unwrap();
    drop(s); // replayed from the log
    let s = Store::open(&path).unwrap();
    assert_eq!(s.read("deep"), Some(nest(399)));
    s.close().unwrap(); // and from the snapshot
    assert_eq!(Store::open(&path).unwrap().read("deep"), Some(nest(399)));
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
    s.upsert("a", json!({"x": [1, 2]})).unwrap();
    s.compact().unwrap();
    s.upsert("b", 2).unwrap();
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
    s.upsert("secret", "x").unwrap();
    s.close().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a private memory file became {mode:o}");
    // A symlinked memory.json stays a symlink; the real file is updated.
    let link = d.path().join("link.json");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let s = Store::open(&link).unwrap();
    s.upsert("via_link", 1).unwrap();
    s.close().unwrap();
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
        s.upsert(&format!("small{i}"), i).unwrap();
        s.upsert(&format!("big{i}"), big.clone()).unwrap();
    }
    s.upsert("last", true).unwrap();
    drop(s);
    let report = steward_store::check(&path).unwrap();
    assert!(report.is_clean(), "{report}");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.len(), 7);
    assert_eq!(s.read("big2"), Some(json!(big)));
    assert_eq!(s.read("last"), Some(json!(true)));
}
